"""``nnunet-se-analyze``: excitation capture, linear excitation thresholds, figures and Table I."""

from __future__ import annotations

from collections.abc import Sequence

from nnunet_se.subcommands import Subcommand, dispatch

COMMANDS = (
    Subcommand("excitations", "nnunet_se.analysis.excitations_cmd", "capture gate excitations of a trained fold"),
    Subcommand("pca", "nnunet_se.analysis.pca_cmd", "linear excitation thresholds k(delta) per depth (Fig. 3)"),
    Subcommand("responses", "nnunet_se.analysis.responses_cmd", "per-channel excitation responses (Fig. 2)"),
    Subcommand("table", "nnunet_se.analysis.table_cmd", "Table I: Dice mean +- std with significance tests"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("nnunet-se-analyze", __doc__.split(":", 1)[1].strip(), COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())

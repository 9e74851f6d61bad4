"""``nnunet-se``: environment, trainer discovery, self-check, job grids, status and the demo."""

from __future__ import annotations

from collections.abc import Sequence

from nnunet_se.subcommands import Subcommand, dispatch

COMMANDS = (
    Subcommand("env", "nnunet_se.workflow.env", "print shell exports that make nnU-Net find the plugin trainers"),
    Subcommand("list", "nnunet_se.workflow.listing", "list the plugin trainers and recalibration modules"),
    Subcommand("check", "nnunet_se.workflow.selfcheck", "verify the installation (nnU-Net, torchvision, discovery)"),
    Subcommand("grid", "nnunet_se.workflow.grid", "write a job script (sh, SLURM array, JSON) for a benchmark grid"),
    Subcommand("status", "nnunet_se.workflow.status", "table of finished / running / missing folds"),
    Subcommand("demo", "nnunet_se.workflow.demo", "synthetic end-to-end demo: convert, train, analyse, report"),
)


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("nnunet-se", __doc__.split(":", 1)[1].strip(), COMMANDS, argv)


if __name__ == "__main__":
    raise SystemExit(main())

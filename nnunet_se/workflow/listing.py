"""``nnunet-se list``: the trainers of the registry (``-tr`` names, stock ``nnUNetTrainer`` included), their families
(what ``-tr <family>`` expands to) and the recalibration modules, as tables."""

from __future__ import annotations

import argparse

from nnunet_se.text_table import format_table

TRAINER_COLUMNS = ("trainer", "family", "baseline", "Table I row", "module", "flavour", "network")
FAMILY_COLUMNS = ("family", "-tr <family> expands to (baseline first)")
MODULE_COLUMNS = ("module", "params C=64 paper", "params C=64 original", "what it is")
MODULE_TITLES = {
    "cse": "channel squeeze-and-excitation (Hu et al.; Roy et al.'s cSE)",
    "sse": "spatial squeeze-and-excitation (Roy et al.)",
    "scse": "concurrent spatial and channel SE (Roy et al.)",
    "srm": "style-based recalibration (Lee et al.)",
    "fca": "frequency channel attention, DCT pooling (Qin et al., FcaNet)",
    "mono": "monofractal recalibration (Martins et al.)",
}


def trainer_rows() -> list[tuple[str, ...]]:
    """One row per ``-tr`` name of the trainer registry: name, family, baseline, Table I row, module (or -),
    flavour, network."""
    from nnunet_se.trainer_registry import trainer_infos

    rows = []
    for info in trainer_infos().values():
        module = (info.recalibration or "-") + ("" if info.skip_connections else " (no skips)")
        rows.append((info.name, info.family, info.baseline or "-", info.table_row or "-", module, info.flavour,
                     info.network))
    return rows


def family_rows() -> list[tuple[str, str]]:
    """One row per trainer family: name, its members separated by spaces."""
    from nnunet_se.trainer_registry import families

    return [(family, " ".join(members)) for family, members in families().items()]


def module_rows() -> list[tuple[str, ...]]:
    """One row per registry module: name, parameters at 64 channels (2D) per flavour, a short title."""
    from nnunet_se.modules import available_recalibrations, parameter_count

    return [
        (name, parameter_count(name, 64), parameter_count(name, 64, flavour="original"), MODULE_TITLES.get(name, ""))
        for name in available_recalibrations()
    ]


def main(argv: list[str], prog: str) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("what", nargs="?", choices=("all", "trainers", "modules"), default="all")
    args = parser.parse_args(argv)
    blocks = []
    if args.what in ("all", "trainers"):
        blocks += [format_table(TRAINER_COLUMNS, trainer_rows()), format_table(FAMILY_COLUMNS, family_rows())]
    if args.what in ("all", "modules"):
        blocks.append(format_table(MODULE_COLUMNS, module_rows()))
    print("\n\n".join(blocks))
    return 0

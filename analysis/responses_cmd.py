"""``nnunet-se-analyze responses``: per-channel excitation responses (Fig. 2) and instance variability vs Dice."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from nnunet_se.analysis.excitation_io import input_paths, load_many
from nnunet_se.analysis.outputs import check_output_folder, staged_output
from nnunet_se.analysis.plots import plot_ivi_dice, plot_responses
from nnunet_se.analysis.responses import (
    attach_dice,
    channel_rows,
    correlations,
    read_dice_folds,
    refuse_duplicates,
    variability_rows,
)
from nnunet_se.analysis.tabular import write_csv, write_json
from nnunet_se.cli_options import add_output
from nnunet_se.errors import UserError

COMMAND = "nnunet-se-analyze responses"
logger = logging.getLogger(__name__)


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split(":", 1)[1].strip())
    p.add_argument("files", nargs="+", type=Path, help="excitation .npz files (JSON sidecar optional)")
    p.add_argument("--dice", type=Path, help="JSON written by `nnunet-se-analyze table --format json`: adds a "
                                             "scatter of the variability index against each fold's Dice")
    add_output(p, "folder", default="excitation_responses")
    return p


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    inputs = input_paths(args.files) + ([args.dice] if args.dice else [])
    check_output_folder(args.output, COMMAND, inputs)
    sets = load_many(args.files)
    refuse_duplicates([(s.dataset, s.model, s.plans, s.configuration, s.fold) for s in sets],
                      [str(s.path) for s in sets])
    rows = variability_rows(sets)
    points = attach_dice(rows, read_dice_folds(args.dice)) if args.dice else []
    if args.dice and not points:
        raise UserError(f"{args.dice}: no fold matches the excitation files' (dataset, trainer, plans, "
                        "configuration, fold)")
    paired = {(p["dataset"], p["model"], p["plans"], p["configuration"], p["fold"]) for p in points}
    for s in sets:
        if args.dice and (s.dataset, s.model, s.plans, s.configuration, s.fold) not in paired:
            logger.warning("%s: no finished fold with a Dice in %s for its (dataset, trainer, plans, configuration, "
                           "fold); left out of the IVI-Dice correlation", s.path, args.dice)
    with staged_output(args.output, COMMAND, inputs) as tmp:
        write_csv(tmp / "channels.csv", channel_rows(sets))
        write_csv(tmp / "variability.csv", rows)
        payload = {"index": "ivi = mean over channels of the per-channel std across cases (ddof 1)",
                   "rows": rows}
        if points:
            payload["dice"] = {"points": points, "spearman_by_depth": correlations(points)}
            plot_ivi_dice(points, tmp / "ivi_dice")
        write_json(tmp / "variability.json", payload)
        plot_responses(sets, tmp / "responses")
    for r in rows:
        print(f"{r['dataset'] or '-'}\t{r['model']}\tfold {r['fold'] or '-'}\tl={r['depth']}\tC={r['channels']}\t"
              f"IVI={r['ivi']:.4f}\tbounded={r['ivi_bounded']:.4f}")
    return 0

"""``nnunet-se-analyze pca``: linear excitation thresholds k(delta) and spectra per model, dataset and depth."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nnunet_se.analysis.excitation_io import input_paths, load_many
from nnunet_se.analysis.outputs import check_output_folder, staged_output
from nnunet_se.analysis.plots import plot_thresholds
from nnunet_se.analysis.tabular import write_csv, write_json
from nnunet_se.analysis.thresholds import (
    COUNTS,
    CRITERIA,
    DEFAULT_PRESET,
    PRESETS,
    SCALES,
    Convention,
    bootstrap_threshold,
    cumulative_ratio,
    spectrum,
)
from nnunet_se.cli_options import add_output, add_seed
from nnunet_se.errors import UserError

logger = logging.getLogger(__name__)
COMMAND = "nnunet-se-analyze pca"
MAX_BOOT = 100_000  # resamples; each recomputes one SVD per depth


def build_parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split(":", 1)[1].strip())
    p.add_argument("files", nargs="+", type=Path, help="excitation .npz files (JSON sidecar optional)")
    p.add_argument("--preset", choices=sorted(PRESETS), default=DEFAULT_PRESET,
                   help="named convention: fig3 (default; robust scaling, PCA, smallest k reaching delta: reproduces "
                        "the published Fig. 3 best), text (the paper's text: no scaling), authors (notebook: robust "
                        "scaling, count <= delta), equation (eq. 8: Frobenius ratio of uncentred A)")
    p.add_argument("--criterion", choices=CRITERIA, help="overrides the preset's criterion")
    p.add_argument("--count", choices=COUNTS, help="overrides the preset's count")
    p.add_argument("--scale", choices=SCALES, help="overrides the preset's column scaling")
    p.add_argument("--center", action="store_true", help="centre G before the Frobenius criterion")
    p.add_argument("--delta", type=float, help="threshold ratio (default 0.95)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help=f"bootstrap resamples over cases, 0..{MAX_BOOT} (0 = none; default 1000)")
    p.add_argument("--ci", type=float, default=0.95, help="confidence level of the percentile interval")
    add_seed(p, help="bootstrap seed (recorded in the output)")
    add_output(p, "folder", default="excitation_pca")
    return p


def convention_from_args(args: argparse.Namespace) -> Convention:
    base = PRESETS[args.preset].as_dict()
    for key in ("criterion", "count", "scale", "delta"):
        if getattr(args, key) is not None:
            base[key] = getattr(args, key)
    base["center"] = base["center"] or args.center
    try:
        return Convention(**base)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def analyse(files: list[Path], convention: Convention, n_boot: int, level: float, seed: int) -> tuple[list, list]:
    """Threshold rows (one per file and depth) and spectrum rows (one per file, depth and component)."""
    sets = load_many(files)
    thresholds, spectra = [], []
    jobs = [(s, d) for s in sets for d in s.depths]
    for exc, depth in tqdm(jobs, desc="pca", unit="depth", disable=None):
        g = exc.depths[depth]
        if g.shape[0] < 2:
            raise UserError(f"{exc.path}: depth_{depth} has {g.shape[0]} case(s); at least 2 are needed")
        key = {"dataset": exc.dataset, "model": exc.model, "fold": exc.fold, "depth": depth,
               "channels": int(g.shape[1])}
        boot = bootstrap_threshold(g, convention, n_boot=n_boot, level=level, seed=seed)
        thresholds.append({**key, "n_cases": int(g.shape[0]), "k": boot.k, "k_ci_low": boot.ci_low,
                           "k_ci_high": boot.ci_high,
                           "k_boot_median": float(np.median(boot.samples)) if n_boot else float("nan"),
                           **convention.as_dict(), "n_boot": n_boot,
                           "ci_level": level, "seed": seed, "file": str(exc.path)})
        eigen, weights = spectrum(g, convention)
        ratio = weights / weights.sum() if weights.sum() > 0 else weights * 0.0
        for i, (e, w, r, c) in enumerate(zip(eigen, weights, ratio, cumulative_ratio(weights), strict=True)):
            spectra.append({**key, "component": i + 1, "eigenvalue": float(e), "weight": float(w),
                            "ratio": float(r), "cumulative": float(c), "criterion": convention.criterion,
                            "scale": convention.scale, "center": convention.center})
    return thresholds, spectra


def main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(argv)
    if not 0 <= args.n_boot <= MAX_BOOT:
        raise UserError(f"--n-boot must lie in 0..{MAX_BOOT}, got {args.n_boot}")
    if not 0.0 < args.ci < 1.0:
        raise UserError(f"--ci must lie in (0, 1), got {args.ci}")
    inputs = input_paths(args.files)
    check_output_folder(args.output, COMMAND, inputs)
    convention = convention_from_args(args)
    thresholds, spectra = analyse(args.files, convention, args.n_boot, args.ci, args.seed)
    c = convention
    title = (f"k(delta={c.delta}): {c.criterion}, count={c.count}, scale={c.scale}"
             f"{', centred' if c.center and c.criterion == 'frobenius' else ''}; {args.ci:.0%} bootstrap CI "
             f"({args.n_boot} resamples)")
    with staged_output(args.output, COMMAND, inputs) as tmp:
        write_csv(tmp / "thresholds.csv", thresholds)
        write_csv(tmp / "spectra.csv", spectra)
        write_json(tmp / "thresholds.json", {"convention": c.as_dict(), "preset": args.preset, "rows": thresholds})
        write_json(tmp / "spectra.json", {"convention": c.as_dict(), "preset": args.preset, "rows": spectra})
        plot_thresholds(thresholds, tmp / "thresholds", title)
    for row in thresholds:
        print(f"{row['dataset'] or '-'}\t{row['model']}\tfold {row['fold'] or '-'}\tl={row['depth']}\t"
              f"C={row['channels']}\tk={row['k']} [{row['k_ci_low']:g}, {row['k_ci_high']:g}]")
    logger.info("wrote thresholds.csv/json, spectra.csv/json, thresholds.png/pdf to %s", args.output)
    return 0

"""``nnunet-se-analyze pca``: linear excitation thresholds k(delta) and spectra per model, dataset and depth."""

from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nnunet_se.analysis.excitation_io import ExcitationSet, input_paths, load_many
from nnunet_se.analysis.outputs import check_output_folder, staged_output
from nnunet_se.analysis.plots import plot_thresholds
from nnunet_se.analysis.tabular import write_csv, write_json
from nnunet_se.analysis.thresholds import (
    COUNTS,
    CRITERIA,
    DEFAULT_PRESET,
    INTERVALS,
    PRESETS,
    SCALES,
    Convention,
    ThresholdInterval,
    cumulative_ratio,
    jackknife_interval,
    percentile_interval,
    spectrum,
    threshold,
)
from nnunet_se.cli_options import add_output, add_seed
from nnunet_se.errors import UserError

logger = logging.getLogger(__name__)
COMMAND = "nnunet-se-analyze pca"
MAX_BOOT = 100_000  # resamples of --interval percentile; each recomputes one eigendecomposition per depth
KEY = ("dataset", "model", "plans", "configuration", "fold")  # one model and fold: rows are never merged across keys


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
    p.add_argument("--interval", choices=INTERVALS, default="jackknife",
                   help="interval for k: jackknife (default; covers the mean k of n cases, docs/analysis.md) or "
                        "percentile (the percentile bootstrap over cases: biased low, kept for comparison)")
    p.add_argument("--n-boot", type=int, default=1000,
                   help=f"0 = no interval; else the resamples of --interval percentile, 0..{MAX_BOOT} (default 1000)")
    p.add_argument("--ci", type=float, default=0.95, help="confidence level of the interval")
    add_seed(p, help="seed of the jackknife grouping / bootstrap (recorded in the output)")
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


def _interval(g: np.ndarray, convention: Convention, args: argparse.Namespace) -> ThresholdInterval:
    if args.n_boot == 0:
        return ThresholdInterval(threshold(g, convention), float("nan"), float("nan"), "none")
    if args.interval == "percentile":
        return percentile_interval(g, convention, n_boot=args.n_boot, level=args.ci, seed=args.seed)
    return jackknife_interval(g, convention, level=args.ci, seed=args.seed)


def _key(exc: ExcitationSet) -> dict:
    return {"dataset": exc.dataset, "model": exc.model, "plans": exc.plans, "configuration": exc.configuration,
            "fold": exc.fold}


def check_unique(sets: list[ExcitationSet]) -> None:
    """Refuse two files of one (dataset, trainer, plans, configuration, fold): they would be drawn as one model."""
    seen: dict[tuple, Path] = {}
    for exc in sets:
        key = tuple(_key(exc).values())
        if key in seen:
            named = ", ".join(f"{name}={value or '-'}" for name, value in zip(KEY, key, strict=True))
            raise UserError(f"{exc.path}: same dataset, trainer, plans, configuration and fold as {seen[key]} "
                            f"({named}); give each model and fold once")
        seen[key] = exc.path


def sample_size_warning(rows: list[dict]) -> str | None:
    """One line when the rows drawn in one panel (one dataset) differ in n at a depth, else None."""
    cases: dict[tuple, set[int]] = defaultdict(set)
    for r in rows:
        cases[(r["dataset"], r["depth"])].add(r["n_cases"])
    mixed = [f"{dataset or '-'} l={depth}: n = {', '.join(map(str, sorted(ns)))}"
             for (dataset, depth), ns in sorted(cases.items()) if len(ns) > 1]
    if not mixed:
        return None
    return ("k grows with the number of cases n, so k of models or folds with different n are not comparable: "
            + "; ".join(mixed))


def analyse(files: list[Path], convention: Convention, args: argparse.Namespace) -> tuple[list, list]:
    """Threshold rows (one per file and depth) and spectrum rows (one per file, depth and component)."""
    sets = load_many(files)
    check_unique(sets)
    thresholds, spectra = [], []
    jobs = [(s, d) for s in sets for d in s.depths]
    for exc, depth in tqdm(jobs, desc="pca", unit="depth", disable=None):
        g = exc.depths[depth]
        if g.shape[0] < 2:
            raise UserError(f"{exc.path}: depth_{depth} has {g.shape[0]} case(s); at least 2 are needed")
        key = {**_key(exc), "depth": depth, "channels": int(g.shape[1])}
        result = _interval(g, convention, args)
        thresholds.append({**key, "n_cases": int(g.shape[0]), "k": result.k, "k_ci_low": result.low,
                           "k_ci_high": result.high, "interval": result.method,
                           **convention.as_dict(), "n_boot": args.n_boot if result.method == "percentile" else 0,
                           "ci_level": args.ci, "seed": args.seed, "file": str(exc.path)})
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
    thresholds, spectra = analyse(args.files, convention, args)
    c = convention
    band = ("no interval" if args.n_boot == 0 else f"{args.ci:.0%} percentile bootstrap ({args.n_boot} resamples)"
            if args.interval == "percentile" else f"{args.ci:.0%} jackknife interval for the mean k at this n")
    title = (f"k(delta={c.delta}): {c.criterion}, count={c.count}, scale={c.scale}"
             f"{', centred' if c.center and c.criterion == 'frobenius' else ''}; {band}")
    warning = sample_size_warning(thresholds)
    if warning:
        print(f"{prog}: warning: {warning}", file=sys.stderr)
    with staged_output(args.output, COMMAND, inputs) as tmp:
        write_csv(tmp / "thresholds.csv", thresholds)
        write_csv(tmp / "spectra.csv", spectra)
        write_json(tmp / "thresholds.json", {"convention": c.as_dict(), "preset": args.preset, "rows": thresholds})
        write_json(tmp / "spectra.json", {"convention": c.as_dict(), "preset": args.preset, "rows": spectra})
        plot_thresholds(thresholds, tmp / "thresholds", title)
    for row in thresholds:
        print(f"{row['dataset'] or '-'}\t{row['model']}\t{row['plans'] or '-'}\t{row['configuration'] or '-'}\t"
              f"fold {row['fold'] or '-'}\tl={row['depth']}\tC={row['channels']}\tn={row['n_cases']}\t"
              f"k={row['k']} [{row['k_ci_low']:.2f}, {row['k_ci_high']:.2f}]")
    logger.info("wrote thresholds.csv/json, spectra.csv/json, thresholds.png/pdf to %s", args.output)
    return 0

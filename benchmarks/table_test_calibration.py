"""Size and power of Table I's tests under K-fold cross-validation, by simulation.

The simulated procedure is the real one at small scale. A *table* is 3 data sets x (a baseline + 4 modules), named
like the paper's trainers. For each data set: ``n`` cases with features x (standard normal, one block of ``B``
features per learner) and a target y = sum_j w_j * (x_j . c) + noise, where block j belongs to learner j; each
learner sees only its own block, so with equal weights the learners are exchangeable and their expected scores are
exactly equal (the null hypothesis of every cell). K-fold cross-validation (one split per data set, shared by all
learners, as nnU-Net's ``splits_final.json``): each fold trains on the other K - 1 folds, so folds share training
cases. Per-case score (a Dice stand-in in (0, 1]): exp(-(y - y_hat)^2 / (2 tau^2)); the fold value is the mean
over the fold's cases, as nnU-Net's ``foreground_mean``. The scores are wrapped in ``FoldResult`` objects and
passed to :func:`nnunet_se.analysis.tables.dataset_entries`, the function ``table`` runs per data set, so the
tests are exactly the table's (paired t over folds, Nadeau-Bengio with n_test/n_train = 1/(K - 1), Wilcoxon over
pooled per-case pairs, Holm over the models of a data set), one-sided as ``table``'s default.

Learners (batched in numpy over all simulated data sets; checked against scikit-learn in the tests):
``ridge`` (ridge regression with intercept, alpha 1: stable) and ``knn`` (1-nearest-neighbour regression: unstable,
its predictions depend strongly on the training cases, as a network's do). Power: the first module's block weight
is raised (``--effect``), the other modules stay null; the effect is reported as the mean fold-score difference
in Dice points.

    nice -n 10 .venv/bin/python benchmarks/table_test_calibration.py           # 2,000 null tables per (K, learner)
    .venv/bin/python benchmarks/table_test_calibration.py --quick              # small run (the test suite's)

Writes benchmarks/results/table_test_calibration.{json,md} (``--quick``: only prints unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from nnunet_se.analysis.stats import kfold_test_train_ratio
from nnunet_se.analysis.tables import dataset_entries
from nnunet_se.results import FoldResult, FoldState

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = tuple(f"{t}__nnUNetPlans__2d" for t in ("nnUNetTrainerPaper", "nnUNetTrainerPaperCSE",
                                                  "nnUNetTrainerPaperSRM", "nnUNetTrainerPaperFCA",
                                                  "nnUNetTrainerPaperMono"))
DATASETS_PER_TABLE = 3
BLOCK = 3  # features per learner
COEF = np.array([1.0, 0.6, 0.3])  # signal coefficients of a block
NOISE_SD = 1.0
TAU = 1.2  # score width: exp(-(err)^2 / (2 tau^2)) gives mean scores about 0.6-0.7
RIDGE_ALPHA = 1.0
KNN_K = 1
ALPHA = 0.05
SIZE_LIMIT = 0.07
TESTS = {"mark († or ‡)": "mark", "paired t": "p_ttest", "Nadeau-Bengio": "p_nadeau_bengio",
         "Wilcoxon (cases)": "p_wilcoxon", "Wilcoxon + Holm": "p_wilcoxon_holm"}
"""Row name -> Entry field; ``mark`` is the table's own mark (as 0 = marked, 1 = unmarked, so p <= alpha reads
"marked")."""


@dataclass(frozen=True)
class Scenario:
    folds: int
    learner: str
    effect: float  # block weight of the first module (1 = null everywhere)
    tables: int
    cases: int


def ridge_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray,
                  alpha: float = RIDGE_ALPHA) -> np.ndarray:
    """Ridge regression with an unpenalised intercept, batched: x_train (..., n, p), y_train (..., n),
    x_test (..., m, p) -> predictions (..., m). Same model as ``sklearn.linear_model.Ridge(alpha)``."""
    mx, my = x_train.mean(-2, keepdims=True), y_train.mean(-1, keepdims=True)
    xc = x_train - mx
    gram = xc.swapaxes(-1, -2) @ xc + alpha * np.eye(x_train.shape[-1])
    beta = np.linalg.solve(gram, (xc.swapaxes(-1, -2) @ (y_train - my)[..., None]))[..., 0]
    return ((x_test - mx) @ beta[..., None])[..., 0] + my


def knn_predict(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, k: int = KNN_K) -> np.ndarray:
    """k-nearest-neighbour regression (Euclidean, uniform weights), batched as :func:`ridge_predict`. Same model as
    ``sklearn.neighbors.KNeighborsRegressor(k)`` (up to ties in distance, which have probability 0 here)."""
    d2 = ((x_test[..., :, None, :] - x_train[..., None, :, :]) ** 2).sum(-1)
    nearest = np.argpartition(d2, k - 1, axis=-1)[..., :k]
    return np.take_along_axis(np.broadcast_to(y_train[..., None, :], d2.shape), nearest, -1).mean(-1)


LEARNERS = {"ridge": ridge_predict, "knn": knn_predict}


def simulate_scores(rng: np.random.Generator, n_sets: int, scenario: Scenario) -> np.ndarray:
    """Per-case CV scores, shape (n_sets, n_learners, cases); case i is in test fold i // (cases / K) (cases are
    i.i.d., so contiguous folds are a random split)."""
    n_learners, k, n = len(MODELS), scenario.folds, scenario.cases
    weights = np.ones(n_learners)
    weights[1] = scenario.effect
    x = rng.standard_normal((n_sets, n, n_learners, BLOCK))
    y = (x @ COEF) @ weights + NOISE_SD * rng.standard_normal((n_sets, n))
    xl = np.moveaxis(x, 2, 1)  # (sets, learners, cases, block)
    scores = np.empty((n_sets, n_learners, n))
    size = n // k
    for fold in range(k):
        test = slice(fold * size, (fold + 1) * size)
        train = np.r_[0:fold * size, (fold + 1) * size:n]
        y_train = np.broadcast_to(y[:, None, train], (n_sets, n_learners, train.size))
        pred = LEARNERS[scenario.learner](xl[:, :, train], y_train, xl[:, :, test])
        scores[:, :, test] = np.exp(-((y[:, None, test] - pred) ** 2) / (2 * TAU**2))
    return scores


def table_pvalues(scores: np.ndarray, folds: int, dataset: str = "Dataset001_Sim") -> dict[str, np.ndarray]:
    """The table's p-values for one simulated data set: scores (n_learners, cases) -> test field -> (n_modules,)."""
    size = scores.shape[1] // folds
    folds_by_model: dict[str, Mapping[int, FoldResult]] = {}
    for model, row in zip(MODELS, scores, strict=True):
        trainer, plans, configuration = model.split("__")
        folds_by_model[model] = {f: FoldResult(
            dataset, trainer, plans, configuration, f, FoldState.FINISHED, Path(model, f"fold_{f}"),
            dice=float(row[f * size:(f + 1) * size].mean()),
            per_case={f"case_{i:04d}": float(row[i]) for i in range(f * size, (f + 1) * size)}) for f in range(folds)}
    baselines = {m: MODELS[0] for m in MODELS[1:]}
    entries = dataset_entries(dataset, folds_by_model, baselines, None, kfold_test_train_ratio(folds))
    return {field: np.array([float(not e.mark) if field == "mark" else getattr(e, field) for e in entries[1:]])
            for field in TESTS.values()}


def run_scenario(scenario: Scenario, seed: int, chunk: int = 100) -> dict:
    """Rejection rates at ALPHA: per cell for nulls (size) and for the first module under an effect (power), and
    family-wise rates (any null cell of a data set / of a table marked)."""
    rng = np.random.default_rng(seed)
    n_sets = scenario.tables * DATASETS_PER_TABLE
    p = {field: [] for field in TESTS.values()}
    diff = []
    for start in range(0, n_sets, chunk):
        scores = simulate_scores(rng, min(chunk, n_sets - start), scenario)
        size = scenario.cases // scenario.folds
        fold_means = scores.reshape(*scores.shape[:2], scenario.folds, size).mean(-1)
        diff.extend((fold_means[:, 1] - fold_means[:, 0]).mean(-1) * 100.0)
        for one in scores:
            for field, values in table_pvalues(one, scenario.folds).items():
                p[field].append(values)
    null_cols = slice(1, None) if scenario.effect != 1.0 else slice(None)
    out: dict = {"scenario": asdict(scenario), "seed": seed, "data_sets": n_sets,
                 "mean_difference_points": float(np.mean(diff)), "tests": {}}
    for name, field in TESTS.items():
        rejected = np.nan_to_num(np.array(p[field]), nan=1.0) <= ALPHA  # an undefined p is never marked
        null = rejected[:, null_cols]
        per_table = null.reshape(scenario.tables, -1)
        row = {"size": _rate(null.sum(), null.size), "fwer_data_set": _rate(null.any(1).sum(), n_sets),
               "fwer_table": _rate(per_table.any(1).sum(), scenario.tables),
               "undefined": int(np.isnan(np.array(p[field])).sum())}
        if scenario.effect != 1.0:
            row["power"] = _rate(rejected[:, 0].sum(), n_sets)
        out["tests"][name] = row
    return out


def _rate(hits: int, n: int) -> dict:
    """Proportion with its exact (Clopper-Pearson) 95 % interval."""
    hits, n = int(hits), int(n)
    low = stats.beta.ppf(0.025, hits, n - hits + 1) if hits else 0.0
    high = stats.beta.ppf(0.975, hits + 1, n - hits) if hits < n else 1.0
    return {"rate": hits / n, "hits": hits, "n": n, "ci95": [float(low), float(high)]}


def scenarios(quick: bool, tables: int, power_tables: int, cases: int, effect: float) -> list[Scenario]:
    if quick:
        return [Scenario(5, "knn", 1.0, 50, 60), Scenario(5, "knn", effect, 15, 60)]
    return [Scenario(k, learner, e, n, cases) for k in (5, 10) for learner in LEARNERS
            for e, n in ((1.0, tables), (effect, power_tables))]


def markdown(results: list[dict], meta: dict) -> str:
    lines = ["# Table I tests: size and power under K-fold cross-validation", "",
             f"Command: `{meta['command']}`; seed {meta['seed']}; {meta['platform']}; {meta['seconds']:.0f} s.",
             f"Rejection rate at alpha = {ALPHA} (one-sided, as `table`'s default) with exact 95 % intervals. "
             f"Size = rate over null cells; FWER = any null cell marked, per data set (Holm's family) and per "
             f"table ({DATASETS_PER_TABLE} data sets x 4 modules). A test is calibrated when its size <= "
             f"{SIZE_LIMIT}.", "",
             "| K | learner | tables | test | size [95 % CI] | FWER data set | FWER table | power (effect) |",
             "|---|---|---|---|---|---|---|---|"]
    for null in (r for r in results if r["scenario"]["effect"] == 1.0):
        s = null["scenario"]
        power = next((r for r in results if r["scenario"]["effect"] != 1.0 and r["scenario"]["folds"] == s["folds"]
                      and r["scenario"]["learner"] == s["learner"]), None)
        for name, row in null["tests"].items():
            size = row["size"]
            pw = "–" if power is None else (f"{power['tests'][name]['power']['rate']:.3f} "
                                            f"({power['mean_difference_points']:.2f} pts)")
            lines.append(f"| {s['folds']} | {s['learner']} | {s['tables']} | {name} | {size['rate']:.3f} "
                         f"[{size['ci95'][0]:.3f}, {size['ci95'][1]:.3f}] | {row['fwer_data_set']['rate']:.3f} | "
                         f"{row['fwer_table']['rate']:.3f} | {pw} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (seconds) for the test suite")
    parser.add_argument("--tables", type=int, default=2000, help="null tables per (K, learner) (default 2000)")
    parser.add_argument("--power-tables", type=int, default=500, help="tables with an effect per (K, learner)")
    parser.add_argument("--cases", type=int, default=60, help="cases per data set, divisible by 5 and 10")
    parser.add_argument("--effect", type=float, default=2.0, help="block weight of the first module (power)")
    parser.add_argument("--seed", type=int, default=20240611)
    parser.add_argument("--out", type=Path, help="folder for the result files (default benchmarks/results; "
                                                 "--quick writes none unless given)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = [run_scenario(s, args.seed + i) for i, s in
               enumerate(scenarios(args.quick, args.tables, args.power_tables, args.cases, args.effect))]
    meta = {"command": "python benchmarks/table_test_calibration.py" + (" --quick" if args.quick else ""),
            "seed": args.seed, "platform": f"{platform.machine()}, Python {platform.python_version()}, "
                                           f"numpy {np.__version__}", "seconds": time.perf_counter() - start,
            "alpha": ALPHA, "size_limit": SIZE_LIMIT, "ridge_alpha": RIDGE_ALPHA, "knn_k": KNN_K,
            "datasets_per_table": DATASETS_PER_TABLE, "models": list(MODELS)}
    text = markdown(results, meta)
    print(text, end="")
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "table_test_calibration.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2)
                                                         + "\n")
        (out / "table_test_calibration.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

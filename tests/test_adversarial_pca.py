"""``nnunet-se-analyze pca``: every selecting option honoured or refused, rows keyed on dataset, trainer, plans,
configuration and fold (duplicates refused, never averaged), values from ``.npz`` checked where they enter, k never
above the matrix rank, and Fig. 3 drawing each point inside its band. Each refused case: one error line naming the
file or option, no traceback, no output folder, inputs unchanged (``cli_harness``)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cli_harness import assert_one_line_error, call_main, tree_digest

from nnunet_se.analysis import cli
from nnunet_se.analysis.excitation_io import save_excitations
from nnunet_se.analysis.plots import threshold_series

DATASET = "Dataset901_X"
C = 12


def _gates(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n, 3)) @ rng.standard_normal((3, C)) + 0.3 * rng.standard_normal((n, C))
    return 1.0 / (1.0 + np.exp(-scores))


def _write(path: Path, n: int = 20, seed: int = 0, depths: int = 2, **meta: object) -> Path:
    meta = {"dataset": DATASET, "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
            "fold": 0, **meta}
    save_excitations(path, {d: _gates(n, seed + d) for d in range(1, depths + 1)}, [str(i) for i in range(n)], meta)
    return path


def _rows(out: Path) -> list[dict]:
    """thresholds.csv with k and its interval as numbers (as ``pca`` hands them to the figure)."""
    return [{**r, "k": int(r["k"]), "k_ci_low": float(r["k_ci_low"]), "k_ci_high": float(r["k_ci_high"])}
            for r in csv.DictReader((out / "thresholds.csv").open())]


# ---- refused: one line, exit 1 (bad input) or 2 (usage), nothing written ----------------------------------------
def _duplicate(root: Path) -> list[str]:
    a = _write(root / "a.npz")
    b = _write(root / "b.npz", seed=5)  # same dataset, trainer, plans, configuration and fold: one model twice
    return [str(a), str(b)]


def _out_of_range(root: Path) -> list[str]:
    path = root / "logits.npz"
    np.savez(path, depth_1=_gates(10, 0) * 4.0 - 2.0)  # logits written instead of gates
    return [str(path)]


def _same_file_twice(root: Path) -> list[str]:
    a = _write(root / "a.npz")
    return [str(a), str(a)]


def _one(root: Path) -> list[str]:
    return [str(_write(root / "a.npz"))]


REFUSED = [  # (id, inputs, extra options, exit code, fragments of the error line)
    ("duplicate-key", _duplicate, (), 1, ("b.npz", "a.npz", "plans=nnUNetPlans", "fold=0")),
    ("same-file-twice", _same_file_twice, (), 1, ("a.npz", "give each model and fold once")),
    ("values-outside-0-1", _out_of_range, (), 1, ("logits.npz", "depth_1", "outside [0, 1]")),
    *[(f"option-{opt}", _one, (opt, value), 2, (opt,))
      for opt, value in (("-d", "901"), ("-tr", "nnUNetTrainerPaperCSE"), ("-f", "0"), ("-c", "2d"),
                         ("-p", "nnUNetPlans"), ("--depth", "2"))],
    ("delta-zero", _one, ("--delta", "0"), 1, ("delta",)),
    ("delta-above-one", _one, ("--delta", "1.01"), 1, ("delta",)),
    ("interval-unknown", _one, ("--interval", "bca"), 2, ("--interval",)),
]


@pytest.mark.parametrize("case,inputs,extra,code,fragments", REFUSED, ids=[r[0] for r in REFUSED])
def test_pca_refuses(tmp_path: Path, capsys: pytest.CaptureFixture, case: str,
                     inputs: Callable[[Path], list[str]], extra: tuple[str, ...], code: int,
                     fragments: tuple[str, ...]) -> None:
    files = inputs(tmp_path)
    before = tree_digest(tmp_path)
    result = call_main(cli.main, ["pca", *files, *extra, "-o", str(tmp_path / "out")], capsys)
    assert result.code == code
    assert_one_line_error(result, *fragments)
    assert tree_digest(tmp_path) == before


# ---- honoured ----------------------------------------------------------------------------------------------------
def test_plans_and_configurations_stay_separate_models(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """One trainer under two plans and two configurations: four rows per depth, four lines in the figure."""
    files = [str(_write(tmp_path / f"{p}_{c}.npz", seed=i, plans=p, configuration=c))
             for i, (p, c) in enumerate([(p, c) for p in ("nnUNetPlans", "nnUNetResEncUNetMPlans")
                                         for c in ("2d", "3d_fullres")])]
    out = tmp_path / "out"
    assert call_main(cli.main, ["pca", *files, "-o", str(out)], capsys).code == 0
    rows = _rows(out)
    assert sorted({(r["plans"], r["configuration"]) for r in rows}) == [
        ("nnUNetPlans", "2d"), ("nnUNetPlans", "3d_fullres"), ("nnUNetResEncUNetMPlans", "2d"),
        ("nnUNetResEncUNetMPlans", "3d_fullres")]
    labels = threshold_series(rows)[DATASET]
    assert sorted(labels) == [f"nnUNetTrainerPaperCSE ({p}, {c})" for p in ("nnUNetPlans", "nnUNetResEncUNetMPlans")
                              for c in ("2d", "3d_fullres")]


@pytest.mark.parametrize("cases,warned", [((20, 20), False), ((20, 30), True)])
def test_one_line_warning_when_n_differs(tmp_path: Path, capsys: pytest.CaptureFixture, cases: tuple[int, int],
                                         warned: bool) -> None:
    files = [str(_write(tmp_path / "cse.npz", n=cases[0])),
             str(_write(tmp_path / "srm.npz", n=cases[1], seed=3, trainer="nnUNetTrainerPaperSRM"))]
    result = call_main(cli.main, ["pca", *files, "-o", str(tmp_path / "out")], capsys)
    assert result.code == 0
    warnings = [line for line in result.stderr.splitlines() if ": warning: " in line]
    assert len(warnings) == int(warned), result.stderr
    if warned:
        assert f"{DATASET} l=1: n = 20, 30; {DATASET} l=2: n = 20, 30" in warnings[0]
    assert {int(r["n_cases"]) for r in _rows(tmp_path / "out")} == set(cases)


@pytest.mark.parametrize("count,expected", [("reach", 7), ("below", 7)])
def test_delta_one_reports_the_rank(tmp_path: Path, capsys: pytest.CaptureFixture, count: str, expected: int) -> None:
    """8 cases and 12 channels: centred rank 7, so --delta 1 gives k = 7 (the notebook's count gave 8 before)."""
    path = _write(tmp_path / "a.npz", n=8, depths=1)
    out = tmp_path / "out"
    argv = ["pca", str(path), "--delta", "1", "--count", count, "--preset", "text", "-o", str(out)]
    assert call_main(cli.main, argv, capsys).code == 0
    (row,) = _rows(out)
    assert row["k"] == expected and row["k_ci_high"] <= expected


@pytest.mark.parametrize("argv,method,finite", [((), "jackknife", True), (("--interval", "percentile"), "percentile",
                                                True), (("--n-boot", "0"), "none", False)])
def test_interval_options_are_honoured(tmp_path: Path, capsys: pytest.CaptureFixture, argv: tuple[str, ...],
                                       method: str, finite: bool) -> None:
    out = tmp_path / "out"
    assert call_main(cli.main, ["pca", str(_write(tmp_path / "a.npz")), *argv, "-o", str(out)], capsys).code == 0
    for row in _rows(out):
        assert row["interval"] == method
        assert math.isfinite(row["k_ci_low"]) == finite


@pytest.mark.parametrize("interval", ["jackknife", "percentile"])
def test_fig3_points_lie_inside_their_bands(tmp_path: Path, capsys: pytest.CaptureFixture, interval: str) -> None:
    """Two trainers x three folds x two depths, small n (where the percentile bootstrap sits below k)."""
    files = [str(_write(tmp_path / f"{t}_{f}.npz", n=12, seed=10 * f + i, trainer=t, fold=f))
             for i, t in enumerate(("nnUNetTrainerPaperCSE", "nnUNetTrainerPaperMono")) for f in range(3)]
    out = tmp_path / "out"
    assert call_main(cli.main, ["pca", *files, "--interval", interval, "--n-boot", "50", "-o", str(out)],
                     capsys).code == 0
    rows = _rows(out)
    assert all(r["k_ci_low"] <= r["k"] <= r["k_ci_high"] for r in rows)
    for depths, k, low, high in threshold_series(rows)[DATASET].values():
        assert depths == [1, 2]
        assert all(lo <= kk <= hi for kk, lo, hi in zip(k, low, high, strict=True))

"""benchmarks/table_test_calibration.py cannot rot: its learners against scikit-learn, and its quick mode (a few
seconds) showing that the table's marks keep their false-positive rate under K-fold cross-validation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from benchmark_scripts import benchmark_module
from sklearn.linear_model import Ridge
from sklearn.neighbors import KNeighborsRegressor


@pytest.fixture(scope="module")
def calibration():
    with benchmark_module("table_test_calibration") as module:
        yield module


def _batch(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two data sets x two learners of the benchmark's shape: 48 training and 12 test cases, 3 features."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((2, 2, 48, 3)), rng.standard_normal((2, 2, 48)), rng.standard_normal((2, 2, 12, 3))


@pytest.mark.parametrize("learner", ["ridge", "knn"])
def test_batched_learners_equal_scikit_learn(calibration, learner: str) -> None:
    """Each batch element predicts as scikit-learn's own model fitted on it alone. Both sides solve the same 3x3
    normal equations in float64 (well conditioned: the Gram matrix of 48 Gaussian rows plus alpha I), so they agree
    to rounding: atol 1e-10 on values of order 1, rtol 0. 1-NN returns a training target exactly."""
    x_train, y_train, x_test = _batch(0)
    got = calibration.LEARNERS[learner](x_train, y_train, x_test)
    for i in np.ndindex(*got.shape[:2]):
        model = (Ridge(alpha=calibration.RIDGE_ALPHA) if learner == "ridge"
                 else KNeighborsRegressor(n_neighbors=calibration.KNN_K))
        expected = model.fit(x_train[i], y_train[i]).predict(x_test[i])
        np.testing.assert_allclose(got[i], expected, rtol=0, atol=1e-10 if learner == "ridge" else 0)


def test_quick_run_marks_keep_their_size(calibration, tmp_path: Path, capsys) -> None:
    """The quick mode (unstable 1-NN learners, 5 folds, 50 null tables = 600 null cells) through the table's own
    ``dataset_entries``: the marks' false-positive rate is at most the limit and below the plain paired t-test's
    (which ignores that folds share training cases; its excess is measured by the full run, as 600 cells cannot
    resolve 0.085 from 0.07); with an effect, the mark's power exceeds its size."""
    assert calibration.main(["--quick", "--out", str(tmp_path)]) == 0
    payload = json.loads((tmp_path / "table_test_calibration.json").read_text())
    null, effect = payload["results"]
    assert null["scenario"]["effect"] == 1.0 and null["tests"]["mark († or ‡)"]["size"]["n"] == 600
    mark = null["tests"]["mark († or ‡)"]["size"]["rate"]
    assert mark <= calibration.SIZE_LIMIT and mark < null["tests"]["paired t"]["size"]["rate"]
    assert null["tests"]["Nadeau-Bengio"]["size"]["rate"] == mark  # the marks are the Nadeau-Bengio test's
    assert effect["tests"]["mark († or ‡)"]["power"]["rate"] > mark
    assert "| 5 | knn | 50 | mark († or ‡) |" in capsys.readouterr().out

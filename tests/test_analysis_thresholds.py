"""k(delta) under every convention on synthetic excitations with a known covariance spectrum.

Oracles are computed here independently: sklearn's PCA / robust_scale / StandardScaler for the explained-variance
criterion, an explicit rank-k truncation of A and its Frobenius norm for eq. 8.
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler, robust_scale

from nnunet_se.analysis import cli
from nnunet_se.analysis.excitation_io import save_excitations
from nnunet_se.analysis.outputs import MARKER
from nnunet_se.analysis.thresholds import (
    Convention,
    count_components,
    cumulative_ratio,
    percentile_interval,
    spectrum,
    threshold,
)

SPECTRUM = np.array([8.0, 4.0, 2.0, 1.0] + [0.002] * 12)  # population covariance eigenvalues, C = 16


def excitations_with_spectrum(eigen: np.ndarray, n: int, seed: int, mean: float = 0.5) -> np.ndarray:
    """(n, C) matrix whose centred sample covariance is exactly Q diag(eigen) Q^T for a random rotation Q."""
    rng = np.random.default_rng(seed)
    c = eigen.size
    z = rng.standard_normal((n, c))
    z -= z.mean(axis=0)
    q_z, _ = np.linalg.qr(z)  # orthonormal, centred columns
    rotation, _ = np.linalg.qr(rng.standard_normal((c, c)))
    return mean + np.sqrt(n - 1) * q_z @ np.diag(np.sqrt(eigen)) @ rotation.T * 0.05


def oracle_ratio(g: np.ndarray, criterion: str, scale: str, center: bool) -> np.ndarray:
    if scale == "robust":
        g = robust_scale(g)
    elif scale == "standard":
        g = StandardScaler().fit_transform(g)
    if criterion == "explained-variance":
        return np.cumsum(PCA().fit(g).explained_variance_ratio_)
    x = g - g.mean(axis=0) if center else g
    a = x.T @ x / (x.shape[0] - 1)
    u, s, vt = np.linalg.svd(a)
    total = np.linalg.norm(a, "fro") ** 2
    return np.array([np.linalg.norm((u[:, :k] * s[:k]) @ vt[:k], "fro") ** 2 / total for k in range(1, a.shape[0] + 1)])


def oracle_k(ratio: np.ndarray, delta: float, count: str) -> int:
    if count == "reach":
        return next(k for k, r in enumerate(ratio, start=1) if r >= delta)
    return sum(1 for r in ratio if r <= delta)


CONVENTIONS = [
    (criterion, count, scale, center)
    for criterion in ("explained-variance", "frobenius")
    for count in ("reach", "below")
    for scale in ("none", "standard", "robust")
    for center in ((False,) if criterion == "explained-variance" else (False, True))
]


@pytest.mark.parametrize("criterion,count,scale,center", CONVENTIONS)
@pytest.mark.parametrize("delta", [0.8, 0.9, 0.95, 0.99])
def test_k_matches_independent_oracle(criterion: str, count: str, scale: str, center: bool, delta: float) -> None:
    g = excitations_with_spectrum(SPECTRUM, n=120, seed=1)
    convention = Convention(criterion=criterion, count=count, scale=scale, delta=delta, center=center)
    assert threshold(g, convention) == oracle_k(oracle_ratio(g, criterion, scale, center), delta, count)


@pytest.mark.parametrize("delta,expected", [(0.5, 1), (0.75, 2), (0.9, 3), (0.95, 4), (0.99, 4), (0.999, 9)])
def test_known_spectrum_gives_known_k(delta: float, expected: int) -> None:
    """Explained variance without scaling recovers the population spectrum exactly: k from its cumsum."""
    g = excitations_with_spectrum(SPECTRUM, n=80, seed=2)
    eigen, _ = spectrum(g, Convention())
    np.testing.assert_allclose(eigen[:16], SPECTRUM * 0.05**2, rtol=1e-9)
    assert oracle_k(np.cumsum(SPECTRUM) / SPECTRUM.sum(), delta, "reach") == expected
    assert threshold(g, Convention(delta=delta)) == expected


@pytest.mark.parametrize("criterion", ["explained-variance", "frobenius"])
@pytest.mark.parametrize("scale", ["none", "robust"])
@pytest.mark.parametrize("delta", [0.6, 0.9, 0.95, 0.97])
def test_below_is_reach_minus_one(criterion: str, scale: str, delta: float) -> None:
    g = excitations_with_spectrum(SPECTRUM, n=60, seed=3)
    reach = threshold(g, Convention(criterion=criterion, scale=scale, delta=delta))
    below = threshold(g, Convention(criterion=criterion, scale=scale, delta=delta, count="below"))
    assert below == reach - 1


def test_ratio_equal_to_delta_counts_in_both() -> None:
    """Four equal weights: r_2 = 0.5 exactly, so reach = below = 2 at delta = 0.5."""
    ratio = cumulative_ratio(np.ones(4))
    assert ratio[1] == 0.5
    assert count_components(ratio, 0.5, "reach") == 2
    assert count_components(ratio, 0.5, "below") == 2


def test_constant_excitations_give_zero() -> None:
    g = np.full((10, 8), 0.5)
    assert threshold(g, Convention()) == 0
    assert threshold(g, Convention(count="below", scale="robust")) == 0


def test_percentile_interval_is_seeded_and_contains_k() -> None:
    g = excitations_with_spectrum(SPECTRUM, n=300, seed=5)
    result = percentile_interval(g, Convention(), n_boot=200, seed=0)
    assert result.k == 4
    assert result.low <= 4 <= result.high
    assert result.samples.shape == (200,)
    again = percentile_interval(g, Convention(), n_boot=200, seed=0)
    np.testing.assert_array_equal(result.samples, again.samples)


def test_pca_cli_writes_all_outputs(tmp_path, capsys) -> None:
    g = {1: excitations_with_spectrum(SPECTRUM, n=40, seed=6),
         2: excitations_with_spectrum(np.array([5.0, 1.0, 0.001, 0.001]), n=40, seed=7)}
    ids = [f"case_{i:03d}" for i in range(40)]
    with_meta = tmp_path / "Dataset900_X__nnUNetTrainerPaperCSE__fold_0.npz"
    save_excitations(with_meta, g, ids, {"dataset": "Dataset900_X", "trainer": "nnUNetTrainerPaperCSE", "fold": 0})
    bare = tmp_path / "bare_model.npz"
    np.savez(bare, depth_1=g[1], depth_2=g[2], case_ids=np.array(ids))
    out = tmp_path / "out"
    rc = cli.main(["pca", str(with_meta), str(bare), "--preset", "authors", "--n-boot", "20", "-o", str(out)])
    assert rc == 0
    assert {p.name for p in out.iterdir()} == {"thresholds.csv", "thresholds.json", "spectra.csv", "spectra.json",
                                               "thresholds.png", "thresholds.pdf", MARKER}
    rows = list(csv.DictReader((out / "thresholds.csv").open()))
    assert [(r["model"], r["depth"], r["channels"]) for r in rows] == [
        ("nnUNetTrainerPaperCSE", "1", "16"), ("nnUNetTrainerPaperCSE", "2", "4"),
        ("bare_model", "1", "16"), ("bare_model", "2", "4")]
    for r, depth in zip(rows, [1, 2, 1, 2], strict=True):
        expected = oracle_k(oracle_ratio(g[depth], "explained-variance", "robust", False), 0.95, "below")
        assert int(r["k"]) == expected
        assert (r["criterion"], r["count"], r["scale"], r["delta"]) == ("explained-variance", "below", "robust", "0.95")
    spectra = json.loads((out / "spectra.json").read_text())["rows"]
    assert len(spectra) == 2 * (16 + 4)
    assert "k=" in capsys.readouterr().out


@pytest.mark.parametrize(
    "content,message",
    [(b"not a zip", "not a readable .npz"), (None, "no depth_<l> arrays")],
)
def test_pca_cli_bad_input_is_one_line(tmp_path, capsys, content: bytes | None, message: str) -> None:
    bad = tmp_path / "bad.npz"
    if content is None:
        np.savez(bad, something=np.zeros(3))
    else:
        bad.write_bytes(content)
    out = tmp_path / "out"
    assert cli.main(["pca", str(bad), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and message in err[0]
    assert not out.exists()


def test_robust_scale_of_a_zero_interquartile_range_matches_sklearn() -> None:
    """Quartiles that coincide (IQR 0) around an outlier: sklearn's robust_scale (the authors' call) keeps the spread
    at 1, so the outlier keeps its distance from the median (5, not 0.5 or inf); a constant column becomes 0.
    Both computed in float64 from the same quartiles: absolute 1e-12."""
    from nnunet_se.analysis.thresholds import scale_columns

    g = np.array([[0.0, 1.0, 2.0], [0.0, 2.0, 2.0], [0.0, 3.0, 2.0], [0.0, 4.0, 2.0], [5.0, 9.0, 2.0]])
    scaled = scale_columns(g, "robust")
    np.testing.assert_allclose(scaled, robust_scale(g), rtol=0, atol=1e-12)
    assert scaled[:, 0].tolist() == [0.0, 0.0, 0.0, 0.0, 5.0] and not scaled[:, 2].any()


@pytest.mark.parametrize("count", ["reach", "below"])
def test_one_component_spectrum(count: str) -> None:
    """A single channel: the one component explains everything (r_1 = 1 >= delta, so k = 1 when reaching, 0 below
    delta < 1), and a constant channel has no weight at all (k = 0 under both counts)."""
    expected = 1 if count == "reach" else 0
    assert int(count_components(np.array([1.0]), 0.95, count)) == expected
    assert int(count_components(np.array([0.0]), 0.95, count)) == 0
    g = np.array([[0.1], [0.7], [0.4]])
    assert threshold(g, Convention(count=count)) == expected
    assert threshold(np.full((3, 1), 0.5), Convention(count=count)) == 0


@pytest.mark.parametrize("scale", ["none", "standard", "robust"])
def test_batched_thresholds_equal_one_matrix_at_a_time(scale: str) -> None:
    """A batch of 5 matrices of 7 cases x 4 channels (B differs from n and C, so a misplaced axis cannot broadcast
    silently): batch_threshold gives each matrix's own k."""
    from nnunet_se.analysis.thresholds import batch_threshold

    g = np.random.default_rng(3).normal(size=(5, 7, 4)) * np.array([3.0, 1.0, 0.5, 0.1])
    convention = Convention(scale=scale, delta=0.9)
    assert batch_threshold(g, convention).tolist() == [threshold(m, convention) for m in g]


@pytest.mark.parametrize(("delta", "valid"), [(0.0, False), (1e-9, True), (1.0, True), (1.0 + 1e-9, False)])
def test_delta_lies_in_the_half_open_unit_interval(delta: float, valid: bool) -> None:
    """delta in (0, 1]: both ends on both sides."""
    if valid:
        assert Convention(delta=delta).delta == delta
    else:
        with pytest.raises(ValueError, match="delta must lie in"):
            Convention(delta=delta)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6, 9])
def test_robust_quartiles_of_few_cases_match_sklearn(n: int) -> None:
    """numpy's linear quantiles at every small case count (the upper neighbour of the 75 % position is the last case
    for n <= 5) against sklearn's robust_scale; float64 from the same order statistics: absolute 1e-12."""
    from nnunet_se.analysis.thresholds import scale_columns

    g = np.random.default_rng(n).normal(size=(n, 3))
    np.testing.assert_allclose(scale_columns(g, "robust"), robust_scale(g), rtol=0, atol=1e-12)


@pytest.mark.parametrize("n, k", [(1, None), (2, 1)])
def test_two_cases_are_enough_for_a_threshold(n: int, k: int | None) -> None:
    """Both sides of the 2-case limit: one case has no covariance (ValueError); two distinct cases span one
    component, which explains everything (k = 1)."""
    g = np.array([[0.2, 0.9, 0.4], [0.6, 0.1, 0.5]])[:n]
    if k is None:
        with pytest.raises(ValueError, match="at least 2 cases"):
            threshold(g, Convention())
    else:
        assert threshold(g, Convention()) == k

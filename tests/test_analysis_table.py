"""Table I on result folders whose ``summary.json`` files are written by nnU-Net's own evaluation code.

The fixture writes fake predictions (PNG masks) per trainer and fold and runs nnU-Net's
``compute_metrics_on_folder`` on them (its spawn process pool swapped for a thread pool: about 8 s saved per fold,
same code path otherwise). Expected values are computed here with numpy/scipy straight from those files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.pool import ThreadPool
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from cli_harness import assert_one_line_error, call_main
from PIL import Image
from scipy import stats

from nnunet_se.analysis import cli
from nnunet_se.analysis.stats import fold_mean_std, holm, kfold_test_train_ratio, nadeau_bengio, significance_mark
from nnunet_se.analysis.tables import Entry, build_table, render_markdown
from nnunet_se.results import scan_results

DATASET = "Dataset901_KvasirFake"
PLANS_CONFIG = "nnUNetPlans__2d"
CASES_PER_FOLD = 6
# trainer -> (pixel flips per case (quality), finished folds, unfinished folds)
TRAINERS = {
    "nnUNetTrainerPaper": (14, [0, 1, 2, 3], []),
    "nnUNetTrainerPaperCSE": (6, [0, 1, 2, 3], []),
    "nnUNetTrainerPaperMono": (9, [0, 1, 2], [3]),
    "nnUNetTrainerPaperSRM": (20, [0, 1, 3], []),  # fold 2 missing
}


def _reference(case: int) -> np.ndarray:
    ref = np.zeros((24, 24), np.uint8)
    if case % CASES_PER_FOLD != 5:  # the last case of every fold has an empty reference
        yy, xx = np.mgrid[:24, :24]
        ref[(yy - 8 - case % 7) ** 2 + (xx - 10 - case % 5) ** 2 <= (4 + case % 4) ** 2] = 1
    return ref


def _prediction(ref: np.ndarray, flips: int, rng: np.random.Generator, trainer_index: int) -> np.ndarray:
    pred = ref.copy()
    if ref.any():
        pred[rng.integers(0, 24, flips), rng.integers(0, 24, flips)] ^= 1
    elif trainer_index % 2:  # empty reference: odd trainers predict a few false positives (Dice 0), others nothing
        pred[:2, :2] = 1
    return pred


@pytest.fixture(scope="module")
def results_root(tmp_path_factory) -> Path:
    from nnunetv2.evaluation import evaluate_predictions
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO

    root = tmp_path_factory.mktemp("nnUNet_results")
    gt = root.parent / "gt_segmentations"
    gt.mkdir()
    for case in range(4 * CASES_PER_FOLD):
        Image.fromarray(_reference(case)).save(gt / f"case_{case:03d}.png")
    threads = SimpleNamespace(get_context=lambda method: SimpleNamespace(Pool=ThreadPool))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(evaluate_predictions, "multiprocessing", threads)
        for t_index, (trainer, (flips, finished, unfinished)) in enumerate(TRAINERS.items()):
            rng = np.random.default_rng(t_index)
            for fold in finished + unfinished:
                fold_dir = root / DATASET / f"{trainer}__{PLANS_CONFIG}" / f"fold_{fold}"
                (fold_dir / "validation").mkdir(parents=True)
                if fold in unfinished:  # training interrupted: only a resumable checkpoint
                    (fold_dir / "checkpoint_latest.pth").write_bytes(b"checkpoint")
                    continue
                for case in range(fold * CASES_PER_FOLD, (fold + 1) * CASES_PER_FOLD):
                    pred = _prediction(_reference(case), flips, rng, t_index)
                    Image.fromarray(pred).save(fold_dir / "validation" / f"case_{case:03d}.png")
                evaluate_predictions.compute_metrics_on_folder(
                    str(gt), str(fold_dir / "validation"), str(fold_dir / "validation" / "summary.json"),
                    NaturalImage2DIO(), ".png", [1], num_processes=1)
    return root


def _summaries(root: Path, trainer: str) -> dict[int, dict]:
    folder = root / DATASET / f"{trainer}__{PLANS_CONFIG}"
    return {int(p.parent.parent.name.split("_")[1]): json.loads(p.read_text())
            for p in sorted(folder.glob("fold_*/validation/summary.json"))}


def _case_dice(summary: dict) -> dict[str, float]:
    return {Path(c["reference_file"]).stem: c["metrics"]["1"]["Dice"] for c in summary["metric_per_case"]}


@pytest.fixture(scope="module")
def entries(results_root: Path) -> dict:
    table = build_table(scan_results([results_root]), test_train_ratio=0.25)
    return {e.trainer: e for e in table}


@pytest.mark.parametrize("trainer", list(TRAINERS))
def test_mean_std_and_folds(results_root: Path, entries: dict, trainer: str) -> None:
    summaries = _summaries(results_root, trainer)
    dice = np.array([summaries[f]["foreground_mean"]["Dice"] for f in sorted(summaries)]) * 100
    entry = entries[trainer]
    assert entry.folds == TRAINERS[trainer][1]
    assert entry.mean == pytest.approx(dice.mean(), abs=1e-12)
    assert entry.std == pytest.approx(dice.std(ddof=1), abs=1e-12)
    assert entry.unfinished_folds == TRAINERS[trainer][2]
    assert entry.missing_folds == sorted({0, 1, 2, 3} - set(TRAINERS[trainer][1]) - set(TRAINERS[trainer][2]))
    # nnU-Net's fold Dice is the nanmean of its per-case Dice: the rule the empty-case counts refer to
    for summary in summaries.values():
        assert summary["foreground_mean"]["Dice"] == pytest.approx(np.nanmean(list(_case_dice(summary).values())))
    n_nan = sum(math.isnan(v) for s in summaries.values() for v in _case_dice(s).values())
    assert entry.n_empty_excluded == n_nan
    assert entry.n_empty_reference == len(summaries)  # one empty reference per fold
    assert n_nan == (0 if list(TRAINERS).index(trainer) % 2 else len(summaries))


@pytest.fixture(scope="module")
def entries_two_sided(results_root: Path) -> dict:
    table = build_table(scan_results([results_root]), test_train_ratio=0.25, alternative="two-sided")
    return {e.trainer: e for e in table}


@pytest.mark.parametrize("alternative", ["greater", "two-sided"])
@pytest.mark.parametrize("trainer", [t for t in TRAINERS if t != "nnUNetTrainerPaper"])
def test_pvalues_equal_scipy(results_root: Path, entries: dict, entries_two_sided: dict, trainer: str,
                             alternative: str) -> None:
    model, base = _summaries(results_root, trainer), _summaries(results_root, "nnUNetTrainerPaper")
    common = sorted(set(model) & set(base))
    a = np.array([model[f]["foreground_mean"]["Dice"] for f in common])
    b = np.array([base[f]["foreground_mean"]["Dice"] for f in common])
    entry = (entries if alternative == "greater" else entries_two_sided)[trainer]  # default: one-sided
    assert entry.baseline == f"nnUNetTrainerPaper__{PLANS_CONFIG}"
    assert entry.n_paired_folds == len(common)
    assert entry.p_ttest == pytest.approx(stats.ttest_rel(a, b, alternative=alternative).pvalue, rel=1e-12)
    # Nadeau-Bengio's value is checked by hand below (test_nadeau_bengio_against_hand_computed_values);
    # here: the correction shrinks |t|: a weaker result either way (for d < 0 the one-sided p is already above 0.5)
    assert abs(entry.p_nadeau_bengio - 0.5) < abs(entry.p_ttest - 0.5) if alternative == "greater" else (
        entry.p_nadeau_bengio > entry.p_ttest)
    pairs = [(_case_dice(model[f])[c], _case_dice(base[f])[c]) for f in common for c in sorted(_case_dice(model[f]))]
    pairs = [(x, y) for x, y in pairs if not (math.isnan(x) or math.isnan(y))]
    x, y = map(np.array, zip(*pairs, strict=True))
    assert entry.n_paired_cases == len(pairs)
    assert entry.p_wilcoxon == pytest.approx(stats.wilcoxon(x, y, alternative=alternative).pvalue, rel=1e-12)


def _write_fold(root: Path, trainer: str, fold: int, dice: float, dataset: str = "Dataset902_Hand") -> None:
    """A minimal nnU-Net ``summary.json`` (fold Dice ``dice`` as a fraction, one case with that Dice)."""
    folder = root / dataset / f"{trainer}__{PLANS_CONFIG}" / f"fold_{fold}" / "validation"
    folder.mkdir(parents=True)
    case = {"reference_file": f"/gt/case_{fold}.png", "metrics": {"1": {"Dice": dice, "n_ref": 10}}}
    (folder / "summary.json").write_text(json.dumps({"foreground_mean": {"Dice": dice}, "metric_per_case": [case]}))


def test_marks_come_from_nadeau_bengio_one_sided_by_default(tmp_path: Path, capsys) -> None:
    """A model better by d = (1, 2, 3, 4, 5) points on 5 folds: Nadeau-Bengio one-sided p = NB_5 = 0.0237 (†),
    two-sided 0.0474 (†); one worse by the same amounts is unmarked by default (p = 0.976, the paper's SRM-on-Kvasir
    rule) and † only two-sided. The plain paired t-test (t = 3 sqrt 2, 4 d.o.f., p = 0.0066) would give ‡: it is
    reported, not marked."""
    base = [70.0, 71.0, 72.0, 73.0, 74.0]
    for fold, b in enumerate(base):
        _write_fold(tmp_path, "nnUNetTrainerPaper", fold, b / 100)
        _write_fold(tmp_path, "nnUNetTrainerPaperCSE", fold, (b + fold + 1) / 100)
        _write_fold(tmp_path, "nnUNetTrainerPaperSRM", fold, (b - fold - 1) / 100)
    one = {e.trainer: e for e in build_table(scan_results([tmp_path]))}
    two = {e.trainer: e for e in build_table(scan_results([tmp_path]), alternative="two-sided")}
    assert one["nnUNetTrainerPaperCSE"].p_nadeau_bengio == pytest.approx(NB_5, rel=1e-9)
    assert one["nnUNetTrainerPaperSRM"].p_nadeau_bengio == pytest.approx(1 - NB_5, rel=1e-9)
    assert two["nnUNetTrainerPaperCSE"].p_nadeau_bengio == pytest.approx(2 * NB_5, rel=1e-9)
    assert two["nnUNetTrainerPaperSRM"].p_nadeau_bengio == pytest.approx(2 * NB_5, rel=1e-9)
    assert one["nnUNetTrainerPaperCSE"].p_ttest == pytest.approx(student_sf_even(3 * math.sqrt(2), 4), rel=1e-9)
    assert (one["nnUNetTrainerPaperCSE"].mark, one["nnUNetTrainerPaperSRM"].mark) == ("†", "")
    assert (two["nnUNetTrainerPaperCSE"].mark, two["nnUNetTrainerPaperSRM"].mark) == ("†", "†")
    assert cli.main(["table", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| **75.00 ± 3.16** † |" in out and "| 69.00 ± 0.00 |" in out and "one-sided: improvements only" in out
    assert cli.main(["table", str(tmp_path), "--alternative", "two-sided"]) == 0
    out = capsys.readouterr().out
    assert "| 69.00 ± 0.00 † |" in out and "two-sided: any difference" in out


def test_holm_over_trainers(entries: dict) -> None:
    """The table applies Holm over the models of a dataset (the baseline has no test: NaN, left out)."""
    assert [e.p_wilcoxon_holm for e in entries.values()] == pytest.approx(
        holm([e.p_wilcoxon for e in entries.values()]), nan_ok=True)
    assert math.isnan(entries["nnUNetTrainerPaper"].p_wilcoxon_holm)


def test_best_is_bold(entries: dict) -> None:
    best = max(entries.values(), key=lambda e: e.mean)
    assert best.best
    assert sum(e.best for e in entries.values()) == 1
    assert all(e.alternative == "greater" for e in entries.values())


# Holm step-down by hand. p = (0.01, 0.04, 0.03, 0.005, NaN, 0.04): m = 5 valid values; ascending with ties kept in
# input order: 0.005, 0.01, 0.03, 0.04, 0.04, multiplied by m - i + 1 = 5, 4, 3, 2, 1:
#   0.005 * 5 = 0.025;  0.01 * 4 = 0.04;  0.03 * 3 = 0.09;  0.04 * 2 = 0.08 -> 0.09 (never below the previous one);
#   0.04 * 1 = 0.04 -> 0.09.  NaN stays NaN and does not count in m.
# Capped at 1: (0.6, 0.9) -> 0.6 * 2 = 1.2 -> 1; 0.9 * 1 = 0.9 -> 1 (monotone).
# Order kept: (0.7, 0.2) -> 0.2 * 2 = 0.4 first, then 0.7 * 1 = 0.7.
@pytest.mark.parametrize(("p", "adjusted"), [
    ([0.01, 0.04, 0.03, 0.005, math.nan, 0.04], [0.04, 0.09, 0.09, 0.025, math.nan, 0.09]),
    ([0.6, 0.9], [1.0, 1.0]),
    ([0.7, 0.2], [0.7, 0.4]),
    ([0.02], [0.02]),
    ([math.nan, math.nan], [math.nan, math.nan]),
    ([], []),
])
def test_holm_against_hand_computed_values(p: list[float], adjusted: list[float]) -> None:
    assert holm(p) == pytest.approx(adjusted, nan_ok=True, abs=1e-15)


# The paper's marks: dagger for p <= 0.05, double dagger for p <= 0.01, both limits included.
@pytest.mark.parametrize(("p", "mark"), [
    (0.0, "‡"), (0.009, "‡"), (0.01, "‡"), (0.0100001, "†"), (0.03, "†"), (0.05, "†"), (0.0500001, ""),
    (0.5, ""), (1.0, ""), (math.nan, ""),
])
def test_significance_marks_at_and_around_the_limits(p: float, mark: str) -> None:
    assert significance_mark(p) == mark
    entry = Entry("Dataset902_Hand", "M__P__2d", "M", "B__P__2d", [0, 1], 70.0, 1.0, p_nadeau_bengio=p, best=True)
    assert entry.mark == mark
    assert render_markdown([entry]).splitlines()[2] == f"| M | **70.00 ± 1.00**{' ' + mark if mark else ''} |"


# Fold summaries by hand: (80, 90) -> mean 85, var = (25 + 25) / 1 = 50, std sqrt(50); (1, 2, 3, 4) -> mean 2.5,
# var = (2.25 + 0.25 + 0.25 + 2.25) / 3 = 5/3. One fold has no sample std (NaN, shown "–"), none has no mean.
@pytest.mark.parametrize(("values", "expected"), [
    ([80.0, 90.0], (85.0, math.sqrt(50.0), 2)),
    ([1.0, 2.0, 3.0, 4.0], (2.5, math.sqrt(5.0 / 3.0), 4)),
    ([0.7, 0.7], (0.7, 0.0, 2)),
    ([73.5], (73.5, math.nan, 1)),
    ([], (math.nan, math.nan, 0)),
], ids=["two", "four", "equal", "one-fold", "none"])
def test_fold_mean_std_by_hand(values: list[float], expected: tuple[float, float, int]) -> None:
    mean, std, n = fold_mean_std(values)
    assert (mean, std) == pytest.approx(expected[:2], rel=1e-15, abs=1e-15, nan_ok=True) and n == expected[2]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_fold_mean_std_refuses_a_non_finite_fold(bad: float) -> None:
    """A NaN or infinite fold is reported by the caller, never averaged in or dropped here."""
    with pytest.raises(ValueError, match="finite"):
        fold_mean_std([0.8, bad])


# K-fold CV tests on n/K cases and trains on n(K-1)/K: n_test/n_train = 1/(K-1). K = 2 is the smallest CV.
@pytest.mark.parametrize(("k", "ratio"), [(2, 1.0), (5, 0.25), (10, 1 / 9)])
def test_kfold_test_train_ratio(k: int, ratio: float) -> None:
    assert kfold_test_train_ratio(k) == pytest.approx(ratio, rel=1e-15)


@pytest.mark.parametrize("k", [1, 0, -3])
def test_kfold_test_train_ratio_needs_two_folds(k: int) -> None:
    with pytest.raises(ValueError, match="K >= 2"):
        kfold_test_train_ratio(k)


def student_sf_even(t: float, nu: int) -> float:
    """P(T >= t) for even d.o.f. (Abramowitz & Stegun 26.7.3): A = sin(th) (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ...
    up to cos^(nu-2)), th = arctan(t / sqrt(nu)), P = (1 - A) / 2."""
    th = math.atan(t / math.sqrt(nu))
    terms, coef = 0.0, 1.0
    for j in range(nu // 2):
        terms += coef * math.cos(th) ** (2 * j)
        coef *= (2 * j + 1) / (2 * j + 2)
    return (1 - math.sin(th) * terms) / 2


def student_sf_odd(t: float, nu: int) -> float:
    """P(T >= t) for odd d.o.f. > 1 (A & S 26.7.3): A = 2/pi (th + sin(th) (cos + 2/3 cos^3 + 2*4/(3*5) cos^5 +
    ... up to cos^(nu-2))), P = (1 - A) / 2."""
    th = math.atan(t / math.sqrt(nu))
    terms, coef = 0.0, 1.0
    for j in range((nu - 1) // 2):
        terms += coef * math.cos(th) ** (2 * j + 1)
        coef *= (2 * j + 2) / (2 * j + 3)
    return (1 - 2 / math.pi * (th + math.sin(th) * terms)) / 2


def test_student_tail_formulas_on_known_values() -> None:
    """The oracle itself, on values in any t table: t = 2.132 (4 d.o.f.) and 1.833 (9 d.o.f.) are the 5 % points."""
    assert student_sf_even(2.131847, 4) == pytest.approx(0.05, abs=1e-6)
    assert student_sf_odd(1.833113, 9) == pytest.approx(0.05, abs=1e-6)


# Nadeau-Bengio by hand: t = mean(d) / sqrt((1/k + n_test/n_train) var(d)), n_test/n_train = 1/(K - 1).
# 5-fold split, d = (1, 2, 3, 4, 5) points: mean 3, var 10/4 = 2.5; (1/5 + 1/4) * 2.5 = 9/8, t = 3 / sqrt(9/8) =
#   2 sqrt 2, 4 d.o.f.: th = arctan(sqrt 2), cos^2 = 1/3, sin = sqrt(2/3): A = sqrt(2/3) (1 + 1/6),
#   p = (1 - 7/6 sqrt(2/3)) / 2 = 0.02371.
NB_5 = (1 - 7 / 6 * math.sqrt(2 / 3)) / 2
# 10-fold split, d = (1, 1, 1, 1, 1, 3, 3, 3, 3, 3): mean 2, var 10/9; (1/10 + 1/9) * 10/9 = 19/81, t = 18 / sqrt 19,
#   9 d.o.f.: tan th = 6 / sqrt 19, cos^2 = 19/55, sin = 6 / sqrt 55.
NB_10 = student_sf_odd(18 / math.sqrt(19), 9)
# The same 10-fold differences with the 5-fold ratio (the old --n-folds default): (1/10 + 1/4) * 10/9 = 7/18,
#   t = 2 / sqrt(7/18): a larger p than the 10-fold split warrants (over-corrected).
NB_10_AS_5 = student_sf_odd(2 / math.sqrt(7 / 18), 9)
# Only folds 0-4 of a 10-fold split finished, d = (1, ..., 5): (1/5 + 1/9) * 2.5 = 7/9, t = 3 / sqrt(7/9), 4 d.o.f.
NB_5_OF_10 = student_sf_even(3 / math.sqrt(7 / 9), 4)


def test_nadeau_bengio_against_hand_computed_values() -> None:
    assert NB_5 == pytest.approx(student_sf_even(2 * math.sqrt(2), 4), rel=1e-12)  # the closed form above
    base = [0.70] * 10
    five = [b + d / 100 for b, d in zip(base, range(1, 6), strict=False)]
    assert nadeau_bengio(five, base[:5], 1 / 4) == pytest.approx(NB_5, rel=1e-9)
    ten = [b + d / 100 for b, d in zip(base, [1] * 5 + [3] * 5, strict=True)]
    assert nadeau_bengio(ten, base, 1 / 9) == pytest.approx(NB_10, rel=1e-9)
    assert nadeau_bengio(ten, base, 1 / 4) == pytest.approx(NB_10_AS_5, rel=1e-9)
    assert NB_10_AS_5 > 4 * NB_10


def _hand_results(root: Path, dataset: str, differences: Sequence[float]) -> None:
    """Paper baseline at Dice 0.70 and PaperCSE better by ``differences`` points, one fold each."""
    for fold, d in enumerate(differences):
        _write_fold(root, "nnUNetTrainerPaper", fold, 0.70, dataset)
        _write_fold(root, "nnUNetTrainerPaperCSE", fold, 0.70 + d / 100, dataset)


def _splits(preprocessed: Path, dataset: str, folds: int) -> None:
    (preprocessed / dataset).mkdir(parents=True)
    (preprocessed / dataset / "splits_final.json").write_text(
        json.dumps([{"train": [], "val": [f"case_{i}"]} for i in range(folds)]))


def _cse(text: str) -> dict:
    return next(e for e in json.loads(text)["entries"] if e["trainer"] == "nnUNetTrainerPaperCSE")


@pytest.mark.parametrize(("folds", "differences", "expected"), [
    (5, range(1, 6), NB_5),
    (10, [1] * 5 + [3] * 5, NB_10),
    (10, range(1, 6), NB_5_OF_10),  # half of a 10-fold split finished: K is still 10
], ids=["5-fold", "10-fold", "5-of-10"])
def test_table_takes_k_from_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, folds: int,
                                      differences: Sequence[float], expected: float) -> None:
    dataset = "Dataset903_Split"
    _hand_results(tmp_path / "results", dataset, differences)
    _splits(tmp_path / "preprocessed", dataset, folds)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    assert cli.main(["table", str(tmp_path / "results"), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["settings"]["nadeau_bengio_test_train_ratio"] == {
        dataset: pytest.approx(1 / (folds - 1))}
    assert _cse(captured.out)["p_nadeau_bengio"] == pytest.approx(expected, rel=1e-9)
    assert captured.err == ""


def test_table_without_a_split_assumes_k_and_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """No splits_final.json: K = the highest fold found + 1 when above nnU-Net's 5, with one warning line."""
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    monkeypatch.delenv("nnUNet_raw", raising=False)
    _hand_results(tmp_path, "Dataset904_NoSplit", [1] * 5 + [3] * 5)
    assert cli.main(["table", str(tmp_path), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert _cse(captured.out)["p_nadeau_bengio"] == pytest.approx(NB_10, rel=1e-9)
    assert captured.err == ("nnunet-se-analyze table: warning: Dataset904_NoSplit: no splits_final.json (neither "
                            "nnUNet_preprocessed nor nnUNet_raw is set); the Nadeau-Bengio correction assumes K = 10 "
                            "folds (n_test/n_train = 1/9); give --test-train-ratio if that is wrong\n")


def test_deprecated_n_folds_warns_once_and_still_works(tmp_path: Path, capsys) -> None:
    _hand_results(tmp_path, "Dataset902_Hand", [1] * 5 + [3] * 5)
    assert cli.main(["table", str(tmp_path), "--format", "json", "--n-folds", "10"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "nnunet-se-analyze table: warning: --n-folds is deprecated, use --test-train-ratio\n"
    assert _cse(captured.out)["p_nadeau_bengio"] == pytest.approx(NB_10, rel=1e-9)
    assert cli.main(["table", str(tmp_path), "--n-folds", "1"]) == 1
    assert capsys.readouterr().err.splitlines()[-1] == "nnunet-se-analyze table: error: --n-folds must be >= 2, got 1"


def test_folds_all_expects_every_fold_of_the_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   capsys) -> None:
    """``-f all``: the split's folds are expected, so folds not trained yet are listed as missing."""
    dataset = "Dataset903_Split"
    _hand_results(tmp_path / "results", dataset, range(1, 6))
    _splits(tmp_path / "preprocessed", dataset, 10)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    for folds, missing in ((["all"], "5 6 7 8 9"), (["0-5"], "5"), ([], "")):
        option = ["-f", *folds] if folds else []
        assert cli.main(["table", str(tmp_path / "results"), "--format", "csv", *option]) == 0
        rows = {r["trainer"]: r for r in csv.DictReader(io.StringIO(capsys.readouterr().out))}
        assert rows["nnUNetTrainerPaperCSE"]["missing_folds"] == missing


def test_cli_markdown_lists_incomplete_and_paper(results_root: Path, capsys) -> None:
    assert cli.main(["table", str(results_root), "--compare-paper"]) == 0
    out = capsys.readouterr().out
    assert f"| model | {DATASET} | {DATASET} (paper) |" in out
    assert "72.72 ± 1.52" in out  # paper's Kvasir-SEG +cSE beside ours
    assert "nnUNetTrainerPaperMono: unfinished 3, missing –" in out
    assert "nnUNetTrainerPaperSRM: unfinished –, missing 2" in out
    assert "n_test/n_train = 0.25" in out


@pytest.mark.parametrize("fmt", ["csv", "json", "latex"])
def test_cli_other_formats(results_root: Path, tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"table.{fmt}"
    cases = tmp_path / "cases.csv"
    assert cli.main(["table", str(results_root / DATASET), "--format", fmt, "-o", str(out),
                     "--cases-csv", str(cases), "--test-train-ratio", str(1 / 3)]) == 0
    text = out.read_text()
    if fmt == "csv":
        rows = {r["trainer"]: r for r in csv.DictReader(io.StringIO(text))}
        assert rows["nnUNetTrainerPaperSRM"]["missing_folds"] == "2"
    elif fmt == "json":
        payload = json.loads(text)
        assert payload["settings"]["nadeau_bengio_test_train_ratio"] == {DATASET: pytest.approx(1 / 3)}
        assert len(payload["folds"]) == 4 + 4 + 4 + 3
    else:
        assert "\\toprule" in text and "\\textbf{" in text and "\\bottomrule" in text
    long = list(csv.DictReader(cases.open()))
    assert len(long) == (4 + 4 + 3 + 3) * CASES_PER_FOLD


def test_cli_no_results_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert cli.main(["table", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "no Dataset" in err[0]


# ---- every selecting option honoured or refused, every join keyed (dataset, trainer, plans, config, fold) ------------

BASE, CSE, SRM = "nnUNetTrainerPaper", "nnUNetTrainerPaperCSE", "nnUNetTrainerPaperSRM"
HAND = "Dataset902_Hand"
# The standard tree: the baseline at 70..74 % on folds 0-4, CSE better by d = 1..5 points (71, 73, 75, 77, 79).
STANDARD = {(HAND, BASE, PLANS_CONFIG): [0.70, 0.71, 0.72, 0.73, 0.74],
            (HAND, CSE, PLANS_CONFIG): [0.71, 0.73, 0.75, 0.77, 0.79]}


def _summary_json(folder: Path, dice: float, case: str) -> None:
    folder.mkdir(parents=True)
    entry = {"reference_file": f"/gt/{case}.png", "metrics": {"1": {"Dice": dice, "n_ref": 10}}}
    (folder / "summary.json").write_text(json.dumps({"foreground_mean": {"Dice": dice}, "metric_per_case": [entry]}))


def _tree(root: Path, spec: dict, case: Callable[[str, int], str] = lambda trainer, fold: f"case_{fold}") -> None:
    """{(dataset, trainer, plans__config): [fold Dice, ...] (None: no fold folder)} as nnU-Net result folders."""
    for (dataset, trainer, plans_config), values in spec.items():
        for fold, dice in enumerate(values):
            if dice is not None:
                _summary_json(root / dataset / f"{trainer}__{plans_config}" / f"fold_{fold}" / "validation", dice,
                              case(trainer, fold))


@dataclass(frozen=True)
class Selection:
    id: str
    spec: dict
    argv: tuple[str, ...]
    expect: Callable[[dict], None] | None = None  # checks on the JSON output; None: a one-line error
    fragments: tuple[str, ...] = ()  # in the error line, or in stderr (warnings) when expect is given
    split_folds: int = 0  # write a splits_final.json of this many folds
    case: Callable[[str, int], str] = lambda trainer, fold: f"case_{fold}"
    second_root: dict = field(default_factory=dict)  # another results folder, passed as well


def _entry(payload: dict, trainer: str = CSE, dataset: str = HAND) -> dict:
    return next(e for e in payload["entries"] if e["trainer"] == trainer and e["dataset"] == dataset)


def _expect_subset(payload: dict) -> None:  # -f 0 1: (71 + 73) / 2 = 72, std sqrt(2); the other folds never read
    cse = _entry(payload)
    assert (cse["folds"], cse["mean"], cse["n_paired_folds"]) == ([0, 1], pytest.approx(72.0, abs=1e-12), 2)
    assert cse["std"] == pytest.approx(math.sqrt(2.0), abs=1e-12)
    assert sorted(f["fold"] for f in payload["folds"]) == [0, 0, 1, 1]


def _expect_nan_fold(payload: dict) -> None:  # CSE fold 2 NaN: (71 + 73 + 77 + 79) / 4 = 75 over folds 0, 1, 3, 4
    cse, base = _entry(payload), _entry(payload, BASE)
    assert (cse["folds"], cse["nan_folds"], cse["mean"]) == ([0, 1, 3, 4], [2], pytest.approx(75.0, abs=1e-12))
    assert cse["best"] and not base["best"] and cse["n_paired_folds"] == 4


def _expect_only(key: str, values: set[str]) -> Callable[[dict], None]:
    def check(payload: dict) -> None:
        assert {e[key] for e in payload["entries"]} == values
    return check


def _expect_unpaired_cases(payload: dict) -> None:  # fold 0's cases differ: 4 pairs tested, 2 ids unpaired
    cse = _entry(payload)
    assert (cse["n_paired_cases"], cse["n_unpaired_cases"], cse["n_paired_folds"]) == (4, 2, 5)


def _expect_unpaired_folds(payload: dict) -> None:  # the baseline has folds 0-2 only: tests on those 3 pairs
    cse, base = _entry(payload), _entry(payload, BASE)
    assert (cse["n_paired_folds"], base["missing_folds"], cse["folds"]) == (3, [3, 4], [0, 1, 2, 3, 4])
    # d = (1, 2, 3) points, ratio 1/4: t = 2 / sqrt((1/3 + 1/4) * 1) = 2 sqrt(12/7), 2 d.o.f.:
    # P(T >= t) = (1 - t / sqrt(t^2 + 2)) / 2
    t = 2 * math.sqrt(12 / 7)
    assert cse["p_nadeau_bengio"] == pytest.approx((1 - t / math.sqrt(t * t + 2)) / 2, rel=1e-9)


def _expect_baseline(baseline: str, trainers: set[str]) -> Callable[[dict], None]:
    """CSE (2d) is tested against ``baseline``; only ``trainers`` (-tr and --baseline's trainer) are kept."""
    def check(payload: dict) -> None:
        cse = next(e for e in payload["entries"] if e["model"] == f"{CSE}__{PLANS_CONFIG}")
        assert cse["baseline"] == baseline and cse["n_paired_folds"] == 5
        assert {e["trainer"] for e in payload["entries"]} == trainers
    return check


OTHER_CONFIG = {**STANDARD, (HAND, CSE, "nnUNetPlans__3d_fullres"): [0.9] * 5}
OTHER_PLANS = {**STANDARD, (HAND, CSE, "nnUNetResEncUNetMPlans__2d"): [0.9] * 5}
SELECTIONS = [
    Selection("f-subset", STANDARD, ("-f", "0", "1"), _expect_subset),
    Selection("f-outside-the-split", STANDARD, ("-f", "4", "5"), None, ("-f 5", "not a fold of Dataset902_Hand",
                                                                        "has 5 folds"), split_folds=5),
    Selection("f-inside-the-split", STANDARD, ("-f", "3", "4"), _expect_only("folds", {"3 4"}), split_folds=5),
    Selection("f-nothing-there", STANDARD, ("-f", "7"), None, ("-f 7", "no finished fold")),
    Selection("nan-fold-reported", {**STANDARD, (HAND, CSE, PLANS_CONFIG): [0.71, 0.73, math.nan, 0.77, 0.79]},
              (), _expect_nan_fold, ("fold_2/validation/summary.json: foreground_mean Dice is NaN",
                                     "fold 2 of nnUNetTrainerPaperCSE__nnUNetPlans__2d is left out")),
    Selection("c-honoured", OTHER_CONFIG, ("-c", "2d"), _expect_only("model", {f"{BASE}__{PLANS_CONFIG}",
                                                                               f"{CSE}__{PLANS_CONFIG}"})),
    Selection("c-unknown", OTHER_CONFIG, ("-c", "3d_lowres"), None, ("-c '3d_lowres'", "found 2d, 3d_fullres")),
    Selection("p-honoured", OTHER_PLANS, ("-p", "nnUNetPlans"), _expect_only("model", {f"{BASE}__{PLANS_CONFIG}",
                                                                                       f"{CSE}__{PLANS_CONFIG}"})),
    Selection("tr-honoured", {**STANDARD, (HAND, SRM, PLANS_CONFIG): [0.6] * 5}, ("-tr", CSE),
              _expect_only("trainer", {BASE, CSE})),
    Selection("d-honoured", {**STANDARD, ("Dataset903_Other", BASE, PLANS_CONFIG): [0.5] * 5}, ("-d", "902"),
              _expect_only("dataset", {HAND})),
    Selection("d-unknown", STANDARD, ("-d", "904"), None, ("-d", "904")),
    Selection("same-fold-in-two-roots", STANDARD, (), None, ("fold_0", "is also in"),
              second_root={(HAND, CSE, PLANS_CONFIG): [0.99]}),
    Selection("unpaired-cases-reported", STANDARD, (), _expect_unpaired_cases, ("2 cases of the paired folds",
                                                                                "uses the 4 paired ones"),
              case=lambda trainer, fold: f"case_{fold}_{trainer}" if fold == 0 else f"case_{fold}"),
    Selection("baseline-trainer", {**STANDARD, (HAND, SRM, PLANS_CONFIG): [0.6] * 5}, ("--baseline", SRM, "-tr", CSE),
              _expect_baseline(f"{SRM}__{PLANS_CONFIG}", {SRM, CSE})),
    Selection("baseline-model-folder", OTHER_PLANS, ("--baseline", f"{CSE}__nnUNetResEncUNetMPlans__2d", "-tr", CSE),
              _expect_baseline(f"{CSE}__nnUNetResEncUNetMPlans__2d", {CSE})),
    Selection("unpaired-folds-not-tested", {**STANDARD, (HAND, BASE, PLANS_CONFIG): [0.70, 0.71, 0.72]}, (),
              _expect_unpaired_folds),
]


@pytest.mark.parametrize("row", SELECTIONS, ids=[r.id for r in SELECTIONS])
def test_selection_and_joins(row: Selection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.delenv("nnUNet_raw", raising=False)
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    _tree(tmp_path / "results", row.spec, row.case)
    roots = [str(tmp_path / "results")]
    if row.second_root:
        _tree(tmp_path / "copy", row.second_root)
        roots.append(str(tmp_path / "copy"))
    if row.split_folds:
        _splits(tmp_path / "preprocessed", HAND, row.split_folds)
        monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path / "preprocessed"))
    fmt = ("--format", "csv") if row.id == "f-inside-the-split" else ("--format", "json")
    result = call_main(cli.main, ["table", *roots, *fmt, *row.argv], capsys)
    if row.expect is None:
        assert_one_line_error(result, *row.fragments)
        assert result.code == 1 and result.stdout == ""
        return
    assert result.code == 0, result.stderr
    for fragment in row.fragments:
        assert fragment in result.stderr
    payload = ({"entries": list(csv.DictReader(io.StringIO(result.stdout)))} if fmt[1] == "csv"
               else json.loads(result.stdout))
    row.expect(payload)


def test_paired_tests_are_undefined_without_differences() -> None:
    """Three pairs with equal differences (t-test, Nadeau-Bengio: zero variance) or zero differences (all three)."""
    from nnunet_se.analysis.stats import paired_ttest, wilcoxon

    assert math.isnan(paired_ttest([1.0, 2.0, 3.0], [0.0, 1.0, 2.0]))
    assert math.isnan(nadeau_bengio([1.0, 2.0, 3.0], [0.0, 1.0, 2.0], 0.5))
    assert math.isnan(wilcoxon([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]))


@pytest.mark.parametrize("pairs", [1, 2])
def test_paired_tests_are_defined_from_two_pairs(pairs: int) -> None:
    """Both sides of the 2-pair limit: one pair -> NaN; two pairs d = [1, 3] -> by hand, with Student's t at 1 d.o.f.
    (the Cauchy law, P(T >= t) = 1/2 - atan(t)/pi): t-test t = mean / (sd / sqrt 2) = 2; Nadeau-Bengio with
    n_test/n_train = 1, t = 2 / sqrt((1/2 + 1) 2) = 2 / sqrt 3; Wilcoxon exact P(W+ >= 3) = 1/4 (one sign pattern
    in four). Closed forms in float64: absolute 1e-12."""
    from nnunet_se.analysis.stats import paired_ttest, wilcoxon

    a, b = [1.0, 3.0][:pairs], [0.0, 0.0][:pairs]
    got = (paired_ttest(a, b), nadeau_bengio(a, b, 1.0), wilcoxon(a, b))
    if pairs == 1:
        assert all(math.isnan(p) for p in got)
        return
    expected = (0.5 - math.atan(2.0) / math.pi, 0.5 - math.atan(2 / math.sqrt(3)) / math.pi, 0.25)
    assert got == pytest.approx(expected, rel=0, abs=1e-12)

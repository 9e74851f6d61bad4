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
from multiprocessing.pool import ThreadPool
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from scipy import stats

from nnunet_se.analysis import cli
from nnunet_se.analysis.stats import holm
from nnunet_se.analysis.tables import build_table
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
    d = a - b
    t = d.mean() / math.sqrt((1 / len(d) + 0.25) * d.var(ddof=1))
    nb = stats.t.sf(t, len(d) - 1) if alternative == "greater" else 2 * stats.t.sf(abs(t), len(d) - 1)
    assert entry.p_nadeau_bengio == pytest.approx(nb, rel=1e-12)
    # the correction shrinks |t|: a weaker result either way (for d < 0 the one-sided p is already above 0.5)
    assert abs(entry.p_nadeau_bengio - 0.5) < abs(entry.p_ttest - 0.5) if alternative == "greater" else (
        entry.p_nadeau_bengio > entry.p_ttest)
    pairs = [(_case_dice(model[f])[c], _case_dice(base[f])[c]) for f in common for c in sorted(_case_dice(model[f]))]
    pairs = [(x, y) for x, y in pairs if not (math.isnan(x) or math.isnan(y))]
    x, y = map(np.array, zip(*pairs, strict=True))
    assert entry.n_paired_cases == len(pairs)
    assert entry.p_wilcoxon == pytest.approx(stats.wilcoxon(x, y, alternative=alternative).pvalue, rel=1e-12)


def _write_fold(root: Path, trainer: str, fold: int, dice: float) -> None:
    """A minimal nnU-Net ``summary.json`` (fold Dice ``dice`` as a fraction, one case with that Dice)."""
    folder = root / "Dataset902_Hand" / f"{trainer}__{PLANS_CONFIG}" / f"fold_{fold}" / "validation"
    folder.mkdir(parents=True)
    case = {"reference_file": f"/gt/case_{fold}.png", "metrics": {"1": {"Dice": dice, "n_ref": 10}}}
    (folder / "summary.json").write_text(json.dumps({"foreground_mean": {"Dice": dice}, "metric_per_case": [case]}))


# Hand-computed paired t-test: fold differences d = (1, 2, 3, 4) Dice points, mean 2.5, sd sqrt(5/3), so
# t = 2.5 / (sqrt(5/3) / 2) = sqrt(15) with 3 d.o.f. Student's t with 3 d.o.f. has the closed-form tail
# P(T >= t) = 1/2 - (u / (1 + u^2) + arctan u) / pi with u = t / sqrt(3) = sqrt(5): 0.0152331.
HAND_P_ONE = 0.5 - (math.sqrt(5.0) / 6.0 + math.atan(math.sqrt(5.0))) / math.pi


def test_marks_one_sided_by_default_on_a_hand_computed_example(tmp_path: Path, capsys) -> None:
    """A model better by d = (1, 2, 3, 4) points is marked † (one-sided p = 0.0152, two-sided 0.0305); one worse by
    the same amounts is unmarked by default (p = 0.985, the paper's SRM-on-Kvasir rule) and † only two-sided."""
    base = [70.0, 71.0, 72.0, 73.0]
    for fold, b in enumerate(base):
        _write_fold(tmp_path, "nnUNetTrainerPaper", fold, b / 100)
        _write_fold(tmp_path, "nnUNetTrainerPaperCSE", fold, (b + fold + 1) / 100)
        _write_fold(tmp_path, "nnUNetTrainerPaperSRM", fold, (b - fold - 1) / 100)
    one = {e.trainer: e for e in build_table(scan_results([tmp_path]))}
    two = {e.trainer: e for e in build_table(scan_results([tmp_path]), alternative="two-sided")}
    assert one["nnUNetTrainerPaperCSE"].p_ttest == pytest.approx(HAND_P_ONE, rel=1e-9)
    assert one["nnUNetTrainerPaperSRM"].p_ttest == pytest.approx(1 - HAND_P_ONE, rel=1e-9)
    assert two["nnUNetTrainerPaperCSE"].p_ttest == pytest.approx(2 * HAND_P_ONE, rel=1e-9)
    assert two["nnUNetTrainerPaperSRM"].p_ttest == pytest.approx(2 * HAND_P_ONE, rel=1e-9)
    assert (one["nnUNetTrainerPaperCSE"].mark, one["nnUNetTrainerPaperSRM"].mark) == ("†", "")
    assert (two["nnUNetTrainerPaperCSE"].mark, two["nnUNetTrainerPaperSRM"].mark) == ("†", "†")
    assert cli.main(["table", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| **74.00 ± 2.58** † |" in out and "| 69.00 ± 0.00 |" in out and "one-sided: improvements only" in out
    assert cli.main(["table", str(tmp_path), "--alternative", "two-sided"]) == 0
    out = capsys.readouterr().out
    assert "| 69.00 ± 0.00 † |" in out and "two-sided: any difference" in out


def test_holm_over_trainers(entries: dict) -> None:
    tested = sorted((e for e in entries.values() if e.baseline), key=lambda e: e.p_wilcoxon)
    m = len(tested)
    running = 0.0
    for i, e in enumerate(tested):
        running = max(running, min(1.0, (m - i) * e.p_wilcoxon))
        assert e.p_wilcoxon_holm == pytest.approx(running)
    assert math.isnan(entries["nnUNetTrainerPaper"].p_wilcoxon_holm)
    assert holm([0.01, float("nan"), 0.04, 0.03]) == pytest.approx([0.03, float("nan"), 0.06, 0.06], nan_ok=True)


def test_best_is_bold_and_marks_follow_pvalues(entries: dict) -> None:
    best = max(entries.values(), key=lambda e: e.mean)
    assert best.best
    assert sum(e.best for e in entries.values()) == 1
    for e in entries.values():
        assert e.mark == ("‡" if e.p_ttest <= 0.01 else "†" if e.p_ttest <= 0.05 else "")
        assert e.alternative == "greater"


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
                     "--cases-csv", str(cases), "--n-folds", "4"]) == 0
    text = out.read_text()
    if fmt == "csv":
        rows = {r["trainer"]: r for r in csv.DictReader(io.StringIO(text))}
        assert rows["nnUNetTrainerPaperSRM"]["missing_folds"] == "2"
    elif fmt == "json":
        payload = json.loads(text)
        assert payload["settings"]["nadeau_bengio_test_train_ratio"] == pytest.approx(1 / 3)
        assert len(payload["folds"]) == 4 + 4 + 4 + 3
    else:
        assert "\\toprule" in text and "\\textbf{" in text and "\\bottomrule" in text
    long = list(csv.DictReader(cases.open()))
    assert len(long) == (4 + 4 + 3 + 3) * CASES_PER_FOLD


def test_cli_no_results_is_one_line_error(tmp_path: Path, capsys) -> None:
    assert cli.main(["table", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(tmp_path) in err[0] and "no Dataset" in err[0]

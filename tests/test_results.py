"""``nnunet_se.results``: the one finished rule and the Dice read from nnU-Net's ``summary.json``, on fake
nnU-Net folder trees. Expected per-case Dice are hand-computed 2TP / (2TP + FP + FN) values."""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from nnunet_se import results
from nnunet_se.errors import UserError
from nnunet_se.results import FINISHED_BASH, FoldState, fold_state, read_fold, read_summary, scan_results

SUMMARY = "validation/summary.json"


def make_fold(folder: Path, files: tuple[str, ...], summary: dict | None = None) -> Path:
    """``folder`` holding ``files`` (checkpoints get dummy bytes; the summary is ``summary`` or a minimal one)."""
    for name in files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == SUMMARY:
            path.write_text(json.dumps(summary or {"foreground_mean": {"Dice": 0.5}, "metric_per_case": []}))
        else:
            path.write_bytes(b"checkpoint")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


# What nnU-Net leaves behind at each point of a training (nnUNetTrainer.on_epoch_end / on_train_end /
# perform_actual_validation), and what the rule says.
STATES = [
    ((), FoldState.MISSING),  # fold folder made, nothing written yet: --c starts afresh
    (("debug.json", "progress.png"), FoldState.MISSING),  # no checkpoint --c could resume from
    (("checkpoint_best.pth",), FoldState.RUNNING),  # epochs < 50: --c resumes from the best checkpoint
    (("checkpoint_best.pth", "checkpoint_latest.pth"), FoldState.RUNNING),
    (("checkpoint_best.pth", "checkpoint_final.pth"), FoldState.RUNNING),  # final validation interrupted
    (("checkpoint_best.pth", "checkpoint_final.pth", SUMMARY), FoldState.FINISHED),
    ((SUMMARY,), FoldState.FINISHED),  # checkpoints deleted to save space: still the result, not re-run
    (("checkpoint_final.pth", "checkpoint_latest.pth", SUMMARY), FoldState.RUNNING),  # a newer training
]


@pytest.mark.parametrize(("files", "state"), STATES, ids=[" ".join(f) or "empty" for f, _ in STATES])
def test_fold_state(tmp_path: Path, files: tuple[str, ...], state: FoldState) -> None:
    assert fold_state(make_fold(tmp_path / "fold_0", files)) is state


def test_absent_folder_is_missing(tmp_path: Path) -> None:
    assert fold_state(tmp_path / "fold_3") is FoldState.MISSING


@pytest.mark.parametrize(("files", "state"), STATES, ids=[" ".join(f) or "empty" for f, _ in STATES])
def test_bash_rule_of_job_scripts_agrees(tmp_path: Path, files: tuple[str, ...], state: FoldState) -> None:
    """The skip check grid writes into job scripts says finished exactly where :func:`fold_state` does."""
    folder = make_fold(tmp_path / "fold 0 $(x)", files)  # a path bash must keep quoted
    test = FINISHED_BASH.format(folder="$1")  # inside the rule's double quotes
    done = subprocess.run(["bash", "-c", f"{test}", "_", str(folder)], timeout=30).returncode == 0
    assert done is (state is FoldState.FINISHED)


def case(name: str, *labels: tuple[str, float | None, int]) -> dict:
    """One ``metric_per_case`` entry: labels as (key, Dice, n_ref)."""
    return {"reference_file": f"/data/gt/{name}", "prediction_file": f"/p/{name}",
            "metrics": {key: {"Dice": dice, "n_ref": n_ref} for key, dice, n_ref in labels}}


# Hand-written summary.json of a two-label fold. Per label Dice = 2TP / (2TP + FP + FN):
#   a.nii.gz label 1: TP 30, FP 10, FN 20 -> 60 / 90 = 2/3;  label 2: TP 5, FP 0, FN 5 -> 10 / 15 = 2/3
#     case mean (2/3 + 2/3) / 2 = 2/3
#   b.png    label 1: TP 9, FP 1, FN 0 -> 18 / 19;           label 2: both empty -> NaN (n_ref 0), ignored
#     case = 18/19
#   c.png    both labels empty in reference and prediction -> NaN case (empty), reference empty
#   d.nrrd   label 1: reference empty, 4 false-positive pixels -> 0 / (0 + 4 + 0) = 0; label 2 NaN
#     case 0, reference empty (n_ref 0 for both labels) but kept
# foreground_mean: nnU-Net's own number, copied as written.
HAND = {
    "foreground_mean": {"Dice": 0.4},
    "metric_per_case": [
        case("a.nii.gz", ("1", 2 / 3, 50), ("2", 2 / 3, 10)),
        case("b.png", ("1", 18 / 19, 9), ("2", float("nan"), 0)),
        case("c.png", ("1", float("nan"), 0), ("2", None, 0)),
        case("d.nrrd", ("1", 0.0, 0), ("2", float("nan"), 0)),
    ],
}


def test_per_case_dice_from_a_hand_written_summary(tmp_path: Path) -> None:
    folder = make_fold(tmp_path / "Dataset009_X" / "T__P__2d" / "fold_2", ("checkpoint_final.pth", SUMMARY), HAND)
    result = read_fold(folder, "Dataset009_X", "T", "P", "2d", 2)
    assert result.state is FoldState.FINISHED and result.finished
    assert result.model == "T__P__2d"
    assert result.dice == 0.4
    assert set(result.per_case) == {"a", "b", "c", "d"}
    assert result.per_case["a"] == pytest.approx(2 / 3)
    assert result.per_case["b"] == pytest.approx(18 / 19)
    assert math.isnan(result.per_case["c"])
    assert result.per_case["d"] == 0.0
    assert result.n_empty == 1 and result.n_empty_reference == 2


def test_unfinished_fold_has_no_dice(tmp_path: Path) -> None:
    folder = make_fold(tmp_path / "fold_0", ("checkpoint_latest.pth", SUMMARY), HAND)  # stale summary
    result = read_fold(folder, "Dataset009_X", "T", "P", "2d", 0)
    assert result.state is FoldState.RUNNING and math.isnan(result.dice) and result.per_case == {}


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('{"mean": {}}', "KeyError: 'foreground_mean'"),
        ('{"foreground_mean": {"Dice": 0.5}}', "KeyError: 'metric_per_case'"),
        ('{"foreground_mean": {"Dice": Infinity}, "metric_per_case": []}', "holds Infinity, not a valid value"),
        ('{"foreground_mean": {"Dice": -Infinity}, "metric_per_case": []}', "holds -Infinity, not a valid value"),
        ('{"foreground_mean": {"Dice": 1e999}, "metric_per_case": []}', "foreground_mean.Dice is inf, not a Dice"),
        ('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": [{"reference_file": "a.png", "metrics": '
         '{"1": {"Dice": 0.5, "n_ref": Infinity}}}]}', "holds Infinity"),
        ('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": [{"reference_file": "a.png", "metrics": '
         '{"1": {"Dice": 0.5, "n_ref": 1e999}}}]}', "metric_per_case[0] n_ref is inf, not a voxel count"),
        ('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": [{"reference_file": "a.png", "metrics": '
         '{"1": {"Dice": 0.5, "n_ref": NaN}}}]}', "metric_per_case[0] n_ref is nan, not a voxel count"),
        ('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": [{"reference_file": "a.png", "metrics": '
         '{"1": {"Dice": 0.5, "n_ref": -1}}}]}', "metric_per_case[0] n_ref is -1, not a voxel count"),
        ('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": [{"reference_file": "a.png", "metrics": '
         '{"1": {"Dice": 0.5, "n_ref": 2.5}}}]}', "metric_per_case[0] n_ref is 2.5, not a voxel count"),
        ('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": [{"reference_file": "a.png", "metrics": '
         '{"1": {"Dice": 0.5, "n_ref": true}}}]}', "metric_per_case[0] n_ref is True, not a voxel count"),
        ('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": [' + ", ".join(
            '{"reference_file": "/gt/a.png", "metrics": {"1": {"Dice": 0.5, "n_ref": 1}}}' for _ in range(2)) + "]}",
         "case 'a' appears twice in metric_per_case"),
        ('{"foreground_mean": {"Dice": 1.5}, "metric_per_case": []}', "foreground_mean.Dice is 1.5"),
        ('{"foreground_mean": {"Dice": "0.5"}, "metric_per_case": []}', "foreground_mean.Dice is '0.5', not a number"),
        ('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": [{"reference_file": "a.png", "metrics": '
         '{"1": {"Dice": -0.1, "n_ref": 1}}}]}', "metric_per_case[0] Dice is -0.1"),
        ("[{", "not an nnU-Net summary.json (JSONDecodeError"),
        ("[]", "not an nnU-Net summary.json (TypeError"),
    ],
)
def test_broken_summary_is_one_line_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "summary.json"
    path.write_text(text)
    with pytest.raises(UserError, match=r"^[^\n]*$") as info:
        read_summary(path)
    assert str(info.value).startswith(f"{path}: ") and fragment in str(info.value)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A results root: Dataset001_A with model T__P__2d folds 0 (finished), 1 (running), 2 (empty folder) and a
    stray file; a folder that is not a dataset, and one that is not a model."""
    root = tmp_path / "results"
    model = root / "Dataset001_A" / "T__P__2d"
    make_fold(model / "fold_0", ("checkpoint_final.pth", SUMMARY), HAND)
    make_fold(model / "fold_1", ("checkpoint_latest.pth",))
    make_fold(model / "fold_2", ())
    (model / "fold_9").write_text("a file, not a fold")
    make_fold(root / "Dataset001_A" / "not-a-model" / "fold_0", (SUMMARY,))
    make_fold(root / "nnUNet_cache" / "T__P__2d" / "fold_0", (SUMMARY,))
    make_fold(root / "Dataset002_B" / "U__P__3d_fullres" / "fold_0", (SUMMARY,))
    return root


def test_scan_results_from_root_dataset_and_model(tree: Path) -> None:
    everything = [(r.dataset, r.model, r.fold, r.state) for r in scan_results([tree])]
    assert everything == [
        ("Dataset001_A", "T__P__2d", 0, FoldState.FINISHED),
        ("Dataset001_A", "T__P__2d", 1, FoldState.RUNNING),
        ("Dataset001_A", "T__P__2d", 2, FoldState.MISSING),
        ("Dataset002_B", "U__P__3d_fullres", 0, FoldState.FINISHED),
    ]
    assert [(r.trainer, r.plans, r.configuration) for r in scan_results([tree / "Dataset002_B"])] == [
        ("U", "P", "3d_fullres")]
    model = scan_results([tree / "Dataset001_A" / "T__P__2d", tree / "Dataset001_A"])  # overlapping: read once
    assert [r.fold for r in model] == [0, 1, 2] and model[0].per_case["b"] == pytest.approx(18 / 19)


def test_scan_results_of_a_file_is_an_error(tree: Path) -> None:
    with pytest.raises(UserError, match="fold_9: not a folder"):
        scan_results([tree / "Dataset001_A" / "T__P__2d" / "fold_9"])


@pytest.mark.parametrize(("n_ref", "empty"), [(0, 1), (0.0, 1), (3, 0), (3.0, 0)])
def test_voxel_counts_written_as_floats_are_accepted(tmp_path: Path, n_ref: float, empty: int) -> None:
    """The accepted side of the n_ref check: integral values >= 0, also after a float re-dump."""
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"foreground_mean": {"Dice": 0.5}, "metric_per_case": [
        {"reference_file": "/gt/a.png", "metrics": {"1": {"Dice": 0.5, "n_ref": n_ref}}}]}))
    assert read_summary(path) == (0.5, {"a": 0.5}, empty)


def test_summary_size_bound_both_sides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "summary.json"
    path.write_text('{"foreground_mean": {"Dice": 0.5}, "metric_per_case": []}')
    monkeypatch.setattr(results, "MAX_SUMMARY_BYTES", path.stat().st_size)
    assert read_summary(path) == (0.5, {}, 0)
    monkeypatch.setattr(results, "MAX_SUMMARY_BYTES", path.stat().st_size - 1)
    with pytest.raises(UserError, match=rf"^{path}: \d+ bytes, more than the \d+ a summary.json may have$"):
        read_summary(path)


def test_summary_that_is_not_a_regular_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    os.mkfifo(path)  # read_text() would block forever
    with pytest.raises(UserError, match=rf"^{path}: not a regular file$"):
        read_summary(path)


def test_same_fold_in_two_results_folders_is_refused(tree: Path, tmp_path: Path) -> None:
    """Two copies of Dataset001_A/T__P__2d/fold_0 (two results roots): which one is meant is unknown, so neither
    is averaged in; the same folder reached twice is still read once."""
    other = tmp_path / "other_results"
    make_fold(other / "Dataset001_A" / "T__P__2d" / "fold_0", ("checkpoint_final.pth", SUMMARY), HAND)
    with pytest.raises(UserError, match=r"fold_0: Dataset001_A T__P__2d fold 0 is also in .*results/Dataset001_A"):
        scan_results([tree, other])
    assert len(scan_results([tree, tree / "Dataset001_A"])) == 4

"""``--splits authors``: the authors' fold assignment and dev-set rule (oracles: hand-written folds, sklearn as the
authors call it in ``experiments/*``), and the one-line errors for options that would break it."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from cli_harness import assert_one_line_error, call_main
from sklearn.model_selection import StratifiedKFold, train_test_split

from nnunet_se.conversion.cli import main as convert_main
from nnunet_se.conversion.splits import authors_dev_split, make_splits

SORTED = [f"k{i:02d}" for i in range(12)]
SHUFFLED = [SORTED[i] for i in (7, 3, 11, 0, 5, 9, 1, 10, 2, 8, 6, 4)]


def test_unshuffled_kfold_over_sorted_ids_by_hand() -> None:
    """KFold(5) without shuffling: 12 sorted cases -> folds of 3, 3, 2, 2, 2 consecutive cases."""
    splits = make_splits(SHUFFLED, None, [], "authors", 5, 42)
    assert [f["val"] for f in splits] == [["k00", "k01", "k02"], ["k03", "k04", "k05"], ["k06", "k07"],
                                          ["k08", "k09"], ["k10", "k11"]]
    for fold in splits:
        assert fold["train"] == [c for c in SORTED if c not in fold["val"]]


def test_stratified_kfold_equals_the_authors_busi_call() -> None:
    """BUSI: StratifiedKFold(5, shuffle=True, random_state=42) over the sorted list, whatever order comes in."""
    ids = [f"benign_{i:03d}" for i in range(1, 15)] + [f"malignant_{i:03d}" for i in range(1, 8)]
    labels = [c.split("_")[0] for c in ids]
    is_malignant = np.array([int(label == "malignant") for label in labels])  # their 0/1 coding
    expected = [sorted(np.array(ids)[test].tolist())
                for _, test in StratifiedKFold(5, shuffle=True, random_state=42).split(ids, is_malignant)]
    order = np.random.default_rng(0).permutation(len(ids))
    splits = make_splits([ids[i] for i in order], [labels[i] for i in order], [], "authors", 5, 42)
    assert [f["val"] for f in splits] == expected


def test_duplicate_groups_do_not_change_the_assignment(caplog: pytest.LogCaptureFixture) -> None:
    groups = [["k00", "k11"], ["k04", "k05"]]  # the first spans folds 0 and 4, the second lies in fold 1
    with caplog.at_level(logging.WARNING):
        grouped = make_splits(SORTED, None, groups, "authors", 5, 42)
    assert grouped == make_splits(SORTED, None, [], "authors", 5, 42)
    assert "1 duplicate group(s) span several folds" in caplog.text


@pytest.mark.parametrize(
    ("n", "dev"),
    [  # int(0.1 n) truncates: 1.5, 1.7, 1.9 and 2.5 cases give 1, 1, 1 and 2 (rounding would give 2, 2, 2, 2)
        (23, ["k21", "k22"]), (20, ["k18", "k19"]), (19, ["k18"]), (17, ["k16"]), (15, ["k14"]),
        (25, ["k23", "k24"]), (10, ["k09"]), (9, ["k08"]), (2, ["k01"]), (1, []),
    ],
)
def test_dev_set_is_the_last_tenth_by_hand(n: int, dev: list[str]) -> None:
    ids = [f"k{i:02d}" for i in range(n)]
    fit, got = authors_dev_split(list(reversed(ids)), None)
    assert got == dev and fit == [c for c in ids if c not in dev]


def test_stratified_dev_set_equals_the_authors_train_test_split() -> None:
    """Their BUSI script: train_test_split(x_fold, y_fold, test_size=0.2, stratify=is_benign_fold, random_state=42)."""
    train = [f"benign_{i:03d}" for i in range(1, 21)] + [f"malignant_{i:03d}" for i in range(1, 11)]
    classes = {c: c.split("_")[0] for c in train}
    x_fold = np.array(train)
    _, x_dev = train_test_split(x_fold, test_size=0.2, stratify=[classes[c] for c in train], random_state=42)
    fit, dev = authors_dev_split(train[::-1], classes)
    assert dev == sorted(x_dev.tolist())
    assert sum(c.startswith("benign") for c in dev) == 4 and len(dev) == 6  # 20 % of 20 benign + 10 malignant
    assert sorted(fit + dev) == sorted(train)


def test_stratified_dev_set_impossible_is_explained() -> None:
    with pytest.raises(ValueError, match="stratified dev split of 3 cases"):
        authors_dev_split(["a", "b", "c"], {"a": "x", "b": "x", "c": "y"})


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--n-folds", "10"], ["--n-folds 10", "5 folds"]),
        (["--seed", "7"], ["--seed 7", "42"]),
        (["--dedupe"], ["--dedupe", "--splits authors"]),
        (["--include-normal"], ["--include-normal", "--splits authors"]),
    ],
)
def test_conflicting_options_are_one_line_errors(
    extra: list[str], fragments: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["busi", str(tmp_path / "missing"), "-d", "990", "--raw-dir", str(tmp_path), "--splits", "authors",
            *extra]
    assert_one_line_error(call_main(convert_main, argv, capsys), *fragments)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.real
def test_busi_samples_get_the_authors_folds_and_dev_sets(
    real_samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Real BUSI samples (with duplicate groups): folds = their StratifiedKFold call over the sorted ids; every
    fold's dev set = their train_test_split call on the fold's training part."""
    import json

    argv = ["busi", str(real_samples / "busi" / "Dataset_BUSI_with_GT"), "-d", "991", "--size", "32",
            "--raw-dir", str(tmp_path / "raw"), "--preprocessed-dir", str(tmp_path / "pre"), "--workers", "1",
            "--splits", "authors"]
    result = call_main(convert_main, argv, capsys)
    assert result.code == 0, result.stderr
    assert "span several folds" in result.stderr
    dataset = next((tmp_path / "raw").glob("Dataset991_*"))
    ids = sorted(p.name.removesuffix(".png") for p in (dataset / "labelsTr").glob("*.png"))
    labels = np.array([c.split("_")[0] for c in ids])
    splits = json.loads((dataset / "splits_final.json").read_text())
    folds = list(StratifiedKFold(5, shuffle=True, random_state=42).split(ids, labels))
    assert [f["val"] for f in splits] == [sorted(np.array(ids)[test].tolist()) for _, test in folds]
    for fold, (train_index, _) in zip(splits, folds, strict=True):
        x_fold = np.array(ids)[train_index]
        _, x_dev = train_test_split(x_fold, test_size=0.2, stratify=labels[train_index], random_state=42)
        assert authors_dev_split(fold["train"], dict(zip(ids, labels, strict=True)))[1] == sorted(x_dev.tolist())
    sidecar = json.loads((dataset / "nnunet_se_splits.json").read_text())
    assert sidecar["scheme"] == "authors" and sidecar["folds"] == 5 and sidecar["grouped_by"] is None

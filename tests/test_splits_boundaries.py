"""Boundaries of ``conversion/splits.py`` that the mutation sample (benchmarks/results/mutation_holdout.md) found
unpinned: the paper scheme's default fold count, seen through the converter's command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_harness import assert_one_line_error, call_main
from PIL import Image

from nnunet_se.conversion.cli import main as convert_main


def _kvasir(root: Path, n: int) -> Path:
    """``n`` random 24 px JPEG pairs in Kvasir-SEG's layout (images/, masks/) under ``root``."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / "Kvasir-SEG" / sub).mkdir(parents=True)
    for i in range(n):
        mask = np.zeros((24, 24), np.uint8)
        mask[4:16, 6 + i % 8:18] = 255
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(
            root / "Kvasir-SEG" / "images" / f"case{i}.jpg")
        Image.fromarray(mask).save(root / "Kvasir-SEG" / "masks" / f"case{i}.jpg")
    return root


@pytest.mark.parametrize(("cases", "ok"), [(10, True), (9, False)])
def test_paper_scheme_defaults_to_ten_folds(cases: int, ok: bool, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The paper evaluates by 10-fold cross-validation, so ``--splits paper`` without ``--n-folds`` writes 10 folds:
    10 cases give 10 folds of one held-out case each; 9 cases are too few for 10 folds (one-line error)."""
    src = _kvasir(tmp_path / "src", cases)
    argv = ["kvasir", str(src), "-d", "990", "--raw-dir", str(tmp_path / "raw"), "--preprocessed-dir",
            str(tmp_path / "pre"), "--workers", "1", "--size", "16", "--splits", "paper"]
    result = call_main(convert_main, argv, capsys)
    if not ok:
        assert_one_line_error(result, "--splits paper (10 folds)", "more folds than the 9 training cases")
        return
    assert result.code == 0, result.stderr
    (splits_file,) = (tmp_path / "pre").glob("Dataset990_*/splits_final.json")
    splits = json.loads(splits_file.read_text())
    assert len(splits) == 10
    assert sorted(c for fold in splits for c in fold["val"]) == sorted(f"case{i}" for i in range(10))
    assert all(len(fold["val"]) == 1 and len(fold["train"]) == 9 for fold in splits)

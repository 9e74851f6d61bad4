"""Fig. 3 from the authors' own stored excitations: the default ``pca`` convention must reproduce the
published k values at l = 3 at least as well as any other named convention, and at least 8/12 exactly and 11/12
within one. The oracle is the authors' data: their CSVs (checked against the recorded sha256) and the k values
hard-coded in their notebook (``fig3_published.json``), plus the counts their notebook printed for ISIC-18.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nnunet_se.analysis import cli
from nnunet_se.analysis.excitation_io import save_excitations
from nnunet_se.analysis.thresholds import DEFAULT_PRESET, PRESETS, threshold

pytestmark = pytest.mark.real

MODELS = ("cSE", "cSE-NS", "SRM", "Mono")  # the models Fig. 3 draws (FCA is left out in the paper)


@pytest.fixture(scope="module")
def published(authors_excitations: Path) -> dict:
    return json.loads((authors_excitations / "fig3_published.json").read_text())


@pytest.fixture(scope="module")
def excitations(authors_excitations: Path, published: dict) -> dict[tuple[str, str], np.ndarray]:
    """(dataset, module label as in the CSV) -> (cases, 128) excitations, after checking each file's sha256."""
    out = {}
    for dataset, info in published["checked"]["csv_files"].items():
        path = authors_excitations / info["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info["sha256"], path
        table = pd.read_csv(path, header=[0, 1], index_col=0)
        for label in table.columns.get_level_values(0).unique():
            g = table[label].to_numpy(dtype=np.float64)
            assert g.shape == (info["cases"], info["channels_per_module"])
            out[(dataset, label)] = g
    return out


@pytest.fixture(scope="module")
def ks(excitations: dict, published: dict) -> dict[str, dict[tuple[str, str], tuple[int, int]]]:
    """preset -> (dataset, model) -> (our k at l = 3, published k at l = 3) for the 12 values of Fig. 3."""
    labels = published["checked"]["csv_module_labels"]
    return {preset: {(d, m): (threshold(excitations[(d, labels[m])], PRESETS[preset]), published["values"][d][m][2])
                     for d in published["values"] for m in MODELS} for preset in PRESETS}


def test_default_convention_reproduces_fig3_best(ks: dict, published: dict) -> None:
    scores = {preset: (sum(a == b for a, b in v.values()), sum(abs(a - b) <= 1 for a, b in v.values()))
              for preset, v in ks.items()}
    exact, within_one = scores[DEFAULT_PRESET]
    assert len(ks[DEFAULT_PRESET]) == published["checked"]["n_values"] == 12
    assert exact >= 8 and within_one >= 11, scores
    assert all(scores[DEFAULT_PRESET] >= s for s in scores.values()), scores


def test_authors_preset_equals_the_notebooks_printed_counts(excitations: dict, published: dict) -> None:
    """The ``authors`` preset is the notebook's rule: it must print what the notebook printed for ISIC-18."""
    printed = published["notebook_printed_counts"]
    for label, k in printed["counts"].items():
        assert threshold(excitations[(printed["dataset"], label)], PRESETS["authors"]) == k, label


def test_cli_default_writes_the_published_values(excitations: dict, published: dict, tmp_path: Path) -> None:
    """The console script's default (no --preset) gives the same k as the fig3 preset, and the published value
    for every entry except the four recorded in docs/analysis.md (ISIC-18 SRM 22 vs 44; Kvasir SRM 29 vs 28,
    Kvasir Mono 22 vs 21, BUSI cSE-NS 4 vs 3)."""
    labels = published["checked"]["csv_module_labels"]
    files = []
    for dataset in published["values"]:
        for model in MODELS:
            path = tmp_path / f"{dataset}__{model}.npz"
            g = excitations[(dataset, labels[model])]
            save_excitations(path, {1: g}, [str(i) for i in range(g.shape[0])],
                             {"dataset": dataset, "trainer": model, "fold": 0})
            files.append(str(path))
    out = tmp_path / "fig3"
    assert cli.main(["pca", *files, "--n-boot", "0", "-o", str(out)]) == 0
    rows = list(csv.DictReader((out / "thresholds.csv").open()))
    assert {r["scale"] for r in rows} == {"robust"} and {r["count"] for r in rows} == {"reach"}
    got = {(r["dataset"], r["model"]): int(r["k"]) for r in rows}
    differ = {key: (k, published["values"][key[0]][key[1]][2]) for key, k in got.items()
              if k != published["values"][key[0]][key[1]][2]}
    assert differ == {("ISIC18", "SRM"): (22, 44), ("Kvasir-SEG", "SRM"): (29, 28), ("Kvasir-SEG", "Mono"): (22, 21),
                      ("BUSI", "cSE-NS"): (4, 3)}


"""Instance-variability index, channel summaries and the responses CLI on excitations with known statistics."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from scipy import stats

from nnunet_se.analysis import cli
from nnunet_se.analysis.excitation_io import save_excitations
from nnunet_se.analysis.outputs import MARKER
from nnunet_se.analysis.responses import variability


@pytest.mark.parametrize(
    "g,ivi,bounded",
    [
        (np.full((5, 3), 0.3), 0.0, 0.0),  # input-independent gate (the paper's FCA)
        (np.array([[0.0, 0.5], [1.0, 0.5]]), np.sqrt(0.5) / 2, np.sqrt(0.5) / 0.5 / 2),  # Bernoulli-like channel 0
        (np.array([[0.2, 0.4], [0.4, 0.8], [0.6, 0.6]]), 0.2 / 2 + 0.2 / 2,
         (0.2 / np.sqrt(0.4 * 0.6) + 0.2 / np.sqrt(0.6 * 0.4)) / 2),
    ],
)
def test_variability_index(g: np.ndarray, ivi: float, bounded: float) -> None:
    result = variability(g)
    assert result["ivi"] == pytest.approx(ivi)
    assert result["ivi_bounded"] == pytest.approx(bounded)
    assert result["mean_excitation"] == pytest.approx(g.mean())


def _write(folder, trainer: str, fold: int, spread: float, seed: int):
    rng = np.random.default_rng(seed)
    depths = {1: np.clip(0.5 + spread * rng.standard_normal((12, 4)), 0, 1),
              2: np.clip(0.5 + spread * rng.standard_normal((12, 8)), 0, 1)}
    path = folder / f"{trainer}_{fold}.npz"
    save_excitations(path, depths, [f"c{i}" for i in range(12)],
                     {"dataset": "Dataset901_X", "trainer": trainer, "plans": "nnUNetPlans", "configuration": "2d",
                      "fold": fold})
    return path, depths


def test_responses_cli_with_dice(tmp_path, capsys) -> None:
    spreads = {("nnUNetTrainerPaperCSE", 0): 0.05, ("nnUNetTrainerPaperSRM", 0): 0.2,
               ("nnUNetTrainerPaperMono", 0): 0.1, ("nnUNetTrainerPaperFCA", 0): 0.01}
    files, arrays = [], {}
    for i, ((trainer, fold), spread) in enumerate(spreads.items()):
        path, arrays[trainer] = _write(tmp_path, trainer, fold, spread, i)
        files.append(str(path))
    dice = {"nnUNetTrainerPaperCSE": 80.0, "nnUNetTrainerPaperSRM": 70.0, "nnUNetTrainerPaperMono": 85.0,
            "nnUNetTrainerPaperFCA": 78.0}
    table = tmp_path / "table.json"
    # the same dataset, trainer and fold under other plans or another configuration must not be paired
    decoys = [("nnUNetResEncUNetMPlans", "2d", 0.0), ("nnUNetPlans", "3d_fullres", 99.0)]
    folds = [{"dataset": "Dataset901_X", "trainer": t, "plans": plans, "configuration": config, "fold": 0,
              "finished": True, "dice": value} for t in dice for plans, config, value in decoys]
    folds += [{"dataset": "Dataset901_X", "trainer": t, "plans": "nnUNetPlans", "configuration": "2d", "fold": 0,
               "finished": True, "dice": d} for t, d in dice.items()]
    table.write_text(json.dumps({"folds": folds}))
    out = tmp_path / "out"
    assert cli.main(["responses", *files, "--dice", str(table), "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"channels.csv", "variability.csv", "variability.json",
                                               "responses.png", "responses.pdf", "ivi_dice.png", "ivi_dice.pdf",
                                               MARKER}
    channels = list(csv.DictReader((out / "channels.csv").open()))
    assert len(channels) == 4 * (4 + 8)
    row = next(r for r in channels if r["model"] == "nnUNetTrainerPaperSRM" and r["depth"] == "2"
               and r["channel"] == "3")
    g = arrays["nnUNetTrainerPaperSRM"][2][:, 3]
    assert float(row["mean"]) == pytest.approx(g.mean()) and float(row["std"]) == pytest.approx(g.std(ddof=1))
    payload = json.loads((out / "variability.json").read_text())
    assert sorted((p["model"], p["depth"], p["dice"]) for p in payload["dice"]["points"]) == sorted(
        (t, depth, d) for t, d in dice.items() for depth in (1, 2))
    for corr in payload["dice"]["spearman_by_depth"]:
        ivi = [np.std(arrays[t][corr["depth"]], axis=0, ddof=1).mean() for t in dice]
        expected = stats.spearmanr(ivi, list(dice.values()))
        assert corr["n"] == 4
        assert corr["spearman_rho"] == pytest.approx(expected.statistic)
        assert corr["p"] == pytest.approx(expected.pvalue)
    assert "IVI=" in capsys.readouterr().out


def test_responses_dice_without_match_is_an_error(tmp_path, capsys) -> None:
    path, _ = _write(tmp_path, "nnUNetTrainerPaperCSE", 0, 0.1, 0)
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"folds": [{"dataset": "Other", "trainer": "x", "plans": "nnUNetPlans",
                                            "configuration": "2d", "fold": 0, "finished": True, "dice": 1.0}]}))
    out = tmp_path / "out"
    assert cli.main(["responses", str(path), "--dice", str(table), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(table) in err[0]
    assert not out.exists()


def test_unpaired_excitation_file_is_reported_not_dropped_silently(tmp_path, capsys) -> None:
    """Two folds captured, a Dice for one: the scatter holds the paired fold only and stderr names the other file."""
    paired, _ = _write(tmp_path, "nnUNetTrainerPaperCSE", 0, 0.1, 0)
    unpaired, _ = _write(tmp_path, "nnUNetTrainerPaperCSE", 1, 0.1, 1)
    table = tmp_path / "table.json"
    table.write_text(json.dumps({"folds": [
        {"dataset": "Dataset901_X", "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
         "fold": 0, "finished": True, "dice": 80.0},
        {"dataset": "Dataset901_X", "trainer": "nnUNetTrainerPaperCSE", "plans": "nnUNetPlans", "configuration": "2d",
         "fold": 1, "finished": False, "dice": None}]}))
    out = tmp_path / "out"
    assert cli.main(["responses", str(paired), str(unpaired), "--dice", str(table), "-o", str(out)]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{unpaired}: no finished fold with a Dice in {table}")
    points = json.loads((out / "variability.json").read_text())["dice"]["points"]
    assert {(p["fold"], p["depth"]) for p in points} == {("0", 1), ("0", 2)}

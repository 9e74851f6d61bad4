"""``nnunet-se status`` on fixture result folders and on a real nnU-Net training."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest
from test_grid import FINISHED, write_fold

from nnunet_se.cli import main as cli_main
from nnunet_se.trainer_registry import families

KVASIR, BUSI = "Dataset601_KvasirSEG", "Dataset602_BUSI"
PAPER, MONO = "nnUNetTrainerPaper", "nnUNetTrainerPaperMono"


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """601: Paper folds 0,1 finished (Dice 0.80, 0.90), 2 running, 3 final without validation, 4 missing (5-fold
    splits); Mono fold 0 finished (0.70). 602: Paper fold 0 finished (0.5), 3-fold splits."""
    results, preprocessed = tmp_path / "results", tmp_path / "preprocessed"
    for name, path in (("nnUNet_results", results), ("nnUNet_preprocessed", preprocessed)):
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("nnUNet_raw", raising=False)
    for dataset, folds in ((KVASIR, 5), (BUSI, 3)):
        (preprocessed / dataset).mkdir()
        splits = [{"train": [], "val": []} for _ in range(folds)]
        (preprocessed / dataset / "splits_final.json").write_text(json.dumps(splits))
    write_fold(results, KVASIR, PAPER, 0, FINISHED, dice=0.80)
    write_fold(results, KVASIR, PAPER, 1, FINISHED, dice=0.90)
    write_fold(results, KVASIR, PAPER, 2, ("checkpoint_latest.pth", "checkpoint_best.pth"))
    write_fold(results, KVASIR, PAPER, 3, ("checkpoint_final.pth",))
    write_fold(results, KVASIR, MONO, 0, FINISHED, dice=0.70)
    write_fold(results, BUSI, PAPER, 0, FINISHED, dice=0.5)
    write_fold(results, BUSI, PAPER, 0, FINISHED, dice=0.5, plans="nnUNetResEncUNetMPlans")  # other plans: ignored
    return results


def status(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(["status", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def table(text: str) -> list[list[str]]:
    """Rows of the plain-text table (columns are separated by two or more spaces)."""
    lines = text.strip().splitlines()
    assert lines[0].split() == ["dataset", "trainer", "finished", "running", "missing", "Dice", "(finished", "folds)"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    return [re.split(r"\s{2,}", line.strip()) for line in lines[2:]]


def test_table_of_found_trainers(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(capsys)
    assert code == 0
    mean, std = statistics.fmean([0.8, 0.9]), statistics.stdev([0.8, 0.9])
    assert table(out) == [
        [KVASIR, PAPER, "0-1", "2-3", "4", f"{mean:.4f} +- {std:.4f} (n=2)"],
        [KVASIR, MONO, "0", "-", "1-4", "0.7000 +- – (n=1)"],
        [BUSI, PAPER, "0", "-", "1-2", "0.5000 +- – (n=1)"],
    ]


def test_requested_trainers_folds_and_plans(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(capsys, "--datasets", "602", "--trainers", "paper", "--folds", "0,2")
    assert code == 0
    rows = table(out)
    assert [r[1] for r in rows] == list(families()["paper"]) and rows[0][1] == PAPER
    assert rows[0][2:5] == ["0", "-", "2"] and rows[1][2:] == ["-", "-", "0,2", "-"]
    # BUSI has 3-fold splits: folds 3-9 do not exist (nnU-Net would train them on a random split)
    code, out, err = status(capsys, "--datasets", "602", "--folds", "0-9")
    assert code == 1 and out == ""
    assert err.strip().endswith(f"--folds 3-9: not a fold of {BUSI} ({results.parent}/preprocessed/{BUSI}/"
                                "splits_final.json has 3 folds, 0-2); nnU-Net would train it on a random split of "
                                "its own")
    code, out, _ = status(capsys, "--datasets", "602", "-p", "nnUNetResEncUNetMPlans")
    assert table(out) == [[BUSI, PAPER, "0", "-", "1-2", "0.5000 +- – (n=1)"]]


def test_json(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = status(capsys, "--datasets", "601", "--json")
    assert code == 0
    rows = {r["trainer"]: r for r in json.loads(out)}
    paper = rows[PAPER]
    assert (paper["finished"], paper["running"], paper["missing"]) == ([0, 1], [2, 3], [4])
    assert paper["dice"] == {"0": 0.8, "1": 0.9}
    assert paper["dice_mean"] == pytest.approx(0.85) and paper["dice_std"] == pytest.approx(0.0707107, abs=1e-6)


def test_status_and_table_agree_on_mean_and_std(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One summary of fold values for both commands: the sample std (ddof 1) of two folds, and no std (null, not 0)
    for a single fold; the table's unit is percent, the status's 0-1."""
    from nnunet_se.analysis.cli import main as analyze_main

    code, out, _ = status(capsys, "--datasets", "601", "--json")
    rows = {r["trainer"]: r for r in json.loads(out)}
    assert code == 0 and analyze_main(["table", "-d", "601", "-p", "nnUNetPlans", "--format", "json"]) == 0
    entries = {e["trainer"]: e for e in json.loads(capsys.readouterr().out)["entries"]}
    assert rows[PAPER]["dice_std"] == pytest.approx(statistics.stdev([0.8, 0.9]), rel=1e-12)
    assert entries[PAPER]["std"] == pytest.approx(100 * rows[PAPER]["dice_std"], rel=1e-12)
    assert rows[MONO]["dice_n"] == 1 and rows[MONO]["dice_std"] is None and entries[MONO]["std"] is None
    assert entries[MONO]["mean"] == pytest.approx(100 * rows[MONO]["dice_mean"], rel=1e-12)


def test_nan_fold_is_not_counted_and_json_stays_valid(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """nnU-Net writes NaN Dice for a fold without foreground: n counts the finite folds, the NaN fold is listed
    separately, and the JSON has no bare NaN (strict parsers reject it)."""
    summary = write_fold(results, KVASIR, PAPER, 4, FINISHED) / "validation" / "summary.json"
    summary.write_text('{"foreground_mean": {"Dice": NaN}, "metric_per_case": []}')  # json.dump(float("nan"))
    code, out, _ = status(capsys, "--datasets", "601", "--trainers", PAPER)
    mean, std = statistics.fmean([0.8, 0.9]), statistics.stdev([0.8, 0.9])
    assert code == 0 and table(out) == [
        [KVASIR, PAPER, "0-1,4", "2-3", "-", f"{mean:.4f} +- {std:.4f} (n=2); NaN: fold 4"]]
    code, out, _ = status(capsys, "--datasets", "601", "--json")

    def reject(constant: str) -> None:
        raise ValueError(f"bare {constant} in the JSON")

    rows = {r["trainer"]: r for r in json.loads(out, parse_constant=reject)}
    paper = rows[PAPER]
    assert paper["finished"] == [0, 1, 4] and paper["dice"] == {"0": 0.8, "1": 0.9} and paper["dice_nan"] == [4]
    assert paper["dice_n"] == 2
    assert paper["dice_mean"] == pytest.approx(mean) and paper["dice_std"] == pytest.approx(std)
    # a trainer whose only finished fold is NaN: no mean, null in JSON
    write_fold(results, KVASIR, MONO, 0, FINISHED).joinpath("validation", "summary.json").write_text(
        '{"foreground_mean": {"Dice": NaN}, "metric_per_case": []}')
    code, out, _ = status(capsys, "--datasets", "601", "--json")
    mono = {r["trainer"]: r for r in json.loads(out, parse_constant=reject)}[MONO]
    assert (mono["dice_n"], mono["dice_mean"], mono["dice_std"], mono["dice_nan"]) == (0, None, None, [0])


def test_states_follow_the_one_finished_rule(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A summary beside checkpoint_latest.pth is a newer training's stale result (running, no Dice); a summary whose
    checkpoints were deleted is finished; ``-f all`` is the default."""
    write_fold(results, KVASIR, PAPER, 2, ("validation/summary.json",), dice=0.1)  # beside checkpoint_latest.pth
    (results / KVASIR / f"{PAPER}__nnUNetPlans__2d" / "fold_1" / "checkpoint_final.pth").unlink()
    code, out, _ = status(capsys, "-d", "601", "-tr", PAPER, "-f", "all")
    mean, std = statistics.fmean([0.8, 0.9]), statistics.stdev([0.8, 0.9])
    assert code == 0 and table(out) == [[KVASIR, PAPER, "0-1", "2-3", "4", f"{mean:.4f} +- {std:.4f} (n=2)"]]
    assert status(capsys, "-d", "601", "-tr", PAPER)[1] == out


def test_broken_summary_is_one_line_error(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    summary = results / KVASIR / f"{PAPER}__nnUNetPlans__2d" / "fold_1" / "validation" / "summary.json"
    summary.write_text('{"mean": {}}')
    code, out, err = status(capsys)
    assert code == 1 and out == ""
    assert err.strip() == f"nnunet-se status: error: {summary}: not an nnU-Net summary.json (KeyError: " \
                          "'foreground_mean')"


def test_empty_results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("nnUNet_results", str(tmp_path))
    code, out, _ = status(capsys)
    assert code == 0 and out.strip() == f"no trainings found in {tmp_path}"
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "absent"))
    code, _, err = status(capsys)
    assert code == 1 and "absent: nnUNet_results is not a folder" in err


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_status_of_a_real_training(nnunet_e2e, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    """Fold 0 of each trainer that nnU-Net really trained is finished, with the Dice of its own summary."""
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(name, nnunet_e2e.env[name])
    assert nnunet_e2e.trainers
    code, out, _ = status(capsys, "--datasets", str(nnunet_e2e.dataset_id), "--trainers", *nnunet_e2e.trainers,
                          "--folds", "0", "--json")
    assert code == 0
    rows = {r["trainer"]: r for r in json.loads(out)}
    assert sorted(rows) == sorted(nnunet_e2e.trainers)
    for trainer, row in rows.items():
        summary = nnunet_e2e.model_folder(trainer) / "fold_0" / "validation" / "summary.json"
        assert row["finished"] == [0]
        assert row["dice"]["0"] == pytest.approx(json.loads(summary.read_text())["foreground_mean"]["Dice"])

"""``nnunet-se demo``: argument checks, profiles, the in-process nnU-Net batch, scoring, and (slow) the quick demo."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nnunet_se.cli import main as cli_main
from nnunet_se.workflow.demo import MARKER, PROFILES, build_parser, check_args
from nnunet_se.workflow.demo_report import significance_lines
from nnunet_se.workflow.demo_scoring import ModelScores, score_test_set

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "."], "--source and --source-kind go together"),
        (["--source-kind", "kvasir"], "--source and --source-kind go together"),
        (["--source", "no/such/folder", "--source-kind", "busi"], "no/such/folder: no such file or folder"),
        (["--profile", "quick", "--epochs", "0"], "--epochs 0: must be >= 1"),
        (["--iterations", "-3"], "--iterations -3: must be >= 1"),
    ],
)
def test_bad_arguments_are_one_line_and_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], argv: list[str],
                                                       message: str) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo_out"
    assert cli_main(["demo", "-o", str(out), *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nnunet-se demo: error:") and message in err
    assert not out.exists()


def test_refuses_to_replace_a_folder_that_is_not_a_demo_output(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert cli_main(["demo", "--profile", "quick", "-o", str(out)]) == 1
    assert "exists and is not a demo output" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me" and not (out / MARKER).exists()


def test_profiles_meet_the_study_design(tmp_path: Path) -> None:
    """cpu: plain U-Net + cSE + Mono, >= 3 folds on the CPU; gpu: plain + one trainer per module, 5 folds, CUDA;
    every profile starts with the plain U-Net (Table I's baseline, no gates to capture)."""
    from nnunet_se.modules import available_recalibrations
    from nnunet_se.trainers import PAPER_TRAINERS
    from nnunet_se.workflow.demo_trainers import DEMO_TRAINERS

    classes = {**PAPER_TRAINERS, **DEMO_TRAINERS}
    cpu, gpu = PROFILES["cpu"], PROFILES["gpu"]
    assert {classes[t].recalibration for t in cpu.trainers} == {None, "cse", "mono"}
    assert cpu.folds >= 3 and cpu.device == "cpu"
    assert {classes[t].recalibration for t in gpu.trainers} == {None, *available_recalibrations()}
    assert gpu.folds == 5 and gpu.device == "cuda" and set(gpu.trainers) <= set(PAPER_TRAINERS)
    assert all(classes[p.trainers[0]].recalibration is None for p in PROFILES.values())
    args = build_parser("demo").parse_args(["-o", str(tmp_path / "o"), "--profile", "gpu", "--device", "cpu",
                                            "--epochs", "3"])
    profile = check_args(args)
    assert (profile.device, profile.epochs, profile.trainers) == ("cpu", 3, gpu.trainers)
    assert build_parser("demo").parse_args([]).profile == "cpu"  # what `make demo` runs


def test_demo_trainers_differ_from_the_paper_trainers_only_in_learning_rate_and_plotting() -> None:
    import pickle

    from nnunet_se.trainers import PAPER_TRAINERS
    from nnunet_se.workflow.demo_trainers import DEMO_TRAINERS

    assert set(DEMO_TRAINERS) == {f"{name}_demo" for name in PAPER_TRAINERS}
    for name, cls in DEMO_TRAINERS.items():
        base = PAPER_TRAINERS[name.removesuffix("_demo")]
        assert cls.__bases__ == (base,)
        assert {k for k in vars(cls) if not k.startswith("__")} == {"learning_rate", "progress_plot_every", "baseline"}
        assert cls.learning_rate == 10 * base.learning_rate == pytest.approx(1e-3)
        assert base.progress_plot_every == 1 and cls.progress_plot_every is None  # progress.png at the end only
        assert pickle.loads(pickle.dumps(cls)) is cls  # nnU-Net's lookup and worker processes find it by name


def test_batch_runs_each_console_script_as_its_own_command_line() -> None:
    """Two command lines in one process print what the two commands print when run on their own, in order."""
    commands = [["nnunet-se", "env"], ["nnunet-se", "env", "--fish"]]
    batch = subprocess.run([sys.executable, "-m", "nnunet_se.workflow.demo_runs", json.dumps(commands)],
                           capture_output=True, text=True, check=True)
    alone = [subprocess.run([BIN / c[0], *c[1:]], capture_output=True, text=True, check=True).stdout.strip()
             for c in commands]
    lines = [line for line in batch.stdout.splitlines() if not line.startswith("nnunet-se demo batch:")]
    assert lines == alone


def test_batch_stops_at_a_failing_command_with_its_exit_code() -> None:
    commands = [["nnunet-se", "env", "--no-such-option"], ["nnunet-se", "env"]]
    result = subprocess.run([sys.executable, "-m", "nnunet_se.workflow.demo_runs", json.dumps(commands)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "export" not in result.stdout  # argparse's exit code; the second never ran
    missing = subprocess.run([sys.executable, "-m", "nnunet_se.workflow.demo_runs", json.dumps([["no_such_script"]])],
                             capture_output=True, text=True)
    assert missing.returncode == 1 and "'no_such_script' is not an installed console script" in missing.stderr


def test_parallel_workers_run_every_unit_once_into_its_own_log(tmp_path: Path) -> None:
    """5 units over 2 workers: each unit's log holds its two commands' output once, in order; nothing is left of
    the claims."""
    from nnunet_se.workflow.demo_runs import Pipeline, StageRecord, Unit

    pipeline = Pipeline(tmp_path, "cpu", 0, total_stages=1)
    alone = subprocess.run([BIN / "nnunet-se", "env", "--fish"], capture_output=True, text=True,
                           check=True).stdout.strip()
    units = [Unit(f"unit_{i}", [["nnunet-se", "env", "--fish"], ["nnunet-se", "env", "--fish"]]) for i in range(5)]
    record = StageRecord("parallel", 0.0)
    pipeline.run_parallel(record, units, "par", workers=2)
    for i in range(5):
        text = (tmp_path / "logs" / f"unit_{i}.log").read_text()
        assert text.count(alone) == 2 and text.count("$ nnunet-se env --fish") == 2, text
    assert record.commands == ["nnunet-se env --fish"] * 10 and "in 2 parallel processes" in record.note
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [
        "par_worker0.log", "par_worker1.log", *(f"unit_{i}.log" for i in range(5))]


def test_parallel_failure_is_one_line_naming_the_unit_log(tmp_path: Path) -> None:
    from nnunet_se.errors import UserError
    from nnunet_se.workflow.demo_runs import Pipeline, StageRecord, Unit

    pipeline = Pipeline(tmp_path, "cpu", 0, total_stages=1)
    units = [Unit("good", [["nnunet-se", "env"]]), Unit("bad", [["nnunet-se", "env", "--no-such-option"]])]
    with pytest.raises(UserError) as error:
        pipeline.run_parallel(StageRecord("parallel", 0.0), units, "par", workers=2)
    message = str(error.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'logs' / 'bad.log'}: 'nnunet-se' failed (exit 2)")
    assert "unrecognized arguments: --no-such-option" in message


def test_test_set_dice_is_the_case_mean(tmp_path: Path) -> None:
    """Case a: 16-pixel square vs the same square shifted by 2 columns: overlap 8, Dice 2*8/32 = 0.5; case b: 1."""
    labels, predictions = tmp_path / "labels", tmp_path / "pred"
    labels.mkdir()
    predictions.mkdir()
    square = np.zeros((8, 8), np.uint8)
    square[2:6, 2:6] = 1
    for name, reference, predicted in (("a", square, np.roll(square, 2, axis=1)), ("b", square, square)):
        Image.fromarray(reference).save(labels / f"{name}.png")
        Image.fromarray(predicted).save(predictions / f"{name}.png")
    assert score_test_set(labels, predictions) == pytest.approx(0.75)


def test_fold_summary_is_mean_sample_sd_and_range() -> None:
    assert ModelScores.summary({0: 0.8, 1: 0.9, 2: 1.0}) == "0.900 ± 0.100 (0.800-1.000)"
    assert ModelScores.summary({}) == "-"


def test_significance_reading_follows_the_p_values(tmp_path: Path) -> None:
    table = tmp_path / "table.json"
    base = "nnUNetTrainerPaper__nnUNetPlans__2d"
    entries = [{"model": base, "trainer": "nnUNetTrainerPaper", "baseline": None, "mean": 90.0, "std": 1.0},
               {"model": "M__nnUNetPlans__2d", "trainer": "M", "baseline": base, "mean": 92.0, "std": 0.5,
                "p_nadeau_bengio": 0.01, "p_wilcoxon_holm": 0.2},
               {"model": "W__nnUNetPlans__2d", "trainer": "W", "baseline": base, "mean": 91.0, "std": 3.0,
                "p_nadeau_bengio": 0.3, "p_wilcoxon_holm": 0.008},
               {"model": "N__nnUNetPlans__2d", "trainer": "N", "baseline": base, "mean": 89.0, "std": 2.0,
                "p_nadeau_bengio": 0.4, "p_wilcoxon_holm": None}]  # the table writes NaN as null
    table.write_text(json.dumps({"entries": entries}))
    lines = significance_lines(table, folds=3)
    assert lines[0].startswith("- M: 92.0 ± 0.5 % against nnUNetTrainerPaper's 90.0 %: significant over the folds")
    assert ": not significant over the folds" in lines[1] and "Wilcoxon (Holm) p = 0.008 (these trained" in lines[1]
    assert "not significant" in lines[2] and "t-test p = 0.4)" in lines[2] and "Wilcoxon (Holm) p = -." in lines[2]
    assert "2 degrees of freedom" in lines[-1]


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_quick_demo_writes_a_report_with_folds_curves_table_and_figures(tmp_path: Path) -> None:
    """The real pipeline (nnU-Net CLI, analysis CLI) at test size; the report links files that exist."""
    out = tmp_path / "demo_output"
    result = subprocess.run([BIN / "nnunet-se", "demo", "--profile", "quick", "-o", str(out)], capture_output=True,
                            text=True, timeout=900, env={**os.environ, "MPLBACKEND": "Agg"})
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    report = out / "report.md"
    assert f"report: {report}" in result.stdout
    stages = re.findall(r"^\[(\d+)/(\d+)\] ", result.stdout, flags=re.M)
    assert [int(i) for i, _ in stages] == list(range(1, int(stages[0][1]) + 1)), "one progress line per stage"
    text = report.read_text()
    table = text.split("## Table I", 1)[1].split("\n## ", 1)[0]
    assert "nnUNetTrainerPaperMono" in table and re.search(r"^\|.*\|$", table, flags=re.M), table
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert any(link.startswith("analysis/pca/") for link in links), text
    assert any(link.startswith("analysis/responses/") for link in links), text
    assert {"figures/examples.png", "figures/learning_curves.png", "figures/dice_per_fold.png"} <= set(links)
    for link in links:
        assert (out / link).is_file() and (out / link).stat().st_size > 1000, link
    for log in (out / "logs").glob("*.log"):  # the demo's own commands speak the current grammar
        assert "is deprecated, use" not in log.read_text(errors="replace"), log
    folds = PROFILES["quick"].folds
    for trainer in PROFILES["quick"].trainers:
        model = out / "nnUNet_results" / "Dataset999_NnunetSeDemo" / f"{trainer}__nnUNetPlans__2d"
        assert all((model / f"fold_{f}" / "validation" / "summary.json").is_file() for f in range(folds))
        assert len(list((out / "predictions" / trainer).glob("fold_*/test_*.png"))) == folds * PROFILES["quick"].n_test
        assert re.search(rf"^\| {trainer} \| [\d.]+ ± [\d.]+ \([\d.]+-[\d.]+\) \| [\d.]+ ± ", text, flags=re.M)
    assert f"nnUNetv2_train 999 2d {folds - 1} -tr nnUNetTrainerPaperMono" in text  # the stock command lines

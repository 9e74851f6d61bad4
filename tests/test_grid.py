"""``nnunet-se grid``: manifest, sh / SLURM / JSON output on fixture result folders.

No SLURM here: the batch file is checked with a small ``#SBATCH`` parser (sbatch's own rules: directives before the
first command, long options with values), ``bash -n``, and by running it per array index with
``NNUNET_SE_DRY_RUN=1`` (prints the nnU-Net command instead of running it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from nnunet_se.cli import main as cli_main
from nnunet_se.errors import UserError
from nnunet_se.layout import Dataset, resolve_datasets, shim_folder
from nnunet_se.trainer_registry import families
from nnunet_se.workflow.matrix import build_manifest

DATASETS = {601: "Dataset601_KvasirSEG", 602: "Dataset602_BUSI", 603: "Dataset603_ISIC2018"}
TRAINED = "nnUNetTrainerPaper"


def write_fold(results: Path, dataset: str, trainer: str, fold: int, files: tuple[str, ...], dice: float = 0.8,
               plans: str = "nnUNetPlans", configuration: str = "2d") -> Path:
    """A ``fold_k`` folder of nnU-Net's results layout holding ``files`` (``validation/summary.json``: fold Dice
    ``dice``, one case with that Dice)."""
    folder = results / dataset / f"{trainer}__{plans}__{configuration}" / f"fold_{fold}"
    folder.mkdir(parents=True, exist_ok=True)
    for name in files:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("summary.json"):
            case = {"reference_file": "case_0.png", "metrics": {"1": {"Dice": dice, "n_ref": 10}}}
            path.write_text(json.dumps({"foreground_mean": {"Dice": dice}, "mean": {"1": {"Dice": dice}},
                                        "metric_per_case": [case]}))
        else:
            path.write_bytes(b"checkpoint")
    return folder


FINISHED = ("checkpoint_final.pth", "validation/summary.json")


def write_splits(preprocessed: Path, dataset: str, folds: int) -> Path:
    """``splits_final.json`` with ``folds`` folds (one case each) in nnU-Net's format."""
    (preprocessed / dataset).mkdir(parents=True, exist_ok=True)
    path = preprocessed / dataset / "splits_final.json"
    path.write_text(json.dumps([{"train": [f"case_{i}"], "val": [f"case_{i + 1}"]} for i in range(folds)]))
    return path


@pytest.fixture
def nnunet_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """nnU-Net roots with datasets 601 (raw), 602 (preprocessed, 10-fold splits), 603 (results); Paper fold 0 of
    601 finished, fold 1 running."""
    roots = {name: tmp_path / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for name, path in roots.items():
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    (roots["nnUNet_raw"] / DATASETS[601]).mkdir()
    write_splits(roots["nnUNet_preprocessed"], DATASETS[602], 10)
    (roots["nnUNet_results"] / DATASETS[603]).mkdir()
    write_fold(roots["nnUNet_results"], DATASETS[601], TRAINED, 0, FINISHED)
    write_fold(roots["nnUNet_results"], DATASETS[601], TRAINED, 1, ("checkpoint_latest.pth",))
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    monkeypatch.chdir(tmp_path)
    return roots


def run_grid(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main(["grid", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_script(path: Path, results: Path, **env: str) -> subprocess.CompletedProcess:
    """Run a generated script in dry-run mode (prints ``nnUNetv2_train ...`` lines instead of training)."""
    full_env = {**os.environ, "NNUNET_SE_DRY_RUN": "1", "nnUNet_results": str(results), **env}
    return subprocess.run(["bash", str(path)], capture_output=True, text=True, env=full_env, timeout=60)


def train_commands(stdout: str) -> list[tuple[int, str, int]]:
    """(dataset id, trainer, fold) of every printed ``nnUNetv2_train`` command."""
    jobs = []
    for line in stdout.splitlines():
        if line.startswith("nnUNetv2_train "):
            words = line.split()
            assert words[2] == "2d" and words[words.index("-p") + 1] == "nnUNetPlans" and words[-1] == "--c", line
            jobs.append((int(words[1]), words[words.index("-tr") + 1], int(words[3])))
    return jobs


# --- sbatch directive parser (the rules sbatch applies to a batch script) ---------------------------------------

SBATCH_VALUE_OPTIONS = {
    "job-name": r"[A-Za-z0-9_.\-]+",
    "array": r"\d+-\d+(%\d+)?",
    "output": r"\S+",
    "time": r"(\d+-)?\d+(:\d{1,2}){0,2}",
    "cpus-per-task": r"\d+",
    "gpus": r"\d+",
    "partition": r"[A-Za-z0-9_,\-]+",
    "open-mode": r"append|truncate",
    "signal": r"(B:)?[A-Z0-9]+(@\d+)?",
    "mem": r"\d+[KMGT]?",
    "account": r"\S+",
}
SBATCH_FLAGS = {"requeue"}


def parse_sbatch(text: str) -> dict[str, str]:
    """``#SBATCH`` directives of a batch script as {option: value}; asserts sbatch would accept each one.

    sbatch reads directives only before the first line that is neither blank nor a comment.
    """
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    directives: dict[str, str] = {}
    first_command = next(i for i, line in enumerate(lines) if line.strip() and not line.startswith("#"))
    assert not any(line.startswith("#SBATCH") for line in lines[first_command:]), "sbatch ignores these"
    for line in lines[1:first_command]:
        if not line.startswith("#SBATCH"):
            continue
        match = re.fullmatch(r"#SBATCH --([a-z\-]+)(?:=(\S+))?", line)
        assert match, f"malformed directive: {line}"
        option, value = match.groups()
        assert option not in directives, f"duplicate directive: {line}"
        if option in SBATCH_FLAGS:
            assert value is None, line
        else:
            assert option in SBATCH_VALUE_OPTIONS, f"unknown sbatch option: {line}"
            assert value is not None and re.fullmatch(SBATCH_VALUE_OPTIONS[option], value), line
        directives[option] = value or ""
    return directives


# --- matrix -----------------------------------------------------------------------------------------------------


def test_resolve_datasets_from_each_root(nnunet_dirs: dict[str, Path]) -> None:
    got = resolve_datasets(["601", "602", "Dataset603_ISIC2018"], nnunet_dirs)
    assert got == [Dataset(i, n) for i, n in DATASETS.items()]


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("604", "no Dataset604_\\* folder"),
        ("1000", "expected a dataset id"),
        ("Dataset601_Other", "dataset id 601 is Dataset601_KvasirSEG"),
    ],
)
def test_resolve_datasets_errors(nnunet_dirs: dict[str, Path], token: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        resolve_datasets([token], nnunet_dirs)


def test_conflicting_dataset_names_are_an_error(nnunet_dirs: dict[str, Path]) -> None:
    (nnunet_dirs["nnUNet_results"] / "Dataset601_Renamed").mkdir()
    with pytest.raises(UserError, match="dataset id 601 is also named"):
        resolve_datasets(["601"], nnunet_dirs)


def test_full_paper_manifest_is_complete_and_distinct() -> None:
    datasets = [Dataset(i, n) for i, n in DATASETS.items()]
    paper = families()["paper"]
    jobs = build_manifest(datasets, paper, range(10))
    keys = [(j.dataset.id, j.trainer, j.fold) for j in jobs]
    assert len(keys) == 3 * len(paper) * 10 == len(set(keys))
    assert keys[0] == (601, "nnUNetTrainerPaper", 0) and keys[-1] == (603, paper[-1], 9)


# --- formats ----------------------------------------------------------------------------------------------------


def test_sh_skips_finished_and_resumes_the_rest(nnunet_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                tmp_path: Path) -> None:
    code, script, err = run_grid(capsys, "--datasets", "601", "602", "--trainers", TRAINED, "nnUNetTrainerMono",
                                 "--folds", "0-2")
    assert code == 0 and "11 jobs (1 finished folds skipped)" in err
    path = tmp_path / "jobs.sh"
    path.write_text(script)
    result = run_script(path, nnunet_dirs["nnUNet_results"])
    assert result.returncode == 0, result.stderr
    expected = [(d, t, f) for d in (601, 602) for t in (TRAINED, "nnUNetTrainerMono") for f in range(3)]
    assert train_commands(result.stdout) == [job for job in expected if job != (601, TRAINED, 0)]
    # a fold that finishes after the script was written is skipped when the script runs
    write_fold(nnunet_dirs["nnUNet_results"], DATASETS[602], TRAINED, 2, FINISHED)
    result = run_script(path, nnunet_dirs["nnUNet_results"])
    assert (602, TRAINED, 2) not in train_commands(result.stdout)
    assert "Dataset602_BUSI nnUNetTrainerPaper fold 2 finished, skipping" in result.stdout
    assert f"export nnUNet_extTrainer={shim_folder()}" in script


def test_slurm_array_maps_every_index_to_a_distinct_job(nnunet_dirs: dict[str, Path],
                                                        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for dataset in (DATASETS[601], DATASETS[603]):
        write_splits(nnunet_dirs["nnUNet_preprocessed"], dataset, 10)
    paper = families()["paper"]
    n = 3 * len(paper) * 10
    code, script, _ = run_grid(capsys, "-d", "601", "602", "603", "-tr", "paper", "-f", "0-9",
                               "--all", "--format", "slurm", "--slurm-partition", "gpu", "--slurm-time", "2-00:00:00",
                               "--slurm-max-parallel", "16", "--slurm-extra=--mem=64G --account=lab")
    assert code == 0
    directives = parse_sbatch(script)
    assert directives["array"] == f"0-{n - 1}%16"
    assert directives["partition"] == "gpu" and directives["time"] == "2-00:00:00" and directives["gpus"] == "1"
    assert directives["mem"] == "64G" and directives["account"] == "lab" and "requeue" in directives
    assert 'export nnUNet_n_proc_DA="${nnUNet_n_proc_DA:-${SLURM_CPUS_PER_TASK:-8}}"' in script
    log_dir = Path(directives["output"]).parent
    assert log_dir == tmp_path / "nnunet-se-logs" and log_dir.is_dir()
    assert re.search(r"%A_%a", directives["output"]), "per-job logs need the array job and task ids"
    path = tmp_path / "jobs.sbatch"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    seen: list[tuple[int, str, int]] = []
    for index in range(n):
        result = run_script(path, nnunet_dirs["nnUNet_results"], SLURM_ARRAY_TASK_ID=str(index))
        assert result.returncode == 0, result.stderr
        seen += train_commands(result.stdout) or [("finished", index)]  # type: ignore[list-item]
    expected = [(d, t, f) for d in DATASETS for t in paper for f in range(10)]
    assert seen == [job if job != (601, TRAINED, 0) else ("finished", 0) for job in expected]
    outside = run_script(path, nnunet_dirs["nnUNet_results"], SLURM_ARRAY_TASK_ID=str(n))
    assert outside.returncode == 1 and "outside the manifest" in outside.stderr


def test_json_manifest(nnunet_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_grid(capsys, "--datasets", "601", "--trainers", TRAINED, "--folds", "0-2", "--all",
                            "--format", "json", "--device", "cpu")
    assert code == 0
    manifest = json.loads(out)
    assert manifest["version"] == 1
    assert [(j["index"], j["fold"], j["state"]) for j in manifest["jobs"]] == [
        (0, 0, "finished"), (1, 1, "running"), (2, 2, "missing")]
    assert manifest["jobs"][2]["command"] == shlex.split(
        "nnUNetv2_train 601 2d 2 -tr nnUNetTrainerPaper -p nnUNetPlans -device cpu --c")
    assert manifest["jobs"][0]["model_dir"] == "Dataset601_KvasirSEG/nnUNetTrainerPaper__nnUNetPlans__2d"


def test_output_file_is_written_executable(nnunet_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                           tmp_path: Path) -> None:
    target = tmp_path / "grid.sh"
    code, out, _ = run_grid(capsys, "--datasets", "602", "--folds", "0", "-o", str(target))
    assert code == 0 and out == ""
    assert target.read_text().startswith("#!/bin/bash") and os.access(target, os.X_OK)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--datasets", "601", "--trainers", TRAINED, "--folds", "0", "--format", "slurm"], "nothing to run"),
        (["--datasets", "601", "--format", "slurm", "--slurm-time", "1 day"], "--slurm-time '1 day'"),
        (["--datasets", "601", "--format", "slurm", "--slurm-extra", "mem"], "--slurm-extra mem:"),
        (["--datasets", "601", "--format", "slurm", "--slurm-logs", "my logs"], "cannot contain spaces"),
        (["--datasets", "609"], "-d/--datasets 609: no Dataset609_"),
        (["-d", "601", "-f", "7"], "-f/--folds 7: not a fold of Dataset601_KvasirSEG"),
        (["-d", "601", "-o", "."], "-o .: is a folder; give a file name (grid writes one file)"),
        (["-d", "601", "-tr", "papr"], "-tr/--trainers papr: unknown trainer or family; did you mean paper?"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(nnunet_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path, argv: list[str], message: str) -> None:
    code, out, err = run_grid(capsys, *argv)
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and err.startswith("nnunet-se grid: error:") and message in err
    assert not (tmp_path / "nnunet-se-logs").exists()


@pytest.mark.parametrize(("folds", "message"), [(["x"], "-f/--folds x: expected fold numbers"),
                                               (["all", "3"], "-f/--folds all 3: 'all' stands alone")])
def test_bad_fold_syntax_is_a_usage_error(nnunet_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                          folds: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as exc:
        run_grid(capsys, "-d", "601", "-f", *folds)
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.startswith("usage: nnunet-se grid") and message in err.splitlines()[-1]


def test_folds_all_is_every_fold_of_each_split(nnunet_dirs: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """``-f all`` (the default): 601 has no splits_final.json (nnU-Net's default 0-4, with a warning), 602 ten folds."""
    code, out, err = run_grid(capsys, "-d", "601", "602", "-tr", TRAINED, "-f", "all", "--all", "--format", "json")
    assert code == 0
    assert [(j["dataset_id"], j["fold"]) for j in json.loads(out)["jobs"]] == [(601, f) for f in range(5)] + [
        (602, f) for f in range(10)]
    assert "warning: no splits_final.json in" in err and "Dataset601_KvasirSEG has 5 folds; assuming folds 0-4" in err
    assert run_grid(capsys, "-d", "601", "602", "-tr", TRAINED, "--all", "--format", "json")[1] == out


def test_summary_without_checkpoints_is_not_rescheduled(nnunet_dirs: dict[str, Path],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """A finished fold whose checkpoints were deleted to save space stays finished: ``--c`` would retrain it."""
    folder = write_fold(nnunet_dirs["nnUNet_results"], DATASETS[602], TRAINED, 3, FINISHED)
    (folder / "checkpoint_final.pth").unlink()
    code, out, _ = run_grid(capsys, "-d", "602", "-tr", TRAINED, "-f", "2-3", "--all", "--format", "json")
    assert [(j["fold"], j["state"]) for j in json.loads(out)["jobs"]] == [(2, "missing"), (3, "finished")]


def test_results_folder_must_be_set(nnunet_dirs: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("nnUNet_results")
    code, _, err = run_grid(capsys, "--datasets", "601")
    assert code == 1 and "nnUNet_results is not set" in err

"""Adversarial inputs for ``nnunet-se grid`` and ``nnunet-se status``: one row per case and per class of
input it stands for (empty, huge, negative, multi-line, shell metacharacters, output onto an input, missing or
unwritable output folder, folds outside the split, unknown names).

Every error row checks the exit code, the single ``<prog>: error: ...`` line and its fragments, that no traceback
appears, and that nnU-Net's three folders and the working folder (where a script or log folder would land) are
byte-for-byte unchanged. The script rows run generated scripts with ``bash -n`` and for real, with a fake
``nnUNetv2_train`` on PATH that records its arguments. ``status`` with a NaN fold (n, strict JSON) is tested in
``tests/test_status.py::test_nan_fold_is_not_counted_and_json_stays_valid``; the exit codes of ``run_cli`` per
failure class (OS errors, broken pipe, interrupt, internal error) in ``tests/test_cli.py``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_harness import assert_one_line_error, call_main, tree_digest
from test_grid import FINISHED, write_fold, write_splits

from nnunet_se.cli import main as cli_main
from nnunet_se.workflow.grid_script import shell_word

FIVE, TEN, NOSPLIT = "Dataset601_Five", "Dataset602_Ten", "Dataset603_NoSplit"
PAPER = "nnUNetTrainerPaper"
INJECT = "touch INJECTED #"  # a payload that creates ./INJECTED if any value escapes its quoting


@dataclass(frozen=True)
class Case:
    """``nnunet-se <argv>`` (``{tmp}`` is the test's folder) must fail with ``code`` and a line holding
    ``fragments``; ``env`` overrides variables (None unsets)."""

    name: str
    argv: tuple[str, ...]
    fragments: tuple[str, ...]
    code: int = 1
    env: dict[str, str | None] = field(default_factory=dict)


GRID = ("grid", "--datasets", "601", "--trainers", PAPER)
SLURM = (*GRID, "--format", "slurm")
STATUS = ("status", "--datasets", "601")

CASES = [
    # --- values that would reach a script: strict names at the parser -------------------------------------------
    Case("config-newline-injection", (*GRID, "-c", f"2d\n{INJECT}"), ("-c '2d\\ntouch INJECTED #'", "expected a name")),
    Case("config-space-shifts-fields", (*GRID, "-c", "2d extra"), ("-c '2d extra'", "expected a name")),
    Case("config-empty", (*GRID, "-c", ""), ("-c ''", "expected a name")),
    Case("config-option-like", (*GRID, "--configuration=-2d"), ("-c -2d",)),
    Case("config-huge", (*GRID, "-c", "a" * 10_000), ("(10000 characters)", "at most 100 characters")),
    Case("plans-command-substitution", (*GRID, "-p", "$(touch INJECTED)"), ("-p '$(touch INJECTED)'",)),
    Case("plans-path-traversal", (*GRID, "-p", "../../elsewhere"), ("-p ../../elsewhere",)),
    Case("plans-trailing-newline", (*GRID, "-p", "nnUNetPlans\n"), ("-p 'nnUNetPlans\\n'",)),
    Case("slurm-time-newline-directive", (*SLURM, "--slurm-time", "24:00:00\n#SBATCH --uid=0"), ("--slurm-time",)),
    Case("slurm-partition-metachar", (*SLURM, "--slurm-partition", "gpu;touch INJECTED"), ("--slurm-partition",)),
    Case("slurm-job-name-space", (*SLURM, "--slurm-job-name", "a b"), ("--slurm-job-name 'a b'",)),
    Case("slurm-extra-newline", (*SLURM, "--slurm-extra", f"--mem=1G\n{INJECT}"), ("--slurm-extra touch",)),
    Case("slurm-extra-quoted-newline", (*SLURM, "--slurm-extra", "'--mem=1G\ntouch'"), ("--slurm-extra",)),
    Case("slurm-extra-unclosed-quote", (*SLURM, "--slurm-extra", "'--mem=1G"), ("--slurm-extra", "quotation")),
    Case("slurm-logs-newline", (*SLURM, "--slurm-logs", f"logs\n{INJECT}"), ("--slurm-logs", "line breaks")),
    Case("slurm-extra-overrides-array", (*SLURM, "--slurm-extra=--array=0-3"), ("--slurm-extra --array=0-3: set by",)),
    Case("slurm-extra-overrides-output", (*SLURM, "--slurm-extra=-o /tmp/x"), ("--slurm-extra -o: set by",)),
    Case("slurm-negative-cpus", (*SLURM, "--slurm-cpus", "-1"), ("--slurm-cpus must be >= 1",)),
    Case("slurm-zero-parallel", (*SLURM, "--slurm-max-parallel", "0"), ("--slurm-max-parallel",)),
    # --- names: unknown trainers and families list the known ones ------------------------------------------------
    Case("trainer-unknown", ("grid", "--datasets", "601", "--trainers", "nnUNetTrainerFoo"),
         ("--trainers nnUNetTrainerFoo: unknown trainer or family", "families: auto, original, paper",
          "nnUNetTrainerPaperMono", "nnUNetTrainerSCSE_original")),
    Case("family-typo", ("grid", "--datasets", "601", "--trainers", "papr"), ("did you mean paper?",)),
    Case("trainer-empty", ("grid", "--datasets", "601", "--trainers", ""), ("--trainers '': unknown",)),
    Case("trainer-huge", ("grid", "--datasets", "601", "--trainers", "nnUNetTrainer" + "x" * 100_000),
         ("(100013 characters): unknown trainer",)),
    Case("trainer-trailing-newline", ("grid", "--datasets", "601", "--trainers", f"{PAPER}\n"),
         (f"--trainers '{PAPER}\\n': unknown",)),
    Case("status-trainer-unknown", (*STATUS, "--trainers", "nnUNetTrainerPaperMonoo"),
         ("did you mean nnUNetTrainerPaperMono?",)),
    # --- datasets --------------------------------------------------------------------------------------------
    Case("dataset-empty", ("grid", "--datasets", ""), ("--datasets '': expected a dataset id",)),
    Case("dataset-zero", ("grid", "--datasets", "0"), ("--datasets 0: expected a dataset id (1-999)",)),
    Case("dataset-negative", ("grid", "--datasets=-601"), ("--datasets -601: expected",)),
    Case("dataset-huge-number", ("grid", "--datasets", "9" * 5000), ("(5000 characters)",)),
    Case("dataset-unicode-digits", ("grid", "--datasets", "\u0666\u0660\u0661"), ("expected a dataset id",)),
    Case("dataset-twice", ("grid", "--datasets", "601", FIVE), ("a dataset is named twice",)),
    Case("dataset-name-newline", ("grid", "--datasets", f"{FIVE}\n"), ("expected a dataset id",)),
    # --- folds against splits_final.json -------------------------------------------------------------------
    Case("folds-beyond-5-fold-split", (*GRID, "--folds", "5-9"),
         ("--folds 5-9: not a fold of Dataset601_Five", "{tmp}/preprocessed/Dataset601_Five/splits_final.json has 5 "
          "folds, 0-4", "random split")),
    Case("folds-beyond-split-of-second-dataset", ("grid", "--datasets", "602", "601", "--folds", "0-9"),
         ("--folds 5-9: not a fold of Dataset601_Five",)),
    Case("folds-beyond-default-without-splits", ("grid", "--datasets", "603", "--folds", "4-6"),
         ("--folds 5-6: not a fold of Dataset603_NoSplit (no splits_final.json in "
          "{tmp}/preprocessed/Dataset603_NoSplit or {tmp}/raw/Dataset603_NoSplit yet, and nnU-Net's default split of "
          "Dataset603_NoSplit has 5 folds, 0-4)",)),
    Case("folds-without-nnunet-folders", (*GRID, "--folds", "7"), ("neither nnUNet_preprocessed nor nnUNet_raw",),
         env={"nnUNet_preprocessed": None, "nnUNet_raw": None}),
    Case("folds-beyond-raw-split-before-planning", ("grid", "--datasets", "607", "--folds", "3"),
         ("--folds 3: not a fold of Dataset607_RawOnly ({tmp}/raw/Dataset607_RawOnly/splits_final.json has 3 folds",)),
    # fold syntax is checked by the parser (cli_options.parse_folds): a usage error, exit 2
    Case("folds-huge-range", (*GRID, "--folds", "0-99999999"), ("--folds 0-99999999: fold 99999999 is too large",),
         code=2),
    Case("folds-huge-digits", (*GRID, "--folds", "1" * 5000), ("--folds 1111", "(5000 characters)"), code=2),
    Case("folds-negative", (*GRID, "--folds", "-1"), ("--folds -1: expected fold numbers",), code=2),
    Case("folds-empty", (*GRID, "--folds", ""), ("--folds '': expected",), code=2),
    Case("folds-multiline", (*GRID, "--folds", "0\n1"), ("--folds '0\\n1'",), code=2),
    Case("folds-reversed", (*GRID, "--folds", "4-1"), ("range 4-1 is empty",), code=2),
    Case("folds-word", (*GRID, "-f", "one"), ("-f/--folds one: expected fold numbers or ranges", "or all"), code=2),
    Case("folds-double-dash-range", (*GRID, "-f", "0--4"), ("-f/--folds 0--4: expected",), code=2),
    Case("folds-unicode-digit", (*GRID, "-f", "\u0661"), ("-f/--folds \u0661: expected",), code=2),
    Case("folds-all-with-more", (*GRID, "-f", "all", "3"), ("-f/--folds all 3: 'all' stands alone",), code=2),
    Case("folds-all-in-a-list", (*GRID, "-f", "all,3"), ("-f/--folds all,3: expected",), code=2),
    Case("folds-all-uppercase", (*GRID, "-f", "ALL"), ("-f/--folds ALL: expected",), code=2),
    Case("folds-missing-value", (*GRID, "-f"), ("-f/--folds: expected at least one argument",), code=2),
    Case("status-folds-beyond-split", (*STATUS, "--folds", "0-9"), ("--folds 5-9: not a fold of Dataset601_Five",)),
    Case("status-folds-huge", (*STATUS, "--folds", "0-99999999"), ("too large",), code=2),
    Case("folds-all-with-broken-splits", ("grid", "-d", "606", "-f", "all"),
         ("Dataset606_BrokenSplits/splits_final.json: not a splits",)),
    Case("status-folds-all-with-broken-splits", ("status", "-d", "604", "-f", "all"),
         ("Dataset604_BadSplits/splits_final.json: not a splits file",)),
    Case("splits-not-a-list", ("grid", "--datasets", "604"),
         ("Dataset604_BadSplits/splits_final.json: not a splits file (expected a non-empty list",)),
    Case("splits-empty-list", ("grid", "--datasets", "605"), ("Dataset605_EmptySplits/splits_final.json",)),
    Case("splits-not-json", ("grid", "--datasets", "606"),
         ("Dataset606_BrokenSplits/splits_final.json: not a splits",)),
    # --- outputs -------------------------------------------------------------------------------------------
    Case("output-is-folder", (*GRID, "-o", "{tmp}/work"), ("is a folder",)),
    Case("output-in-missing-folder", (*GRID, "-o", "{tmp}/work/missing/run.sh"), ("the folder", "does not exist")),
    Case("output-onto-an-input", (*GRID, "-o", "{tmp}/preprocessed/Dataset601_Five/splits_final.json"),
         ("inside nnUNet_preprocessed",)),
    Case("output-into-results", (*GRID, "-o", "{tmp}/results/run.sh"), ("inside nnUNet_results",)),
    Case("output-unwritable", (*GRID, "-o", "{unwritable}/run.sh"), ("cannot write",)),
    Case("slurm-logs-is-a-file", (*SLURM, "--slurm-logs", "{tmp}/work/afile"), ("exists and is not a folder",)),
    Case("output-is-the-log-folder", (*SLURM, "-o", "{tmp}/work/logs", "--slurm-logs", "logs"),
         ("the same path as --slurm-logs",)),
    Case("slurm-logs-below-a-file", (*SLURM, "--slurm-logs", "{tmp}/work/afile/logs"),
         ("--slurm-logs", "cannot create the folder", "Not a directory")),
    Case("slurm-logs-backslash", (*SLURM, "--slurm-logs", "logs\\%j"), ("--slurm-logs", "backslash")),
    # --- the plugin's environment controls, inherited by every job: checked once, by grid ----------------------
    Case("seed-beyond-64-bits", GRID, ("NNUNET_SE_SEED=" + str(2**64), "from 0 to 4294967295"),
         env={"NNUNET_SE_SEED": str(2**64)}),
    Case("seed-beyond-32-bits", GRID, (f"NNUNET_SE_SEED={2**32}", "from 0 to 4294967295"),
         env={"NNUNET_SE_SEED": str(2**32)}),
    Case("seed-negative", GRID, ("NNUNET_SE_SEED=-1",), env={"NNUNET_SE_SEED": "-1"}),
    Case("seed-huge-digits", GRID, ("NNUNET_SE_SEED=1111", "(5000 characters)", "not an integer"),
         env={"NNUNET_SE_SEED": "1" * 5000}),
    Case("seed-unicode-digits", GRID, ("NNUNET_SE_SEED=\u0661", "not an integer"), env={"NNUNET_SE_SEED": "\u0661"}),
    Case("epochs-zero", GRID, ("NNUNET_SE_NUM_EPOCHS=0", ">= 1"), env={"NNUNET_SE_NUM_EPOCHS": "0"}),
    # --- environment and results ---------------------------------------------------------------------------
    Case("results-unset", GRID, ("nnUNet_results is not set",), env={"nnUNet_results": None}),
    Case("status-results-is-a-file", ("status",), ("nnUNet_results is not a folder",),
         env={"nnUNet_results": "{tmp}/work/afile"}),
    Case("status-dice-infinite", ("status", "--datasets", "602"), ("fold_0/validation/summary.json", "Infinity")),
    Case("status-plans-space", ("status", "-p", "a b"), ("-p 'a b'",)),
    Case("nothing-to-run", (*GRID, "--folds", "0", "--format", "sh"), ("nothing to run",)),
    Case("unknown-command", ("frobnicate",), ("unknown command 'frobnicate'",), code=2),
]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """nnU-Net roots under ``tmp_path``: 601 (5-fold splits, Paper fold 0 finished), 602 (10-fold splits, a summary
    with Dice Infinity), 603 (no splits yet), 604-606 (malformed splits), 607 (3-fold splits in raw only); the
    working folder ``work`` holds a file ``afile``."""
    roots = {"nnUNet_raw": tmp_path / "raw", "nnUNet_preprocessed": tmp_path / "preprocessed",
             "nnUNet_results": tmp_path / "results"}
    for name, path in roots.items():
        path.mkdir()
        monkeypatch.setenv(name, str(path))
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    write_splits(roots["nnUNet_preprocessed"], FIVE, 5)
    write_splits(roots["nnUNet_preprocessed"], TEN, 10)
    (roots["nnUNet_raw"] / NOSPLIT).mkdir()
    write_splits(roots["nnUNet_raw"], "Dataset607_RawOnly", 3)  # converted, not planned yet
    for name, text in (("Dataset604_BadSplits", '{"train": []}'), ("Dataset605_EmptySplits", "[]"),
                       ("Dataset606_BrokenSplits", "[{")):
        (roots["nnUNet_preprocessed"] / name).mkdir()
        (roots["nnUNet_preprocessed"] / name / "splits_final.json").write_text(text)
    write_fold(roots["nnUNet_results"], FIVE, PAPER, 0, FINISHED, dice=0.8)
    write_fold(roots["nnUNet_results"], TEN, PAPER, 0, ("checkpoint_final.pth",)).joinpath(
        "validation").mkdir()
    (roots["nnUNet_results"] / TEN / f"{PAPER}__nnUNetPlans__2d" / "fold_0" / "validation" / "summary.json").write_text(
        '{"foreground_mean": {"Dice": Infinity}, "metric_per_case": []}')
    work = tmp_path / "work"
    work.mkdir()
    (work / "afile").write_text("not a folder")
    monkeypatch.chdir(work)
    return tmp_path


def unwritable_folder(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (root ignores permission bits, so /sys then)."""
    if os.geteuid() != 0:
        folder = tmp_path / "readonly"
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        return folder
    if not Path("/sys").is_dir():
        pytest.skip("running as root without /sys: no unwritable folder")
    return Path("/sys")


def expand(value: str, tmp_path: Path) -> str:
    if "{unwritable}" in value:
        value = value.replace("{unwritable}", str(unwritable_folder(tmp_path)))
    return value.replace("{tmp}", str(tmp_path))


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_line_and_changes_nothing(world: Path, case: Case, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in case.env.items():
        if value is None:
            monkeypatch.delenv(name)
        else:
            monkeypatch.setenv(name, expand(value, world))
    argv = [expand(a, world) for a in case.argv]
    folders = [world / name for name in ("raw", "preprocessed", "results", "work")]
    before = [tree_digest(f) for f in folders]
    result = call_main(cli_main, argv, capsys)
    assert result.code == case.code
    assert_one_line_error(result, *(expand(f, world) for f in case.fragments))
    assert result.stdout == ""
    assert [tree_digest(f) for f in folders] == before
    assert not (world / "work" / "INJECTED").exists()


# --- generated scripts: no value escapes its quoting ---------------------------------------------------------------

FAKE_TRAIN = """#!/bin/bash
printf '%s\\n' "$*" >> "$NNUNET_SE_TEST_CALLS"
"""


def run_generated(script: Path, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, list[str]]:
    """``bash -n`` then run ``script`` for real with a fake ``nnUNetv2_train`` first on PATH; its calls, one line
    each."""
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "nnUNetv2_train").write_text(FAKE_TRAIN)
    (bin_dir / "nnUNetv2_train").chmod(0o755)
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    full_env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "NNUNET_SE_TEST_CALLS": str(calls),
                **env}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=full_env, timeout=60,
                            cwd=tmp_path / "work")
    return result, calls.read_text().splitlines() if calls.exists() else []


@pytest.mark.parametrize("format_", ["sh", "slurm"])
def test_hostile_paths_stay_quoted_in_scripts(world: Path, format_: str, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Legitimate but hostile file names (a newline, ``$(...)``, quotes) in ``-o`` (echoed in the header comment)
    and in ``nnUNet_results`` (exported by the script) do not run anything, and every job gets exactly its
    fields."""
    hostile = f"x'\"\n$(touch INJECTED) `touch INJECTED` {INJECT}"
    results = world / f"results{hostile}"
    (world / "results").rename(results)
    monkeypatch.setenv("nnUNet_results", str(results))
    output = world / "work" / f"run{hostile}.sh"
    extra = ["--format", "slurm", "--slurm-logs", str(world / "work" / "logs")] if format_ == "slurm" else []
    argv = [*GRID, "--folds", "0-2", "-o", str(output), *extra]
    result = call_main(cli_main, argv, capsys)
    assert result.code == 0, result.stderr
    prefix = "# nnunet-se grid: 2 jobs; re-generate with: nnunet-se "
    header = output.read_text().splitlines()[1]
    assert header.startswith(prefix)
    echo = world / "echo.sh"  # the header's command, read back by bash, is the command that was run
    echo.write_text(f"printf '%s\\0' {header[len(prefix):]}\n")
    words = subprocess.run(["bash", str(echo)], capture_output=True, cwd=world / "work", timeout=30).stdout
    assert words.decode().split("\0")[:-1] == argv
    env = {"SLURM_ARRAY_TASK_ID": "1"} if format_ == "slurm" else {}
    monkeypatch.delenv("nnUNet_results")  # the script's own export must supply it
    run, calls = run_generated(output, world, env | {"nnUNet_results": ""})
    assert run.returncode == 0, run.stderr
    expected = [f"601 2d {fold} -tr {PAPER} -p nnUNetPlans -device cuda --c" for fold in (1, 2)]
    assert calls == (expected[1:] if format_ == "slurm" else expected)
    assert not list(world.rglob("INJECTED"))


@pytest.mark.parametrize("folds", [[], ["-f", "all"]], ids=["default", "all"])
def test_missing_splits_warns_and_allows_nnunet_default_folds(world: Path, capsys: pytest.CaptureFixture[str],
                                                              folds: list[str]) -> None:
    """Without splits_final.json the grid assumes nnU-Net's default 5-fold split (0-4) and says so after writing;
    ``-f all`` is the default."""
    result = call_main(cli_main, ["grid", "--datasets", "603", "--trainers", PAPER, "--format", "json", *folds],
                       capsys)
    assert result.code == 0
    assert len(result.stderr.splitlines()) == 2  # the warning and the job count
    assert [j["fold"] for j in json.loads(result.stdout)["jobs"]] == [0, 1, 2, 3, 4]
    assert (f"warning: no splits_final.json in {world}/preprocessed/{NOSPLIT} or {world}/raw/{NOSPLIT} yet, and "
            f"nnU-Net's default split of {NOSPLIT} has 5 folds; assuming folds 0-4") in result.stderr


@pytest.mark.parametrize("argv", [
    ("grid", "--datasets", "601", "--trainers", PAPER, "--folds", "1-2", "--configuration", "2d", "--plans",
     "nnUNetPlans", "--output", "{tmp}/work/run.sh", "--device", "cpu"),
    ("status", "--datasets", "601", "--trainers", PAPER, "--folds", "0-1", "--configuration", "2d", "--plans",
     "nnUNetPlans"),
], ids=["grid", "status"])
def test_long_forms_are_the_grammar_not_deprecated(world: Path, capsys: pytest.CaptureFixture[str],
                                                   argv: tuple[str, ...]) -> None:
    """grid's and status's old long spellings are the grammar's long forms: they work and print no deprecation."""
    result = call_main(cli_main, [expand(a, world) for a in argv], capsys)
    assert result.code == 0, result.stderr
    assert "deprecated" not in result.stderr and "warning" not in result.stderr


def test_default_folds_follow_each_datasets_split(world: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --folds every dataset gets the folds of its own split: 0-4 for 601, 0-9 for 602."""
    result = call_main(cli_main, ["grid", "--datasets", "601", "602", "--trainers", PAPER, "--all", "--format",
                                  "json"], capsys)
    assert result.code == 0
    folds = [(j["dataset_id"], j["fold"]) for j in json.loads(result.stdout)["jobs"]]
    assert folds == [(601, f) for f in range(5)] + [(602, f) for f in range(10)]


@pytest.mark.parametrize("value", ["plain", "", "a b", "it's", '"$HOME"', "$(touch INJECTED)", "`id`", "a\nb",
                                   "tab\there", "back\\slash\\n", "\x1b[31m", "caf\u00e9", "\u2028", "!*?[]{};&|<>#~"])
def test_shell_word_round_trips_through_bash(value: str, tmp_path: Path) -> None:
    """bash reads ``shell_word(value)`` back as exactly ``value``, on one line, without running anything."""
    word = shell_word(value)
    assert "\n" not in word
    script = tmp_path / "w.sh"
    script.write_text(f"printf '%s' {word}\n")
    result = subprocess.run(["bash", str(script)], capture_output=True, cwd=tmp_path, timeout=30,
                            env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert result.returncode == 0 and result.stdout.decode() == value
    assert not (tmp_path / "INJECTED").exists()


def test_two_grids_racing_for_one_output_leave_one_whole_script(world: Path) -> None:
    """Two ``grid`` processes writing the same ``-o`` at once: each writes a temporary sibling and renames it, so the
    file is one whole script (either one) and no temporary file is left."""
    output = world / "work" / "run.sh"
    exe = Path(sys.executable).parent / "nnunet-se"
    procs = [subprocess.Popen([exe, *GRID, "--folds", folds, "-o", str(output)], cwd=world / "work",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for folds in ("1-2", "3-4")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0], [p.stderr.read() for p in procs]
    header = output.read_text().splitlines()[1]
    assert header.endswith(("--folds 1-2 -o " + str(output), "--folds 3-4 -o " + str(output)))
    assert sorted(p.name for p in (world / "work").iterdir()) == ["afile", "run.sh"]


# --- SLURM filename patterns: the log folder in the script is the one grid created --------------------------------

_SLURM_PATTERN = re.compile(r"%(%|\d*[AaJjNnstux])")


def slurm_expand(pattern: str, values: dict[str, str]) -> str:
    """SLURM's filename-pattern expansion as sbatch(1) documents it ("filename pattern"): ``%%`` is ``%``, ``%j``,
    ``%A``, ``%a``, ``%x``, ... (optionally zero-padded, ``%3a``) are replaced, and a backslash anywhere turns the
    expansion off (the backslashes are dropped)."""
    if "\\" in pattern:
        return pattern.replace("\\", "")

    def one(match: re.Match) -> str:
        spec = match.group(1)
        return "%" if spec == "%" else values[spec[-1]].zfill(int(spec[:-1] or 0))

    return _SLURM_PATTERN.sub(one, pattern)


@pytest.mark.parametrize("logs", ["logs_%j", "100%", "a%%b", "%x_%A_%a", "plain"])
def test_slurm_log_folder_survives_slurms_pattern_expansion(world: Path, capsys: pytest.CaptureFixture[str],
                                                           logs: str) -> None:
    """``--slurm-logs`` is a folder name, taken literally: grid creates exactly that folder and writes ``--output``
    so that SLURM's expansion of it names a file in that folder (``%`` doubled); nothing else is created."""
    script = world / "work" / "run.sbatch"
    result = call_main(cli_main, [*SLURM, "--folds", "1-2", "--slurm-logs", logs, "-o", str(script)], capsys)
    assert result.code == 0, result.stderr
    output = next(line for line in script.read_text().splitlines() if line.startswith("#SBATCH --output="))
    expanded = slurm_expand(output.removeprefix("#SBATCH --output="), {"j": "77", "A": "77", "a": "1", "x": "nnunet-se",
                                                                       "J": "77.0", "u": "me", "N": "n1", "n": "0",
                                                                       "s": "0", "t": "0"})
    folder = world / "work" / logs
    assert folder.is_dir()
    assert expanded == f"{folder}/nnunet-se_77_1.log"
    assert sorted(p.name for p in (world / "work").iterdir()) == sorted(["afile", "run.sbatch", logs])


@pytest.mark.parametrize(("pattern", "expected"), [("a%%j", "a%j"), ("a%j", "a77"), ("%3a", "001"),
                                                   ("a\\%j", "a%j")])
def test_slurm_expand_oracle_follows_the_documented_rules(pattern: str, expected: str) -> None:
    assert slurm_expand(pattern, {"j": "77", "a": "1"}) == expected


# --- NNUNET_SE_SEED: the range of what it seeds -----------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("0", 0), (str(2**32 - 1), 2**32 - 1), ("+7", 7),  # both ends of 0..2**32 - 1 (NumPy's legacy seed range)
    (str(2**32), "from 0 to 4294967295"), (str(2**64), "from 0 to 4294967295"), ("-1", "from 0 to 4294967295"),
    ("1" * 5000, "(5000 characters)"), ("\u0661", "not an integer"), ("1e3", "not an integer"), ("0x10", "not an"),
])
def test_seed_variable_range(monkeypatch: pytest.MonkeyPatch, value: str, expected: int | str) -> None:
    from nnunet_se.cli_options import MAX_SEED
    from nnunet_se.trainers.base import ENV_SEED, env_int

    monkeypatch.setenv(ENV_SEED, value)
    if isinstance(expected, int):
        assert env_int(ENV_SEED, 0, MAX_SEED) == expected
    else:
        with pytest.raises(ValueError, match=re.escape(expected)) as info:
            env_int(ENV_SEED, 0, MAX_SEED)
        assert str(info.value).startswith(f"{ENV_SEED}=") and "\n" not in str(info.value)


def test_largest_seed_seeds_every_generator_unchanged() -> None:
    """At the top of the range NumPy and torch get the seed itself (no wrap-around that would make two seeds
    collide): NumPy's stream equals a RandomState seeded independently, torch reports the seed."""
    import numpy as np
    import torch

    from nnunet_se.cli_options import MAX_SEED
    from nnunet_se.trainers.base import seed_everything

    seed_everything(MAX_SEED)
    assert np.random.random() == np.random.RandomState(MAX_SEED).random()
    assert torch.initial_seed() == MAX_SEED


# --- demo: the output it replaces never holds a source or foreign files ----------------------------------------

def _previous_demo(root: Path) -> Path:
    """An earlier demo output with a user's source folder converted from inside it."""
    from nnunet_se.workflow.demo import MARKER

    out = root / "demo"
    (out / "nnUNet_raw" / "kvasir").mkdir(parents=True)
    (out / "nnUNet_raw" / "kvasir" / "image.jpg").write_bytes(b"source image")
    (out / MARKER).write_text("nnunet-se demo output; safe to delete\n")
    (out / "report.md").write_text("old report")
    return out


DEMO_CASES = [
    ("source-inside-output", ("--source", "{tmp}/demo/nnUNet_raw/kvasir", "--source-kind", "kvasir"),
     ("--source", "nnUNet_raw/kvasir", "lies inside the demo output")),
    ("source-is-output", ("--source", "{tmp}/demo", "--source-kind", "kvasir"), ("lies inside the demo output",)),
    ("output-inside-source", ("-o", "{tmp}/demo/nnUNet_raw/kvasir/out", "--source", "{tmp}/demo/nnUNet_raw/kvasir",
                              "--source-kind", "kvasir"), ("contains the demo output",)),
    ("foreign-file-in-output", ("--profile", "quick"), ("demo/notes.txt: not written by the demo",)),
    ("source-in-foreign-folder-of-output", ("--source", "{tmp}/demo/data/kvasir", "--source-kind", "kvasir"),
     ("demo/data: not written by the demo",)),
]


@pytest.mark.parametrize(("name", "argv", "fragments"), DEMO_CASES, ids=[c[0] for c in DEMO_CASES])
def test_demo_never_deletes_a_source_or_foreign_file(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch, name: str,
                                                    argv: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    out = _previous_demo(tmp_path)
    if name == "foreign-file-in-output":
        (out / "notes.txt").write_text("the user's notes")
    if name == "source-in-foreign-folder-of-output":
        (out / "data" / "kvasir").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    before = tree_digest(tmp_path)
    args = ["demo", *(["-o", str(out)] if "-o" not in argv else []), *(a.replace("{tmp}", str(tmp_path)) for a in argv)]
    result = call_main(cli_main, args, capsys)
    assert result.code == 1
    assert_one_line_error(result, *fragments)
    assert tree_digest(tmp_path) == before


def test_demo_output_of_its_own_files_may_be_replaced(tmp_path: Path) -> None:
    """The other side: a previous output holding only what the demo writes is accepted, with a source elsewhere."""
    from nnunet_se.workflow.demo import check_output

    out = _previous_demo(tmp_path)
    source = tmp_path / "kvasir"
    source.mkdir()
    check_output(out, source)
    check_output(tmp_path / "new", None)


# --- status: every subset option honoured (-d, -tr, -f, -c, -p) ------------------------------------------------

CSE = "nnUNetTrainerPaperCSE"
RESENC = "nnUNetResEncUNetMPlans"
# extra options -> {trainer: (finished folds, missing folds, {fold: Dice})} of Dataset601_Five. The world: Paper
# 2d/nnUNetPlans fold 0 (Dice 0.8), plus here Paper 3d_fullres fold 1 (0.6), Paper ResEnc plans fold 2 (0.7) and CSE
# 2d fold 3 (0.9); the split has folds 0-4.
STATUS_SUBSETS = [
    ((), {PAPER: ([0], [1, 2, 3, 4], {0: 0.8}), CSE: ([3], [0, 1, 2, 4], {3: 0.9})}),
    (("-c", "3d_fullres"), {PAPER: ([1], [0, 2, 3, 4], {1: 0.6})}),
    (("-p", RESENC), {PAPER: ([2], [0, 1, 3, 4], {2: 0.7})}),
    (("-tr", CSE), {CSE: ([3], [0, 1, 2, 4], {3: 0.9})}),
    (("-f", "0", "3"), {PAPER: ([0], [3], {0: 0.8}), CSE: ([3], [0], {3: 0.9})}),
    (("-c", "3d_fullres", "-f", "0"), {PAPER: ([], [0], {})}),
]


@pytest.mark.parametrize(("extra", "expected"), STATUS_SUBSETS,
                         ids=[" ".join(e) or "defaults" for e, _ in STATUS_SUBSETS])
def test_status_honours_every_subset_option(world: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...],
                                            expected: dict) -> None:
    results = world / "results"
    write_fold(results, FIVE, PAPER, 1, FINISHED, dice=0.6, configuration="3d_fullres")
    write_fold(results, FIVE, PAPER, 2, FINISHED, dice=0.7, plans=RESENC)
    write_fold(results, FIVE, CSE, 3, FINISHED, dice=0.9)
    result = call_main(cli_main, ["status", "-d", "601", "--json", *extra], capsys)
    assert result.code == 0, result.stderr
    rows = {r["trainer"]: (r["finished"], r["missing"], {int(k): v for k, v in r["dice"].items()})
            for r in json.loads(result.stdout)}
    assert rows == expected


@pytest.mark.parametrize("extra", [("-tr", "paper", PAPER), ("-tr", PAPER, PAPER, "-f", "1", "1-2"),
                                   ("-d", "601", "-tr", "paper", "-f", "all", "2")],
                         ids=["family-and-member", "fold-twice", "all-and-a-fold"])
def test_grid_lists_each_training_once(world: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]) -> None:
    """A (dataset, trainer, plans, configuration, fold) named twice, directly or through a family or range, is one
    job (two array tasks training one fold at once would overwrite each other's checkpoints) or refused."""
    argv = ["grid", *(() if "-d" in extra else ("-d", "601")), *extra, "--all", "--format", "json"]
    result = call_main(cli_main, argv, capsys)
    if result.code != 0:
        assert_one_line_error(result, "-f/--folds")
        return
    keys = [(j["dataset"], j["trainer"], j["plans"], j["configuration"], j["fold"])
            for j in json.loads(result.stdout)["jobs"]]
    assert keys and len(keys) == len(set(keys))

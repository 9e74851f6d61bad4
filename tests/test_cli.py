"""Console scripts exist, answer --help, and report every failure in one line with its exit code."""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_se.cli_options import parse_folds
from nnunet_se.errors import UserError, run_cli

SCRIPTS = ["nnunet-se", "nnunet-se-convert", "nnunet-se-analyze"]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_works(script: str) -> None:
    exe = BIN / script
    assert exe.exists(), f"{script} is not installed in {BIN}"
    result = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert "usage:" in result.stdout and "--debug" in result.stdout  # docs/cli.md: listed in each top-level help


@pytest.mark.parametrize("script", ["nnunet-se", "nnunet-se-analyze"])
def test_unknown_subcommand_is_one_line_error(script: str) -> None:
    result = subprocess.run([BIN / script, "frobnicate"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "unknown command 'frobnicate'" in result.stderr
    assert "Traceback" not in result.stderr


# --- run_cli: the one-line convention shared by all three console scripts ------------------------------------------


def _raise(exc: BaseException):
    def func(argv: list[str]) -> int:
        raise exc

    return func


@pytest.mark.parametrize(
    ("exc", "code", "line"),
    [
        (UserError("data.json: not a summary"), 1, "prog: error: data.json: not a summary"),
        (UserError("-c '2d\ntouch X'"), 1, "prog: error: -c '2d\\ntouch X'"),  # a value's newline stays escaped
        (FileNotFoundError(2, "No such file or directory", "/in/a.png"), 1,
         "prog: error: /in/a.png: No such file or directory"),
        (PermissionError(13, "Permission denied", "/a", None, "/b"), 1, "prog: error: /a -> /b: Permission denied"),
        (OSError(28, "No space left on device"), 1, "prog: error: No space left on device"),
        (KeyboardInterrupt(), 130, "prog: error: interrupted"),
        (BrokenPipeError(32, "Broken pipe"), 141, "prog: error: output closed early (broken pipe)"),
        (ValueError("bad shape\nsecond line"), 70,
         "prog: error: internal error ValueError: bad shape (a bug; rerun with --debug for the traceback and report "
         "it)"),
    ],
    ids=["user", "user-multiline", "os-file", "os-two-files", "os-no-file", "interrupt", "broken-pipe", "internal"],
)
def test_run_cli_one_line_per_failure(exc: BaseException, code: int, line: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("prog", _raise(exc), ["x"]) == code
    out = capsys.readouterr()
    assert out.out == "" and out.err == line + "\n"
    with pytest.raises(type(exc)):  # --debug: the traceback
        run_cli("prog", _raise(exc), ["x", "--debug"])


def test_run_cli_passes_argv_without_debug_and_lets_argparse_exit() -> None:
    seen: list[list[str]] = []
    assert run_cli("prog", lambda argv: seen.append(list(argv)) or 3, ["a", "--debug", "b"]) == 3
    assert seen == [["a", "b"]]
    with pytest.raises(SystemExit):
        run_cli("prog", _raise(SystemExit(2)), [])


def test_broken_pipe_of_a_real_process_is_one_line() -> None:
    """A reader that stops early (``| head -c 1``): one line, exit 141, no 'Exception ignored' at shutdown."""
    code = ("import sys\nfrom nnunet_se.errors import run_cli\n"
            "def spam(argv):\n    for _ in range(100000):\n        print('x' * 100)\n"
            "sys.exit(run_cli('prog', spam, []))\n")
    result = subprocess.run(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} | head -c 1 >/dev/null; "
                            "echo \"rc=${PIPESTATUS[0]}\"", shell=True, executable="/bin/bash", capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "rc=141"
    assert result.stderr == "prog: error: output closed early (broken pipe)\n"


# --- the one grammar (docs/cli.md is the oracle) ---------------------------------------------------------------------

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
CONSOLE = {"nnunet-se": "nnunet_se.cli", "nnunet-se-convert": "nnunet_se.conversion.cli",
           "nnunet-se-analyze": "nnunet_se.analysis.cli"}
# every command: (console script, subcommand or None); the docs' short name is the subcommand (or "convert")
COMMANDS = {"convert": ("nnunet-se-convert", None), "env": ("nnunet-se", "env"), "list": ("nnunet-se", "list"),
            "check": ("nnunet-se", "check"), "grid": ("nnunet-se", "grid"), "status": ("nnunet-se", "status"),
            "demo": ("nnunet-se", "demo"), "excitations": ("nnunet-se-analyze", "excitations"),
            "pca": ("nnunet-se-analyze", "pca"), "responses": ("nnunet-se-analyze", "responses"),
            "table": ("nnunet-se-analyze", "table")}


def _doc_table(section: str) -> list[list[str]]:
    """Body rows (cells) of the first markdown table under ``## <section>`` in docs/cli.md."""
    text = DOC.read_text().split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in text.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows[2:]]


def _ticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def grammar() -> list[tuple[tuple[str, ...], set[str]]]:
    """(spellings, commands) per row of the docs' grammar table; ``--debug`` (every command) is left out."""
    rows = []
    for cells in _doc_table("The grammar"):
        spellings = tuple(_ticked(cells[0]))
        if spellings != ("--debug",):
            rows.append((spellings, {c for c in _ticked(cells[2]) if c in COMMANDS}))
    return rows


def run_main(command: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``<command> <argv>`` through its console script's ``main``, in-process: (exit code, stdout, stderr)."""
    script, sub = COMMANDS[command]
    main = importlib.import_module(CONSOLE[script]).main
    capsys.readouterr()
    try:
        code = main(([sub] if sub else []) + argv)
    except SystemExit as exc:
        code = exc.code
    out = capsys.readouterr()
    return int(code or 0), out.out, out.err


def help_options(text: str) -> list[tuple[str, ...]]:
    """The option strings of each option line of an argparse ``--help`` (``-d D [D ...], --datasets D`` ->
    ``("-d", "--datasets")``)."""
    options = []
    for line in text.splitlines():
        if re.match(r"  -", line):
            invocation = re.split(r"\s{2,}", line.strip())[0]
            options.append(tuple(part.split()[0] for part in invocation.split(", ")))
    return options


def test_doc_grammar_table_is_readable() -> None:
    rows = dict(grammar())
    assert rows[("-f", "--folds")] == {"grid", "status", "table", "excitations"}
    assert rows[("--seed",)] == {"convert", "demo", "pca"}
    assert len(rows) >= 10


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_spells_every_grammar_flag_as_the_doc(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_main(command, ["--help"], capsys)
    assert code == 0 and "usage:" in out
    options = help_options(out)
    spelled = {s for spellings, _ in grammar() for s in spellings}
    expected = {spellings for spellings, commands in grammar() if command in commands}
    found = {o for o in options if set(o) & spelled}
    assert found == expected, f"{command}: --help has {sorted(found)}, docs/cli.md says {sorted(expected)}"


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("where", ["first", "last"])
def test_debug_works_anywhere_on_every_command(command: str, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    script, sub = COMMANDS[command]
    argv = (["--debug", sub, "--help"] if sub else ["--debug", "--help"]) if where == "first" else \
        ([sub] if sub else []) + ["--help", "--debug"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        importlib.import_module(CONSOLE[script]).main(argv)
    assert exc.value.code == 0, capsys.readouterr().err  # --debug is not an unknown option
    assert logging.getLogger("nnunet_se").level == logging.DEBUG
    run_cli("prog", lambda argv: 0, [])  # back to INFO for the next tests
    assert logging.getLogger("nnunet_se").level == logging.INFO


# (command, argv with the old spelling, the same with the new spelling (None: no exact equivalent), old, new as the
# warning names it)
DEPRECATED = [
    ("convert", ["busi", "src", "--id", "5"], ["busi", "src", "-d", "5"], "--id", "--dataset-id"),
    ("convert", ["busi", "src", "-d", "5", "--folds", "3"], ["busi", "src", "-d", "5", "--n-folds", "3"], "--folds",
     "--n-folds"),
    ("excitations", ["601", "-tr", "T", "-f", "0"], ["-d", "601", "-tr", "T", "-f", "0"], "DATASET", "--datasets"),
    ("excitations", ["-d", "601", "--trainer", "T", "-f", "all"], ["-d", "601", "-tr", "T", "-f", "all"], "--trainer",
     "--trainers"),
    ("demo", ["--out", "x"], ["-o", "x"], "--out", "--output"),
    ("demo", ["--source", "s", "--dataset", "busi"], ["--source", "s", "--source-kind", "busi"], "--dataset",
     "--source-kind"),
    ("table", ["--n-folds", "10"], None, "--n-folds", "--test-train-ratio"),  # main turns K into the ratio
]


def _parser(command: str) -> argparse.ArgumentParser:
    from nnunet_se.analysis import excitations_cmd, pca_cmd, table_cmd
    from nnunet_se.conversion import cli as convert_cli
    from nnunet_se.workflow import demo

    if command == "convert":
        return convert_cli.build_parser()
    modules = {"excitations": excitations_cmd, "pca": pca_cmd, "demo": demo, "table": table_cmd}
    return modules[command].build_parser("prog")


def test_deprecated_table_of_the_doc_is_tested() -> None:
    documented = {(cells[0].split("`")[1].split()[0], cells[2].strip("`"))
                  for cells in _doc_table("Deprecated spellings")}
    assert documented == {(old, command) for command, _, _, old, _ in DEPRECATED}


@pytest.mark.parametrize(("command", "old_argv", "new_argv", "old", "new"), DEPRECATED,
                         ids=[f"{c[0]} {c[3]}" for c in DEPRECATED])
def test_deprecated_spelling_works_with_one_warning_line(command: str, old_argv: list[str], new_argv: list[str] | None,
                                                         old: str, new: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    parser = _parser(command)
    parsed = parser.parse_args(old_argv)
    assert capsys.readouterr().err == f"{parser.prog}: warning: {old} is deprecated, use {new}\n"
    if new_argv is not None:
        assert parsed == parser.parse_args(new_argv)
        assert capsys.readouterr().err == ""
    text = parser.format_help()  # hidden from --help, as an option and as a positional
    assert old not in {s for o in help_options(text) for s in o} and not re.search(rf"^  {old}\b", text, re.M)


def test_deprecated_spelling_warns_through_the_console_script(capsys: pytest.CaptureFixture[str],
                                                              tmp_path: Path) -> None:
    """The real ``main``: one warning line, then the command runs (here: fails on the missing source)."""
    code, _, err = run_main("convert", ["busi", str(tmp_path / "nope"), "--id", "5", "--raw-dir", str(tmp_path)],
                            capsys)
    lines = err.splitlines()
    assert code == 1 and len(lines) == 2, err
    assert lines[0] == "nnunet-se-convert: warning: --id is deprecated, use --dataset-id"
    assert lines[1].startswith("nnunet-se-convert: error: ") and "nope" in lines[1]


def test_required_option_missing_in_both_spellings_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser("convert").parse_args(["busi", "src"])
    assert exc.value.code == 2
    assert "the following arguments are required: -d/--dataset-id" in capsys.readouterr().err


@pytest.mark.parametrize(("tokens", "folds"), [
    (["0", "1", "2"], [0, 1, 2]), (["0-4"], [0, 1, 2, 3, 4]), (["0-4,7"], [0, 1, 2, 3, 4, 7]),
    (["3", "1", "1-2"], [1, 2, 3]), (["all"], "all"), (["999"], [999]),
])
def test_parse_folds(tokens: list[str], folds: list[int] | str) -> None:
    assert parse_folds(tokens) == folds


@pytest.mark.parametrize(("tokens", "fragment"), [
    (["all", "1"], "'all' stands alone"), (["3-1"], "range 3-1 is empty"), (["1000"], "fold 1000 is too large"),
    (["0-99999999"], "fold 99999999 is too large"), (["1000000000000-5"], "fold 1000000000000 is too large"),
    (["1" * 5000], "(5000 characters) is too large"), (["x"], "expected fold numbers"),
    (["-1"], "expected fold numbers"), ([""], "expected fold numbers"),
])
def test_parse_folds_refuses(tokens: list[str], fragment: str) -> None:
    with pytest.raises(UserError, match=re.escape(fragment)):
        parse_folds(tokens)


def test_bad_folds_on_the_command_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        _parser("excitations").parse_args(["-d", "601", "-tr", "T", "-f", "0-x"])
    assert exc.value.code == 2
    assert "error: -f/--folds 0-x: expected fold numbers" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["convert", "pca", "demo"])
def test_seed_range_is_checked_by_every_parser_alike(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = {"convert": ["busi", "src", "-d", "5"], "pca": ["a.npz"], "demo": []}[command]
    parser = _parser(command)
    assert parser.parse_args(head).seed == 42
    assert parser.parse_args([*head, "--seed", "4294967295"]).seed == 2**32 - 1
    assert parser.parse_args([*head, "--seed", "0"]).seed == 0
    for bad in ("4294967296", "-1", "", "1e3", "9" * 5000):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args([*head, "--seed", bad])
        assert exc.value.code == 2
        assert "argument --seed: expected an integer from 0 to 4294967295" in capsys.readouterr().err


def test_excitations_all_folds_resolve_to_the_split_of_the_dataset(tmp_path: Path) -> None:
    """``excitations -f all``: a hand-written splits_final.json with 3 folds gives folds 0, 1, 2; without one,
    nnU-Net's 0-4; explicit folds are taken as given (a trained fold outside the split is still captured)."""
    from nnunet_se.analysis.excitations_cmd import resolve_folds
    from nnunet_se.layout import Dataset

    roots = {"nnUNet_preprocessed": tmp_path / "pre", "nnUNet_raw": None}
    folder = tmp_path / "pre" / "Dataset777_Three"
    folder.mkdir(parents=True)
    fold = {"train": ["a", "b"], "val": ["c"]}
    (folder / "splits_final.json").write_text(json.dumps([fold, fold, fold]))
    assert resolve_folds("all", roots, Dataset(777, "Dataset777_Three")) == [0, 1, 2]
    assert resolve_folds([4, 7], roots, Dataset(777, "Dataset777_Three")) == [4, 7]
    assert resolve_folds("all", roots, Dataset(778, "Dataset778_NoSplit")) == [0, 1, 2, 3, 4]

"""``nnunet-se demo``: argument checks, and (slow) the quick demo end to end with its report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_se.cli import main as cli_main
from nnunet_se.demo import MARKER

BIN = Path(sys.executable).parent


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--source", "."], "--source and --dataset go together"),
        (["--dataset", "kvasir"], "--source and --dataset go together"),
        (["--source", "no/such/folder", "--dataset", "busi"], "no/such/folder: no such file or folder"),
        (["--quick", "--epochs", "0"], "--epochs 0: must be >= 1"),
    ],
)
def test_bad_arguments_are_one_line_and_create_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], argv: list[str],
                                                       message: str) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "demo_out"
    assert cli_main(["demo", "--out", str(out), *argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("nnunet-se demo: error:") and message in err
    assert not out.exists()


def test_refuses_to_replace_a_folder_that_is_not_a_demo_output(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert cli_main(["demo", "--quick", "--out", str(out)]) == 1
    assert "exists and is not a demo output" in capsys.readouterr().err
    assert (out / "precious.txt").read_text() == "keep me" and not (out / MARKER).exists()


@pytest.mark.slow
@pytest.mark.xdist_group("demo")
def test_quick_demo_writes_a_report_with_table_and_figures(tmp_path: Path) -> None:
    """The real pipeline (nnU-Net CLI, analysis CLI) at CI size; the report links files that exist."""
    out = tmp_path / "demo_output"
    result = subprocess.run([BIN / "nnunet-se", "demo", "--quick", "--out", str(out)], capture_output=True,
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
    assert "figures/examples.png" in links
    for link in links:
        assert (out / link).is_file() and (out / link).stat().st_size > 1000, link
    rows = re.findall(r"^\| (nnUNetTrainerPaper\w*) \| ([\d.]+) \| ([\d.]+) \|$", text, flags=re.M)
    assert sorted(r[0] for r in rows) == ["nnUNetTrainerPaper", "nnUNetTrainerPaperMono"]
    assert all(0.0 <= float(value) <= 1.0 for row in rows for value in row[1:])

"""``nnunet-se demo``: argument checks, and (slow) the quick demo end to end with its report."""

from __future__ import annotations

from pathlib import Path

import pytest

from nnunet_se.cli import main as cli_main
from nnunet_se.demo import MARKER


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

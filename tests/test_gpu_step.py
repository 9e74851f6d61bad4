"""benchmarks/gpu_step.py cannot rot: its ``--cpu-smoke`` mode (tiny sizes, aot_eager) runs in the suite."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def gpu_step():
    with benchmark_module("gpu_step") as module:
        yield module


def test_cpu_smoke(gpu_step, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gpu_step.main(["--cpu-smoke", "--out", str(tmp_path)])
    # a progress line per variant once warmed up (a run cut by the acceptance script's time limit still shows them)
    progress = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warm: ")]
    assert len(progress) == 5 and "warm: paper nnUNetTrainerPaper compiled: first step" in "\n".join(progress)
    assert sum(line.endswith(", 1 graph(s)") for line in progress) == 1
    result = json.loads((tmp_path / "gpu_step.json").read_text())
    assert result["device"].startswith("cpu") and result["torch"] == torch.__version__
    assert result["precision"] == "bf16" and result["backend"] == "aot_eager" and not result["grad_scaler"]
    rows = {(r["family"], r["trainer"], r["mode"]): r for r in result["rows"]}
    expected = {("paper", "nnUNetTrainerPaper"), ("paper", "nnUNetTrainerPaperMono"), ("auto", "nnUNetTrainer"),
                ("auto", "nnUNetTrainerMono")}
    assert set(rows) == {(f, t, "eager") for f, t in expected} | {("paper", "nnUNetTrainerPaper", "compiled")}
    for (family, trainer, mode), row in rows.items():
        assert row["median_step_ms"] > 0 and len(row["step_ms"]) == 1
        if trainer == gpu_step.BASELINES[family]:
            assert row["ratio_to_baseline"] == 1.0
        if mode == "compiled":  # one graph per network: no graph break, no recompile
            assert row["graphs"] == 1 and row["compile_s"] >= 0
        else:
            assert row["graphs"] is None and row["compile_s"] is None
    table = (tmp_path / "gpu_step.md").read_text()
    assert torch.__version__ in table and "| paper | nnUNetTrainerPaper | compiled | " in table


def test_targets_and_plan(gpu_step) -> None:
    """The GPU step-time targets per family and mode (benchmarks/gpu_step.py); the 224x224 nnU-Net 2d plan has 6
    stages 32..512."""
    assert gpu_step.target_for("paper", "compiled", "nnUNetTrainerPaperMono") == 1.15
    assert gpu_step.target_for("paper", "compiled", "nnUNetTrainerPaperSRM") == 1.05
    assert gpu_step.target_for("paper", "eager", "nnUNetTrainerPaperMono") == 1.30
    assert gpu_step.target_for("auto", "compiled", "nnUNetTrainerMono") == 1.10
    assert gpu_step.target_for("auto", "eager", "nnUNetTrainerCSE") is None
    kwargs = gpu_step.nnunet_2d_configuration(224).network_arch_init_kwargs
    assert kwargs["features_per_stage"] == [32, 64, 128, 256, 512, 512]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--families", "paper", "--trainers", "nnUNetTrainerPaperMono", "--compile", "nnUNetTrainerPaperMono"],
         [("nnUNetTrainerPaper", "eager"), ("nnUNetTrainerPaperMono", "eager"),
          ("nnUNetTrainerPaperMono", "compiled")]),
        (["--families", "paper", "--trainers", "nnUNetTrainerPaperMono", "--compile", "nnUNetTrainerPaperMono",
          "--mono-fused"],
         [("nnUNetTrainerPaper", "eager"), ("nnUNetTrainerPaperMono", "eager"), ("nnUNetTrainerPaperMono", "compiled"),
          ("nnUNetTrainerPaperMono+fused", "eager"), ("nnUNetTrainerPaperMono+fused", "compiled")]),
        (["--families", "auto", "--trainers", "nnUNetTrainerCSE", "--modes", "eager", "--mono-fused"],
         [("nnUNetTrainer", "eager"), ("nnUNetTrainerCSE", "eager")]),  # no Mono trainer: nothing fused
    ],
)
def test_variant_names(gpu_step, argv: list[str], expected: list[tuple[str, str]]) -> None:
    args = gpu_step.parse_args(argv)
    assert gpu_step.variant_names(args, args.families[0]) == expected


def test_mono_fused_variant_is_built_fused(gpu_step, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``+fused`` variant's Mono modules have the fused option on, the plain variant's off, whatever
    ``NNUNET_SE_MONO_FUSED`` says outside (restored afterwards); target as the Mono trainer's."""
    from nnunet_se.modules.mono import Mono

    monkeypatch.setenv("NNUNET_SE_MONO_FUSED", "1")
    bench = gpu_step.Bench(gpu_step.parse_args(["--cpu-smoke", "--mono-fused"]))
    for trainer, fused in (("nnUNetTrainerPaperMono", False), ("nnUNetTrainerPaperMono+fused", True)):
        monos = [m for m in bench.build("paper", trainer, "eager").model.modules() if isinstance(m, Mono)]
        assert monos and all(m.fused is fused for m in monos)
    assert os.environ["NNUNET_SE_MONO_FUSED"] == "1"
    assert gpu_step.target_for("paper", "eager", "nnUNetTrainerPaperMono+fused") == 1.30

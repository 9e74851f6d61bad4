"""benchmarks/gpu_acceptance_summary.py: the acceptance run's numbers from nnU-Net's log lines (the GPU run itself
cannot run here; ``ACC_DEVICE=cpu bash benchmarks/gpu_acceptance.sh`` is its dry run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmark_scripts import benchmark_module


@pytest.fixture(scope="module")
def summary():
    with benchmark_module("gpu_acceptance_summary") as module:
        yield module


def train_log(epochs: list[float], peaks: list[float], case_starts: list[float]) -> str:
    """Lines as nnU-Net's ``print_to_log_file`` writes them (timestamp prefix) plus ``nnunet_measured.py`` lines."""
    lines = ["2026-11-26 18:00:00.000000: Using torch.compile..."]
    for epoch, (seconds, peak) in enumerate(zip(epochs, peaks, strict=True)):
        lines += [f"measured: train_peak_mib epoch={epoch} value={peak}",
                  f"2026-11-26 18:01:0{epoch}.000000: Epoch time: {seconds} s"]
    lines += [f"2026-11-26 18:02:{s:09.6f}: predicting case_{i:03d}" for i, s in enumerate(case_starts)]
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("cut", [False, True])
def test_ratios_from_logs(summary, tmp_path: Path, cut: bool) -> None:
    """Hand-computed: epochs Mono (120, 1.5) / plain (60, 1.0) -> first 2.0, steady 1.5; peak max 1100 / 1000 -> 1.1;
    validation cases start at 0, 10, 10.5, 11.5 (Mono: gaps 10, 0.5, 1.0 -> steady median 0.75) and 0, 8, 8.25, 8.75
    (plain: 0.25, 0.5 -> 0.375) -> 2.0; predict cases median after the first: Mono 0.3 / plain 0.2 -> 1.5.
    A run cut after plain's training reports plain's numbers and None for every ratio."""
    logs = {"RecalibrationTrainer": ([60.0, 1.0], [900.0, 1000.0], [0, 8, 8.25, 8.75], (5.0, 0.2, 0.1, 0.3))}
    if not cut:
        logs["nnUNetTrainerMono"] = ([120.0, 1.5], [1100.0, 1050.0], [0, 10, 10.5, 11.5], (6.0, 0.3, 0.2, 0.4))
    for trainer, (epochs, peaks, case_starts, predict) in logs.items():
        (tmp_path / f"train_{trainer}.log").write_text(train_log(epochs, peaks, case_starts))
        lines = [f"measured: predict_case_s value={v}" for v in predict]
        (tmp_path / f"predict_{trainer}.log").write_text("\n".join(lines) + "\n")
    result = summary.summarise(tmp_path)
    expected = {"first_epoch": 2.0, "steady_epoch": 1.5, "train_peak_memory": 1.1, "val_case": 2.0, "predict_case": 1.5}
    assert result["mono_over_plain"] == ({k: None for k in expected} if cut else expected)
    plain = result["train"]["RecalibrationTrainer"]
    assert plain["epoch_s"] == [60.0, 1.0] and plain["train_peak_mib"] == [900.0, 1000.0] and plain["compile_used"]
    assert plain["val_first_case_s"] == 8.0 and plain["val_case_s"] == 0.375 and plain["val_cases"] == 4
    assert result["predict"]["RecalibrationTrainer"]["steady_case_s"] == 0.2
    json.dumps(result)  # what acceptance.json holds


def test_markdown_marks_missing_numbers(summary, tmp_path: Path) -> None:
    text = summary.markdown(summary.summarise(tmp_path))
    assert text.count("not measured") == 5

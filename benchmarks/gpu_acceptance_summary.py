"""Parse the logs of ``benchmarks/gpu_acceptance.sh`` under OUT into ``acceptance.json`` and ``acceptance.md``.

    python3 benchmarks/gpu_acceptance_summary.py OUT

Runs after every stage (no torch import: about a tenth of a second), so a run cut by its time limit still has
the numbers of every finished stage. Reads ``train_<trainer>.log`` (nnU-Net's log lines plus the
``measured:`` lines of ``benchmarks/nnunet_measured.py``), ``predict_<trainer>.log`` and
``gpu_step_*/gpu_step.json``; missing files give ``None``/empty entries.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from collections import Counter
from datetime import datetime
from pathlib import Path

TRAINERS = ("RecalibrationTrainer", "nnUNetTrainerMono")  # plain first
STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)?): "
# acceptance targets, ratio Mono (or module) / plain in the same run (docs/modules.md, Overhead)
TARGETS = {"steady_epoch": 1.10, "first_epoch": 1.20, "val_case": 1.3, "train_peak_memory": 1.10,
           "compiled_step_mono": 1.08, "compiled_step_module": 1.05}


def measured(text: str, name: str) -> list[dict[str, str]]:
    """The ``measured: NAME k=v ...`` lines of ``benchmarks/nnunet_measured.py``."""
    return [dict(kv.split("=", 1) for kv in m.split()) for m in re.findall(rf"^measured: {name} (.*)$", text, re.M)]


def steady(values: list[float]) -> float | None:
    """Median after the first (warm-up / compiling) value; the only value if there is one."""
    if not values:
        return None
    return round(statistics.median(values[1:] if len(values) > 1 else values), 4)


def train_record(log: Path) -> dict:
    text = log.read_text(errors="replace") if log.exists() else ""
    predicting = [datetime.fromisoformat(m).timestamp() for m in re.findall(STAMP + r"predicting \S+", text)]
    gaps = [b - a for a, b in zip(predicting, predicting[1:], strict=False)]
    dice = re.findall(r"Mean Validation Dice:\s+(\S+)", text)
    peaks = {int(m["epoch"]): float(m["value"]) for m in measured(text, "train_peak_mib")}
    return {
        "epoch_s": [float(x) for x in re.findall(r"Epoch time: ([\d.]+) s", text)],
        "train_peak_mib": [peaks[e] for e in sorted(peaks)],
        "recompiles": text.count("Recompiling function"),
        "recompiled": dict(Counter(re.findall(r"Recompiling function (\S+ in \S+)", text))),
        # one per break message, in the wordings of torch 2.4-2.14 ("Reason:" / "Graph Break Reason:" follow)
        "graph_breaks": len(re.findall(r"Graph break (?:in user code|\(user stack suppressed)", text)),
        "graph_break_sites": sorted(set(re.findall(r"in user code at (\S+)", text))),
        "compile_used": "Using torch.compile" in text,
        "val_first_case_s": round(gaps[0], 3) if gaps else None,
        "val_case_s": steady(gaps) if len(gaps) > 1 else None,
        "val_cases": len(predicting),
        "mean_val_dice": float(dice[-1]) if dice else None,
        "traceback": "Traceback" in text,
    }


def predict_record(log: Path) -> dict:
    text = log.read_text(errors="replace") if log.exists() else ""
    cases = [float(m["value"]) for m in measured(text, "predict_case_s")]
    return {"case_s": cases, "steady_case_s": steady(cases), "traceback": "Traceback" in text}


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def summarise(out: Path) -> dict:
    train = {t: train_record(out / f"train_{t}.log") for t in TRAINERS}
    predict = {t: predict_record(out / f"predict_{t}.log") for t in TRAINERS}
    plain, mono = TRAINERS

    def over_plain(value) -> float | None:  # value(trainer) of Mono / of plain
        return ratio(value(mono), value(plain))

    ratios = {
        "first_epoch": over_plain(lambda n: train[n]["epoch_s"][0] if train[n]["epoch_s"] else None),
        "steady_epoch": over_plain(lambda n: steady(train[n]["epoch_s"])),
        "train_peak_memory": over_plain(lambda n: max(train[n]["train_peak_mib"], default=None)),
        "val_case": over_plain(lambda n: train[n]["val_case_s"]),
        "predict_case": over_plain(lambda n: predict[n]["steady_case_s"]),
    }
    steps = {}
    for part in sorted(out.glob("gpu_step_*/gpu_step.json")):
        rows = json.loads(part.read_text())["rows"]
        steps[part.parent.name.removeprefix("gpu_step_")] = [
            {k: r.get(k) for k in ("family", "trainer", "mode", "variant", "median_step_ms", "ratio_to_baseline",
                                   "compile_s", "graphs")} for r in rows]
    return {"mono_over_plain": ratios, "targets": TARGETS, "train": train, "predict": predict, "gpu_step": steps}


def fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.3f}"


def markdown(result: dict) -> str:
    r, t = result["mono_over_plain"], result["targets"]
    lines = ["# GPU acceptance (`benchmarks/gpu_acceptance.sh`)", "",
             "| Mono / plain, same run | ratio | target |", "|---|---|---|"]
    for key, label in (("steady_epoch", "`nnUNetv2_train` 2d steady epoch"),
                       ("first_epoch", "`nnUNetv2_train` first (compiling) epoch"),
                       ("train_peak_memory", "peak CUDA memory of the training iterations"),
                       ("val_case", "final validation per case"), ("predict_case", "`nnUNetv2_predict` per case")):
        lines.append(f"| {label} | {fmt(r[key])} | {t.get(key, '')} |")
    lines += ["", "| trainer | epochs (s) | peak MiB per epoch | recompiles | graph breaks | validation s/case "
              "(first, steady) | predict s/case (steady) |", "|---|---|---|---|---|---|---|"]
    for name, rec in result["train"].items():
        pred = result["predict"][name]
        lines.append(f"| {name} | {rec['epoch_s']} | {rec['train_peak_mib']} | {rec['recompiles']} | "
                     f"{rec['graph_breaks']} | {rec['val_first_case_s']}, {rec['val_case_s']} | "
                     f"{pred['steady_case_s']} |")
    lines += ["", "| gpu_step run | trainer | variant | mode | median step (ms) | ratio | compile (s) | graphs |",
              "|---|---|---|---|---|---|---|---|"]
    for part, rows in result["gpu_step"].items():
        for row in rows:
            ms, rt, cs = row["median_step_ms"], row["ratio_to_baseline"], row["compile_s"]
            lines.append(f"| {part} | {row['trainer']} | {row['variant'] or ''} | {row['mode']} | "
                         f"{'' if ms is None else f'{ms:.2f}'} | {'' if rt is None else f'{rt:.3f}'} | "
                         f"{'' if cs is None else f'{cs:.1f}'} | {row['graphs'] or ''} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        print(f"usage: {sys.argv[0]} OUT", file=sys.stderr)
        raise SystemExit(2)
    out = Path(sys.argv[1])
    result = summarise(out)
    (out / "acceptance.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "acceptance.md").write_text(markdown(result))


if __name__ == "__main__":
    main()

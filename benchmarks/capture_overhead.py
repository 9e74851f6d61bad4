"""Excitation-capture overhead: the same inference forward passes with and without the gate hooks.

Network: the paper's U-Net (``nnunet_se.trainers.paper.build_paper_unet``, 32/64/128/256, 3 input channels) with
one module injected after encoder stages 1-3 (``inject_recalibration``), eval mode, ``torch.inference_mode``,
one 224x224 tile per forward (what nnU-Net's sliding window feeds ``excitations``). The hooked variant runs the
exact capture path of ``nnunet-se-analyze excitations``: :class:`GateRecorder` hooks, then ``finish_case()`` and
``ExcitationStream.add`` after every forward (one case = one tile). Rounds interleave the two variants in
alternating order; the statistic is the median over rounds of (hooked time / plain time), after warm-up rounds,
for wall time and for this process's CPU time (all threads; less sensitive to other load on a shared machine).

    .venv/bin/python benchmarks/capture_overhead.py                    # cse, srm, mono on the best device
    .venv/bin/python benchmarks/capture_overhead.py --device cpu --rounds 10 --forwards 2

Writes benchmarks/results/capture_overhead.{json,md}. Target: overhead <= 5 %.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from nnunet_se.analysis.capture import ExcitationStream, GateRecorder
from nnunet_se.injection import inject_recalibration
from nnunet_se.trainers.paper import build_paper_unet

RESULTS = Path(__file__).parent / "results"
TARGET = 0.05


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _load() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def measure(module: str, device: torch.device, size: int, forwards: int, rounds: int, warmup: int) -> dict:
    torch.manual_seed(0)
    net = build_paper_unet(3, 2)
    paths = inject_recalibration(net, module, patch_size=(size, size))
    net = net.to(device).eval()
    x = torch.rand(1, 3, size, size, device=device)

    def plain() -> tuple[float, float]:
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        with torch.inference_mode():
            for _ in range(forwards):
                net(x)
        _sync(device)
        return time.perf_counter() - start, time.process_time() - cpu

    def hooked() -> tuple[float, float]:
        stream = ExcitationStream()
        _sync(device)
        start, cpu = time.perf_counter(), time.process_time()
        with GateRecorder(net, paths) as recorder, torch.inference_mode():
            for i in range(forwards):
                recorder.start_case()
                net(x)
                vectors, tiles = recorder.finish_case()  # moves the vectors to the CPU (a device sync)
                stream.add(str(i), vectors, tiles)
        _sync(device)
        return time.perf_counter() - start, time.process_time() - cpu

    wall, cpu, plain_ms, hooked_ms = [], [], [], []
    for r in range(warmup + rounds):
        order = (plain, hooked) if r % 2 == 0 else (hooked, plain)
        times = {f.__name__: f() for f in order}
        if r >= warmup:
            wall.append(times["hooked"][0] / times["plain"][0])
            cpu.append(times["hooked"][1] / times["plain"][1])
            plain_ms.append(1000 * times["plain"][0] / forwards)
            hooked_ms.append(1000 * times["hooked"][0] / forwards)
    median_wall, median_cpu = statistics.median(wall), statistics.median(cpu)
    return {"module": module, "median_ratio": median_wall, "overhead_pct": 100 * (median_wall - 1),
            "median_cpu_ratio": median_cpu, "cpu_overhead_pct": 100 * (median_cpu - 1),
            "plain_ms_per_forward": statistics.median(plain_ms), "hooked_ms_per_forward": statistics.median(hooked_ms),
            "ratio_min": min(wall), "ratio_max": max(wall), "os_load_avg_1min": _load(),
            "meets_target": median_wall - 1 <= TARGET and median_cpu - 1 <= TARGET}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="+", default=["cse", "srm", "mono"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--forwards", type=int, default=None, help="forwards per variant and round "
                                                                   "(default 3 on CPU, 50 on CUDA)")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--tag", default="", help="suffix of the result file names (e.g. _cuda)")
    args = parser.parse_args()
    device = torch.device(args.device)
    forwards = args.forwards or (50 if device.type == "cuda" else 3)
    rows = [measure(m, device, args.size, forwards, args.rounds, args.warmup) for m in args.modules]
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(), "size": args.size,
            "forwards_per_round": forwards, "rounds": args.rounds, "warmup": args.warmup, "target_pct": 100 * TARGET}
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"capture_overhead{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps({"settings": info, "results": rows}, indent=2) + "\n")
    lines = [f"# Excitation-capture overhead ({info['device']}, torch {info['torch']}, {info['threads']} threads)", "",
             f"Paper U-Net + module, 1x3x{args.size}x{args.size} tile per forward, eval + inference_mode; "
             f"{args.rounds} interleaved rounds of {forwards} forwards per variant after {args.warmup} warm-up "
             "rounds; median of per-round ratios (hooked / plain). Target: <= 5 %.", "",
             "| module | plain ms/forward | hooked ms/forward | wall ratio (median) | wall overhead % | "
             "wall ratio range | CPU-time overhead % | load avg | <= 5 % |",
             "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['module']} | {r['plain_ms_per_forward']:.2f} | {r['hooked_ms_per_forward']:.2f} | "
              f"{r['median_ratio']:.4f} | {r['overhead_pct']:+.2f} | {r['ratio_min']:.3f}-{r['ratio_max']:.3f} | "
              f"{r['cpu_overhead_pct']:+.2f} | {r['os_load_avg_1min'] or 0:.1f} | "
              f"{'yes' if r['meets_target'] else 'NO'} |" for r in rows]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

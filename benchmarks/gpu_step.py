"""Train-step time of every plugin trainer's network, eager and ``torch.compile``d, under nnU-Net's defaults.

One step = zero_grad, forward under autocast, cross-entropy (summed over the deep-supervision outputs), backward
through a GradScaler (CUDA fp16), optimizer step. Families and their baselines:

- ``paper``: the paper trainers' network at batch 16, 224x224 (Adam); baseline ``nnUNetTrainerPaper``;
- ``auto``: an nnU-Net 2d plan for 224x224 (PlainConvUNet 32..512, 6 stages, InstanceNorm, LeakyReLU, deep
  supervision) at batch 32 (SGD, nnU-Net's settings); baseline ``nnUNetTrainer`` (the plan without modules).

Every network is built with its trainer's ``build_network_architecture`` classmethod. Variants run in interleaved
rounds (shuffled order, ``--steps`` steps each); the median step time is divided by the family baseline's. Compiled
variants use ``torch.compile`` as nnU-Net does (no ``fullgraph``) with a backend wrapper that counts the graphs
compiled (more than one per network = a graph break or a recompile); compile time = first step minus median step.

    python benchmarks/gpu_step.py                  # GPU: fp16 autocast, every trainer eager, subset compiled
    python benchmarks/gpu_step.py --compile all    # every trainer compiled too (about 1 min of compile each)
    python benchmarks/gpu_step.py --mono-fused     # + each Mono trainer with the fused Triton path (``+fused``)
    python benchmarks/gpu_step.py --cpu-smoke --out /tmp/x   # seconds: tiny sizes, aot_eager (the test runs this)

Writes ``gpu_step.json`` and ``gpu_step.md`` (naming device and torch version) to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch._dynamo
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from torch import nn
from torch._dynamo.testing import CompileCounterWithBackend

from nnunet_se.modules.mono_fused import ENV_FUSED
from nnunet_se.trainers import ALL_TRAINERS, RecalibrationTrainer

RESULTS = Path(__file__).resolve().parent / "results"
PRECISIONS = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": None}
BASELINES = {"paper": "nnUNetTrainerPaper", "auto": "nnUNetTrainer"}
DEFAULT_COMPILED = ("nnUNetTrainerPaper", "nnUNetTrainerPaperCSE", "nnUNetTrainerPaperMono",
                    "nnUNetTrainer", "nnUNetTrainerCSE", "nnUNetTrainerMono")
FUSED = "+fused"  # variant suffix: the trainer's network built with Mono's fused path on
# the step-time targets (ratio to the family baseline), judged on one GPU
TARGETS = {("paper", "compiled"): (1.15, 1.05), ("paper", "eager"): (1.30, 1.10), ("auto", "compiled"): (1.10, None)}


def nnunet_2d_configuration(size: int) -> ConfigurationManager:
    """nnU-Net's 2d plan for a ``size`` x ``size`` patch: PlainConvUNet, 32 features doubling up to 512, a stage
    per halving down to a 4-7 px bottleneck, two 3x3 convs per stage, InstanceNorm, LeakyReLU."""
    n = 1 + max(1, int(math.log2(size / 4)))
    kwargs = {
        "n_stages": n, "features_per_stage": [min(32 * 2**i, 512) for i in range(n)],
        "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": [[3, 3]] * n,
        "strides": [[1, 1]] + [[2, 2]] * (n - 1), "n_conv_per_stage": [2] * n,
        "n_conv_per_stage_decoder": [2] * (n - 1),
        "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
        "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
    }
    return ConfigurationManager({
        "patch_size": [size, size], "median_image_size_in_voxels": [size, size], "data_identifier": "nnUNetPlans_2d",
        "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                         "arch_kwargs": kwargs, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
    })


def trainer_class(name: str) -> type[RecalibrationTrainer]:
    """Registered trainer (``+fused`` stripped), or the module-free ``RecalibrationTrainer`` for ``nnUNetTrainer``
    (the same network)."""
    name = name.removesuffix(FUSED)
    return RecalibrationTrainer if name == "nnUNetTrainer" else ALL_TRAINERS[name]


@contextlib.contextmanager
def mono_fused(on: bool):
    """Mono modules built inside read ``NNUNET_SE_MONO_FUSED`` = ``1``/``0`` (restored afterwards)."""
    old = os.environ.get(ENV_FUSED)
    os.environ[ENV_FUSED] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            del os.environ[ENV_FUSED]
        else:
            os.environ[ENV_FUSED] = old


def family_trainers(family: str) -> list[str]:
    """Baseline first, then every registered trainer of the family."""
    return [BASELINES[family]] + [n for n, t in ALL_TRAINERS.items() if t.family == family and n != BASELINES[family]]


def first(output: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    return output[0] if isinstance(output, (list, tuple)) else output


@dataclass
class Variant:
    """One network in one mode, with its optimizer, scaler and timings (seconds)."""

    family: str
    trainer: str
    mode: str  # "eager" or "compiled"
    model: Callable
    params: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    counter: CompileCounterWithBackend | None = None
    times: list[float] = field(default_factory=list)
    first_step_s: float | None = None


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.dtype = PRECISIONS[args.precision]
        self.scaler = (torch.amp.GradScaler(self.device.type)
                       if self.dtype == torch.float16 and self.device.type == "cuda" else None)
        self.inputs: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def build(self, family: str, trainer: str, mode: str) -> Variant:
        args = self.args
        size, batch = args.size, args.paper_batch if family == "paper" else args.auto_batch
        if family not in self.inputs:
            gen = torch.Generator().manual_seed(args.seed)
            x = torch.randn(batch, 3, size, size, generator=gen)
            target = torch.randint(0, 2, (batch, size, size), generator=gen)
            self.inputs[family] = (x.to(self.device), target.to(self.device))
        torch.manual_seed(args.seed)
        cls = trainer_class(trainer)
        with mono_fused(trainer.endswith(FUSED)):
            network = cls.build_network_architecture(None, nnunet_2d_configuration(size), 3, 2,
                                                     enable_deep_supervision=family == "auto")
        network = network.to(self.device).train()
        params = [p for p in network.parameters() if p.requires_grad]
        if family == "paper":
            optimizer = torch.optim.Adam(params, lr=1e-4)
        else:
            optimizer = torch.optim.SGD(params, lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
        counter = None
        model: Callable = network
        if mode == "compiled":
            counter = CompileCounterWithBackend(args.backend)
            model = torch.compile(network, backend=counter)
        return Variant(family, trainer, mode, model, params, optimizer, counter)

    def step(self, v: Variant) -> None:
        x, target = self.inputs[v.family]
        v.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            outputs = v.model(x)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            loss = sum(nn.functional.cross_entropy(
                out.float(), target[:, :: target.shape[1] // out.shape[2], :: target.shape[2] // out.shape[3]])
                for out in outputs)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(v.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            v.optimizer.step()

    def timed(self, v: Variant, steps: int) -> float:
        """Seconds per step over ``steps`` steps."""
        self.sync()
        start = time.perf_counter()
        for _ in range(steps):
            self.step(v)
        self.sync()
        return (time.perf_counter() - start) / steps


def run(args: argparse.Namespace) -> dict:
    """Build every variant, warm up (compiling), run the interleaved rounds; return the result record."""
    # every network is one more cache entry of the same forward code objects: allow them all
    limits = {name: 256 for name in ("recompile_limit", "cache_size_limit") if hasattr(torch._dynamo.config, name)}
    with torch._dynamo.config.patch(limits):
        return record(args, *timed_variants(args))


def variant_names(args: argparse.Namespace, family: str) -> list[tuple[str, str]]:
    """``(trainer, mode)`` pairs timed for ``family``: the selected trainers (baseline first), each Mono trainer
    followed by its ``+fused`` variant under ``--mono-fused``, compiled only where ``--compile`` names it."""
    names = family_trainers(family)
    if args.trainers != "all":
        wanted = set(args.trainers.split(","))
        names = [n for n in names if n in wanted or n == BASELINES[family]]
    if args.mono_fused:
        names = [v for n in names for v in ((n, n + FUSED) if n.endswith("Mono") else (n,))]
    compiled = set(args.compile.split(","))
    return [(n, mode) for n in names for mode in args.modes
            if mode != "compiled" or args.compile == "all" or n.removesuffix(FUSED) in compiled]


def timed_variants(args: argparse.Namespace) -> tuple[Bench, list[Variant]]:
    bench = Bench(args)
    variants = [bench.build(family, trainer, mode) for family in args.families
                for trainer, mode in variant_names(args, family)]
    for v in variants:  # warm-up: the first step of a compiled variant compiles forward and backward
        v.first_step_s = bench.timed(v, 1)
        for _ in range(args.warmup):
            bench.timed(v, args.steps)
        # progress line (a run cut short by a time limit still shows what it reached)
        graphs = "" if v.counter is None else f", {v.counter.frame_count} graph(s)"
        print(f"warm: {v.family} {v.trainer} {v.mode}: first step {v.first_step_s:.2f} s{graphs}", flush=True)
    order = random.Random(args.seed)
    for _ in range(args.rounds):
        order.shuffle(variants)
        for v in variants:
            v.times.append(bench.timed(v, args.steps))
    return bench, variants


def record(args: argparse.Namespace, bench: Bench, variants: list[Variant]) -> dict:
    median = {(v.family, v.trainer, v.mode): statistics.median(v.times) for v in variants}
    rows = []
    for v in sorted(variants, key=lambda v: (args.families.index(v.family), v.trainer != BASELINES[v.family],
                                             v.trainer, args.modes.index(v.mode))):
        base = median.get((v.family, BASELINES[v.family], v.mode))
        m = median[(v.family, v.trainer, v.mode)]
        rows.append({
            "family": v.family, "trainer": v.trainer, "mode": v.mode, "median_step_ms": 1e3 * m,
            "ratio_to_baseline": m / base if base else None,
            "compile_s": max(0.0, v.first_step_s - m) if v.mode == "compiled" else None,
            "graphs": v.counter.frame_count if v.counter is not None else None,
            "step_ms": [1e3 * t for t in v.times],
        })
    device = torch.cuda.get_device_name(bench.device) if bench.device.type == "cuda" else platform.processor() or "cpu"
    return {
        "device": f"{bench.device.type}: {device}", "torch": torch.__version__, "cuda": torch.version.cuda,
        "platform": platform.platform(), "precision": args.precision,
        "grad_scaler": bench.scaler is not None, "backend": args.backend, "size": args.size,
        "batch": {"paper": args.paper_batch, "auto": args.auto_batch}, "rounds": args.rounds, "steps": args.steps,
        "warmup": args.warmup, "threads": torch.get_num_threads(), "seed": args.seed, "rows": rows,
    }


def target_for(family: str, mode: str, trainer: str) -> float | None:
    mono, others = TARGETS.get((family, mode), (None, None))
    return mono if trainer.removesuffix(FUSED).endswith("Mono") else others


def markdown(result: dict) -> str:
    lines = [
        "# Train-step time per trainer network (`benchmarks/gpu_step.py`)",
        "",
        f"Device {result['device']}, torch {result['torch']} (CUDA {result['cuda']}), {result['precision']} "
        f"autocast{' + GradScaler' if result['grad_scaler'] else ''}, compile backend `{result['backend']}`; "
        f"{result['size']}x{result['size']}, batch {result['batch']['paper']} (paper U-Net) / "
        f"{result['batch']['auto']} (nnU-Net 2d plan); median of {result['rounds']} interleaved rounds of "
        f"{result['steps']} steps after {result['warmup']} warm-up rounds. Ratio = median step / the family "
        "baseline's median step in the same mode. Graphs = graphs compiled for the network (1 = no graph break). "
        f"`{FUSED}`: the Mono network built with the fused Triton path (`{ENV_FUSED}=1`; the Mono rows without it "
        "run the PyTorch path).",
        "",
        "| family | trainer | mode | median step (ms) | ratio | target | met | compile (s) | graphs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        ratio = row["ratio_to_baseline"]
        target = target_for(row["family"], row["mode"], row["trainer"])
        is_baseline = row["trainer"] == BASELINES[row["family"]]
        met = "" if target is None or ratio is None or is_baseline else ("yes" if ratio <= target else "no")
        compile_s = "" if row["compile_s"] is None else f"{row['compile_s']:.1f}"
        graphs = "" if row["graphs"] is None else str(row["graphs"])
        lines.append(
            f"| {row['family']} | {row['trainer']} | {row['mode']} | {row['median_step_ms']:.2f} | "
            f"{'' if ratio is None else f'{ratio:.3f}'} | {'' if is_baseline or target is None else target} | "
            f"{met} | {compile_s} | {graphs} |"
        )
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cuda = torch.cuda.is_available()
    parser.add_argument("--device", default="cuda" if cuda else "cpu")
    parser.add_argument("--precision", choices=list(PRECISIONS), help="default: fp16 on CUDA, bf16 on the CPU")
    parser.add_argument("--families", default="paper,auto")
    parser.add_argument("--trainers", default="all", help="comma list (the baselines are always included) or all")
    parser.add_argument("--compile", default=",".join(DEFAULT_COMPILED),
                        help="trainers also timed compiled: comma list or all")
    parser.add_argument("--modes", default="eager,compiled")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--paper-batch", type=int, default=16)
    parser.add_argument("--auto-batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=5, help="steps per variant and round")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds after the compiling first step")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mono-fused", action="store_true",
                        help="also time every selected Mono trainer with the fused Triton path (trainer name + "
                        f"'{FUSED}'; the Mono variants without it are built with {ENV_FUSED}=0)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="seconds on the CPU: 32x32, batch 2, baselines + Mono (the paper baseline also "
                        "compiled, aot_eager), 1 round of 1 step")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        args.device, args.backend, args.size, args.paper_batch, args.auto_batch = "cpu", "aot_eager", 32, 2, 2
        args.rounds, args.steps, args.warmup = 1, 1, 0
        args.trainers = "nnUNetTrainerPaper,nnUNetTrainerPaperMono,nnUNetTrainer,nnUNetTrainerMono"
        args.compile = "nnUNetTrainerPaper"  # the compiled path; tests/test_compile.py compiles every network
    args.precision = args.precision or ("fp16" if args.device.startswith("cuda") else "bf16")
    args.families = [f for f in args.families.split(",") if f]
    args.modes = [m for m in args.modes.split(",") if m]
    unknown = sorted(set(args.families) - set(BASELINES)) + sorted(set(args.modes) - {"eager", "compiled"})
    if unknown:
        parser.error(f"unknown families/modes: {', '.join(unknown)}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    result = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_step.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "gpu_step.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()

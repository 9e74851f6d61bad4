"""Training-step overhead of each recalibration module in the paper's small U-Net (CPU).

Network: dynamic-network-architectures PlainConvUNet, 4 stages 32/64/128/256, two 3x3 convs per stage, ReLU,
no normalisation, strided-conv downsampling, 1 input channel... (see ``build_network``); one module is inserted
after encoder stages 1-3 with ``nnunet_se.injection.inject_recalibration``. Each variant runs forward + backward
of a cross-entropy loss on a random batch; variants are interleaved (one step of each per round, in a shuffled
order), and the median step time after warm-up is divided by the plain network's median.

    .venv/bin/python benchmarks/module_overhead.py                      # paper setting: batch 16, 224x224
    .venv/bin/python benchmarks/module_overhead.py --batch 4 --repeats 5 # quick run
    .venv/bin/python benchmarks/module_overhead.py --compile inductor --size 64 --modules mono  # compiled proxy

Writes benchmarks/results/module_overhead.{json,md}; with ``--compile BACKEND`` every variant is
``torch.compile``d (first step = compilation, recorded) and the results go to module_overhead_compiled.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet
from torch import nn
from tqdm import tqdm

from nnunet_se.injection import inject_recalibration

RESULTS = Path(__file__).resolve().parent / "results"
TARGETS = {"cse": 1.03, "sse": 1.03, "srm": 1.03, "fca": 1.03, "scse": 1.06, "mono": 1.25}
MONO_AIM = 1.10


def build_network(input_channels: int = 3, num_classes: int = 2) -> PlainConvUNet:
    """The paper's small U-Net as a d-n-a PlainConvUNet: widths 32/64/128/256, two 3x3 convs per stage, ReLU."""
    n = 4
    return PlainConvUNet(
        input_channels=input_channels, n_stages=n, features_per_stage=[32, 64, 128, 256], conv_op=nn.Conv2d,
        kernel_sizes=[[3, 3]] * n, strides=[[1, 1]] + [[2, 2]] * (n - 1), n_conv_per_stage=[2] * n,
        num_classes=num_classes, n_conv_per_stage_decoder=[2] * (n - 1), conv_bias=True, norm_op=None,
        dropout_op=None, nonlin=nn.ReLU, nonlin_kwargs={"inplace": True}, deep_supervision=False,
    )


def timm_se(channels: int, spatial_dims: int) -> nn.Module:
    """timm's SEModule (rd_ratio 1/16, rounded to multiples of 8, biases): the outside anchor for cSE."""
    from timm.layers.squeeze_excite import SEModule

    return SEModule(channels)


def variants(names: list[str], flavour: str, size: int) -> dict[str, nn.Module]:
    """Same initial backbone weights for every variant (seeded), modules inserted after stages 1-3."""
    nets: dict[str, nn.Module] = {}
    for name in ["plain", *names]:
        torch.manual_seed(0)
        net = build_network()
        module: str | Callable[[int, int], nn.Module] | None = {"plain": None, "timm_se": timm_se}.get(name, name)
        if module is not None:
            kwargs = {"flavour": flavour, "patch_size": (size, size)} if isinstance(module, str) else {}
            paths = inject_recalibration(net, module, **kwargs)
            assert len(paths) == 3, paths
        nets[name] = net.train()
    return nets


def step(net: nn.Module, x: torch.Tensor, target: torch.Tensor) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for zero_grad + forward + cross-entropy + backward."""
    start, start_cpu = time.perf_counter(), time.process_time()
    net.zero_grad(set_to_none=True)
    loss = nn.functional.cross_entropy(net(x), target)
    loss.backward()
    return time.perf_counter() - start, time.process_time() - start_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds (one step of every variant each)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--flavour", default="paper", choices=["paper", "original"])
    parser.add_argument("--modules", default="cse,timm_se,sse,scse,srm,fca,mono")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", metavar="BACKEND", help="torch.compile every variant with this backend")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    names = [n for n in args.modules.split(",") if n]
    nets = variants(names, args.flavour, args.size)
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=gen)
    target = torch.randint(0, 2, (args.batch, args.size, args.size), generator=gen)
    compile_s: dict[str, float] = {}
    if args.compile:
        for name in nets:  # the first step compiles forward and backward
            nets[name] = torch.compile(nets[name], backend=args.compile)
            compile_s[name] = step(nets[name], x, target)[0]
    order = random.Random(args.seed)
    times: dict[str, list[float]] = {name: [] for name in nets}
    cpu_times: dict[str, list[float]] = {name: [] for name in nets}
    rounds = args.warmup + args.repeats
    with tqdm(total=rounds * len(nets), desc="steps") as bar:
        for r in range(rounds):
            names_round = list(nets)
            order.shuffle(names_round)
            for name in names_round:
                elapsed, cpu = step(nets[name], x, target)
                if r >= args.warmup:
                    times[name].append(elapsed)
                    cpu_times[name].append(cpu)
                bar.update()

    medians = {name: statistics.median(t) for name, t in times.items()}
    ratios = {name: medians[name] / medians["plain"] for name in nets if name != "plain"}
    cpu_medians = {name: statistics.median(t) for name, t in cpu_times.items()}
    cpu_ratios = {name: cpu_medians[name] / cpu_medians["plain"] for name in nets if name != "plain"}
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count()},
        "torch": torch.__version__,
        "threads": args.threads,
        "batch": args.batch,
        "size": args.size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "flavour": args.flavour,
        "seed": args.seed,
        "median_step_s": medians,
        "ratio_to_plain": ratios,
        "median_step_cpu_s": cpu_medians,
        "cpu_ratio_to_plain": cpu_ratios,
        "verdict_on": "cpu" if args.threads == 1 else "wall",
        "targets": TARGETS,
        "mono_aim": MONO_AIM,
        "times_s": times,
        "cpu_times_s": cpu_times,
        "compile_backend": args.compile,
        "first_step_s": compile_s,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "module_overhead_compiled" if args.compile else "module_overhead"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    """Results table: median wall and CPU step time, ratios to the plain network, target and verdict."""
    basis = result["verdict_on"]
    lines = [
        "# Module overhead (forward + backward training step, CPU)",
        "",
        f"PlainConvUNet 32/64/128/256, {result['size']}x{result['size']}, batch {result['batch']}, "
        f"{result['threads']} threads, torch {result['torch']}, flavour {result['flavour']}; median of "
        f"{result['repeats']} interleaved rounds after {result['warmup']} warm-up rounds"
        + (f", every variant `torch.compile`d ({result['compile_backend']}; first, compiling step in seconds: "
           + ", ".join(f"{k} {v:.0f}" for k, v in result["first_step_s"].items()) + ")"
           if result.get("compile_backend") else "")
        + ". "
        f"Machine: {result['machine']['platform']} ({result['machine']['cpus']} CPUs). Wall time and process CPU "
        f"time are both recorded; targets are judged on the {basis} ratio (CPU time with 1 thread is insensitive "
        "to other processes on a shared machine).",
        "",
        "| variant | wall median (s) | wall ratio | CPU median (s) | CPU ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    key = "cpu_ratio_to_plain" if basis == "cpu" else "ratio_to_plain"
    judged = result[key]
    for name, median in result["median_step_s"].items():
        wall = result["ratio_to_plain"].get(name, 1.0)
        cpu = result["cpu_ratio_to_plain"].get(name, 1.0)
        target = result["targets"].get(name)
        if name == "timm_se" and "cse" in judged:
            met = "cSE no slower: " + ("yes" if judged["cse"] <= judged["timm_se"] else "no")
        else:
            met = "" if target is None else ("yes" if judged[name] <= target else "no")
        lines.append(
            f"| {name} | {median:.3f} | {wall:.3f} | {result['median_step_cpu_s'][name]:.3f} | {cpu:.3f} | "
            f"{target or ''} | {met} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

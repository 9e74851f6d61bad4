"""Bytes that autograd saves for the backward of one training forward, per trainer network (CPU proxy of peak
activation memory).

Every network of the ``auto`` family (nnU-Net's 2d plan for a ``--size`` x ``--size`` patch, as in
``benchmarks/gpu_step.py``, built with the trainer's ``build_network_architecture``; deep supervision on, train
mode) runs one forward on a random batch of ``--batch`` RGB images under
``torch.autograd.graph.saved_tensors_hooks``. The hook records the storage of every tensor saved for backward;
each storage is counted once (tensors that share a storage, e.g. an input saved by two ops or a view, cost its
bytes once), split into parameter storages and the rest (activations). Ratio = activation bytes / the plain
network's, in the same precision (float32; ``--precisions fp32,bf16`` adds bf16 CPU autocast as a stand-in for
nnU-Net's fp16 autocast).

    .venv/bin/python benchmarks/saved_activation_memory.py [--size 224] [--batch 2]
    .venv/bin/python benchmarks/saved_activation_memory.py --compare OLD.json   # adds a column from an older run

Writes benchmarks/results/saved_activation_memory.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_step import PRECISIONS, family_trainers, nnunet_2d_configuration, trainer_class  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SEED = 0
TARGET = {"nnUNetTrainerMono": 1.10}


class SavedStorages:
    """``saved_tensors_hooks`` pair that records ``{storage data_ptr: bytes}`` of every tensor saved for backward
    (keeping a reference, so no recorded storage is freed and its address reused while recording)."""

    def __init__(self) -> None:
        self.storages: dict[int, int] = {}
        self.kept: list[torch.Tensor] = []

    def pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        self.storages[storage.data_ptr()] = storage.nbytes()
        self.kept.append(tensor)
        return tensor

    @staticmethod
    def unpack(tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def hooks(self) -> contextlib.AbstractContextManager:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


def saved_bytes(module: nn.Module, inputs: torch.Tensor, precision: str = "fp32") -> dict[str, int]:
    """``{"activations", "parameters", "storages"}``: unique bytes saved for backward by ``module(inputs)``
    (under CPU autocast for ``precision`` bf16/fp16), split by whether the storage belongs to a parameter."""
    recorder = SavedStorages()
    dtype = PRECISIONS[precision]
    autocast = torch.autocast(inputs.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
    with recorder.hooks(), autocast:
        module(inputs)
    params = {p.untyped_storage().data_ptr() for p in module.parameters()}
    return {
        "activations": sum(n for ptr, n in recorder.storages.items() if ptr not in params),
        "parameters": sum(n for ptr, n in recorder.storages.items() if ptr in params),
        "storages": len(recorder.storages),
    }


def measure(size: int, batch: int, precisions: list[str]) -> list[dict]:
    torch.manual_seed(SEED)
    inputs = torch.randn(batch, 3, size, size)
    rows = []
    for precision in precisions:
        base = base_total = None
        for name in family_trainers("auto"):
            torch.manual_seed(SEED)
            network = trainer_class(name).build_network_architecture(
                None, nnunet_2d_configuration(size), 3, 2, enable_deep_supervision=True).train()
            counts = saved_bytes(network, inputs, precision)
            base = base or counts["activations"]
            total = counts["activations"] + counts["parameters"]
            base_total = base_total or total
            rows.append({"precision": precision, "trainer": name, **counts,
                         "ratio": round(counts["activations"] / base, 4), "ratio_total": round(total / base_total, 4),
                         "target": TARGET.get(name)})
    return rows


def markdown(result: dict, compare: dict | None) -> str:
    old = {(r["precision"], r["trainer"]): r for r in compare["rows"]} if compare else {}
    extra = f" | ratios at {compare['code']} |" if compare else " |"
    lines = [
        "# Bytes saved for backward, one training forward (`benchmarks/saved_activation_memory.py`)",
        "",
        f"`{result['command']}`; torch {result['torch']}, CPU, code {result['code']}. nnU-Net 2d plan for "
        f"{result['size']}x{result['size']} (PlainConvUNet 32..512, deep supervision), batch {result['batch']}, "
        "train mode. Unique storages saved by autograd (saved-tensor hooks); ratio = activation bytes / the plain "
        "network's in the same precision (bf16 = CPU autocast, standing in for fp16 autocast on a GPU); ratio with "
        "parameters = (activations + saved parameter storages) / the plain network's.",
        "",
        "| precision | trainer | activations (MB) | parameters (MB) | storages | ratio | ratio with parameters "
        "| target" + extra,
        "|---|---|---|---|---|---|---|---|" + ("---|" if compare else ""),
    ]
    for r in result["rows"]:
        was = old.get((r["precision"], r["trainer"]))
        tail = (f" | {was['ratio']:.3f} / {was['ratio_total']:.3f} |" if was else " | |") if compare else " |"
        lines.append(f"| {r['precision']} | {r['trainer']} | {r['activations'] / 1e6:.2f} | "
                     f"{r['parameters'] / 1e6:.2f} | {r['storages']} | {r['ratio']:.3f} | {r['ratio_total']:.3f} | "
                     f"{r['target'] or ''}" + tail)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--precisions", default="fp32",
                        help="comma list of fp32, bf16, fp16 (CPU autocast; bf16 convolutions are slow on most CPUs)")
    parser.add_argument("--code", default="working tree", help="label of the code measured (e.g. a commit)")
    parser.add_argument("--compare", type=Path, help="an earlier run's JSON (e.g. of an older commit)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    command = "benchmarks/saved_activation_memory.py " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command.strip(), "torch": torch.__version__, "platform": platform.platform(),
              "code": args.code, "size": args.size, "batch": args.batch, "seed": SEED,
              "rows": measure(args.size, args.batch, args.precisions.split(","))}
    compare = json.loads(args.compare.read_text()) if args.compare else None
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "saved_activation_memory.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "saved_activation_memory.md").write_text(markdown(result, compare))
    print(markdown(result, compare))


if __name__ == "__main__":
    main()

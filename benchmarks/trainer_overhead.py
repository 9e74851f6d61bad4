"""Train-step time of every plugin trainer relative to its baseline, on the same plans (CPU).

Plans: nnU-Net 2.8.1's own 2d plan for 224x224 RGB PNGs (6-stage PlainConvUNet 32..512, InstanceNorm, LeakyReLU,
deep supervision, batch 2, as ``nnUNetv2_plan_and_preprocess`` writes it), written out below. Auto trainers are compared
with the stock ``nnUNetTrainer``; paper trainers (their own fixed U-Net) with ``nnUNetTrainerPaper``. Every trainer
runs ``train_step`` (forward, loss, backward, optimizer step) on the same fixed batch of ``--batch`` images;
trainers are interleaved round-robin, after ``--warmup`` untimed rounds, and the median of ``--repeats`` rounds is
reported (process CPU time, the target's measure, and wall time). Targets (as in the module benchmark):
cSE/sSE/SRM/FCA <= 1.03, scSE <= 1.06, Mono <= 1.25.

    .venv/bin/python benchmarks/trainer_overhead.py [--repeats 5] [--warmup 1] [--batch 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

RESULTS = Path(__file__).parent / "results"
TARGETS = {"cse": 1.03, "sse": 1.03, "srm": 1.03, "fca": 1.03, "scse": 1.06, "mono": 1.25}
SEED = 0
PATCH = [224, 224]
PLANS = {
    "dataset_name": "Dataset999_Bench",
    "plans_name": "nnUNetPlans",
    "original_median_spacing_after_transp": [999.0, 1.0, 1.0],
    "original_median_shape_after_transp": [1, *PATCH],
    "image_reader_writer": "NaturalImage2DIO",
    "transpose_forward": [0, 1, 2],
    "transpose_backward": [0, 1, 2],
    "experiment_planner_used": "ExperimentPlanner",
    "label_manager": "LabelManager",
    "foreground_intensity_properties_per_channel": {
        str(c): {"max": 255.0, "mean": 128.0, "median": 128.0, "min": 0.0, "percentile_00_5": 1.0,
                 "percentile_99_5": 254.0, "std": 40.0} for c in range(3)
    },
    "configurations": {
        "2d": {
            "data_identifier": "nnUNetPlans_2d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
            "patch_size": PATCH, "median_image_size_in_voxels": [224.0, 224.0], "spacing": [1.0, 1.0],
            "normalization_schemes": ["RGBTo01Normalization"] * 3, "use_mask_for_norm": [False] * 3,
            "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0,
                                                   "force_separate_z": None},
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {
                    "n_stages": 6, "features_per_stage": [32, 64, 128, 256, 512, 512],
                    "conv_op": "torch.nn.modules.conv.Conv2d", "kernel_sizes": [[3, 3]] * 6,
                    "strides": [[1, 1]] + [[2, 2]] * 5, "n_conv_per_stage": [2] * 6,
                    "n_conv_per_stage_decoder": [2] * 5, "conv_bias": True,
                    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                    "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
                },
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
            },
            "batch_dice": True,
        }
    },
}
DATASET_JSON = {"channel_names": {"0": "rgb_to_0_1", "1": "rgb_to_0_1", "2": "rgb_to_0_1"},
                "labels": {"background": 0, "lesion": 1}, "numTraining": 100, "file_ending": ".png"}


def make_trainer(cls: type):
    """``cls`` initialised on the benchmark plans (CPU, fixed seed)."""
    plans = copy.deepcopy(PLANS)
    plans["continue_training"] = False
    torch.manual_seed(SEED)
    trainer = cls(plans, "2d", 0, copy.deepcopy(DATASET_JSON), torch.device("cpu"))
    trainer.initialize()
    return trainer


def make_batch(trainer, batch: int) -> dict:
    """Fixed random batch at the trainer's patch size, with deep-supervision targets when it uses them."""
    rng = np.random.default_rng(SEED)
    patch = list(trainer.configuration_manager.patch_size)
    data = torch.from_numpy(rng.random((batch, 3, *patch), dtype=np.float32))
    target = torch.from_numpy((rng.random((batch, 1, *patch)) > 0.7).astype(np.float32))
    if trainer.enable_deep_supervision:
        scales = trainer._get_deep_supervision_scales()
        target = [torch.nn.functional.interpolate(target, scale_factor=tuple(s), mode="nearest-exact")
                  if any(v != 1 for v in s) else target for s in scales]
    return {"data": data, "target": target}


def step_seconds(trainer, batch: dict) -> tuple[float, float]:
    """(wall, process CPU) seconds of one ``train_step``."""
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.train_step(batch)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: least noise on a shared box)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            os.environ[name] = tmp
        # initialize() only infers the dataset format from the file endings here; no case is ever loaded
        data_folder = Path(tmp) / PLANS["dataset_name"] / "nnUNetPlans_2d"
        data_folder.mkdir(parents=True)
        (data_folder / "unused.b2nd").touch()
        for name in ("NNUNET_SE_NUM_EPOCHS", "NNUNET_SE_NUM_ITERATIONS", "NNUNET_SE_SEED"):
            os.environ.pop(name, None)
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        from nnunet_se.trainers import ALL_TRAINERS, nnUNetTrainerPaper

        classes = {"nnUNetTrainer": nnUNetTrainer, **ALL_TRAINERS}
        trainers = {name: make_trainer(cls) for name, cls in tqdm(classes.items(), desc="initialise")}
        batches = {name: make_batch(t, args.batch) for name, t in trainers.items()}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in trainers}
        for round_index in tqdm(range(args.warmup + args.repeats), desc="rounds (all trainers each)"):
            for name, trainer in trainers.items():
                seconds = step_seconds(trainer, batches[name])
                if round_index >= args.warmup:
                    times[name].append(seconds)

    wall = {name: statistics.median(w for w, _ in t) for name, t in times.items()}
    cpu = {name: statistics.median(c for _, c in t) for name, t in times.items()}
    rows = []
    for name, cls in classes.items():
        baseline = "nnUNetTrainer" if cls is nnUNetTrainer or cls.family == "auto" else nnUNetTrainerPaper.__name__
        module = getattr(cls, "recalibration", None)
        ratio = cpu[name] / cpu[baseline]
        target = TARGETS.get(module) if getattr(cls, "skip_connections", True) else None
        rows.append({
            "trainer": name, "baseline": baseline, "module": module, "flavour": getattr(cls, "flavour", None),
            "patch": list(trainers[name].configuration_manager.patch_size),
            "parameters": sum(p.numel() for p in trainers[name].network.parameters()),
            "median_cpu_s": round(cpu[name], 4), "median_wall_s": round(wall[name], 4),
            "ratio_cpu": round(ratio, 3), "ratio_wall": round(wall[name] / wall[baseline], 3), "target": target,
            "meets_target": None if target is None else ratio <= target,
        })
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or "cpu",
            "machine": platform.machine(), "batch": args.batch, "repeats": args.repeats, "warmup": args.warmup,
            "seed": SEED, "plans": "nnU-Net 2d plan for 224x224 RGB (6 stages 32..512, DS), see docstring"}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "trainer_overhead.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    lines = [
        "# Trainer overhead (train step, CPU)", "",
        f"`benchmarks/trainer_overhead.py --repeats {args.repeats} --warmup {args.warmup} --batch {args.batch} "
        f"--threads {args.threads}`; "
        f"torch {meta['torch']}, {meta['threads']} threads; median of interleaved rounds after warm-up. The target "
        "is checked on the process-CPU-time ratio (robust on a shared machine with 1 thread); wall time beside it.",
        "",
        "| trainer | baseline | patch | params | CPU s/step | ratio (CPU) | wall s/step | ratio (wall) | target | ok |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ok = "" if r["meets_target"] is None else ("yes" if r["meets_target"] else "**no**")
        lines.append(f"| {r['trainer']} | {r['baseline']} | {'x'.join(map(str, r['patch']))} | {r['parameters']:,} "
                     f"| {r['median_cpu_s']:.3f} | {r['ratio_cpu']:.3f} | {r['median_wall_s']:.3f} "
                     f"| {r['ratio_wall']:.3f} | {r['target'] or ''} | {ok} |")
    (args.out / "trainer_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

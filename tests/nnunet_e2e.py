"""End-to-end nnU-Net fixtures (registered in conftest.py): a tiny synthetic dataset run through the real CLI.

``nnunet_preprocessed``: synthetic RGB PNG raw dataset -> ``nnUNetv2_plan_and_preprocess`` (2d).
``nnunet_e2e``: the same, plus ``nnUNetv2_train`` of ``nnUNetTrainerMono`` and ``nnUNetTrainerPaperMono`` (fold 0,
1 epoch of 2 iterations via the plugin's environment controls). Both are built once per session; tests using them
are marked ``slow`` and ``xdist_group("nnunet_e2e")``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATASET_ID = 987
DATASET_NAME = f"Dataset{DATASET_ID}_NnunetSeE2E"
N_TRAIN, N_TEST, SIZE = 10, 2, 32  # 32x32 plans a 4-stage U-Net (32..256 features)
E2E_TRAINERS = ("nnUNetTrainerMono", "nnUNetTrainerPaperMono")
SEED = 20261123
SHORT_TRAINING = {"NNUNET_SE_NUM_EPOCHS": "1", "NNUNET_SE_NUM_ITERATIONS": "2"}


@dataclass
class NnunetRun:
    """nnU-Net roots and the environment to run its commands with (CPU, small process counts, plugin trainers)."""

    raw: Path
    preprocessed: Path
    results: Path
    env: dict[str, str]
    dataset_id: int = DATASET_ID
    dataset_name: str = DATASET_NAME
    configuration: str = "2d"
    plans: str = "nnUNetPlans"
    trainers: list[str] = field(default_factory=list)

    def run(self, *command: str, timeout: float = 300, **extra_env: str) -> None:
        """Run one console-script command line (:meth:`run_all`)."""
        self.run_all([list(command)], timeout=timeout, **extra_env)

    def run_all(self, commands: list[list[str]], timeout: float = 300, **extra_env: str) -> None:
        """:func:`run_console_scripts` with this run's environment; fails the test with the output tail if a
        command fails."""
        result = run_console_scripts(commands, {**self.env, **extra_env}, timeout * len(commands))
        if result.returncode != 0:
            tail = (result.stdout + result.stderr)[-4000:]
            pytest.fail(f"{' ; '.join(map(' '.join, commands))} exited {result.returncode}:\n{tail}")

    def train_command(self, trainer: str, *args: str, plans: str | None = None) -> list[str]:
        """``nnUNetv2_train <id> 2d 0 -tr <trainer> -p <plans> -device cpu [args]``."""
        return ["nnUNetv2_train", str(self.dataset_id), self.configuration, "0", "-tr", trainer, "-p",
                plans or self.plans, "-device", "cpu", *args]

    def train(self, trainer: str, *args: str, plans: str | None = None, **extra_env: str) -> None:
        """:meth:`train_command` (1 epoch x 2 iterations unless overridden)."""
        self.run_all([self.train_command(trainer, *args, plans=plans)], **{**SHORT_TRAINING, **extra_env})

    def model_folder(self, trainer: str, plans: str | None = None) -> Path:
        return self.results / self.dataset_name / f"{trainer}__{plans or self.plans}__{self.configuration}"


def run_console_scripts(commands: list[list[str]], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    """Run console-script command lines one after the other in one fresh process, each through its installed
    entry point with exactly that ``sys.argv`` (``python -m nnunet_se.workflow.demo_runs``, the demo's batch
    runner): parsing, defaults and outputs are the stock commands'. Start-up is paid once, and the worker pools
    nnU-Net spawns re-import a light ``__main__`` instead of the console script's imports (8 s less per
    ``nnUNetv2_train``)."""
    from nnunet_se.workflow.demo_runs import SAFE_PATH_ENV, batch_argv

    return subprocess.run(batch_argv(commands), env={**env, **SAFE_PATH_ENV}, capture_output=True, text=True,
                          timeout=timeout)


def write_synthetic_raw(raw_root: Path, seed: int = SEED) -> Path:
    """``DatasetNNN/imagesTr|imagesTs/<case>_0000.png`` (RGB, noisy non-zero background + 1-2 bright ellipses)
    and ``labelsTr/<case>.png`` (0/1), ``SIZE`` x ``SIZE`` pixels, plus ``dataset.json``."""
    rng = np.random.default_rng(seed)
    folder = raw_root / DATASET_NAME
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    for i in range(N_TRAIN + N_TEST):
        mask = np.zeros((SIZE, SIZE), bool)
        for _ in range(rng.integers(1, 3)):
            cy, cx = rng.uniform(8, SIZE - 8, 2)
            ry, rx = rng.uniform(3, 7, 2)
            mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        image = rng.normal(70, 15, (SIZE, SIZE, 3)) + mask[..., None] * rng.uniform(60, 110, 3)
        image = np.clip(image, 1, 255).astype(np.uint8)
        case = f"case{i:03d}"
        if i < N_TRAIN:
            Image.fromarray(image).save(folder / "imagesTr" / f"{case}_0000.png")
            Image.fromarray(mask.astype(np.uint8)).save(folder / "labelsTr" / f"{case}.png")
        else:
            Image.fromarray(image).save(folder / "imagesTs" / f"{case}_0000.png")
    dataset = {
        "channel_names": {"0": "rgb_to_0_1", "1": "rgb_to_0_1", "2": "rgb_to_0_1"},
        "labels": {"background": 0, "blob": 1},
        "numTraining": N_TRAIN,
        "file_ending": ".png",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=2))
    return folder


def _nnunet_env(raw: Path, preprocessed: Path, results: Path) -> dict[str, str]:
    from nnunet_se.layout import ext_trainer_value

    return {
        **os.environ,
        "nnUNet_raw": str(raw),
        "nnUNet_preprocessed": str(preprocessed),
        "nnUNet_results": str(results),
        "nnUNet_extTrainer": ext_trainer_value(None),
        "nnUNet_def_n_proc": "1",
        "nnUNet_compile": "0",
        "NNUNET_SE_SEED": "0",
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


@pytest.fixture(scope="session")
def nnunet_preprocessed(tmp_path_factory: pytest.TempPathFactory) -> NnunetRun:
    """Synthetic raw dataset, planned and preprocessed (2d) by the real ``nnUNetv2_plan_and_preprocess``."""
    root = tmp_path_factory.mktemp("nnunet_e2e")
    raw, preprocessed, results = root / "raw", root / "preprocessed", root / "results"
    for path in (raw, preprocessed, results):
        path.mkdir()
    write_synthetic_raw(raw)
    run = NnunetRun(raw, preprocessed, results, _nnunet_env(raw, preprocessed, results))
    # nnUNet_n_proc_DA must not be 0 here: planning calls torch.set_num_threads(get_allowed_n_proc_DA())
    run.run("nnUNetv2_plan_and_preprocess", "-d", str(DATASET_ID), "-c", "2d", "-np", "1", "-npfp", "1")
    run.env["nnUNet_n_proc_DA"] = "0"  # train/predict: data augmentation in the main process
    return run


@pytest.fixture(scope="session")
def nnunet_e2e(nnunet_preprocessed: NnunetRun) -> NnunetRun:
    """``nnunet_preprocessed`` with ``nnUNetTrainerMono`` and ``nnUNetTrainerPaperMono`` trained (fold 0)."""
    from nnunet_se.trainers import ALL_TRAINERS

    run = nnunet_preprocessed
    missing = [t for t in E2E_TRAINERS if t in ALL_TRAINERS and t not in run.trainers]
    if missing:
        run.run_all([run.train_command(t) for t in missing], **SHORT_TRAINING)
        run.trainers += missing
    return run

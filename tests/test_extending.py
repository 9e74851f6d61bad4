"""docs/extending.md, followed literally: its code blocks become a package in ``tmp_path``, installed with pip, whose
module and trainers nnunet-se lists, nnU-Net trains (one iteration, CPU) and ``excitations`` captures.

Every command runs in its own process: a plugin registers into the registries of the process that loads it, and
the other tests of this session expect the plugin's own six modules and 21 trainers only.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"
TRAINER = "nnUNetTrainerECA"


def guide_files() -> dict[str, str]:
    """``{relative path: text}`` of every python/toml block of the guide (its first line names the file)."""
    files = {}
    for block in re.findall(r"^```(?:python|toml)\n(.*?)^```", GUIDE.read_text(), re.M | re.S):
        first, _, _ = block.partition("\n")
        assert first.startswith("# "), f"a code block of {GUIDE.name} does not name its file: {first!r}"
        files[first[2:].strip()] = block
    return files


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The guide's package, installed by pip (``--target``: files, metadata and the entry point, no dependency)."""
    package = tmp_path_factory.mktemp("my-gates")
    for name, text in guide_files().items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    site = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(site), str(package)], check=True, capture_output=True)
    return site


def test_guide_blocks_are_the_package() -> None:
    assert sorted(guide_files()) == ["my_gates/__init__.py", "my_gates/gates.py", "my_gates/nnunet_ext/__init__.py",
                                     "my_gates/nnunet_ext/my_gates_shim.py", "my_gates/trainers.py", "pyproject.toml"]


def _plugin_env(base: dict[str, str], site: Path) -> dict[str, str]:
    """The guide's section 5: the package importable, its shim folder after nnunet-se's on nnUNet_extTrainer."""
    ext = f"{base['nnUNet_extTrainer']}:{site / 'my_gates' / 'nnunet_ext'}" if "nnUNet_extTrainer" in base else None
    return {**base, "PYTHONPATH": str(site), **({"nnUNet_extTrainer": ext} if ext else {})}


def _rows(block: str) -> dict[str, list[str]]:
    """A ``nnunet-se list`` table as {first cell: cells} (columns separated by two or more spaces)."""
    return {cells[0]: cells for line in block.splitlines()[2:] if (cells := re.split(r"\s{2,}", line.strip()))}


@pytest.mark.slow
def test_list_shows_the_module_and_the_trainers(site: Path) -> None:
    import os

    out = subprocess.run([str(Path(sys.executable).parent / "nnunet-se"), "list"], check=True, capture_output=True,
                         text=True, env=_plugin_env(dict(os.environ), site)).stdout
    trainers, families, modules = out.split("\n\n")
    assert _rows(modules)["eca"][1:3] == ["3", "3"]  # kernel size 3: 3 weights at any C, both flavours
    rows = _rows(trainers)
    assert rows[TRAINER][1:5] == ["eca", "nnUNetTrainer", "-", "eca"]
    assert rows["nnUNetTrainerPaperECA"][1:5] == ["eca", "nnUNetTrainerPaper", "-", "eca"]
    assert _rows(families)["eca"][1].split() == ["nnUNetTrainer", "nnUNetTrainerPaper", TRAINER,
                                                 "nnUNetTrainerPaperECA"]


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_trained_by_nnunet_and_captured_by_excitations(site: Path, nnunet_preprocessed, tmp_path: Path) -> None:
    """``nnUNetv2_train -tr nnUNetTrainerECA`` (1 epoch x 1 iteration): the checkpoint holds one ECA kernel per
    encoder stage but the bottleneck; ``excitations`` writes one (cases, C) matrix per depth, C from the plans."""
    import torch

    run = nnunet_preprocessed
    env = _plugin_env(run.env, site)
    run.run("nnUNetv2_train", str(run.dataset_id), run.configuration, "0", "-tr", TRAINER, "-device", "cpu",
            **{**env, "NNUNET_SE_NUM_EPOCHS": "1", "NNUNET_SE_NUM_ITERATIONS": "1"})
    folder = run.model_folder(TRAINER)
    plans = json.loads((folder / "plans.json").read_text())
    channels = plans["configurations"][run.configuration]["architecture"]["arch_kwargs"]["features_per_stage"][:-1]
    weights = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                         weights_only=False)["network_weights"]
    kernels = [k for k in weights if k.endswith(".module.conv.weight") and weights[k].shape == (1, 1, 3)]
    stages = sorted(int(m[1]) for k in kernels if (m := re.match(r"encoder\.stages\.(\d+)\.", k)))  # the decoder
    assert stages == list(range(len(channels))) and len(channels) >= 2  # holds the same encoder a second time
    out = tmp_path / "exc"
    run.run("nnunet-se-analyze", "excitations", "-d", str(run.dataset_id), "-tr", TRAINER, "-f", "0",
            "--checkpoint", "final", "--device", "cpu", "-o", str(out), **env)
    val = json.loads((run.preprocessed / run.dataset_name / "splits_final.json").read_text())[0]["val"]
    with np.load(out / f"{run.dataset_name}__{TRAINER}__{run.plans}__{run.configuration}__fold_0.npz") as data:
        assert sorted(k for k in data.files if k.startswith("depth_")) == [
            f"depth_{d}" for d in range(1, len(channels) + 1)]
        for depth, width in enumerate(channels, start=1):
            gates = data[f"depth_{depth}"]
            assert gates.shape == (len(val), width) and np.all((gates > 0) & (gates < 1))  # a sigmoid's open range


def _module_class(name: object, with_count: bool = True) -> type:
    attrs = {"name": name, "__init__": lambda self, *args, **kwargs: None}
    if with_count:
        attrs["parameter_count"] = staticmethod(lambda channels, spatial_dims=2, flavour="paper": 0)
    return type("Gate", (), attrs)


@pytest.mark.parametrize(
    ("name", "with_count", "message"),
    [
        ("cse", True, "'cse' is taken by nnunet_se.modules.cse.CSE"),
        ("none", True, "lower-case identifier other than none"),
        ("ECA", True, "lower-case identifier"),
        ("1eca", True, "lower-case identifier"),
        ("", True, "lower-case identifier"),
        (None, True, "lower-case identifier"),
        ("eca", False, "has no parameter_count"),
    ],
)
def test_register_recalibration_refuses(name: object, with_count: bool, message: str,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from nnunet_se.modules import registry

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    with pytest.raises(ValueError, match=re.escape(message)):
        registry.register_recalibration(_module_class(name, with_count))


def test_register_recalibration_accepts_a_new_name_once_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    from nnunet_se.modules import registry

    monkeypatch.setattr(registry, "REGISTRY", dict(registry.REGISTRY))
    gate = _module_class("eca_2")
    assert registry.register_recalibration(gate) is gate and registry.register_recalibration(gate) is gate
    assert registry.available_recalibrations()[-1] == "eca_2" and registry.parameter_count("eca_2", 64) == 0
    with pytest.raises(ValueError, match="taken by"):
        registry.register_recalibration(_module_class("eca_2"))


@pytest.fixture
def trainer_registry(monkeypatch: pytest.MonkeyPatch):
    """The trainer registry with an empty set of registered trainers, its caches cleared before and after."""
    from nnunet_se import trainer_registry

    monkeypatch.setattr(trainer_registry, "_REGISTERED", {})
    trainer_registry.trainer_infos.cache_clear()
    trainer_registry._families.cache_clear()
    yield trainer_registry
    monkeypatch.undo()
    trainer_registry.trainer_infos.cache_clear()
    trainer_registry._families.cache_clear()


def test_register_trainers(trainer_registry) -> None:
    from nnunet_se.trainers import RecalibrationTrainer, nnUNetTrainerCSE

    new = type("nnUNetTrainerNew", (RecalibrationTrainer,), {"recalibration": "cse", "family": "new"})
    trainer_registry.register_trainers(new)
    trainer_registry.register_trainers(new)  # the same class again: allowed
    assert trainer_registry.families()["new"] == ("nnUNetTrainer", "nnUNetTrainerNew")
    assert trainer_registry.baseline_of("nnUNetTrainerNew") == "nnUNetTrainer"
    for taken in (nnUNetTrainerCSE, type("nnUNetTrainer", (RecalibrationTrainer,), {}),
                  type("nnUNetTrainerNew", (RecalibrationTrainer,), {})):
        with pytest.raises(ValueError, match=f"trainer name {taken.__name__} is taken"):
            trainer_registry.register_trainers(taken)
    with pytest.raises(TypeError, match="not a subclass of nnunet_se.trainers.RecalibrationTrainer"):
        trainer_registry.register_trainers(type("nnUNetTrainerLoose", (), {}))


def test_a_plugin_that_does_not_import_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A distribution on sys.path whose nnunet_se.plugins entry point names a module that raises on import."""
    from nnunet_se.errors import UserError
    from nnunet_se.plugins import GROUP, load_plugins

    info = tmp_path / "broken_gates-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-gates\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\nbroken = broken_gates\n")
    (tmp_path / "broken_gates.py").write_text("raise RuntimeError('no CUDA here')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(UserError, match=re.escape(f"plugin broken = broken_gates (entry point group {GROUP}) does "
                                                  "not import: RuntimeError: no CUDA here")):
        load_plugins.__wrapped__()  # uncached: the cached answer of this process is left as it is
    monkeypatch.delitem(sys.modules, "broken_gates", raising=False)

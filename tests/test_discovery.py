"""Discovery: the nnUNet_extTrainer shim, ``nnunet-se env``, and every plugin trainer through nnU-Net's own lookup,
pickling, a train step and a predict step (in-process, on the shared tiny preprocessed dataset)."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest
import torch

from nnunet_se.injection import recalibration_paths
from nnunet_se.layout import NNUNET_ROOTS, shim_folder
from nnunet_se.trainers import ALL_TRAINERS, RecalibrationTrainer
from nnunet_se.workflow import env as env_command

TRAINER_NAMES = sorted(ALL_TRAINERS)


def test_shim_folder_holds_only_the_shim() -> None:
    folder = shim_folder()
    assert sorted(p.name for p in folder.glob("*.py")) == ["__init__.py", "nnunet_se_trainers_shim.py"]
    assert not [p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"]


def test_all_trainers_are_exported() -> None:
    """What the shim does: ``from nnunet_se.trainers import *`` binds every trainer under its own name."""
    namespace: dict[str, object] = {}
    exec("from nnunet_se.trainers import *", namespace)  # noqa: S102 - the shim's one line, verbatim
    assert {k: v for k, v in namespace.items() if k.startswith("nnUNetTrainer")} == ALL_TRAINERS
    for name, cls in ALL_TRAINERS.items():
        assert cls.__name__ == name and issubclass(cls, RecalibrationTrainer)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "export nnUNet_extTrainer={folder}"),
        (["--fish"], "set -gx nnUNet_extTrainer {folder}"),
        (["--csh"], "setenv nnUNet_extTrainer {folder}"),
    ],
)
def test_env_prints_exports(args, expected, capsys, monkeypatch) -> None:
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    for name in NNUNET_ROOTS:
        monkeypatch.setenv(name, "/somewhere")
    assert env_command.main(args, prog="nnunet-se env") == 0
    out, err = capsys.readouterr()
    assert out == expected.format(folder=shim_folder()) + "\n"
    assert err == ""


def test_env_keeps_other_ext_folders_and_warns_about_unset_paths(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("nnUNet_extTrainer", f"{tmp_path}:{shim_folder()}")
    monkeypatch.setenv("nnUNet_raw", "/raw")
    monkeypatch.delenv("nnUNet_preprocessed", raising=False)
    monkeypatch.setenv("nnUNet_results", "")
    assert env_command.main([], prog="nnunet-se env") == 0
    out, err = capsys.readouterr()
    assert out == f"export nnUNet_extTrainer={shim_folder()}:{tmp_path}\n"
    assert err.splitlines() == [
        f"nnunet-se env: warning: {name} is not set; nnU-Net needs it (see nnU-Net's setting_up_paths.md)"
        for name in ("nnUNet_preprocessed", "nnUNet_results")
    ]


@pytest.mark.parametrize("name", TRAINER_NAMES)
def test_nnunet_lookup_finds_trainer_and_it_pickles(name: str, monkeypatch) -> None:
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    monkeypatch.setenv("nnUNet_extTrainer", str(shim_folder()))
    found = recursive_find_trainer_class_by_name(name)
    assert found is ALL_TRAINERS[name]
    assert found.__module__.startswith("nnunet_se.trainers.")
    assert pickle.loads(pickle.dumps(found)) is found


def _make_trainer(cls: type, run, monkeypatch):
    """Instantiate ``cls`` on the shared preprocessed dataset as ``nnUNetv2_train`` would (CPU)."""
    import json

    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_n_proc_DA", "nnUNet_def_n_proc"):
        monkeypatch.setenv(key, run.env[key])
    monkeypatch.setenv("NNUNET_SE_SEED", "0")
    folder = run.preprocessed / run.dataset_name
    plans = json.loads((folder / f"{run.plans}.json").read_text())
    plans["continue_training"] = False  # set by nnU-Net's run_training before instantiation
    dataset_json = json.loads((folder / "dataset.json").read_text())
    return cls(plans=plans, configuration=run.configuration, fold=0, dataset_json=dataset_json,
               device=torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
@pytest.mark.parametrize("name", TRAINER_NAMES)
def test_train_step_and_predict_step(name: str, nnunet_preprocessed, monkeypatch) -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    cls = ALL_TRAINERS[name]
    trainer = _make_trainer(cls, nnunet_preprocessed, monkeypatch)
    trainer.initialize()
    trainer.batch_size = 2  # one small step is enough; the paper trainers plan 16
    dl_train, _ = trainer.get_dataloaders()
    network = trainer.network
    paths = recalibration_paths(network)
    n_stages = len(network.encoder.stages)
    if cls.recalibration is None:
        assert paths == []
    else:
        assert len(paths) == n_stages - 1
        assert {network.get_submodule(p).name for p in paths} == {cls.recalibration}
        assert {network.get_submodule(p).flavour for p in paths} == {cls.flavour}
    before = [p.detach().clone() for p in network.parameters()]

    result = trainer.train_step(next(dl_train))

    assert np.isfinite(result["loss"])
    for path in paths:  # the modules are on the loss's graph
        grads = [p.grad for p in network.get_submodule(path).parameters()]
        assert all(g is not None for g in grads)
        assert not grads or any(float(g.abs().sum()) > 0 for g in grads)
    assert any(not torch.equal(a, b) for a, b in zip(before, network.parameters(), strict=True))

    # predict step as nnUNetv2_predict does it: class-level build without DS, load the trained weights (strict)
    inference_net = cls.build_network_architecture(
        trainer.plans_manager, trainer.configuration_manager, trainer.num_input_channels,
        trainer.label_manager.num_segmentation_heads, enable_deep_supervision=False,
    )
    inference_net.load_state_dict(network.state_dict())
    assert recalibration_paths(inference_net) == paths
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                perform_everything_on_device=False, device=torch.device("cpu"), allow_tqdm=False)
    predictor.manual_initialization(
        inference_net, trainer.plans_manager, trainer.configuration_manager, [inference_net.state_dict()],
        trainer.dataset_json, name, trainer.inference_allowed_mirroring_axes,
    )
    key = sorted(trainer.do_split()[1])[0]
    data, _, _, _ = trainer.dataset_class(trainer.preprocessed_dataset_folder, [key]).load_case(key)
    data = torch.from_numpy(np.asarray(data[:]))
    logits = predictor.predict_logits_from_preprocessed_data(data)
    assert tuple(logits.shape) == (trainer.label_manager.num_segmentation_heads, *data.shape[1:])
    assert torch.isfinite(logits).all()


def _nnunet_paths(monkeypatch, tmp_path) -> None:
    for name in NNUNET_ROOTS:
        monkeypatch.setenv(name, str(tmp_path))


def test_check_passes_on_this_installation(capsys, monkeypatch, tmp_path) -> None:
    from nnunet_se.workflow import selfcheck

    _nnunet_paths(monkeypatch, tmp_path)
    monkeypatch.setenv("nnUNet_extTrainer", str(shim_folder()))
    assert selfcheck.main([], prog="nnunet-se check") == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"{title}: ok" for title, _ in selfcheck.CHECKS]
    assert "error" not in err


def test_check_reports_one_line_per_problem(capsys, monkeypatch, tmp_path) -> None:
    from nnunet_se.workflow import selfcheck

    _nnunet_paths(monkeypatch, tmp_path)
    monkeypatch.delenv("nnUNet_results")
    monkeypatch.delenv("nnUNet_extTrainer", raising=False)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # import torchvision now raises ImportError
    assert selfcheck.main([], prog="nnunet-se check") == 1
    out, err = capsys.readouterr()
    errors = [line for line in err.splitlines() if line.startswith("nnunet-se check: error: ")]
    assert len(errors) == 3
    assert "nnUNet_results is not set" in errors[0]
    assert f"nnUNet_extTrainer does not contain {shim_folder()}" in errors[1]
    assert errors[2].startswith("nnunet-se check: error: torchvision does not import") and "fix: " in errors[2]
    assert out.splitlines() == ["nnunetv2 version: ok", "environment variables: FAILED", "torchvision import: FAILED",
                                "trainer lookup and pickling: skipped (fix torchvision first)"]

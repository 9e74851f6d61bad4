"""Trainers on nnU-Net's own plans (trainers/auto.py, trainers/base.py): constructor signature, network build for
2d/3d_fullres x PlainConvUNet/ResidualEncoderUNet plans, environment controls, and the real CLI round trip
(train, ``--c`` resume, ``--val``, predict, find_best_configuration)."""

from __future__ import annotations

import inspect
import json
import shutil

import numpy as np
import pytest
import torch
from nnunet_e2e import SHORT_TRAINING
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from PIL import Image
from trainer_checks import assert_network_keeps_the_promise

from nnunet_se.injection import recalibration_paths
from nnunet_se.modules.mono import Mono
from nnunet_se.trainer_registry import families, trainer_infos
from nnunet_se.trainers import ALL_TRAINERS
from nnunet_se.trainers.auto import AUTO_TRAINERS
from nnunet_se.trainers.base import STOCK_TRAINER, env_int
from nnunet_se.workflow.demo_trainers import DEMO_TRAINERS

# every plugin trainer on nnU-Net's plans: the auto and original families without the stock nnUNetTrainer
AUTO = [name for family in ("auto", "original") for name in families()[family] if name in ALL_TRAINERS]


def planned_configuration(arch: str, dims: int) -> ConfigurationManager:
    """A configuration as nnU-Net's planners write it (3 stages 32/64/128, InstanceNorm, LeakyReLU)."""
    conv = "torch.nn.modules.conv.Conv2d" if dims == 2 else "torch.nn.modules.conv.Conv3d"
    norm = f"torch.nn.modules.instancenorm.InstanceNorm{dims}d"
    kwargs = {
        "n_stages": 3, "features_per_stage": [32, 64, 128], "conv_op": conv, "kernel_sizes": [[3] * dims] * 3,
        "strides": [[1] * dims, [2] * dims, [2] * dims], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
        "norm_op": norm, "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
        "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True},
    }
    if arch == "plain":
        name, kwargs["n_conv_per_stage"] = "dynamic_network_architectures.architectures.unet.PlainConvUNet", [2, 2, 2]
    else:
        name, kwargs["n_blocks_per_stage"] = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet", [
            1, 2, 2]
    return ConfigurationManager({
        "patch_size": [32, 32] if dims == 2 else [16, 16, 16],
        "architecture": {"network_class_name": name, "arch_kwargs": kwargs,
                         "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
    })


def test_families_cover_the_auto_module_exactly() -> None:
    """Every class of trainers/auto.py is in the auto or the original family, once."""
    assert sorted(AUTO) == sorted(t.__name__ for t in AUTO_TRAINERS)


@pytest.mark.parametrize("name", [*(n for n in trainer_infos() if n != STOCK_TRAINER), *DEMO_TRAINERS])
def test_init_signature_is_nnunets(name: str) -> None:
    """nnU-Net records __init__ arguments by name (``nnUNetTrainer.__init__``'s ``my_init_kwargs``) and re-creates
    trainers from them: every trainer of the registry (the paper family overrides __init__) and every demo trainer
    has nnU-Net's signature."""
    trainer = ALL_TRAINERS.get(name) or DEMO_TRAINERS[name]
    ours = inspect.signature(trainer.__init__).parameters
    theirs = inspect.signature(nnUNetTrainer.__init__).parameters
    assert [(p.name, p.kind, p.default) for p in ours.values()] == [(p.name, p.kind, p.default)
                                                                    for p in theirs.values()]


# every trainer on 2d PlainConvUNet plans; the other plan kinds with two trainers (test_injection covers the
# full module x architecture x dimension table)
BUILD_CASES = [(name, "plain", 2) for name in AUTO] + [
    (name, arch, dims) for name in ("nnUNetTrainerMono", "nnUNetTrainerFCA_original")
    for arch, dims in (("plain", 3), ("resenc", 2), ("resenc", 3))
]


@pytest.mark.parametrize(("name", "arch", "dims"), BUILD_CASES)
def test_build_network_architecture_like_the_predictor(name: str, arch: str, dims: int) -> None:
    """Built on the class (as nnUNetv2_predict does, no DS) it has the module its name promises after every encoder
    stage but the bottleneck, in the name's flavour, and loads the training weights."""
    trainer = ALL_TRAINERS[name]
    configuration = planned_configuration(arch, dims)
    train_net = trainer.build_network_architecture(None, configuration, 3, 2, enable_deep_supervision=True)
    infer_net = trainer.build_network_architecture(None, configuration, 3, 2, enable_deep_supervision=False)
    assert_network_keeps_the_promise(name, train_net)
    assert_network_keeps_the_promise(name, infer_net)
    assert recalibration_paths(infer_net) == recalibration_paths(train_net)
    for module in (m for m in train_net.modules() if isinstance(m, Mono)):  # docs/trainers.md: per-image min-max
        assert module.minmax == "sample"
    infer_net.load_state_dict(train_net.state_dict())  # strict: same module tree
    with torch.no_grad():
        out = infer_net.eval()(torch.randn(1, 3, *configuration.patch_size))
    assert out.shape == (1, 2, *configuration.patch_size)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, None), ("", None), ("3", 3), (" 7 ", 7), ("0", ValueError), ("x", ValueError), ("2.5", ValueError)],
)
def test_env_int(value, expected, monkeypatch) -> None:
    if value is None:
        monkeypatch.delenv("NNUNET_SE_NUM_EPOCHS", raising=False)
    else:
        monkeypatch.setenv("NNUNET_SE_NUM_EPOCHS", value)
    if expected is ValueError:
        with pytest.raises(ValueError, match="NNUNET_SE_NUM_EPOCHS"):
            env_int("NNUNET_SE_NUM_EPOCHS", 1)
    else:
        assert env_int("NNUNET_SE_NUM_EPOCHS", 1) == expected


def _trainer(run, monkeypatch, name: str = "nnUNetTrainerSRM", **env: str):
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.setenv(key, run.env[key])
    for key in ("NNUNET_SE_NUM_EPOCHS", "NNUNET_SE_NUM_ITERATIONS", "NNUNET_SE_SEED"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    folder = run.preprocessed / run.dataset_name
    plans = json.loads((folder / f"{run.plans}.json").read_text())
    plans["continue_training"] = False
    dataset_json = json.loads((folder / "dataset.json").read_text())
    return ALL_TRAINERS[name](plans, run.configuration, 0, dataset_json, torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_environment_controls(nnunet_preprocessed, monkeypatch) -> None:
    stock = _trainer(nnunet_preprocessed, monkeypatch)
    assert (stock.num_epochs, stock.num_iterations_per_epoch, stock.num_val_iterations_per_epoch) == (1000, 250, 50)
    assert stock.seed is None
    short = _trainer(nnunet_preprocessed, monkeypatch, NNUNET_SE_NUM_EPOCHS="3", NNUNET_SE_NUM_ITERATIONS="4")
    assert (short.num_epochs, short.num_iterations_per_epoch, short.num_val_iterations_per_epoch) == (3, 4, 4)
    with pytest.raises(ValueError, match="NNUNET_SE_NUM_ITERATIONS=0 must be >= 1"):
        _trainer(nnunet_preprocessed, monkeypatch, NNUNET_SE_NUM_ITERATIONS="0")


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_seed_makes_the_initial_network_reproducible(nnunet_preprocessed, monkeypatch) -> None:
    weights = {}
    for label, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        trainer = _trainer(nnunet_preprocessed, monkeypatch, NNUNET_SE_SEED=seed)
        trainer.initialize()
        weights[label] = trainer.network.state_dict()
    assert weights["a"].keys() == weights["c"].keys()
    assert all(torch.equal(weights["a"][k], weights["b"][k]) for k in weights["a"])
    assert not all(torch.equal(weights["a"][k], weights["c"][k]) for k in weights["a"])


def _check_checkpoint_has_modules(run, trainer: str, plans: str, results_root) -> int:
    """Rebuild the network from the results folder's plans as the predictor does; strict-load the checkpoint."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = results_root / run.dataset_name / f"{trainer}__{plans}__{run.configuration}"
    checkpoint = torch.load(folder / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trainer
    plans_manager = PlansManager(str(folder / "plans.json"))
    cls = ALL_TRAINERS[trainer]
    net = cls.build_network_architecture(plans_manager, plans_manager.get_configuration(run.configuration), 3, 2,
                                         enable_deep_supervision=False)
    net.load_state_dict(checkpoint["network_weights"])
    paths = recalibration_paths(net)
    assert len(paths) == len(net.encoder.stages) - 1
    assert {net.get_submodule(p).name for p in paths} == {cls.recalibration}
    assert any(key.startswith(paths[0] + ".") for key in checkpoint["network_weights"])
    return checkpoint["current_epoch"]


ROUND_TRIPS = [  # trainer, plans, also run --val (one is enough: it is the same code path for every trainer)
    ("nnUNetTrainerMono", "nnUNetPlans", True),
    ("nnUNetTrainerPaperMono", "nnUNetPlans", False),
    ("nnUNetTrainerSCSE", "nnUNetResEncUNetMPlans", False),
]


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
@pytest.mark.parametrize(("trainer", "plans", "check_val"), ROUND_TRIPS)
def test_cli_round_trip(trainer: str, plans: str, check_val: bool, nnunet_e2e, tmp_path) -> None:
    """train (fixture or here) -> copy -> ``--c`` to a 2nd epoch -> [``--val``] -> predict -> masks + modules."""
    run = nnunet_e2e
    assert trainer in ALL_TRAINERS
    if trainer not in run.trainers:
        if plans != run.plans:
            # planning calls torch.set_num_threads(nnUNet_n_proc_DA): it must be positive here
            run.run("nnUNetv2_plan_experiment", "-d", str(run.dataset_id), "-pl", "nnUNetPlannerResEncM",
                    nnUNet_n_proc_DA="1")
        run.train(trainer, plans=plans)
    results = tmp_path / "results"  # resume a copy: the fixture's models stay as trained
    source = run.model_folder(trainer, plans)
    shutil.copytree(source, results / run.dataset_name / source.name)
    env = {"nnUNet_results": str(results)}

    assert _check_checkpoint_has_modules(run, trainer, plans, results) == 1
    out = tmp_path / "predictions"
    predict = ["nnUNetv2_predict", "-i", str(run.raw / run.dataset_name / "imagesTs"), "-o", str(out), "-d",
               str(run.dataset_id), "-c", run.configuration, "-f", "0", "-tr", trainer, "-p", plans, "-device", "cpu",
               "-npp", "0", "-nps", "0"]
    resume = run.train_command(trainer, "--c", plans=plans)
    # one process per batch of commands with nothing to check between them (NnunetRun.run_all)
    run.run_all([resume] if check_val else [resume, predict], **{**SHORT_TRAINING, "NNUNET_SE_NUM_EPOCHS": "2"}, **env)
    assert _check_checkpoint_has_modules(run, trainer, plans, results) == 2
    logs = "".join(p.read_text() for p in (results / run.dataset_name / source.name / "fold_0").glob("training_log_*"))
    assert "Epoch 1" in logs
    summary = results / run.dataset_name / source.name / "fold_0" / "validation" / "summary.json"
    assert "foreground_mean" in json.loads(summary.read_text())  # final validation after the resumed training
    if check_val:
        summary.unlink()
        run.run_all([run.train_command(trainer, "--val", plans=plans), predict], **SHORT_TRAINING, **env)
        assert "foreground_mean" in json.loads(summary.read_text())

    cases = sorted(p.name.removesuffix("_0000.png") for p in (run.raw / run.dataset_name / "imagesTs").glob("*.png"))
    assert sorted(p.stem for p in out.glob("*.png")) == cases
    for case in cases:
        mask = np.asarray(Image.open(out / f"{case}.png"))
        assert mask.shape == (32, 32) and set(np.unique(mask)) <= {0, 1}


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_find_best_configuration(nnunet_e2e, tmp_path) -> None:
    run = nnunet_e2e
    trainer = "nnUNetTrainerMono"
    results = tmp_path / "results"
    source = run.model_folder(trainer)
    shutil.copytree(source, results / run.dataset_name / source.name)
    run.run("nnUNetv2_find_best_configuration", str(run.dataset_id), "-c", run.configuration, "-tr", trainer,
            "-f", "0", "-np", "1", nnUNet_results=str(results))
    inference = json.loads((results / run.dataset_name / "inference_information.json").read_text())
    assert inference["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == trainer

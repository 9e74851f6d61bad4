"""The paper's fixed-configuration trainers: ES split, plateau schedule, network protocol, in-process training."""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.utilities.crossval_split import generate_crossval_split
from torch import nn
from trainer_checks import assert_network_keeps_the_promise, promise

from nnunet_se.modules import parameter_count
from nnunet_se.trainer_registry import families
from nnunet_se.trainers.early_stopping import EarlyStopping, read_case_table_columns, split_early_stopping
from nnunet_se.trainers.paper import PAPER_TRAINERS, nnUNetTrainerPaper, nnUNetTrainerPaperMono
from nnunet_se.trainers.paper_data import ES_SPLIT_FILE
from nnunet_se.trainers.paper_network import build_paper_unet
from nnunet_se.trainers.paper_selection import CHECKPOINT_KEY
from nnunet_se.trainers.plateau import build_plateau_scheduler

KEYS = [f"case{i:03d}" for i in range(100)]


# ---- early-stopping split -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n, expected", [(2, 1), (9, 1), (10, 1), (14, 1), (15, 2), (25, 3), (100, 10), (101, 10)])
def test_es_split_size(n: int, expected: int) -> None:
    fit, es = split_early_stopping(KEYS[:n] if n <= 100 else [f"k{i}" for i in range(n)], 0.1, seed=0)
    assert len(es) == expected
    assert len(fit) + len(es) == n and not set(fit) & set(es)


def test_es_split_deterministic_and_seeded() -> None:
    a = split_early_stopping(KEYS, 0.1, seed=7)
    b = split_early_stopping(list(reversed(KEYS)), 0.1, seed=7)  # input order does not matter
    c = split_early_stopping(KEYS, 0.1, seed=8)
    assert a == b
    assert a[1] != c[1]
    assert a[0] == sorted(a[0]) and a[1] == sorted(a[1])


@pytest.mark.parametrize(
    "sizes, expected",
    [
        ({"benign": 60, "malignant": 30, "normal": 10}, {"benign": 6, "malignant": 3, "normal": 1}),
        ({"benign": 45, "malignant": 25}, {"benign": 5, "malignant": 2}),  # 7 = 4.5 + 2.5: tie -> larger group
        ({"a": 19, "b": 1}, {"a": 2, "b": 0}),
    ],
)
def test_es_split_stratified(sizes: dict[str, int], expected: dict[str, int]) -> None:
    classes, i = {}, 0
    for name, count in sizes.items():
        for _ in range(count):
            classes[f"c{i:03d}"] = name
            i += 1
    _, es = split_early_stopping(list(classes), 0.1, seed=3, classes=classes)
    counts = {name: sum(classes[k] == name for k in es) for name in sizes}
    assert counts == expected


def test_es_split_within_fold_training_cases() -> None:
    for fold in generate_crossval_split(KEYS, seed=12345, n_splits=5):
        fit, es = split_early_stopping(fold["train"], 0.1, seed=12345)
        assert set(es) <= set(fold["train"]) and not set(es) & set(fold["val"])
        assert len(es) == 8 and set(fit) | set(es) == set(fold["train"])


def test_es_split_keeps_duplicate_groups_together() -> None:
    groups = {k: f"dup_{i // 5:03d}" for i, k in enumerate(KEYS[:40])}  # 8 groups of 5 cases, 60 unique cases
    for seed in range(20):
        fit, es = split_early_stopping(KEYS, 0.1, seed=seed, groups=groups)
        for group in set(groups.values()):
            members = {k for k, g in groups.items() if g == group}
            assert members <= set(es) or not members & set(es)
        assert 10 <= len(es) <= 14 and len(fit) + len(es) == 100


def test_case_table_columns_from_the_converters_table(tmp_path: Path) -> None:
    from nnunet_se.conversion.cases import write_case_table

    assert read_case_table_columns(tmp_path) == (None, None)
    rows = [{"case_id": "a", "subset": "train", "class": "benign", "duplicate_group": "dup_001"},
            {"case_id": "b", "subset": "train", "class": "malignant", "duplicate_group": "dup_001"},
            {"case_id": "c", "subset": "train", "class": "benign"}]
    write_case_table(tmp_path / "nnunet_se_cases.csv", rows)
    assert read_case_table_columns(tmp_path) == ({"a": "benign", "b": "malignant", "c": "benign"},
                                                 {"a": "dup_001", "b": "dup_001"})
    write_case_table(tmp_path / "nnunet_se_cases.csv", [{"case_id": "a", "subset": "train"}])
    assert read_case_table_columns(tmp_path) == (None, None)


def test_early_stopping_patience_and_state() -> None:
    stop = EarlyStopping(patience=2)
    assert [stop.update(v, e) for e, v in enumerate([1.0, 0.5, 0.7, 0.5])] == [True, True, False, False]
    assert stop.should_stop and stop.best_epoch == 1 and stop.best_loss == 0.5
    copy = EarlyStopping(patience=2)
    copy.load_state_dict(stop.state_dict())
    assert copy == stop
    assert not EarlyStopping(patience=None, stale_epochs=10**6).should_stop


# ---- plateau scheduler ----------------------------------------------------------------------------------------------
def _optimizer() -> torch.optim.Optimizer:
    return torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=1e-4)


def test_plateau_halves_after_patience() -> None:
    opt = _optimizer()
    sched = build_plateau_scheduler(opt, "plateau", factor=0.5, patience=5)
    lrs = []
    for loss in [1.0] + [1.0] * 12:  # best, then 12 epochs without improvement
        sched.step(loss)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[:6] == [1e-4] * 6  # 5 stale epochs are tolerated
    assert lrs[6] == 5e-5  # the 6th stale epoch halves the rate (halving is exact in binary floating point)
    assert lrs[12] == 2.5e-5


def test_constant_schedule_never_drops() -> None:
    opt = _optimizer()
    sched = build_plateau_scheduler(opt, "constant")
    for _ in range(30):
        sched.step(1.0)
    assert opt.param_groups[0]["lr"] == 1e-4


def test_plateau_resume_is_exact() -> None:
    losses = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0, 0.91, 0.92, 0.93, 0.94, 0.95, 0.96, 0.97]
    opt = _optimizer()
    ref = build_plateau_scheduler(opt)
    ref_lrs = []
    for loss in losses:
        ref.step(loss)
        ref_lrs.append(opt.param_groups[0]["lr"])

    opt_a = _optimizer()
    first = build_plateau_scheduler(opt_a)
    for loss in losses[:5]:
        first.step(loss)
    state, opt_state = first.state_dict(), opt_a.state_dict()
    opt_b = _optimizer()
    resumed = build_plateau_scheduler(opt_b)
    opt_b.load_state_dict(opt_state)
    resumed.load_state_dict(state)
    lrs = []
    for loss in losses[5:]:
        resumed.step(loss)
        lrs.append(opt_b.param_groups[0]["lr"])
    assert lrs == ref_lrs[5:]
    assert min(lrs) < 1e-4  # the resumed run did reach a reduction


def test_es_loss_is_the_case_weighted_mean_of_its_batches() -> None:
    """16 cases at loss 1.0 and a last batch of 2 at 4.0: (16 + 8) / 18 = 4/3 (Keras' val_loss), not 2.5."""
    from nnunetv2.training.logging.nnunet_logger import LocalLogger

    trainer = object.__new__(nnUNetTrainerPaper)  # only the state on_validation_epoch_end reads
    trainer.is_ddp, trainer.current_epoch, trainer.logger = False, 0, LocalLogger()
    trainer.lr_scheduler = build_plateau_scheduler(_optimizer(), "constant")
    hard = {"tp_hard": np.array([1.0]), "fp_hard": np.array([0.0]), "fn_hard": np.array([0.0])}
    trainer.on_validation_epoch_end([{"loss": np.float32(1.0), "cases": 16, **hard},
                                     {"loss": np.float32(4.0), "cases": 2, **hard}])
    # logged as float32: one rounding, relative 2**-24 = 6e-8
    assert trainer.logger.get_value("val_losses", step=-1) == pytest.approx(4 / 3, rel=1e-7, abs=0)


# ---- network --------------------------------------------------------------------------------------------------------
def _conv_params(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k * k + c_out


def _paper_unet_params(c_in: int, widths: tuple[int, ...] = (32, 64, 128, 256), skips: bool = True) -> int:
    """Closed form of the authors' U-Net: encoder 2 convs/stage; decoder per level 2 convs on [upsampled, skip]
    (no learned upsampling); one 1x1 conv to a single (sigmoid) channel."""
    total, prev = 0, c_in
    for w in widths:
        total += _conv_params(prev, w, 3) + _conv_params(w, w, 3)
        prev = w
    for deep, w in zip(widths[:0:-1], widths[-2::-1], strict=True):
        total += _conv_params(deep + w if skips else deep, w, 3) + _conv_params(w, w, 3)
    return total + _conv_params(widths[0], 1, 1)


def test_paper_unet_protocol() -> None:
    net = build_paper_unet(3, 2)
    assert sum(p.numel() for p in net.parameters()) == _paper_unet_params(3) == 1_946_881
    assert [s[-1].output_channels for s in net.encoder.stages] == [32, 64, 128, 256]
    convs = [m for m in net.encoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.encoder.modules()) == 3
    assert not net.decoder.deep_supervision
    acts = {type(m) for m in net.modules() if isinstance(m, (nn.ReLU, nn.LeakyReLU, nn.PReLU, nn.GELU))}
    assert acts == {nn.ReLU}
    assert not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in net.modules())
    out = net(torch.rand(2, 3, 64, 48))
    assert out.shape == (2, 2, 64, 48)
    assert torch.equal(out[:, 0], torch.zeros_like(out[:, 0]))  # [0, z]: softmax = (1 - sigmoid(z), sigmoid(z))


def test_paper_unet_batchnorm_variant() -> None:
    # with_bn=True of the authors' code: + gamma and beta (2 C) per conv: 2 x (960 encoder + 448 decoder) = 2816
    assert sum(p.numel() for p in build_paper_unet(3, 2, conv_norm="batch").parameters()) == 1_946_881 + 2816


def test_paper_unet_has_one_output_whatever_nnunet_sets() -> None:
    net = build_paper_unet(3, 2)
    net.decoder.deep_supervision = True  # nnU-Net sets it after its final validation
    assert not net.decoder.deep_supervision
    assert isinstance(net(torch.rand(1, 3, 16, 16)), torch.Tensor)


@pytest.mark.parametrize("bad", [{"conv_norm": "group"}, {"downsampling": "avg"}, {"num_classes": 1}])
def test_paper_unet_rejects_unknown_options(bad: dict) -> None:
    with pytest.raises(ValueError, match="valid|num_classes"):
        build_paper_unet(3, **{"num_classes": 2, **bad})


class _Config:
    """The two ConfigurationManager fields the paper trainers read."""

    def __init__(self, median: list[float], patch: list[int] | None = None):
        self.median_image_size_in_voxels = median
        self.patch_size = patch or [224, 224]
        self.data_identifier = "nnUNetPlans_2d"


# fitted_patch_size: per axis min(224, 8 * ceil(median / 8)); 8 = 2 ** (4 stages - 1), the U-Net's downsampling
@pytest.mark.parametrize(
    "median, patch",
    [
        ([224, 224], [224, 224]),  # 8 * ceil(224 / 8) = 8 * 28 = 224 -> min(224, 224) = 224 on both axes
        ([512, 300], [224, 224]),  # 8 * 64 = 512 and 8 * ceil(37.5) = 8 * 38 = 304: both above 224 -> 224
        ([64, 64], [64, 64]),  # 8 * 8 = 64 < 224
        ([60, 37], [64, 40]),  # 8 * ceil(7.5) = 8 * 8 = 64; 8 * ceil(4.625) = 8 * 5 = 40
        ([225.5, 100.2], [224, 104]),  # 8 * ceil(28.19) = 232 -> 224; 8 * ceil(12.525) = 8 * 13 = 104
        ([8.0001, 1], [16, 8]),  # 8 * ceil(1.0000125) = 16 (just over one cell); 8 * ceil(0.125) = 8
    ],
)
def test_patch_fits_the_images(median: list[float], patch: list[int]) -> None:
    assert nnUNetTrainerPaper.fitted_patch_size(_Config(median)) == patch


def test_patch_rejects_3d() -> None:
    with pytest.raises(ValueError, match="2D protocol"):
        nnUNetTrainerPaper.fitted_patch_size(_Config([32, 64, 64]))


@pytest.mark.parametrize("name", families()["paper"])
def test_trainer_networks(name: str) -> None:
    """The module the name promises after each of the 3 encoder stages above the bottleneck; parameters = the
    closed-form U-Net (without the skip halves for cSE-NS) + the modules' closed-form counts."""
    cls = PAPER_TRAINERS[name]
    net = cls.build_network_architecture(None, _Config([224, 224]), 3, 2, enable_deep_supervision=False)
    assert_network_keeps_the_promise(name, net)
    named = promise(name)
    assert named.paper_network and len(net.encoder.stages) == 4
    plain = _paper_unet_params(3, skips=named.skip_connections)
    added = 0 if named.module is None else sum(
        parameter_count(named.module.name, c, 2, named.flavour, feature_size=(224 // 2**s,) * 2)
        for s, c in enumerate((32, 64, 128)))
    assert sum(p.numel() for p in net.parameters()) == plain + added
    net.eval()
    with torch.no_grad():
        assert net(torch.rand(2, 3, 64, 64)).shape == (2, 2, 64, 64)


# ---- in-process training on the tiny preprocessed dataset ------------------------------------------------------------
@dataclass
class PaperRun:
    trainer: nnUNetTrainerPaperMono  # 1 epoch x 2 iterations
    resumed_state: tuple  # (scheduler state, EarlyStopping, current_epoch) of ``stopper`` right after load_checkpoint
    stopper: nnUNetTrainerPaperMono  # resumed (--c) with 3 epochs and patience 1
    fold_dir: Path
    preprocessed: Path


@pytest.fixture(scope="session")  # session: xdist interleaves modules of the group
def paper_run(nnunet_preprocessed, tmp_path_factory):
    """nnUNetTrainerPaperMono trained in-process (1 epoch x 2 iterations), then resumed with early stopping."""
    from batchgenerators.utilities.file_and_folder_operations import load_json

    run = nnunet_preprocessed
    results = tmp_path_factory.mktemp("paper_results")
    env = {"nnUNet_raw": str(run.raw), "nnUNet_preprocessed": str(run.preprocessed), "nnUNet_results": str(results),
           "nnUNet_n_proc_DA": "0", "NNUNET_SE_NUM_EPOCHS": "1", "NNUNET_SE_NUM_ITERATIONS": "2",
           "NNUNET_SE_SEED": "0", "nnUNet_compile": "0"}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        base = run.preprocessed / run.dataset_name

        def make() -> nnUNetTrainerPaperMono:
            plans = load_json(str(base / "nnUNetPlans.json"))
            plans["continue_training"] = False
            return nnUNetTrainerPaperMono(plans, "2d", 0, load_json(str(base / "dataset.json")), torch.device("cpu"))

        trainer = make()
        trainer.run_training()  # final validation: covered by the CLI run of the shared fixture (last test)
        final = os.path.join(trainer.output_folder, "checkpoint_final.pth")
        # --c with 3 epochs (1 iteration each) and patience 1: no epoch beats a best loss of -inf, so it stops
        # after one more epoch and must restore the epoch-0 weights from checkpoint_best.pth
        mp.setenv("NNUNET_SE_NUM_EPOCHS", "3")
        mp.setenv("NNUNET_SE_NUM_ITERATIONS", "1")
        stopper = make()
        stopper.load_checkpoint(final)
        resumed_state = (stopper.lr_scheduler.state_dict(), copy.deepcopy(stopper.early_stopping),
                         stopper.current_epoch)
        stopper.early_stopping.patience, stopper.early_stopping.best_loss = 1, -math.inf
        stopper.run_training()
        yield PaperRun(trainer, resumed_state, stopper, Path(trainer.output_folder), base)


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_paper_training_protocol(paper_run: PaperRun) -> None:
    trainer, fold_dir, base = paper_run.trainer, paper_run.fold_dir, paper_run.preprocessed
    assert trainer.current_epoch == 1
    dev = json.loads((fold_dir / "early_stopping_split.json").read_text())["early_stopping"]
    assert trainer.num_iterations_per_epoch == 2  # env control; the dev loss stays one pass over the dev set
    assert trainer.num_val_iterations_per_epoch == math.ceil(len(dev) / 16)
    median = json.loads((base / "nnUNetPlans.json").read_text())["configurations"]["2d"]["median_image_size_in_voxels"]
    patch = [min(224, 8 * math.ceil(m / 8)) for m in median]  # the fixture's images are smaller than 224
    assert trainer.batch_size == 16 and trainer.configuration_manager.patch_size == patch
    assert not trainer.enable_deep_supervision and trainer.oversample_foreground_percent == 0.0
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    assert trainer.optimizer.param_groups[0]["weight_decay"] == 0.0
    assert trainer.inference_allowed_mirroring_axes is None
    plans = json.loads((fold_dir.parent / "plans.json").read_text())["configurations"]["2d"]
    assert plans["patch_size"] == patch and plans["batch_size"] == 16  # what nnUNetv2_predict will use
    split = json.loads((fold_dir / ES_SPLIT_FILE).read_text())
    fold = json.loads((base / "splits_final.json").read_text())[0]
    assert sorted(split["fit"] + split["early_stopping"]) == sorted(fold["train"])
    assert split["early_stopping"] == sorted(fold["train"])[-1:]  # authors' rule: the last 10 %, at least one
    assert split["test"] == sorted(fold["val"]) and split["rule"] == "authors" and split["stratified"] is False


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_paper_final_checkpoint_holds_the_best_weights(paper_run: PaperRun) -> None:
    fold_dir = paper_run.fold_dir
    best = torch.load(fold_dir / "checkpoint_best.pth", map_location="cpu", weights_only=False)
    final = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    # the resumed run trained one more (worse) epoch, so equal weights mean the best ones were restored
    assert final["current_epoch"] == 2
    for key, value in best["network_weights"].items():
        assert torch.equal(value, final["network_weights"][key]), key
    assert best[CHECKPOINT_KEY]["early_stopping"]["best_epoch"] == 0


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_paper_resume_restores_scheduler_and_early_stopping(paper_run: PaperRun) -> None:
    trainer = paper_run.trainer
    scheduler_state, early_stopping, epoch = paper_run.resumed_state
    assert trainer.lr_scheduler.last_epoch == 1 and np.isfinite(trainer.lr_scheduler.best)
    assert scheduler_state == trainer.lr_scheduler.state_dict()
    assert early_stopping == trainer.early_stopping
    assert epoch == trainer.current_epoch == 1


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_paper_early_stop_after_patience(paper_run: PaperRun) -> None:
    stopper = paper_run.stopper
    assert stopper.num_epochs == 3 and stopper.current_epoch == 2  # resumed at 1, stopped after one more epoch
    assert stopper.lr_scheduler.last_epoch == 2  # the scheduler continued from the checkpoint, not from 0
    final = torch.load(paper_run.fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["current_epoch"] == 2 and final[CHECKPOINT_KEY]["early_stopping"]["stale_epochs"] == 1
    log = "".join(p.read_text() for p in paper_run.fold_dir.glob("training_log_*.txt"))
    assert "Early stop: no better ES loss for 1 epochs" in log


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_paper_cli_training_validates_exactly_the_held_out_cases(nnunet_e2e) -> None:
    """The ``nnUNetv2_train -tr nnUNetTrainerPaperMono`` run of the shared end-to-end fixture (real console script)."""
    assert "nnUNetTrainerPaperMono" in nnunet_e2e.trainers
    fold_dir = nnunet_e2e.model_folder("nnUNetTrainerPaperMono") / "fold_0"
    held_out = json.loads((nnunet_e2e.preprocessed / nnunet_e2e.dataset_name / "splits_final.json").read_text())[0]
    summary = json.loads((fold_dir / "validation" / "summary.json").read_text())
    cases = sorted(Path(c["reference_file"]).name.removesuffix(".png") for c in summary["metric_per_case"])
    assert cases == sorted(held_out["val"])
    assert sorted(p.stem for p in (fold_dir / "validation").glob("*.png")) == cases
    split = json.loads((fold_dir / ES_SPLIT_FILE).read_text())
    assert set(split["early_stopping"]) <= set(held_out["train"]) and split["test"] == sorted(held_out["val"])
    final = torch.load(fold_dir / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert final["trainer_name"] == "nnUNetTrainerPaperMono" and CHECKPOINT_KEY in final
    assert final[CHECKPOINT_KEY]["lr_scheduler"]["last_epoch"] == 1


@pytest.mark.slow
@pytest.mark.xdist_group("nnunet_e2e")
def test_paper_val_and_find_best_configuration(nnunet_e2e, tmp_path: Path) -> None:
    """``--val`` and ``nnUNetv2_find_best_configuration`` on the [0, z]-headed paper network (predict: auto tests)."""
    import shutil

    run, trainer = nnunet_e2e, "nnUNetTrainerPaperMono"
    source = run.model_folder(trainer)
    results = tmp_path / "results"
    shutil.copytree(source, results / run.dataset_name / source.name)
    summary = results / run.dataset_name / source.name / "fold_0" / "validation" / "summary.json"
    summary.unlink()
    run.train(trainer, "--val", "--npz", nnUNet_results=str(results))
    assert json.loads(summary.read_text())["foreground_mean"]["Dice"] >= 0
    run.run("nnUNetv2_find_best_configuration", str(run.dataset_id), "-c", run.configuration, "-tr", trainer,
            "-f", "0", "-np", "1", nnUNet_results=str(results))
    inference = json.loads((results / run.dataset_name / "inference_information.json").read_text())
    assert inference["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == trainer


@pytest.mark.real
def test_es_split_on_converted_busi_samples(real_samples: Path, tmp_path: Path) -> None:
    """Real BUSI samples through ``nnunet-se-convert``: per fold, the ES set is stratified, grouped and disjoint."""
    import subprocess
    import sys

    raw, pre = tmp_path / "raw", tmp_path / "pre"
    subprocess.run([str(Path(sys.executable).parent / "nnunet-se-convert"), "busi",
                    str(real_samples / "busi" / "Dataset_BUSI_with_GT"), "-d", "801", "--size", "32",
                    "--raw-dir", str(raw), "--preprocessed-dir", str(pre)], check=True, capture_output=True)
    dataset = next(raw.glob("Dataset801_*"))
    classes, groups = read_case_table_columns(dataset)
    assert classes and set(classes.values()) == {"benign", "malignant"} and groups
    for fold in json.loads((dataset / "splits_final.json").read_text()):
        fit, es = split_early_stopping(fold["train"], 0.1, seed=12345, classes=classes, groups=groups)
        assert set(fit) | set(es) == set(fold["train"]) and not set(es) & set(fold["val"])
        n = len(fold["train"])
        n_es = math.floor(0.1 * n + 0.5)
        assert len(es) >= n_es
        largest_group = max(list(groups.values()).count(g) for g in set(groups.values()))
        for name in ("benign", "malignant"):  # the class's share, plus what one duplicate group may add
            share = n_es * sum(classes[k] == name for k in fold["train"]) / n
            assert math.floor(share) <= sum(classes[k] == name for k in es) <= math.ceil(share) + largest_group - 1
        for group in set(groups.values()):
            members = {k for k, g in groups.items() if g == group and k in fold["train"]}
            assert members <= set(es) or not members & set(es)

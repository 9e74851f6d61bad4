"""nnunet-se-convert on the real samples: folder and archive inputs, contents, splits, nnU-Net's own checks."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from nnunet_e2e import run_console_scripts
from PIL import Image

from nnunet_se.conversion.cases import read_case_table
from nnunet_se.conversion.cli import main

pytestmark = [pytest.mark.real, pytest.mark.xdist_group("convert_real")]

# dataset -> (sample subfolder, id, folder name, train cases, test cases, classes, duplicate groups)
EXPECTED = {
    "kvasir": ("kvasir_seg", 611, "Dataset611_KvasirSEG", 50, 0, {}, []),
    "busi": (
        "busi", 612, "Dataset612_BUSI", 45, 0, {"benign": 25, "malignant": 20},
        [["malignant_004", "malignant_005"], ["malignant_006", "malignant_007", "malignant_008", "malignant_009"]],
    ),
    "isic2018": ("isic2018", 613, "Dataset613_ISIC2018", 30, 44, {}, []),
}
ISIC_ZIPS = [
    "ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth",
    "ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1-2_Test_Input",
]


def _zip_dir(folder: Path, archive: Path, inner: Path) -> Path:
    """Zip ``folder`` with member names relative to ``inner`` (stored: the JPEGs are compressed already)."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name not in ("MANIFEST.sha256", "PROVENANCE.md"):
                zf.write(path, path.relative_to(inner).as_posix())
    return archive


def _archives(real: Path, dataset: str, out: Path) -> list[Path]:
    """The official archive layout: one zip per ISIC folder, kvasir-seg.zip, Dataset_BUSI_with_GT.zip."""
    if dataset == "isic2018":
        return [_zip_dir(real / "isic2018" / n, out / f"{n}.zip", real / "isic2018") for n in ISIC_ZIPS]
    if dataset == "kvasir":
        return [_zip_dir(real / "kvasir_seg" / "Kvasir-SEG", out / "kvasir-seg.zip", real / "kvasir_seg")]
    return [_zip_dir(real / "busi" / "Dataset_BUSI_with_GT", out / "Dataset_BUSI_with_GT.zip", real / "busi")]


def _run(dataset: str, sources: list[Path], root: Path, workers: int, *extra: str) -> Path:
    sub, dataset_id, folder = EXPECTED[dataset][:3]
    rc = main([dataset, *map(str, sources), "-d", str(dataset_id), "--raw-dir", str(root / "raw"),
               "--preprocessed-dir", str(root / "pre"), "--workers", str(workers), *extra])
    assert rc == 0
    return root / "raw" / folder


@pytest.fixture(scope="session")
def converted(real_samples: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    """Every dataset converted once from its folder (2 workers; all into one nnU-Net root) and once from its
    archives (1 worker; a second root)."""
    folder_root = tmp_path_factory.mktemp("from_folder")
    zip_root = tmp_path_factory.mktemp("from_zip")
    out: dict[str, dict[str, Path]] = {}
    for dataset, (sub, *_) in EXPECTED.items():
        zips = _archives(real_samples, dataset, zip_root)
        out[dataset] = {
            "folder": _run(dataset, [real_samples / sub], folder_root, 2),
            "archive": _run(dataset, zips, zip_root, 1),
        }
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("dataset", list(EXPECTED))
@pytest.mark.parametrize("origin", ["folder", "archive"])
def test_contents(converted: dict[str, dict[str, Path]], dataset: str, origin: str) -> None:
    _, _, name, n_train, n_test, classes, groups = EXPECTED[dataset]
    out = converted[dataset][origin]
    assert out.name == name
    meta = json.loads((out / "dataset.json").read_text())
    assert meta["channel_names"] == {"0": "rgb_to_0_1", "1": "rgb_to_0_1", "2": "rgb_to_0_1"}
    assert meta["labels"] == {"background": 0, "lesion": 1}
    assert (meta["numTraining"], meta["file_ending"]) == (n_train, ".png")
    images = sorted((out / "imagesTr").iterdir())
    labels = sorted((out / "labelsTr").iterdir())
    assert len(images) == len(labels) == n_train
    assert [p.name[: -len("_0000.png")] for p in images] == [p.stem for p in labels]
    assert len(list((out / "imagesTs").glob("*_0000.png")) if n_test else []) == n_test
    assert not (out / "labelsTs").exists()  # no validation/test ground truth in the samples
    for image_path, label_path in zip(images, labels, strict=True):
        image, label = Image.open(image_path), Image.open(label_path)
        assert (image.mode, image.size, label.mode, label.size) == ("RGB", (224, 224), "L", (224, 224))
        values = set(np.unique(np.asarray(label)).tolist())
        assert values == {0, 1}, f"{label_path}: {values}"
    table = read_case_table(out)
    assert len(table) == n_train + n_test
    assert Counter(row["class"] for row in table.values() if row["class"]) == Counter(classes)
    dup = {row["duplicate_group"] for row in table.values() if row["duplicate_group"]}
    assert len(dup) == len(groups)
    for group in groups:
        assert len({table[c]["duplicate_group"] for c in group}) == 1


def test_archive_equals_folder_bytes(converted: dict[str, dict[str, Path]]) -> None:
    """Determinism: folder (2 workers) and archive (1 worker) runs give byte-identical datasets and splits."""
    for runs in converted.values():
        assert _files(runs["folder"]) == _files(runs["archive"])
        pre = [run.parent.parent / "pre" / run.name / "splits_final.json" for run in runs.values()]
        assert pre[0].read_bytes() == pre[1].read_bytes() == (runs["folder"] / "splits_final.json").read_bytes()


@pytest.mark.parametrize("dataset", list(EXPECTED))
def test_paper_splits(converted: dict[str, dict[str, Path]], dataset: str) -> None:
    _, _, _, n_train, _, classes, groups = EXPECTED[dataset]
    out = converted[dataset]["folder"]
    splits = json.loads((out.parent.parent / "pre" / out.name / "splits_final.json").read_text())
    sidecar = json.loads((out / "nnunet_se_splits.json").read_text())
    assert (sidecar["scheme"], sidecar["folds"], sidecar["seed"]) == ("paper", 10, 42)
    assert sidecar["duplicate_groups"] == groups
    ids = set(read_case_table(out))
    train_ids = {c for c in ids if (out / "labelsTr" / f"{c}.png").exists()}
    assert len(splits) == 10 and len(train_ids) == n_train
    vals = [set(f["val"]) for f in splits]
    assert set().union(*vals) == train_ids and sum(map(len, vals)) == n_train  # disjoint, complete
    for fold in splits:
        assert set(fold["train"]) == train_ids - set(fold["val"])
    for group in groups:
        assert len({k for k, v in enumerate(vals) for c in group if c in v}) == 1
    if classes:
        table = read_case_table(out)
        for val in vals:  # 20 of 45 malignant: every 4-5 case fold holds both classes
            assert {table[c]["class"] for c in val} == set(classes)


def test_busi_union_mask_and_native_sizes(real_samples: Path, tmp_path: Path) -> None:
    """``benign (25)`` has two masks: the native-size label is exactly their pixel-wise OR."""
    src = tmp_path / "src" / "Dataset_BUSI_with_GT"
    shutil.copytree(real_samples / "busi" / "Dataset_BUSI_with_GT" / "benign", src / "benign")
    out = _run("busi", [tmp_path / "src"], tmp_path, 1, "--size", "native", "--n-folds", "5")
    folder = real_samples / "busi" / "Dataset_BUSI_with_GT" / "benign"
    first = np.asarray(Image.open(folder / "benign (25)_mask.png").convert("L")) > 0
    second = np.asarray(Image.open(folder / "benign (25)_mask_1.png").convert("L")) > 0
    label = np.asarray(Image.open(out / "labelsTr" / "benign_025.png"))
    assert (label == (first | second)).all() and (first | second).sum() > max(first.sum(), second.sum())
    row = read_case_table(out)["benign_025"]
    assert row["source_masks"].count(";") == 1 and "union of 2 masks" in row["notes"]
    assert row["original_size"] == "{}x{}".format(*Image.open(folder / "benign (25).png").size)
    image = Image.open(out / "imagesTr" / "benign_025_0000.png")
    assert image.size == Image.open(folder / "benign (25).png").size


def test_kvasir_threshold_and_authors_splits(real_samples: Path, tmp_path: Path) -> None:
    """JPEG masks: label = grey >= 128 (native size); ``authors`` = sklearn's unshuffled KFold(5) in case order."""
    from sklearn.model_selection import KFold

    out = _run("kvasir", [real_samples / "kvasir_seg"], tmp_path, 2, "--size", "native", "--splits", "authors")
    masks = sorted((real_samples / "kvasir_seg" / "Kvasir-SEG" / "masks").glob("*.jpg"))
    for mask in masks[:5]:
        expected = np.asarray(Image.open(mask).convert("L")) >= 128
        assert (np.asarray(Image.open(out / "labelsTr" / f"{mask.stem}.png")) == expected).all()
    ids = [m.stem for m in masks]
    splits = json.loads((out / "splits_final.json").read_text())
    assert [sorted(f["val"]) for f in splits] == [sorted(np.array(ids)[t]) for _, t in KFold(5).split(ids)]


def test_nnunet_verify_dataset_integrity(
    converted: dict[str, dict[str, Path]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """nnU-Net's own integrity check (what ``--verify_dataset_integrity`` runs) on all three outputs, in-process.

    Its pool is forked instead of spawned (the same check, without re-importing torch in a child).
    """
    import multiprocessing

    from nnunetv2.experiment_planning import verify_dataset_integrity as vdi

    class _Forking:
        @staticmethod
        def get_context(method: str) -> multiprocessing.context.BaseContext:
            return multiprocessing.get_context("fork")

    monkeypatch.setattr(vdi, "multiprocessing", _Forking)
    for runs in converted.values():
        vdi.verify_dataset_integrity(str(runs["folder"]), 1)


@pytest.mark.slow
def test_plan_and_preprocess_keeps_splits(real_samples: Path, tmp_path: Path) -> None:
    """The real ``nnUNetv2_plan_and_preprocess -c 2d --verify_dataset_integrity`` accepts a converted BUSI subset
    (12 cases, 64 px) and keeps its grouped splits_final.json byte for byte."""
    src = tmp_path / "src" / "Dataset_BUSI_with_GT"
    for cls, numbers in (("benign", range(15, 21)), ("malignant", range(3, 9))):
        (src / cls).mkdir(parents=True)
        for number in numbers:
            for path in (real_samples / "busi" / "Dataset_BUSI_with_GT" / cls).glob(f"{cls} ({number})*.png"):
                shutil.copy(path, src / cls / path.name)
    out = _run("busi", [tmp_path / "src"], tmp_path, 1, "--size", "64", "--n-folds", "3")
    groups = json.loads((out / "nnunet_se_splits.json").read_text())["duplicate_groups"]
    assert groups == [["malignant_004", "malignant_005"], ["malignant_006", "malignant_007", "malignant_008"]]
    splits_file = tmp_path / "pre" / out.name / "splits_final.json"
    before = splits_file.read_bytes()
    env = {**os.environ, "nnUNet_raw": str(tmp_path / "raw"), "nnUNet_preprocessed": str(tmp_path / "pre"),
           "nnUNet_results": str(tmp_path / "results"), "nnUNet_def_n_proc": "1"}
    result = run_console_scripts([["nnUNetv2_plan_and_preprocess", "-d", "612", "-c", "2d",
                                   "--verify_dataset_integrity", "-np", "1", "-npfp", "1"]], env, timeout=400)
    assert result.returncode == 0, result.stderr[-2000:]
    assert splits_file.read_bytes() == before
    assert len(list((splits_file.parent / "nnUNetPlans_2d").glob("*.pkl"))) == 12


def test_busi_dedupe_and_include_normal(real_samples: Path, tmp_path: Path) -> None:
    """``--include-normal --dedupe``: 60 cases, 3 duplicate groups, the first of each group kept (55 left)."""
    out = _run("busi", [real_samples / "busi"], tmp_path, 2, "--include-normal", "--dedupe", "--size", "32")
    table = read_case_table(out)
    dropped = {"malignant_005", "malignant_007", "malignant_008", "malignant_009", "normal_013"}
    assert len(table) == 55 and not dropped & set(table)
    assert Counter(row["class"] for row in table.values()) == Counter(benign=25, malignant=16, normal=14)
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 55


def test_isic_validation_ground_truth_goes_to_labels_ts(
    real_samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """With a validation ground-truth folder (built here from copies of real training pairs), imagesTs gets
    labelsTs; a validation image without its mask is then an error."""
    isic = real_samples / "isic2018"
    train_ids = sorted(p.stem for p in (isic / "ISIC2018_Task1-2_Training_Input").glob("*.jpg"))
    src = tmp_path / "src"
    for sub, ids in (("Training", train_ids[:4]), ("Validation", train_ids[4:6])):
        (src / f"ISIC2018_Task1-2_{sub}_Input").mkdir(parents=True)
        (src / f"ISIC2018_Task1_{sub}_GroundTruth").mkdir()
        for case in ids:
            shutil.copy(isic / "ISIC2018_Task1-2_Training_Input" / f"{case}.jpg", src / f"ISIC2018_Task1-2_{sub}_Input")
            shutil.copy(isic / "ISIC2018_Task1_Training_GroundTruth" / f"{case}_segmentation.png",
                        src / f"ISIC2018_Task1_{sub}_GroundTruth")
    out = _run("isic2018", [src], tmp_path, 1, "--n-folds", "2", "--size", "32")
    assert sorted(p.name for p in (out / "labelsTs").iterdir()) == [f"{c}.png" for c in train_ids[4:6]]
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 4
    (src / "ISIC2018_Task1_Validation_GroundTruth" / f"{train_ids[5]}_segmentation.png").unlink()
    args = ["isic2018", str(src), "-d", "614", "--raw-dir", str(tmp_path / "raw2"), "--workers", "1"]
    capsys.readouterr()
    assert main(args) == 1
    assert f"{train_ids[5]}.jpg: image without mask" in capsys.readouterr().err
    assert not (tmp_path / "raw2").exists() or not list((tmp_path / "raw2").iterdir())

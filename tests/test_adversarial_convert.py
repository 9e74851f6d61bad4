"""Adversarial tables for ``nnunet-se-convert``: generated inputs, one row per case and the class it stands for
(data loss, wrong results, hangs, crashes; see the "Input classes: convert" section of docs/errors.md). Every row
checks the exit code, the one-line message (no traceback) and the digests of every folder that must not change: for
refusals the whole workspace (sources, raw, preprocessed, results, anything beside them), for successes the
sources, the results and whatever the row protects. Bounds are tested on both sides."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from cli_harness import assert_one_line_error, call_main, tree_digest
from convert_child import deadline, start_paused, wait_until_ready
from PIL import Image

from nnunet_se import reading
from nnunet_se.conversion import cli
from nnunet_se.conversion.cli import main

ID = "621"


@dataclass
class Workspace:
    """``tmp/src`` (sources), ``tmp/raw``, ``tmp/pre``, ``tmp/results`` (``$nnUNet_results``), ``tmp/other``."""

    tmp: Path
    src: Path = field(init=False)
    raw: Path = field(init=False)
    pre: Path = field(init=False)
    results: Path = field(init=False)
    other: Path = field(init=False)

    def __post_init__(self) -> None:
        for name in ("src", "raw", "pre", "results", "other"):
            setattr(self, name, self.tmp / name)
            getattr(self, name).mkdir()
        _kvasir(self.src)
        fold = self.results / "Dataset621_Old" / "nnUNetTrainer__nnUNetPlans__2d" / "fold_0"
        fold.mkdir(parents=True)
        (fold / "checkpoint_final.pth").write_bytes(b"trained weights")

    def args(self, *extra: str, source: Path | None = None, raw: Path | str | None = None, pre: Path | None = None,
             dataset: str = "kvasir", also: tuple[Path, ...] = ()) -> list[str]:
        """Command line for a conversion of id 621 (later options override earlier ones, e.g. ``--size``)."""
        return [dataset, str(source or self.src), *map(str, also), "-d", ID,
                "--raw-dir", str(self.raw if raw is None else raw), "--preprocessed-dir", str(pre or self.pre),
                "--workers", "1", "--n-folds", "2", "--size", "32", *extra]


def _kvasir(root: Path, n: int = 4, side: int = 40) -> Path:
    """``n`` random JPEG pairs in Kvasir's layout under ``root/Kvasir-SEG``."""
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / "Kvasir-SEG" / sub).mkdir(parents=True)
    for i in range(n):
        mask = np.zeros((side, side), np.uint8)
        mask[5 + i:20 + i, 8:30] = 255
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(
            root / "Kvasir-SEG" / "images" / f"case{i}.jpg")
        Image.fromarray(mask).save(root / "Kvasir-SEG" / "masks" / f"case{i}.jpg")
    return root


def _old_raw(ws: Workspace, name: str = "Dataset621_Old", extra_dir: str | None = None,
             folder: Path | None = None) -> Path:
    """A raw dataset of id 621 as nnU-Net expects one (optionally with an unexpected folder), in ``ws.raw`` or at
    ``folder``."""
    folder = folder or ws.raw / name
    for sub in ("imagesTr", "labelsTr") + ((extra_dir,) if extra_dir else ()):
        (folder / sub).mkdir(parents=True)
    (folder / "dataset.json").write_text("{}")
    (folder / "imagesTr" / "old_0000.png").write_bytes(b"old image")
    (folder / "labelsTr" / "old.png").write_bytes(b"old label")
    return folder


def _old_pre(root: Path, name: str = "Dataset621_Old") -> Path:
    """A preprocessed dataset of id 621 (plans, splits, a data folder)."""
    folder = root / name
    (folder / "nnUNetPlans_2d").mkdir(parents=True)
    for fname in ("dataset.json", "nnUNetPlans.json", "splits_final.json"):
        (folder / fname).write_text("{}")
    (folder / "nnUNetPlans_2d" / "old.npz").write_bytes(b"old data")
    return folder


def _zip(ws: Workspace) -> Path:
    """The Kvasir source as ``other/kvasir-seg.zip`` (stored members, so header bytes are easy to patch)."""
    archive = ws.other / "kvasir-seg.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted((ws.src / "Kvasir-SEG").rglob("*.jpg")):
            zf.write(path, path.relative_to(ws.src).as_posix())
    return archive


def _patch_member(archive: Path, member: str, *, flag: int = 0, method: int | None = None,
                  size: int | None = None) -> None:
    """Set general-purpose flag bits / the compression method / the declared uncompressed size of one member in
    both of its zip headers."""
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo(member)
    data = bytearray(archive.read_bytes())
    cd_start = struct.unpack("<I", data[-6:-2])[0]  # end-of-central-directory record (no comment): CD offset
    central = data.index(b"PK\x01\x02" + data[cd_start + 4:cd_start + 8], cd_start)
    while data[central + 46:central + 46 + len(member)] != member.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    for header, flag_at, method_at, size_at in ((info.header_offset, 6, 8, 22), (central, 8, 10, 24)):
        old_flag = struct.unpack_from("<H", data, header + flag_at)[0]
        struct.pack_into("<H", data, header + flag_at, old_flag | flag)
        if method is not None:
            struct.pack_into("<H", data, header + method_at, method)
        if size is not None:
            struct.pack_into("<I", data, header + size_at, size)
    archive.write_bytes(bytes(data))


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _symlink(link: Path, target: Path) -> Path:
    link.symlink_to(target, target_is_directory=True)
    return link


@dataclass(frozen=True)
class Row:
    """``setup(ws) -> argv``; expected exit ``code`` and message ``fragments`` (refusals); ``keep(ws)``: folders
    that must not change for a success (refusals keep the whole workspace); ``check(ws)``: extra checks."""

    name: str
    setup: Callable[[Workspace], list[str]]
    code: int = 1
    fragments: tuple[str, ...] = ()
    keep: Callable[[Workspace], list[Path]] = lambda ws: []
    check: Callable[[Workspace], None] | None = None


def _published(ws: Workspace, strays: int = 0) -> None:
    """The new dataset is complete, and besides it only ``strays`` hidden entries (no lock, partial, old)."""
    out = ws.raw / "Dataset621_KvasirSEG"
    assert len(list((out / "imagesTr").iterdir())) == 4 == len(list((out / "labelsTr").iterdir()))
    assert [p.name for p in ws.raw.iterdir() if not p.name.startswith(".")] == ["Dataset621_KvasirSEG"]
    assert len(list(ws.raw.glob(".*"))) == strays
    assert (ws.pre / "Dataset621_KvasirSEG" / "splits_final.json").is_file()


def _old_splits(root: Path, name: str = "Dataset621_Old") -> Path:
    """A preprocessed folder of id 621 holding only the converter's two split files (an earlier, unplanned run)."""
    folder = root / name
    folder.mkdir(parents=True)
    for fname in ("splits_final.json", "nnunet_se_splits.json"):
        (folder / fname).write_text('[{"train": ["old"], "val": ["older"]}]')
    return folder


def _new_splits(ws: Workspace) -> None:
    """The preprocessed folder holds this run's 2 folds of case0..case3, and the replaced one is gone."""
    splits = json.loads((ws.pre / "Dataset621_KvasirSEG" / "splits_final.json").read_text())
    assert len(splits) == 2 and sorted(splits[0]["train"] + splits[0]["val"]) == [f"case{i}" for i in range(4)]
    assert not (ws.pre / "Dataset621_Old").exists()


ISIC_TRAIN = ("ISIC2018_Task1-2_Training_Input", "ISIC2018_Task1_Training_GroundTruth")
ISIC_VAL = ("ISIC2018_Task1-2_Validation_Input", "ISIC2018_Task1_Validation_GroundTruth")


def _isic(root: Path, *folders: str, n: int = 4) -> Path:
    """``n`` random ISIC cases in each named official folder (JPEG inputs, 0/255 PNG ground truth) under ``root``;
    validation ids start at 100."""
    rng = np.random.default_rng(1)
    for folder in folders:
        (root / folder).mkdir(parents=True)
        for i in range(100 * ("Validation" in folder), n + 100 * ("Validation" in folder)):
            if folder.endswith("_Input"):
                Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(
                    root / folder / f"ISIC_{i:07d}.jpg")
            else:
                mask = np.zeros((24, 32), np.uint8)
                mask[4 + i % 100:16, 6:20] = 255
                Image.fromarray(mask).save(root / folder / f"ISIC_{i:07d}_segmentation.png")
    return root


def _busi(root: Path, masks_only: tuple[str, ...] = ()) -> Path:
    """Three random benign and three malignant BUSI cases; the classes in ``masks_only`` have masks, no images."""
    rng = np.random.default_rng(2)
    for cls in ("benign", "malignant"):
        folder = root / "Dataset_BUSI_with_GT" / cls
        folder.mkdir(parents=True)
        for i in range(1, 4):
            if cls not in masks_only:
                Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(folder / f"{cls} ({i}).png")
            mask = np.zeros((24, 24), np.uint8)
            mask[3:12 + i, 5:15] = 255
            Image.fromarray(mask).save(folder / f"{cls} ({i})_mask.png")
    return root


def _kv(ws: Workspace, sub: str, name: str = "case0.jpg") -> Path:
    return ws.src / "Kvasir-SEG" / sub / name


def _replace(path: Path, make: Callable[[Path], object]) -> Path:
    """``path`` replaced by whatever ``make(path)`` creates there (a pipe, a link, another image)."""
    path.unlink()
    make(path)
    return path


def _copy_pair(ws: Workspace, name: str) -> None:
    """case0's image and mask again under the file name ``name``."""
    for sub in ("images", "masks"):
        shutil.copy(_kv(ws, sub), _kv(ws, sub, name))


def _rename_pair(ws: Workspace, name: str) -> None:
    for sub in ("images", "masks"):
        _kv(ws, sub).rename(_kv(ws, sub, name))


def _lab_tiff(path: Path, source: Path) -> None:
    Image.open(source).convert("RGB").convert("LAB").save(path.with_suffix(".tif"))


def _animated_png(path: Path) -> None:
    frames = [Image.new("RGB", (40, 40), (i * 90, 20, 20)) for i in range(2)]
    frames[0].save(path.with_suffix(".png"), save_all=True, append_images=frames[1:])


def _no_folds(argv: list[str]) -> list[str]:
    at = argv.index("--n-folds")
    return argv[:at] + argv[at + 2:]


def _note(ws: Workspace, case: str, note: str) -> None:
    table = (ws.raw / "Dataset621_KvasirSEG" / "nnunet_se_cases.csv").read_text()
    assert any(line.startswith(f"{case},") and note in line for line in table.splitlines()), table


def _unwritable(ws: Workspace) -> list[str]:
    ws.raw.chmod(0o555)
    return ws.args()


SWEEP = [
    # --- data loss: the preprocessed folder of the id (trained folds depend on its splits_final.json) ---
    Row("preprocessed folder of the id exists, no --overwrite",
        lambda ws: (_old_pre(ws.pre, "Dataset621_KvasirSEG"), ws.args())[-1],
        fragments=("Dataset621_KvasirSEG", "already used in nnUNet_preprocessed", "splits_final.json", "--overwrite")),
    Row("preprocessed folder with only split files, no --overwrite",
        lambda ws: (_old_splits(ws.pre, "Dataset621_KvasirSEG"), ws.args())[-1],
        fragments=("Dataset621_KvasirSEG", "already used in nnUNet_preprocessed")),
    Row("overwrite: planned preprocessed folder is never deleted",
        lambda ws: (_old_raw(ws), _old_pre(ws.pre), ws.args("--overwrite"))[-1],
        fragments=("Dataset621_Old", "nnUNetPlans", "never deleted", "move or remove this folder yourself")),
    Row("overwrite: planned preprocessed folder of the same name is never deleted",
        lambda ws: (_old_pre(ws.pre, "Dataset621_KvasirSEG"), ws.args("--overwrite"))[-1],
        fragments=("Dataset621_KvasirSEG", "did not write")),
    Row("overwrite: split files of the same name are replaced",
        lambda ws: (_old_splits(ws.pre, "Dataset621_KvasirSEG"), ws.args("--overwrite"))[-1], code=0,
        check=lambda ws: (_published(ws), _new_splits(ws))),
    Row("overwrite: raw dataset holding a file of the user",
        lambda ws: ((_old_raw(ws) / "notes.txt").write_text("mine"), ws.args("--overwrite"))[-1],
        fragments=("Dataset621_Old", "notes.txt", "does not look like an nnU-Net raw dataset")),
    Row("overwrite: raw dataset with a folder inside imagesTr",
        lambda ws: ((_old_raw(ws) / "imagesTr" / "sub").mkdir(), ws.args("--overwrite"))[-1],
        fragments=("Dataset621_Old", "imagesTr")),
    # --- data loss: sources inside what is written or removed, and the other way round (symbolic links) ---
    Row("raw folder inside the source folder", lambda ws: ws.args(raw=ws.src / "raw"),
        fragments=("--raw-dir lies inside the source folder",)),
    Row("preprocessed folder inside the source folder", lambda ws: ws.args(pre=ws.src / "Kvasir-SEG" / "pre"),
        fragments=("--preprocessed-dir lies inside the source folder",)),
    Row("source image folder linked into the dataset it replaces",
        lambda ws: (shutil.move(ws.src / "Kvasir-SEG" / "images", _old_raw(ws) / "imagesTs"),
                    _symlink(ws.src / "Kvasir-SEG" / "images", ws.raw / "Dataset621_Old" / "imagesTs"),
                    ws.args("--overwrite"))[-1],
        fragments=("Dataset621_Old/imagesTs", "the source lies inside --raw-dir")),
    Row("source mask linked from the preprocessed folder",
        lambda ws: (shutil.move(_kv(ws, "masks"), ws.pre / "kept.jpg"),
                    _kv(ws, "masks").symlink_to(ws.pre / "kept.jpg"), ws.args())[-1],
        fragments=("kept.jpg", "the source lies inside --preprocessed-dir")),
    Row("lock file is a symbolic link to a file of the user",
        lambda ws: ((ws.other / "mine.txt").write_text("keep me"),
                    (ws.raw / f".nnunet-se-lock-{ID}").symlink_to(ws.other / "mine.txt"), ws.args())[-1],
        fragments=(f".nnunet-se-lock-{ID}", "is a symbolic link")),
    Row("lock file is a named pipe", lambda ws: (os.mkfifo(ws.raw / f".nnunet-se-lock-{ID}"), ws.args())[-1],
        fragments=(f".nnunet-se-lock-{ID}", "not a regular file")),
    # --- hang: only regular files are opened as data ---
    Row("named pipe named like an archive in a source folder",
        lambda ws: (os.mkfifo(ws.src / "extra.zip"), ws.args())[-1],
        fragments=("extra.zip", "not a regular file (a named pipe)")),
    Row("named pipe given as the source",
        lambda ws: (os.mkfifo(ws.other / "kvasir-seg.zip"), ws.args(source=ws.other / "kvasir-seg.zip"))[-1],
        fragments=("kvasir-seg.zip", "a named pipe")),
    Row("named pipe in place of a mask", lambda ws: (_replace(_kv(ws, "masks"), os.mkfifo), ws.args())[-1],
        fragments=("masks/case0.jpg", "not a regular file (a named pipe)")),
    Row("character device linked in place of a mask",
        lambda ws: (_replace(_kv(ws, "masks"), lambda p: p.symlink_to("/dev/zero")), ws.args())[-1],
        fragments=("masks/case0.jpg", "a character device")),
    Row("broken symbolic link in place of a mask",
        lambda ws: (_replace(_kv(ws, "masks"), lambda p: p.symlink_to(ws.other / "gone.jpg")), ws.args())[-1],
        fragments=("masks/case0.jpg", "cannot read")),
    # --- archives: declared sizes bounded, and checked against the bytes read ---
    Row("zip member declaring 2 GiB",
        lambda ws: (a := _zip(ws), _patch_member(a, "Kvasir-SEG/masks/case1.jpg", size=2**31 - 1),
                    ws.args(source=a))[-1],
        fragments=("kvasir-seg.zip:Kvasir-SEG/masks/case1.jpg", f"declares {2**31 - 1} bytes", "256 MiB")),
    Row("zip member declaring fewer bytes than it holds",
        lambda ws: (a := _zip(ws), _patch_member(a, "Kvasir-SEG/masks/case1.jpg", size=10), ws.args(source=a))[-1],
        fragments=("kvasir-seg.zip:Kvasir-SEG/masks/case1.jpg", "cannot read", "CRC")),
    # --- ISIC: the official folders themselves; ground truth never dropped ---
    Row("ISIC: the two official training folders given themselves",
        lambda ws: (_isic(ws.other / "isic", *ISIC_TRAIN),
                    ws.args(source=ws.other / "isic" / ISIC_TRAIN[0], also=(ws.other / "isic" / ISIC_TRAIN[1],),
                            dataset="isic2018"))[-1],
        code=0, check=lambda ws: len(list((ws.raw / "Dataset621_ISIC2018" / "labelsTr").iterdir())) == 4),
    Row("ISIC: validation input without its ground truth goes to imagesTs",
        lambda ws: (_isic(ws.other / "isic", *ISIC_TRAIN, ISIC_VAL[0]), ws.args(source=ws.other / "isic",
                                                                                dataset="isic2018"))[-1],
        code=0, check=lambda ws: len(list((ws.raw / "Dataset621_ISIC2018" / "imagesTs").iterdir())) == 4),
    Row("ISIC: validation ground truth without its input folder",
        lambda ws: (_isic(ws.other / "isic", *ISIC_TRAIN, ISIC_VAL[1]), ws.args(source=ws.other / "isic",
                                                                                dataset="isic2018"))[-1],
        fragments=(ISIC_VAL[0], "images folder is missing", ISIC_VAL[1])),
    Row("ISIC: training ground truth folder given alone",
        lambda ws: (_isic(ws.other / "isic", *ISIC_TRAIN),
                    ws.args(source=ws.other / "isic" / ISIC_TRAIN[1], dataset="isic2018"))[-1],
        fragments=(ISIC_TRAIN[0], "images folder is missing")),
    # --- every source and class folder selects something, or is refused ---
    Row("BUSI: class folder with masks but no images",
        lambda ws: ws.args(source=_busi(ws.other / "busi", masks_only=("malignant",)), dataset="busi"),
        fragments=("malignant (1)_mask.png", "mask without image")),
    Row("BUSI: a class folder given itself",
        lambda ws: ws.args(source=_busi(ws.other / "busi") / "Dataset_BUSI_with_GT" / "benign", dataset="busi"),
        code=0, check=lambda ws: len(list((ws.raw / "Dataset621_BUSI" / "imagesTr").iterdir())) == 3),
    Row("Kvasir: masks without the images folder",
        lambda ws: (shutil.rmtree(ws.src / "Kvasir-SEG" / "images"), ws.args())[-1],
        fragments=("Kvasir-SEG/images: images folder is missing",)),
    Row("a source that no case uses",
        lambda ws: ((ws.other / "notes").mkdir(), (ws.other / "notes" / "a.txt").write_text("x"),
                    ws.args(also=(ws.other / "notes",)))[-1],
        fragments=("other/notes", "no case uses a file of this source")),
    Row("an empty source folder", lambda ws: ((ws.other / "empty").mkdir(), ws.args(also=(ws.other / "empty",)))[-1],
        fragments=("other/empty", "no case uses a file of this source")),
    # --- --n-folds: parser range (exit 2), then at most the training cases found, before any decoding ---
    Row("--n-folds 0", lambda ws: ws.args("--n-folds", "0"), code=2, fragments=("--n-folds", "got 0")),
    Row("--n-folds 1", lambda ws: ws.args("--n-folds", "1"), code=2, fragments=("--n-folds", "got 1")),
    Row("--n-folds 101", lambda ws: ws.args("--n-folds", "101"), code=2, fragments=("--n-folds", "got 101")),
    Row("--n-folds 100 with 4 cases", lambda ws: ws.args("--n-folds", "100"),
        fragments=("--n-folds 100", "more folds than the 4 training cases")),
    Row("--n-folds 5 with 4 cases", lambda ws: ws.args("--n-folds", "5"),
        fragments=("--n-folds 5", "more folds than the 4 training cases")),
    Row("--n-folds 4 with 4 cases", lambda ws: ws.args("--n-folds", "4"), code=0,
        check=lambda ws: len(json.loads((ws.pre / "Dataset621_KvasirSEG" / "splits_final.json").read_text())) == 4),
    Row("default 10 folds with 4 cases", lambda ws: _no_folds(ws.args()),
        fragments=("--splits paper (10 folds)", "more folds than the 4 training cases")),
    Row("--include-normal with kvasir", lambda ws: ws.args("--include-normal"),
        fragments=("--include-normal only applies to busi",)),
    Row("--n-folds with --splits nnunet", lambda ws: ws.args("--splits", "nnunet"),
        fragments=("--n-folds has no effect with --splits nnunet",)),
    Row("--n-folds 4 with --splits authors", lambda ws: ws.args("--splits", "authors", "--n-folds", "4"),
        fragments=("--splits authors", "not --n-folds 4")),
    Row("--seed with --splits nnunet", lambda ws: _no_folds(ws.args("--splits", "nnunet", "--seed", "7")),
        fragments=("--seed 7", "no effect with --splits nnunet")),
    Row("--seed 42 with --splits nnunet", lambda ws: _no_folds(ws.args("--splits", "nnunet", "--seed", "42")),
        code=0, check=lambda ws: not (ws.pre / "Dataset621_KvasirSEG").exists()),
    # --- file names: every refusal names the file ---
    Row("non-ASCII file name", lambda ws: (_rename_pair(ws, "\u00df.jpg"), ws.args())[-1],
        fragments=("images/\u00df.jpg", "no usable case id")),
    Row("non-UTF-8 file name", lambda ws: (_rename_pair(ws, os.fsdecode(b"\xff.jpg")), ws.args())[-1],
        fragments=("images/\\udcff.jpg", "no usable case id")),
    Row("two file names giving one case id", lambda ws: (_copy_pair(ws, "x y.jpg"), _copy_pair(ws, "x_y.jpg"),
                                                           ws.args())[-1],
        fragments=("images/x_y.jpg", "images/x y.jpg", "same case id")),
    Row("case ids differing only in case", lambda ws: (_copy_pair(ws, "Case0.jpg"), ws.args())[-1],
        fragments=("images/case0.jpg", "images/Case0.jpg", "same case id")),
    # --- image values: modes and frames checked where the file is decoded ---
    Row("LAB mask", lambda ws: (_lab_tiff(_kv(ws, "masks"), _kv(ws, "masks")), _kv(ws, "masks").unlink(),
                                ws.args())[-1],
        fragments=("masks/case0.tif", "Pillow mode LAB is not supported")),
    Row("LAB image is converted and noted",
        lambda ws: (_lab_tiff(_kv(ws, "images"), _kv(ws, "images")), _kv(ws, "images").unlink(), ws.args())[-1],
        code=0, check=lambda ws: _note(ws, "case0", "LAB converted to RGB")),
    Row("animated PNG image", lambda ws: (_animated_png(_kv(ws, "images")), _kv(ws, "images").unlink(),
                                          ws.args())[-1],
        fragments=("images/case0.png", "2 frames")),
]


ROWS = [
    # --- coinciding or nested folders: refused before anything changes (data loss class) ---
    Row("preprocessed is nnUNet_results", lambda ws: ws.args("--overwrite", pre=ws.results),
        fragments=("--preprocessed-dir and nnUNet_results are the same folder",)),
    Row("raw is nnUNet_results", lambda ws: ws.args("--overwrite", raw=ws.results), fragments=("same folder",)),
    Row("raw is preprocessed", lambda ws: ws.args(pre=ws.raw), fragments=("--raw-dir and --preprocessed-dir",)),
    Row("preprocessed inside raw", lambda ws: ws.args(pre=ws.raw / "pre"), fragments=("lies inside --raw-dir",)),
    Row("raw inside results", lambda ws: ws.args(raw=ws.results / "raw"), fragments=("lies inside nnUNet_results",)),
    Row("source inside the dataset it replaces",
        lambda ws: (_old_raw(ws), shutil.move(ws.src / "Kvasir-SEG", ws.raw / "Dataset621_Old"),
                    ws.args("--overwrite", source=ws.raw / "Dataset621_Old" / "Kvasir-SEG"))[-1],
        fragments=("source lies inside --raw-dir",)),
    Row("source inside preprocessed", lambda ws: (shutil.move(ws.src / "Kvasir-SEG", ws.pre),
                                                  ws.args(source=ws.pre / "Kvasir-SEG"))[-1],
        fragments=("source lies inside --preprocessed-dir",)),
    # --- what --overwrite may delete when nnUNet_results is not set (results-like or foreign folders) ---
    Row("overwrite: preprocessed dir holds trained results",
        lambda ws: (os.environ.pop("nnUNet_results"), _old_raw(ws), ws.args("--overwrite", pre=ws.results))[-1],
        fragments=("holds files nnunet-se-convert did not write", "nnUNetTrainer__nnUNetPlans__2d")),
    Row("overwrite: raw dir holds trained results",
        lambda ws: (os.environ.pop("nnUNet_results"), ws.args("--overwrite", raw=ws.results))[-1],
        fragments=("does not look like an nnU-Net raw dataset",)),
    Row("overwrite: raw folder with a foreign subfolder",
        lambda ws: (_old_raw(ws, extra_dir="my_notes"), ws.args("--overwrite"))[-1],
        fragments=("Dataset621_Old", "my_notes", "remove or rename it yourself")),
    Row("id already used, no --overwrite", lambda ws: (_old_raw(ws), ws.args())[-1],
        fragments=("Dataset621_Old", "already used")),
    # --- archives ---
    Row("encrypted zip member",
        lambda ws: (a := _zip(ws), _patch_member(a, "Kvasir-SEG/masks/case1.jpg", flag=0x1), ws.args(source=a))[-1],
        fragments=("kvasir-seg.zip:Kvasir-SEG/masks/case1.jpg", "encrypted zip member")),
    Row("Deflate64 zip member",
        lambda ws: (a := _zip(ws), _patch_member(a, "Kvasir-SEG/images/case2.jpg", method=9), ws.args(source=a))[-1],
        fragments=("Kvasir-SEG/images/case2.jpg", "unsupported zip compression (Deflate64)")),
    # --- values: empty, huge, negative, multi-line ---
    Row("negative --seed", lambda ws: ws.args("--seed", "-1"), code=2, fragments=("--seed", "0 to 4294967295")),
    Row("huge --seed", lambda ws: ws.args("--seed", str(2**40)), code=2, fragments=("--seed",)),
    Row("empty --seed", lambda ws: ws.args("--seed", ""), code=2, fragments=("--seed",)),
    Row("huge --size", lambda ws: ws.args("--size", "100000"), code=2, fragments=("--size", "8-8192")),
    Row("-d 0", lambda ws: ws.args("-d", "0"), code=2, fragments=("-d/--dataset-id", "1-999")),
    Row("huge -d", lambda ws: ws.args("-d", str(10**20)), code=2, fragments=("-d/--dataset-id", "1-999")),
    Row("negative --n-folds", lambda ws: ws.args("--n-folds", "-3"), code=2, fragments=("--n-folds", "got -3")),
    Row("huge --n-folds", lambda ws: ws.args("--n-folds", str(10**9)), code=2, fragments=("--n-folds", "2 to 100")),
    Row("--workers 0", lambda ws: ws.args("--workers", "0"), code=2, fragments=("--workers", "got 0")),
    Row("huge --workers", lambda ws: ws.args("--workers", "100000"), code=2,
        fragments=("--workers", "got 100000", "CPU-bound")),
    Row("multi-line --name", lambda ws: ws.args("--name", "Kvasir\n"), fragments=("--name", "letters")),
    Row("empty --name", lambda ws: ws.args("--name", ""), fragments=("--name",)),
    Row("name too long for the file system", lambda ws: ws.args("--name", "K" * 250), fragments=("too long",)),
    Row("multi-line source", lambda ws: ws.args(source=Path(f"{ws.src}\n")), fragments=("several lines",)),
    Row("source is a symbolic link loop", lambda ws: ws.args(source=_symlink(ws.other / "loop", ws.other / "loop")),
        fragments=("loop", "cannot resolve this source path")),
    Row("empty --raw-dir", lambda ws: ws.args(raw=""), fragments=("--raw-dir",)),
    # --- folders that are files, unwritable, or cannot be created (OSError class) ---
    Row("raw is a file", lambda ws: (ws.raw.rmdir(), ws.raw.write_text("x"), ws.args())[-1],
        fragments=("the raw folder is a file",)),
    Row("preprocessed is a file", lambda ws: (ws.pre.rmdir(), ws.pre.write_text("x"), ws.args())[-1],
        fragments=("the preprocessed folder is a file",)),
    Row("raw below a file", lambda ws: (ws.raw.rmdir(), ws.raw.write_text("x"), ws.args(raw=ws.raw / "sub"))[-1],
        fragments=("cannot be created",)),
    pytest.param(Row("raw unwritable", _unwritable, fragments=("not writable",)),
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root writes anywhere")),
    Row("OSError creating the raw folder", lambda ws: ws.args(raw=Path("/proc/nnunet-se-test-raw")),
        fragments=("/proc/nnunet-se-test-raw",)),
    # --- misleading messages ---
    Row("Kvasir without masks/", lambda ws: (shutil.rmtree(ws.src / "Kvasir-SEG" / "masks"), ws.args())[-1],
        fragments=("Kvasir-SEG/masks: masks folder is missing",)),
    Row("source given twice", lambda ws: ws.args(also=(ws.tmp / "src" / ".." / "src",)), fragments=("given twice",)),
    Row("source inside another source", lambda ws: ws.args(also=(ws.src / "Kvasir-SEG",)),
        fragments=("lies inside the other source",)),
    Row("symlinked image and mask folders are followed",
        lambda ws: (shutil.move(ws.src / "Kvasir-SEG", ws.other / "real"),
                    _symlink(ws.src / "Kvasir-SEG", ws.other / "real"), ws.args())[-1],
        code=0, keep=lambda ws: [ws.other], check=_published),
    # --- stray .nnunet-se-partial-* entries ---
    Row("stale partial folder of a dead process is removed",
        lambda ws: ((ws.raw / f".nnunet-se-partial-621-{_dead_pid()}" / "imagesTr").mkdir(parents=True),
                    ws.args())[-1], code=0, check=_published),
    Row("stray partial names that are not ours are left alone",
        lambda ws: ((ws.raw / ".nnunet-se-partial-junk").mkdir(), (ws.raw / ".nnunet-se-partial-621-1").mkdir(),
                    (ws.raw / f".nnunet-se-partial-621-{_dead_pid()}x").write_text("file"),
                    _symlink(ws.raw / f".nnunet-se-partial-621-{_dead_pid()}", ws.other), ws.args())[-1],
        code=0, keep=lambda ws: [ws.other], check=lambda ws: _published(ws, strays=4)),
    Row("parked symbolic link of an interrupted --overwrite is restored",
        lambda ws: (_symlink(ws.raw / f".nnunet-se-partial-621-{_dead_pid()}.old-Dataset621_Old", ws.other),
                    ws.args("--overwrite"))[-1],
        code=0, keep=lambda ws: [ws.other], check=_published),
    Row("old dataset parked by an interrupted --overwrite is restored, then the id is in use",
        lambda ws: (_old_raw(ws).rename(ws.raw / f".nnunet-se-partial-621-{_dead_pid()}.old-Dataset621_Old"),
                    ws.args())[-1],
        fragments=("Dataset621_Old", "already used"),
        check=lambda ws: (ws.raw / "Dataset621_Old" / "imagesTr" / "old_0000.png").read_bytes() == b"old image"),
    # --- symbolic links as the dataset being replaced: only the link goes ---
    Row("overwrite: symlinked preprocessed dataset",
        lambda ws: (_old_raw(ws), _symlink(ws.pre / "Dataset621_Old", _old_pre(ws.other)), ws.args("--overwrite"))[-1],
        code=0, keep=lambda ws: [ws.other], check=_published),
    Row("overwrite: symlinked raw dataset",
        lambda ws: (_symlink(ws.raw / "Dataset621_Old", _old_raw(ws, folder=ws.other / "old")),
                    ws.args("--overwrite"))[-1],
        code=0, keep=lambda ws: [ws.other], check=_published),
    Row("overwrite: replaces raw and the preprocessed split files, keeps results",
        lambda ws: (_old_raw(ws), _old_splits(ws.pre), ws.args("--overwrite"))[-1], code=0,
        check=lambda ws: (_published(ws), _new_splits(ws))),
    *SWEEP,
]


def _row_id(row: Row | object) -> str:
    return row.name if isinstance(row, Row) else row.values[0].name  # type: ignore[attr-defined]


@pytest.mark.parametrize("row", ROWS, ids=[_row_id(r) for r in ROWS])
def test_adversarial(row: Row, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace(tmp_path)
    monkeypatch.setenv("nnUNet_results", str(ws.results))
    argv = row.setup(ws)
    kept = [ws.src, ws.results, ws.other, *row.keep(ws)] + ([ws.pre] if row.code else [])
    before_all, before = tree_digest(ws.tmp), {p: tree_digest(p) for p in kept}
    try:
        with deadline(60):  # a hang (e.g. opening a named pipe) fails the row instead of blocking the suite
            result = call_main(main, argv, capsys)
    finally:
        if ws.raw.is_dir():
            ws.raw.chmod(0o755)
    if row.code:
        assert result.code == row.code, result
        assert_one_line_error(result, *row.fragments)
        if row.check is None:  # a refusal changes nothing at all (rows with a check restore something)
            assert tree_digest(ws.tmp) == before_all
    else:
        assert result.code == 0 and "Traceback" not in result.stderr, result
    assert {p: tree_digest(p) for p in kept} == before
    if row.check is not None:
        assert row.check(ws) is not False


def _sixteen_bit_busi(root: Path, bright: bool) -> Path:
    """One BUSI case whose 16-bit grey image holds 8-bit-range values 0/100/200/255 (plus, if ``bright``, one
    65535 pixel), and a second ordinary case."""
    folder = root / "Dataset_BUSI_with_GT" / "benign"
    folder.mkdir(parents=True)
    grey = np.tile(np.array([0, 100, 200, 255], np.uint16), (8, 2))
    if bright:
        grey[0, 0] = 65535
    Image.fromarray(grey).save(folder / "benign (1).png")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
        folder / "benign (2).png")
    for i in (1, 2):
        mask = np.zeros((8, 8), np.uint8)
        mask[2:5, 2:6] = 255
        Image.fromarray(mask).save(folder / f"benign ({i})_mask.png")
    return root


@pytest.mark.parametrize("bright", [False, True], ids=["max-255", "one-pixel-65535"])
def test_16bit_scaled_by_bit_depth(bright: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """round(v * 255 / 65535): 0, 100, 200, 255 -> 0, 0, 1, 1 and 65535 -> 255, whatever the image's maximum."""
    ws = Workspace(tmp_path)
    source = _sixteen_bit_busi(ws.other / "busi", bright)
    result = call_main(main, ws.args("--size", "native", source=source, dataset="busi"), capsys)
    assert result.code == 0, result
    out = ws.raw / "Dataset621_BUSI"
    rgb = np.asarray(Image.open(out / "imagesTr" / "benign_001_0000.png"))
    expected = np.tile(np.array([0, 0, 1, 1], np.uint8), (8, 2))
    if bright:
        expected[0, 0] = 255
    assert (rgb == expected[:, :, None]).all()
    with open(out / "nnunet_se_cases.csv", encoding="utf-8") as fh:
        assert "16-bit grey scaled to 8-bit (x 255/65535)" in fh.read()


def test_failed_overwrite_keeps_the_old_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishing fails after the old raw and preprocessed folders were parked (disk full while copying the
    splits): both come back unchanged, nothing new is left, one line names the file."""
    ws = Workspace(tmp_path)
    monkeypatch.setenv("nnUNet_results", str(ws.results))
    _old_raw(ws)
    _old_splits(ws.pre)
    before = tree_digest(ws.tmp)

    def disk_full(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device", str(dst))

    monkeypatch.setattr("nnunet_se.conversion.writer.shutil.copyfile", disk_full)
    result = call_main(main, ws.args("--overwrite"), capsys)
    assert_one_line_error(result, "No space left on device", "Dataset621_KvasirSEG")
    assert tree_digest(ws.tmp) == before


def test_dataset_of_the_same_id_appearing_during_the_run_is_not_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The id is checked again at publish time (another tool, not holding the lock, adds Dataset621_Intruder)."""
    ws = Workspace(tmp_path)
    monkeypatch.setenv("nnUNet_results", str(ws.results))
    convert = cli.convert

    def convert_then_intrude(*args: object, **kwargs: object) -> object:
        summary = convert(*args, **kwargs)  # type: ignore[arg-type]
        _old_raw(ws, "Dataset621_Intruder")
        return summary

    monkeypatch.setattr(cli, "convert", convert_then_intrude)
    result = call_main(main, ws.args(), capsys)
    assert_one_line_error(result, "Dataset621_Intruder", "already used")
    assert sorted(p.name for p in ws.raw.iterdir()) == ["Dataset621_Intruder"]
    assert (ws.raw / "Dataset621_Intruder" / "imagesTr" / "old_0000.png").read_bytes() == b"old image"


@pytest.mark.parametrize("overwrite", [False, True], ids=["plain", "overwrite"])
def test_two_conversions_of_one_id_at_once(overwrite: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A real second process converts id 621 and is held (one case staged, lock taken) until this one has tried:
    this one refuses (with or without --overwrite) and changes nothing; released, the first finishes complete."""
    ws = Workspace(tmp_path)
    big = _kvasir(ws.other / "big", n=6)
    monkeypatch.setenv("nnUNet_results", str(ws.results))
    ready = ws.tmp / "ready"
    # --splits nnunet: the first process never imports scikit-learn (seconds of start-up in a fresh process)
    first = start_paused(ready, "hold", _no_folds(ws.args("--size", "native", "--splits", "nnunet", source=big)))
    try:
        wait_until_ready(first, ready)
        assert (ws.raw / f".nnunet-se-lock-{ID}").read_text().strip() == str(first.pid)
        sources = tree_digest(ws.src)
        result = call_main(main, ws.args(*(["--overwrite"] if overwrite else [])), capsys)
        os.kill(first.pid, signal.SIGUSR1)
        out, err = first.communicate(timeout=120)
    finally:
        first.kill()
    assert_one_line_error(result, "another conversion", f"pid {first.pid}", "dataset id 621")
    assert first.returncode == 0, err
    assert tree_digest(ws.src) == sources
    dataset = ws.raw / "Dataset621_KvasirSEG"
    assert sorted(p.name for p in ws.raw.iterdir()) == ["Dataset621_KvasirSEG"]
    assert len(list((dataset / "imagesTr").iterdir())) == 6 == len(list((dataset / "labelsTr").iterdir()))
    assert json.loads((dataset / "dataset.json").read_text())["numTraining"] == 6


def test_unwritable_raw_folder_even_for_root(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The "raw unwritable" row, for a root user (who can write anywhere): the access check is what refuses."""
    ws = Workspace(tmp_path)
    monkeypatch.setenv("nnUNet_results", str(ws.results))
    access = os.access
    monkeypatch.setattr("nnunet_se.conversion.safety.os.access",
                        lambda path, mode: Path(path) != ws.raw and access(path, mode))
    before = tree_digest(ws.tmp)
    assert_one_line_error(call_main(main, ws.args(), capsys), f"{ws.raw}: the raw folder is not writable")
    assert tree_digest(ws.tmp) == before


def test_without_fcntl_the_conversion_runs_unlocked_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Systems without ``fcntl`` (Windows) still convert; the missing lock is reported, not silent."""
    ws = Workspace(tmp_path)
    monkeypatch.setenv("nnUNet_results", str(ws.results))
    monkeypatch.setattr("nnunet_se.conversion.safety.fcntl", None)
    result = call_main(main, ws.args(), capsys)
    assert result.code == 0, result
    assert "concurrent conversions of id 621 are not detected" in result.stderr
    _published(ws)


def _bomb(ws: Workspace) -> Path:
    """The Kvasir source as a deflated zip whose mask ``case1`` is 4 MiB of zeros (a few KiB compressed), its size
    declared truthfully."""
    archive = ws.other / "kvasir-seg.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted((ws.src / "Kvasir-SEG").rglob("*.jpg")):
            rel = path.relative_to(ws.src).as_posix()
            zf.writestr(rel, b"\0" * 2**22 if rel.endswith("masks/case1.jpg") else path.read_bytes())
    return archive


def _declared(archive: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        return sum(info.file_size for info in zf.infolist())


def _largest(ws: Workspace) -> int:
    return max(p.stat().st_size for p in ws.src.rglob("*.jpg"))


# (case, bounds set in nnunet_se.reading (computed on the workspace first), setup -> argv, fragments of
# the refusal or None for a success): each bound is tested on both sides, and against bytes actually read
BOUNDS = [
    ("zip bomb: a member over the per-member bound", lambda ws: {"MAX_FILE_BYTES": 2**20},
     lambda ws: ws.args(source=_bomb(ws)),
     ("kvasir-seg.zip:Kvasir-SEG/masks/case1.jpg", f"declares {2**22} bytes", "1 MiB")),
    ("an archive declaring more than the total bound",
     lambda ws: {"MAX_ARCHIVE_BYTES": _declared(_zip(ws)) - 1}, lambda ws: ws.args(source=ws.other / "kvasir-seg.zip"),
     ("kvasir-seg.zip", "the archive declares", "bytes uncompressed")),
    ("an archive declaring exactly the total bound",
     lambda ws: {"MAX_ARCHIVE_BYTES": _declared(_zip(ws))}, lambda ws: ws.args(source=ws.other / "kvasir-seg.zip"),
     None),
    ("a file one byte over the per-file bound", lambda ws: {"MAX_FILE_BYTES": _largest(ws) - 1}, lambda ws: ws.args(),
     ("bytes, more than the", "bytes a source file may have")),
    ("a file of exactly the per-file bound", lambda ws: {"MAX_FILE_BYTES": _largest(ws)}, lambda ws: ws.args(), None),
    ("a file whose size is reported as 0 (/proc) is bounded by the bytes read",
     lambda ws: {"MAX_FILE_BYTES": _largest(ws)},
     lambda ws: (_replace(_kv(ws, "images"), lambda p: p.symlink_to("/proc/self/maps")), ws.args())[-1],
     ("images/case0.jpg", "more than the")),
]


@pytest.mark.parametrize(("name", "limits", "setup", "fragments"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_size_bounds(name: str, limits: Callable[[Workspace], dict[str, int]],
                     setup: Callable[[Workspace], list[str]], fragments: tuple[str, ...] | None, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Files and archive members are read within bounds (lowered here so that small files exercise them)."""
    ws = Workspace(tmp_path)
    monkeypatch.setenv("nnUNet_results", str(ws.results))
    for attr, value in limits(ws).items():
        monkeypatch.setattr(reading, attr, value)
    argv = setup(ws)
    before = tree_digest(ws.src)
    with deadline(60):
        result = call_main(main, argv, capsys)
    if fragments is None:
        assert result.code == 0, result
        _published(ws)
    else:
        assert_one_line_error(result, *fragments)
        assert result.code == 1 and sorted(ws.raw.iterdir()) == []
    assert tree_digest(ws.src) == before


def test_a_source_folder_that_cannot_be_listed_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A class folder the user may not list (here: listing it fails as for a folder without read permission, which
    root could still read) stops the run naming it, instead of converting the other classes with exit 0."""
    ws = Workspace(tmp_path)
    monkeypatch.setenv("nnUNet_results", str(ws.results))
    source = _busi(ws.other / "busi")
    hidden = source / "Dataset_BUSI_with_GT" / "malignant"
    scandir = os.scandir

    def refuse(path: object = ".") -> object:
        if Path(os.fspath(path)) == hidden:  # type: ignore[arg-type]
            raise PermissionError(13, "Permission denied", str(hidden))
        return scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", refuse)
    before = tree_digest(ws.tmp)
    assert_one_line_error(call_main(main, ws.args(source=source, dataset="busi"), capsys),
                          f"{hidden}: Permission denied")
    assert tree_digest(ws.tmp) == before

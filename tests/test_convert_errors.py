"""Broken inputs, built from copies of real files: one clear line naming the file, exit 1, nothing left behind,
sources untouched; safe conversions (grey, opaque RGBA, 16-bit) succeed and are recorded; interrupts clean up."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from convert_child import start_paused, wait_until_ready
from PIL import Image

from nnunet_se.conversion.cases import read_case_table
from nnunet_se.conversion.cli import main

pytestmark = pytest.mark.real

KVASIR = ("cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju0qx73cjw570799j4n5cjze")
BUSI = ("benign (15)", "benign (16)", "benign (17)")


def _kvasir(real: Path, dst: Path) -> Path:
    """Three real Kvasir pairs in the official layout under ``dst/Kvasir-SEG``."""
    for sub in ("images", "masks"):
        (dst / "Kvasir-SEG" / sub).mkdir(parents=True)
        for stem in KVASIR:
            shutil.copy(real / "kvasir_seg" / "Kvasir-SEG" / sub / f"{stem}.jpg", dst / "Kvasir-SEG" / sub)
    return dst


def _busi(real: Path, dst: Path) -> Path:
    """Three real benign BUSI cases under ``dst/Dataset_BUSI_with_GT/benign``."""
    folder = dst / "Dataset_BUSI_with_GT" / "benign"
    folder.mkdir(parents=True)
    for stem in BUSI:
        for suffix in ("", "_mask"):
            shutil.copy(real / "busi" / "Dataset_BUSI_with_GT" / "benign" / f"{stem}{suffix}.png", folder)
    return dst


def _truncate(path: Path) -> Path:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _kv(src: Path, sub: str, i: int) -> Path:
    return src / "Kvasir-SEG" / sub / f"{KVASIR[i]}.jpg"


def _bu(src: Path, i: int, suffix: str = "") -> Path:
    return src / "Dataset_BUSI_with_GT" / "benign" / f"{BUSI[i]}{suffix}.png"


def _grey_mask(src: Path) -> Path:
    path = _bu(src, 1, "_mask")
    mask = np.asarray(Image.open(path).convert("L")).copy()
    mask[:5, :5] = 128
    Image.fromarray(mask).save(path)
    return path


def _zip_then_truncate(src: Path) -> Path:
    archive = src / "kvasir-seg.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted((src / "Kvasir-SEG").rglob("*.jpg")):
            zf.write(path, path.relative_to(src).as_posix())
    shutil.rmtree(src / "Kvasir-SEG")
    return _truncate(archive)


def _wrong_layout(src: Path) -> Path:
    (src / "Kvasir-SEG" / "images").rename(src / "Kvasir-SEG" / "pictures")
    return src


def _id_in_use(src: Path) -> Path:
    existing = src.parent / "raw" / "Dataset621_Other"
    existing.mkdir(parents=True)
    return existing


# (case name, dataset, builder, break(src) -> path that must be named, expected message part)
BROKEN: list[tuple[str, str, Callable[[Path, Path], Path], Callable[[Path], Path], str]] = [
    ("truncated image", "kvasir", _kvasir, lambda s: _truncate(_kv(s, "images", 1)), "corrupt or truncated"),
    ("corrupt mask", "busi", _busi, lambda s: _truncate(_bu(s, 2, "_mask")), "corrupt or truncated"),
    ("image without mask", "kvasir", _kvasir, lambda s: (_kv(s, "images", 0), _kv(s, "masks", 0).unlink())[0],
     "image without mask"),
    ("mask without image", "busi", _busi, lambda s: (_bu(s, 1, "_mask"), _bu(s, 1).unlink())[0],
     "mask without image"),
    ("size mismatch", "kvasir", _kvasir,
     lambda s: shutil.copy(_kv(s, "masks", 1), _kv(s, "masks", 0)) and _kv(s, "masks", 0), "does not match"),
    ("non-binary mask", "busi", _busi, _grey_mask, "not binary"),
    ("unreadable archive", "kvasir", _kvasir, _zip_then_truncate, "unreadable archive"),
    ("wrong layout", "kvasir", _kvasir, _wrong_layout, "Kvasir-SEG/images: images folder is missing"),
    ("empty folder", "busi", lambda real, dst: dst, lambda s: s, "empty or wrong layout"),
    ("id already used", "kvasir", _kvasir, _id_in_use, "--overwrite"),
    ("transparent RGBA", "busi", _busi,
     lambda s: _rgba(_bu(s, 0), alpha=100),
     "transparent pixels"),
]


def _rgba(path: Path, alpha: int) -> Path:
    image = Image.open(path).convert("RGBA")
    image.putalpha(alpha)
    image.save(path)
    return path


def _checksums(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _args(dataset: str, src: Path, tmp: Path, *extra: str) -> list[str]:
    return [dataset, str(src), "-d", "621", "--raw-dir", str(tmp / "raw"), "--preprocessed-dir", str(tmp / "pre"),
            "--workers", "1", "--n-folds", "2", *extra]


@pytest.mark.parametrize(("name", "dataset", "build", "breaker", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_input(
    real_samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    name: str, dataset: str, build: Callable[[Path, Path], Path], breaker: Callable[[Path], Path], message: str,
) -> None:
    src = build(real_samples, tmp_path / "src")
    src.mkdir(exist_ok=True)
    named = breaker(src)
    source = named if named.suffix == ".zip" else src
    before = _checksums(src)
    raw_before = sorted(p.name for p in (tmp_path / "raw").iterdir()) if (tmp_path / "raw").exists() else []
    assert main(_args(dataset, source, tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("nnunet-se-convert: error: "), err
    assert message in err and named.name in err, err
    assert _checksums(src) == before
    raw_after = sorted(p.name for p in (tmp_path / "raw").iterdir()) if (tmp_path / "raw").exists() else []
    assert raw_after == raw_before  # no DatasetNNN and no partial folder
    assert not (tmp_path / "pre").exists()


def test_overwrite_replaces_dataset_with_same_id(real_samples: Path, tmp_path: Path) -> None:
    src = _kvasir(real_samples, tmp_path / "src")
    _id_in_use(src)
    (tmp_path / "pre" / "Dataset621_Other").mkdir(parents=True)
    assert main(_args("kvasir", src, tmp_path, "--overwrite")) == 0
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset621_KvasirSEG"]
    assert sorted(p.name for p in (tmp_path / "pre").iterdir()) == ["Dataset621_KvasirSEG"]


def test_nnunet_scheme_writes_no_splits(real_samples: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _kvasir(real_samples, tmp_path / "src")
    args = [a for a in _args("kvasir", src, tmp_path, "--splits", "nnunet") if a not in ("--n-folds", "2")]
    assert main(args) == 0
    out = tmp_path / "raw" / "Dataset621_KvasirSEG"
    assert sorted(p.name for p in out.iterdir()) == ["dataset.json", "imagesTr", "labelsTr", "nnunet_se_cases.csv"]
    assert not (tmp_path / "pre").exists()
    assert "splits: none written" in capsys.readouterr().out


def _sixteen_bit(path: Path) -> None:
    grey = np.asarray(Image.open(path).convert("L")).astype(np.uint16) * 257
    Image.fromarray(grey).save(path)


# (case, how the BUSI image benign (15) is changed, note expected in the case table)
CONVERTIBLE = [
    ("grey", lambda p: Image.open(p).convert("L").save(p), "grey replicated to RGB"),
    ("opaque RGBA", lambda p: _rgba(p, alpha=255), "RGBA with opaque alpha converted to RGB"),
    ("16-bit grey", _sixteen_bit, "16-bit grey scaled to 8-bit"),
]


@pytest.mark.parametrize(("name", "change", "note"), CONVERTIBLE, ids=[c[0] for c in CONVERTIBLE])
def test_safe_conversions_are_recorded(
    real_samples: Path, tmp_path: Path, name: str, change: Callable[[Path], object], note: str
) -> None:
    src = _busi(real_samples, tmp_path / "src")
    original = np.asarray(Image.open(_bu(src, 0)).convert("L"))
    change(_bu(src, 0))
    assert main(_args("busi", src, tmp_path, "--size", "native")) == 0
    out = tmp_path / "raw" / "Dataset621_BUSI"
    assert note in read_case_table(out)["benign_015"]["notes"]
    converted = np.asarray(Image.open(out / "imagesTr" / "benign_015_0000.png"))
    assert converted.shape == (*original.shape, 3)
    assert (converted == original[:, :, None]).all()  # grey source: R = G = B = the original grey


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "kill"])
def test_interrupt_leaves_no_dataset(real_samples: Path, tmp_path: Path, sig: signal.Signals) -> None:
    """Interrupted while converting (ISIC, 1 worker), at a fixed point: one case staged, the rest to do. After
    the signal: exit 130, "interrupted", no DatasetNNN folder, no partial folder, no lock file."""
    raw, ready = tmp_path / "raw", tmp_path / "ready"
    proc = start_paused(ready, "signal", ["isic2018", str(real_samples / "isic2018"), "-d", "622", "--raw-dir",
                                          str(raw), "--workers", "1", "--size", "native"])
    try:
        wait_until_ready(proc, ready)
        assert len(list(raw.glob(".nnunet-se-partial-622-*/imagesTr/*.png"))) == 1  # the state being interrupted
        os.kill(proc.pid, sig)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert list(raw.iterdir()) == []

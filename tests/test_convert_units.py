"""Units of the conversion package: splits (oracle: sklearn), perceptual hash, mask resizing, the in-memory writer."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from convert_child import deadline
from PIL import Image
from sklearn.model_selection import KFold, StratifiedKFold

from nnunet_se.conversion.cases import read_case_table
from nnunet_se.conversion.converter import run_parallel
from nnunet_se.conversion.duplicates import PHASH_THRESHOLD, duplicate_groups, hamming_matrix, phash, pixel_digest
from nnunet_se.conversion.images import decode_image, decode_mask, mask_array
from nnunet_se.conversion.png import encode_png
from nnunet_se.conversion.sources import collect_sources
from nnunet_se.conversion.splits import make_splits
from nnunet_se.conversion.writer import Case, RawDatasetWriter
from nnunet_se.errors import UserError

IDS = [f"case_{i:03d}" for i in range(23)]
CLASSES = ["a" if i % 3 else "b" for i in range(23)]


def _fold_of(splits: list[dict[str, list[str]]]) -> dict[str, int]:
    return {c: k for k, fold in enumerate(splits) for c in fold["val"]}


@pytest.mark.parametrize(
    ("classes", "oracle"),
    [
        (None, lambda: KFold(5).split(IDS)),
        (CLASSES, lambda: StratifiedKFold(5, shuffle=True, random_state=42).split(IDS, CLASSES)),
    ],
    ids=["kfold", "stratified"],
)
def test_authors_scheme_equals_their_sklearn_split(classes: list[str] | None, oracle: object) -> None:
    splits = make_splits(IDS, classes, [], "authors", 5, 42)
    expected = [sorted(np.array(IDS)[test].tolist()) for _, test in oracle()]  # type: ignore[operator]
    assert [fold["val"] for fold in splits] == expected


@pytest.mark.parametrize("classes", [None, CLASSES], ids=["grouped", "stratified-grouped"])
def test_paper_scheme_is_grouped_seeded_and_complete(classes: list[str] | None) -> None:
    groups = [["case_001", "case_002", "case_010"], ["case_004", "case_022"]]
    splits = make_splits(IDS, classes, groups, "paper", 5, 7)
    assert splits == make_splits(IDS, classes, groups, "paper", 5, 7)
    assert splits != make_splits(IDS, classes, groups, "paper", 5, 8)
    fold_of = _fold_of(splits)
    assert sorted(fold_of) == IDS and len(splits) == 5
    for group in groups:
        assert len({fold_of[c] for c in group}) == 1
    for fold in splits:
        assert sorted(fold["train"] + fold["val"]) == IDS and not set(fold["train"]) & set(fold["val"])


def test_too_many_folds_is_a_user_error() -> None:
    with pytest.raises(UserError, match="--n-folds 5"):
        make_splits(IDS[:6], None, [IDS[:3]], "paper", 5, 0)


@pytest.mark.parametrize(("scheme", "folds", "ok"), [("paper", 1, False), ("paper", 2, True), ("paper", 4, True),
                                                     ("paper", 5, False), ("authors", 6, True), ("authors", 7, False)])
def test_fold_count_bounds_on_both_sides(scheme: str, folds: int, ok: bool) -> None:
    """2 <= folds <= independent units: 6 cases with one duplicate group of 3 are 4 units for ``paper`` (grouped),
    6 for ``authors`` (their split ignores groups)."""
    if ok:
        assert len(make_splits(IDS[:6], None, [IDS[:3]], scheme, folds, 42)) == folds
    else:
        with pytest.raises(UserError, match=f"--n-folds {folds}: need 2 <= folds"):
            make_splits(IDS[:6], None, [IDS[:3]], scheme, folds, 42)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


def _real_images(real: Path) -> list[np.ndarray]:
    paths = sorted((real / "kvasir_seg" / "Kvasir-SEG" / "images").glob("*.jpg"))[:12]
    return [np.asarray(Image.open(p).convert("RGB").resize((224, 224))) for p in paths]


@pytest.mark.real
def test_phash_groups_synthetic_near_duplicates_of_real_images(real_samples: Path) -> None:
    """Half-size, JPEG q=40 and 2 %-cropped copies join their original; the distinct real images stay apart."""
    images = _real_images(real_samples)
    distinct = hamming_matrix([phash(a) for a in images])
    assert distinct[np.triu_indices(len(images), 1)].min() > PHASH_THRESHOLD
    original = images[0]
    h, w = original.shape[:2]
    copies = {
        "half": np.asarray(Image.fromarray(original).resize((w // 2, h // 2), Image.Resampling.BILINEAR)),
        "jpeg40": _jpeg(original, 40),
        "crop": original[h // 50 : h - h // 50, w // 50 : w - w // 50],
    }
    for name, copy in copies.items():
        assert bin(phash(original) ^ phash(copy)).count("1") <= PHASH_THRESHOLD, name
    ids = ["orig", *copies, *[f"other_{i}" for i in range(1, len(images))]]
    arrays = [original, *copies.values(), *images[1:]]
    groups = duplicate_groups(ids, [pixel_digest(a) for a in arrays], [phash(a) for a in arrays])
    assert groups == [sorted(["orig", *copies])]


def test_exact_duplicates_group_transitively() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 255, (2, 32, 32, 3), dtype=np.uint8)
    ids, arrays = ["x", "y", "z"], [a, a.copy(), b]
    hashes = [0, 2**63 - 1, 0xAAAA_AAAA_AAAA_AAAA]  # hashes far apart: only the pixel digests can join x and y
    assert duplicate_groups(ids, [pixel_digest(v) for v in arrays], hashes) == [["x", "y"]]
    assert duplicate_groups(["p", "q", "r"], ["1", "2", "3"], [0b0, 0b111111, 0b111111111111]) == [["p", "q", "r"]]


@pytest.mark.parametrize(
    ("values", "threshold", "error"),
    [
        ((0, 255), None, None),
        ((0, 1), None, None),
        ((0, 7, 250), 128, None),
        ((0, 128, 255), None, "not binary"),
        ((0, 2), None, "not binary"),
    ],
)
def test_decode_mask_thresholds(values: tuple[int, ...], threshold: int | None, error: str | None) -> None:
    arr = np.array([values * 4], dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    if error:
        with pytest.raises(UserError, match=error):
            decode_mask(buf.getvalue(), "m.png", threshold)
    else:
        expected = arr[0] >= (threshold or 1)
        assert (mask_array(decode_mask(buf.getvalue(), "m.png", threshold).image, None)[0] == expected).all()


@pytest.mark.parametrize("threshold", [1, 128, 255])
def test_decode_mask_threshold_value_is_foreground(threshold: int) -> None:
    """Foreground = grey >= threshold: the values just below, at and just above it fall on both sides. At 128 (Kvasir)
    this is Pillow's undithered ``convert("1")``, the independent oracle."""
    values = sorted({0, threshold - 1, threshold, min(threshold + 1, 255), 255})
    arr = np.array([values], dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    got = mask_array(decode_mask(buf.getvalue(), "m.png", threshold).image, None)[0].tolist()
    assert got == [v >= threshold for v in values]
    if threshold == 128:
        assert got == (np.asarray(Image.fromarray(arr).convert("1", dither=Image.Dither.NONE))[0]).tolist()


def test_mask_array_half_threshold_both_sides() -> None:
    """Resized 8-bit values 127 and 128 straddle the 0.5 threshold (128 / 255 >= 0.5 > 127 / 255)."""
    assert mask_array(Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)), None).tolist() == [
        [False, False, True, True]
    ]


def test_16bit_grey_rounds_to_nearest_8bit_value() -> None:
    """16-bit grey v -> round(v * 255 / 65535) = round(v / 257) (never a tie: v / 257 = k + 1/2 has no integer v),
    computed exactly with fractions; 128 | 129 and 32767 | 32768 sit on both sides of a rounding boundary."""
    values = [0, 128, 129, 385, 386, 32767, 32768, 65406, 65407, 65535]
    buf = io.BytesIO()
    Image.fromarray(np.array([values], dtype=np.uint16)).save(buf, "PNG")
    decoded = np.asarray(decode_image(buf.getvalue(), "g16.png", None).image)
    expected = [round(Fraction(v * 255, 65535)) for v in values]
    assert expected[:5] == [0, 0, 1, 1, 2] and decoded[0, :, 0].tolist() == expected
    assert (decoded == decoded[:, :, :1]).all()  # grey replicated to RGB


@pytest.mark.parametrize(("alpha", "error"), [(255, None), (254, "transparent pixels"), (0, "transparent pixels")])
def test_image_alpha_must_be_fully_opaque(alpha: int, error: str | None) -> None:
    """An alpha channel is dropped only when every pixel is opaque (255); 254 is already transparent."""
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 90, 255
    rgba[1, 1, 3] = alpha
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    if error:
        with pytest.raises(UserError, match=error):
            decode_image(buf.getvalue(), "a.png", None)
    else:
        assert np.asarray(decode_image(buf.getvalue(), "a.png", None).image).tolist() == [[[90, 0, 0]] * 2] * 2


def test_mask_array_is_bilinear_then_half_threshold() -> None:
    """A 4x4 mask with its left half set, down to 2x2: left column stays 1, right 0; a single pixel vanishes."""
    mask = np.zeros((4, 4), np.uint8)
    mask[:, :2] = 255
    assert mask_array(Image.fromarray(mask), 2).tolist() == [[True, False], [True, False]]
    dot = np.zeros((8, 8), np.uint8)
    dot[3, 3] = 255
    assert not mask_array(Image.fromarray(dot), 2).any()


def test_writer_in_memory_cases_for_synthetic_data(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    with RawDatasetWriter(tmp_path / "raw", 7, "Synthetic", preprocessed_dir=tmp_path / "pre") as writer:
        for i in range(4):
            image = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
            writer.add(Case(f"syn_{i}", image, image[:, :, 0] > 128, cls="k" if i % 2 else ""))
        writer.add(Case("syn_test", image, None, subset="test"))
        writer.set_splits([{"train": ["syn_0", "syn_1"], "val": ["syn_2", "syn_3"]}], {"scheme": "custom", "seed": 3})
    out = tmp_path / "raw" / "Dataset007_Synthetic"
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["Dataset007_Synthetic"]
    assert json.loads((out / "dataset.json").read_text())["numTraining"] == 4
    label = np.asarray(Image.open(out / "labelsTr" / "syn_3.png"))
    assert (label == (np.asarray(Image.open(out / "imagesTr" / "syn_3_0000.png"))[:, :, 0] > 128)).all()
    assert (out / "imagesTs" / "syn_test_0000.png").exists() and not (out / "labelsTs").exists()
    table = read_case_table(out)
    assert (table["syn_1"]["class"], table["syn_0"]["original_size"], table["syn_test"]["subset"]) == ("k", "48x40",
                                                                                                        "test")
    sidecar = json.loads((tmp_path / "pre" / out.name / "nnunet_se_splits.json").read_text())
    assert sidecar == {"scheme": "custom", "seed": 3, "duplicate_groups": []}


def test_writer_leaves_nothing_on_error(tmp_path: Path) -> None:
    image = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(RuntimeError), RawDatasetWriter(tmp_path, 8, "Broken") as writer:
        writer.add(Case("a", image, np.zeros((8, 8), bool)))
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="mask values"), RawDatasetWriter(tmp_path, 8, "Broken") as writer:
        writer.add(Case("a", image, np.full((8, 8), 2)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("shape", [(7, 5), (1, 9), (6, 1), (13, 11, 3), (1, 1, 3)], ids=str)
def test_png_encoder_round_trips_through_pillow(shape: tuple[int, ...]) -> None:
    """The converter's own PNG writer (Up filter, Huffman-only deflate) decodes exactly with Pillow (the oracle)."""
    array = np.random.default_rng(len(shape) * 100 + shape[0]).integers(0, 256, shape, dtype=np.uint8)
    decoded = Image.open(io.BytesIO(encode_png(array)))
    assert decoded.mode == ("L" if len(shape) == 2 else "RGB")
    assert (np.asarray(decoded) == array).all()


def _identity(task: int) -> int:
    return task


def test_run_parallel_keeps_input_order_with_costliest_first() -> None:
    tasks = list(range(9))
    assert run_parallel(tasks, _identity, 2, costs=[(7 * t) % 9 for t in tasks]) == tasks  # type: ignore[arg-type]


def test_16bit_rgb_png_keeps_the_high_byte_and_is_noted() -> None:
    """A hand-written 16-bit RGB PNG (1x2 pixels): Pillow keeps each sample's high byte, and the note says so."""
    samples = np.array([[[0x1234, 0xFFFF, 0x0080], [0x8000, 0x00FF, 0x7F7F]]], dtype=">u2")
    raw = b"".join(b"\x00" + row.tobytes() for row in samples)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    decoded = decode_image(png, "rgb16.png", None)
    assert np.asarray(decoded.image).tolist() == [[[0x12, 0xFF, 0x00], [0x80, 0x00, 0x7F]]]
    assert decoded.notes == ["16-bit RGB reduced to 8-bit (high byte, as Pillow reads it)"]


_HEADER = "case_id,subset,class,source_image,source_masks,original_size,duplicate_group,notes\n"
_ROW = "a,train,benign,x.png,x_mask.png,8x8,,\n"


def _fifo(path: Path) -> None:
    os.mkfifo(path)


# (case, how nnunet_se_cases.csv is made: text or a function of its path, expected refusal or None)
CASE_TABLES = [
    ("as written", _HEADER + _ROW + "b,test,,y.png,,8x8,dup_001,grey replicated to RGB\n", None),
    ("a column missing", _HEADER.replace(",duplicate_group", "") + "a,train,benign,x.png,x_mask.png,8x8,\n",
     "columns duplicate_group are missing"),
    ("a case listed twice", _HEADER + _ROW + _ROW, "line 3: case a is listed twice"),
    ("an empty case id", _HEADER + ",train,,x.png,,8x8,,\n", "line 2: an empty case id"),
    ("a row with too many fields", _HEADER + "a,train,,x.png,,8x8,,,extra\n", "wrong number of fields"),
    ("a row with too few fields", _HEADER + "a,train\n", "wrong number of fields"),
    ("not UTF-8", (_HEADER + "\xe9,train,,x.png,,8x8,,\n").encode("latin-1"), "unreadable case table"),
    ("a named pipe", _fifo, "not a regular file (a named pipe)"),
]


@pytest.mark.parametrize(("name", "content", "error"), CASE_TABLES, ids=[c[0] for c in CASE_TABLES])
def test_case_table_is_checked_where_it_is_read(name: str, content: object, error: str | None, tmp_path: Path) -> None:
    """``read_case_table`` (used by the trainers) refuses a damaged table in one line naming it, without blocking."""
    path = tmp_path / "nnunet_se_cases.csv"
    if callable(content):
        content(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    if error is None:
        table = read_case_table(tmp_path)
        assert list(table) == ["a", "b"] and table["b"]["duplicate_group"] == "dup_001"
        assert table["a"]["class"] == "benign" and table["b"]["notes"] == "grey replicated to RGB"
    else:
        with pytest.raises(UserError, match=re.escape(error)) as err, deadline(30):
            read_case_table(tmp_path)
        assert str(path) in str(err.value)


def _read_all(files: list) -> list[str]:
    """SHA-256 of every file's bytes, read 5 times over (runs in a worker process)."""
    return [hashlib.sha256(f.read()).hexdigest() for _ in range(5) for f in files]


def test_archive_members_read_in_forked_workers_are_intact(tmp_path: Path) -> None:
    """The parent opens the archive first (as the converter does for its cost estimate); workers forked afterwards
    read its members concurrently and must each get the right bytes (a shared file offset would mix them up: with
    one shared handle about a fifth of these reads came back wrong)."""
    archive = tmp_path / "kvasir-seg.zip"
    rng = np.random.default_rng(3)
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(12):
            zf.writestr(f"Kvasir-SEG/images/c{i}.jpg", rng.integers(0, 256, 100_000, dtype=np.uint8).tobytes())
    files = collect_sources([archive])
    expected = [hashlib.sha256(f.read()).hexdigest() for f in files] * 5
    assert run_parallel([files] * 4, _read_all, 2) == [expected] * 4

"""Boundaries of ``conversion/images.py`` that the mutation sample (benchmarks/results/mutation_holdout.md) found
unpinned: Pillow's two-step resize (``reducing_gap``), the single-frame rule, the PNG header offset of the bit depth
and the binary-mask value rule."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
from PIL import Image

from nnunet_se.conversion.images import _png_bit_depth, decode_image, decode_mask, image_array, mask_array
from nnunet_se.errors import UserError

BILINEAR = Image.Resampling.BILINEAR


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(("side", "factor"), [(40, 2), (39, 1)])
def test_resize_reduces_by_an_integer_factor_first(side: int, factor: int) -> None:
    """Pillow's ``reducing_gap=2`` (its docs: first ``reduce()`` by an integer factor, then the regular resample) uses
    factor int(side / target / 2): a 40 px side to a 10 px target is box-reduced by 2 first (40 / 10 / 2 = 2), a
    39 px side is not (3.9 / 2 -> 1, the exact bilinear resize). The converted pixels of a large photo depend on
    it (here up to 13 grey levels of difference between the two routes)."""
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8))
    mask = Image.fromarray((rng.random((side, side)) < 0.5).astype(np.uint8) * 255)
    for image, convert in ((rgb, lambda im: image_array(im, 10)), (mask, lambda im: mask_array(im, 10))):
        reduced = image.reduce(factor) if factor > 1 else image
        expected = np.asarray(reduced.resize((10, 10), BILINEAR))
        expected = expected >= 128 if image.mode == "L" else expected
        exact = np.asarray(image.resize((10, 10), BILINEAR))
        exact = exact >= 128 if image.mode == "L" else exact
        np.testing.assert_array_equal(convert(image), expected)
        if factor > 1 and image.mode == "RGB":
            assert not np.array_equal(expected, exact)  # the two routes differ: the test sees which one ran


def _gif(frames: int) -> bytes:
    buf = io.BytesIO()
    images = [Image.new("RGB", (8, 8), (255 * (i % 2), 0, 0)) for i in range(frames)]
    images[0].save(buf, "GIF", save_all=True, append_images=images[1:])
    return buf.getvalue()


@pytest.mark.parametrize("frames", [1, 2])
def test_two_frames_are_refused_one_is_decoded(frames: int) -> None:
    """An animated GIF of 2 frames is not a single image: refused as an image and as a mask; 1 frame decodes.
    Accepting it would silently keep the first frame of an animation as the case."""
    data = _gif(frames)
    assert Image.open(io.BytesIO(data)).n_frames == frames
    if frames == 1:
        assert decode_image(data, "a.gif", None).size == (8, 8)
        return
    with pytest.raises(UserError, match="a.gif: 2 frames"):
        decode_image(data, "a.gif", None)
    with pytest.raises(UserError, match="m.gif: 2 frames"):
        decode_mask(data, "m.gif", None)


def test_png_bit_depth_is_byte_24_of_the_header() -> None:
    """PNG spec: 8-byte signature, then the IHDR chunk: length (4), type ``IHDR`` (4), width (4), height (4), bit
    depth (1): offset 8 + 4 + 4 + 4 + 4 = 24. The first 25 bytes hold it; 24 bytes do not (None, never an error)."""
    data = _png(np.zeros((3, 5), np.uint16))
    assert data[12:16] == b"IHDR" and struct.unpack(">II", data[16:24]) == (5, 3)
    assert _png_bit_depth(data) == 16
    assert _png_bit_depth(data[:25]) == 16
    assert _png_bit_depth(data[:24]) is None
    assert _png_bit_depth(_png(np.zeros((3, 5), np.uint8))[:25]) == 8


@pytest.mark.parametrize(("values", "ok"), [((0, 255), True), ((255, 255), True), ((0, 1), True), ((1, 255), False),
                                            ((128, 255), False), ((0, 128), False)])
def test_lossless_mask_values_must_be_0_and_one_top_value(values: tuple[int, int], ok: bool) -> None:
    """A lossless mask holds {0, top} with top in (1, 255) (either may be absent): {1, 255} has two values and a
    legal top, yet 1 is neither 0 nor 255, so it is not binary and must be refused (else pixels of value 1
    would silently become background or foreground)."""
    data = _png(np.array([values], np.uint8))
    if ok:
        decoded = np.asarray(decode_mask(data, "m.png", None).image)
        assert decoded.tolist() == [[255 if v else 0 for v in values]]
    else:
        with pytest.raises(UserError, match="are not binary"):
            decode_mask(data, "m.png", None)

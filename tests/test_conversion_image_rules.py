"""Image rules of the converter that only show on particular inputs: masks of one image joined by OR, and the
16-bit note read from a PNG header only."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from nnunet_se.conversion.images import decode_image, union


def test_union_joins_every_mask() -> None:
    """BUSI gives some images several masks (``_mask``, ``_mask_1``, ...): the label is their pixel-wise OR, so each
    of three disjoint one-pixel masks reaches it."""
    masks = []
    for k in range(3):
        arr = np.zeros((2, 2), np.uint8)
        arr.flat[k] = 255
        masks.append(Image.fromarray(arr))
    assert np.asarray(union(masks)).tolist() == [[255, 255], [255, 0]]
    assert np.asarray(union(masks[:1])).tolist() == [[255, 0], [0, 0]]


def _encoded(kind: str) -> bytes:
    buf = io.BytesIO()
    image = Image.fromarray(np.full((8, 8, 3), 90, np.uint8))
    if kind == "jpeg-16bit-tables":  # legal extended JPEG: 16-bit quantisation tables, whose DQT puts 16 at byte 24
        image.save(buf, "JPEG", qtables=[[300] * 64])
    else:
        image.save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("kind", ["jpeg-16bit-tables", "png-8bit"])
def test_16bit_note_is_read_from_png_headers_only(kind: str) -> None:
    """Byte 24 is a PNG's bit depth; in this JPEG the same byte is 16 too, yet it is an 8-bit image: no note."""
    data = _encoded(kind)
    assert (data[24] == 16) is (kind == "jpeg-16bit-tables")
    assert decode_image(data, f"x.{kind}", None).notes == []


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.mark.parametrize(
    "kind, data",
    [
        ("rgb", _png(np.dstack([np.array([[0, 255], [255, 0]], np.uint8)] * 3))),
        ("bilevel", _png(np.array([[0, 1], [1, 0]], bool))),
        ("16-bit", _png(np.array([[0, 65535], [65535, 0]], np.uint16))),
    ],
)
def test_lossless_masks_of_other_modes_decode_to_0_and_255(kind: str, data: bytes) -> None:
    """A colour mask (reduced to grey), a bilevel one and a 16-bit {0, 65535} one are all the same binary mask."""
    from nnunet_se.conversion.images import decode_mask

    assert np.asarray(decode_mask(data, f"{kind}.png", None).image).tolist() == [[0, 255], [255, 0]]


@pytest.mark.parametrize("distinct, listed", [(8, "0, 1, 2, 3, 4, 5, 6, 7]"), (9, "0, 1, 2, 3, 4, 5, 6, 7, ...]")])
def test_non_binary_mask_error_lists_eight_values(distinct: int, listed: str) -> None:
    """The one-line error shows the first 8 distinct values, and '...' only when there are more."""
    from nnunet_se.conversion.images import decode_mask
    from nnunet_se.errors import UserError

    with pytest.raises(UserError, match=re.escape(f"mask values [{listed} are not binary")):
        decode_mask(_png(np.arange(distinct, dtype=np.uint8)[None]), "m.png", None)

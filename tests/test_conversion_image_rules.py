"""Image rules of the converter that only show on particular inputs: masks of one image joined by OR, and the
16-bit note read from a PNG header only."""

from __future__ import annotations

import io

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

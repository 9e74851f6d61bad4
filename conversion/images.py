"""Decoding, safe mode conversion, resizing and thresholding of source images and masks.

Images are decoded to Pillow RGB images, masks to Pillow "L" images holding only 0 and 255 (kept in Pillow so that
full-resolution masks never become numpy arrays); the resize functions return (H, W, 3) uint8 and (H, W) bool
arrays. Sizes are (width, height) in pixels, as in Pillow.
At a target size, JPEGs are decoded at reduced scale (DCT scaling, ``Image.draft``: the largest 1/1..1/8 scale that
keeps both sides >= the target) before the exact bilinear resize.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops

from nnunet_se.errors import UserError

RESIZE_FILTER = Image.Resampling.BILINEAR
REDUCING_GAP = 2.0
"""Pillow's ``reducing_gap``: integer box reduction first while the image is > 2x the target (Pillow: "in most
cases indistinguishable"; on a 3008x2000 ISIC mask 2 of 50176 output pixels differ from the exact result)."""


@dataclass
class Decoded:
    """A decoded image: ``image`` RGB (images) or L with values 0/255 (masks), ``size`` = original (width, height)."""

    image: Image.Image
    size: tuple[int, int]
    notes: list[str] = field(default_factory=list)


MASK_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")
"""8-bit Pillow modes a mask may have (reduced to grey, ITU-R 601 luma; alpha ignored)."""
IMAGE_MODES = (*MASK_MODES, "LAB", "HSV")
"""8-bit Pillow modes an image may have (converted to RGB; alpha only if fully opaque). Besides these, 16-bit grey
(``I;16*``, PNG ``I``) is scaled and other ``I``/``F`` refused (:func:`_is_16bit`); anything else (``La``,
``RGBa``, a mask in ``LAB``, ...) is refused."""
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
_FRAMES_ALLOWED = ("MPO",)
"""Formats whose extra frames are not image content (MPO: a JPEG's preview and depth frames)."""


def _open(data: bytes, name: str, target: int | None, modes: tuple[str, ...]) -> tuple[Image.Image, tuple[int, int]]:
    """Decoded image and its size before any reduced-scale (``draft``) JPEG decode; a mode outside ``modes`` (plus
    16- and 32-bit grey) or several frames (animated, multi-page) raise :class:`UserError`."""
    try:
        image = Image.open(io.BytesIO(data))
        size = image.size
        if image.mode not in (*modes, *_SIXTEEN_BIT, "I", "F"):
            raise UserError(f"{name}: Pillow mode {image.mode} is not supported here (expected one of "
                            f"{', '.join(modes)} or 16-bit grey)")
        frames = getattr(image, "n_frames", 1)
        if frames > 1 and image.format not in _FRAMES_ALLOWED:
            raise UserError(f"{name}: {frames} frames ({image.format} animation or pages); expected a single image")
        if target is not None and image.format == "JPEG":
            image.draft("RGB", (target, target))
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise UserError(f"{name}: corrupt or truncated image ({exc})") from exc
    return image, size


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _is_16bit(image: Image.Image, name: str) -> bool:
    """Whether ``image`` holds 16-bit grey. Pillow opens 16-bit grey as ``I;16*`` (or ``I`` for PNG); any other
    32-bit integer or float image has no known bit depth and raises :class:`UserError`."""
    if image.mode in _SIXTEEN_BIT or (image.mode == "I" and image.format == "PNG"):
        return True
    if image.mode in ("I", "F"):
        kind = "32-bit integer" if image.mode == "I" else "floating-point"
        raise UserError(f"{name}: {kind} image; only 8- and 16-bit images have a known range to scale to 8 bits")
    return False


def _16_to_8bit(arr: np.ndarray) -> np.ndarray:
    """16-bit grey -> uint8 by the bit depth: round(value * 255 / 65535), whatever the image's own maximum."""
    return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _png_bit_depth(data: bytes) -> int | None:
    """The bit depth in a PNG's IHDR (byte 24), or None for other formats."""
    return data[24] if data[:8] == _PNG_SIGNATURE and len(data) > 24 else None


def decode_image(data: bytes, name: str, target: int | None) -> Decoded:
    """Decode to RGB uint8; grey, palette, CMYK, opaque RGBA and 16-bit inputs are converted (and noted).

    16-bit grey is scaled by its bit depth (value x 255 / 65535, rounded), never by its own maximum, so the same
    content gives the same output whatever its brightest pixel; 16-bit RGB(A) PNGs keep Pillow's high byte.
    An alpha channel with transparent pixels cannot be dropped safely and raises :class:`UserError`.
    """
    image, size = _open(data, name, target, IMAGE_MODES)
    notes: list[str] = []
    mode = image.mode
    if _is_16bit(image, name):
        arr = _16_to_8bit(np.asarray(image))
        notes.append("16-bit grey scaled to 8-bit (x 255/65535) and replicated to RGB")
        return Decoded(Image.fromarray(arr).convert("RGB"), size, notes)
    if mode in ("RGB", "RGBA") and _png_bit_depth(data) == 16:
        notes.append(f"16-bit {mode} reduced to 8-bit (high byte, as Pillow reads it)")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = np.asarray(image.convert("RGBA"))
        if rgba[:, :, 3].min() < 255:
            raise UserError(f"{name}: image has transparent pixels (mode {mode}); cannot convert it to RGB safely")
        notes.append(f"{mode} with opaque alpha converted to RGB")
    elif mode in ("L", "1"):
        notes.append("grey replicated to RGB")
    elif mode != "RGB":
        notes.append(f"{mode} converted to RGB")
    if mode != "RGB":
        image = image.convert("RGB")
    return Decoded(image, size, notes)


def _lut(foreground: Callable[[int], bool]) -> list[int]:
    return [255 if foreground(v) else 0 for v in range(256)]


_NONZERO = _lut(bool)


def decode_mask(data: bytes, name: str, threshold: int | None) -> Decoded:
    """Decode a mask to an L image with values 0/255.

    With ``threshold`` (lossy JPEG masks), foreground = 8-bit grey value >= threshold (16-bit masks are first
    scaled by their bit depth). Without it (lossless masks) the values must already be binary: {0, 1}, {0, 255}
    or {0, 65535} (one of them may be absent), else :class:`UserError`. Colour masks are reduced to grey
    (ITU-R 601 luma), alpha is ignored.
    """
    image, size = _open(data, name, None, MASK_MODES)
    notes: list[str] = []
    sixteen_bit = _is_16bit(image, name)
    if sixteen_bit:
        arr = np.asarray(image)
        values = np.unique(arr).tolist()
        # lossy: scaled by the bit depth; lossless: any non-zero value (the values are checked binary below)
        grey = Image.fromarray(_16_to_8bit(arr) if threshold is not None else ((arr != 0) * 255).astype(np.uint8))
        notes.append("16-bit mask")
    else:
        if image.mode not in ("L", "1"):
            notes.append(f"{image.mode} mask reduced to grey")
        grey = image if image.mode == "L" else image.convert("L")
        values = [v for v, count in enumerate(grey.histogram()) if count]  # C histogram: no sort of H*W values
    if threshold is not None:
        return Decoded(grey.point(_lut(lambda v: v >= threshold)), size, notes)
    top = int(values[-1])
    if len(values) > 2 or not set(values) <= {0, top} or top not in (0, 1, 255, 65535):
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        raise UserError(f"{name}: mask values [{shown}] are not binary (expected 0 and 255, or 0 and 1)")
    if top == 1 and not sixteen_bit:  # 8-bit {0, 1} mask (16-bit ones are already 0/255)
        grey = grey.point(_NONZERO)
    return Decoded(grey, size, notes)


def union(masks: list[Image.Image]) -> Image.Image:
    """Pixel-wise OR of 0/255 L masks of equal size."""
    out = masks[0]
    for mask in masks[1:]:
        out = ImageChops.lighter(out, mask)
    return out


def image_array(image: Image.Image, target: int | None) -> np.ndarray:
    """RGB image -> (target, target, 3) uint8, bilinear; ``None`` keeps the size."""
    if target is not None:
        image = image.resize((target, target), RESIZE_FILTER, reducing_gap=REDUCING_GAP)
    return np.asarray(image)


def mask_array(mask: Image.Image, target: int | None) -> np.ndarray:
    """0/255 L mask -> (target, target) bool: bilinear on the mask scaled to [0, 1], then >= 0.5 (computed in
    8 bits: foreground where the resized 0..255 value is >= 128); ``None`` keeps the size."""
    if target is not None:
        mask = mask.resize((target, target), RESIZE_FILTER, reducing_gap=REDUCING_GAP)
    return np.asarray(mask) >= 128

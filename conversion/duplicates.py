"""Exact and near-duplicate detection: pixel digests, a DCT perceptual hash, and union-find grouping.

Exact duplicates have identical converted pixels (same shape and bytes). Near duplicates have 64-bit perceptual
hashes (pHash: 32x32 grey, 2D DCT-II, the 8x8 lowest frequencies without DC, thresholded at their median) whose
Hamming distance is at most :data:`PHASH_THRESHOLD` bits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
from PIL import Image

PHASH_THRESHOLD = 6
"""Largest Hamming distance (of 63 bits used) still called a near duplicate; see docs/datasets.md for its choice."""

_HASH_SIDE = 32
_LOW = 8


def _dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix, shape (n, n): ``D @ x`` transforms a length-n signal."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    mat = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    mat[0] /= np.sqrt(2.0)
    return mat


_DCT = _dct_matrix(_HASH_SIDE)


def pixel_digest(image: np.ndarray) -> str:
    """SHA-256 over shape and bytes of an array: equal digests mean identical pixels."""
    digest = hashlib.sha256(repr((image.shape, image.dtype.str)).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


def phash(image: np.ndarray) -> int:
    """64-bit perceptual hash of an (H, W, 3) or (H, W) uint8 image (bit 0, the DC term, is always 0)."""
    grey = Image.fromarray(image).convert("L").resize((_HASH_SIDE, _HASH_SIDE), Image.Resampling.BILINEAR)
    coeffs = _DCT @ np.asarray(grey, dtype=np.float64) @ _DCT.T
    low = coeffs[:_LOW, :_LOW].ravel()
    bits = low > np.median(low[1:])
    bits[0] = False
    return int(sum(1 << i for i, bit in enumerate(bits) if bit))


def hamming_matrix(hashes: Sequence[int]) -> np.ndarray:
    """Pairwise Hamming distances between 64-bit hashes, shape (n, n), int."""
    arr = np.array(hashes, dtype=np.uint64)
    return np.bitwise_count(arr[:, None] ^ arr[None, :]).astype(int)


def duplicate_groups(
    case_ids: Sequence[str], digests: Sequence[str], hashes: Sequence[int], threshold: int = PHASH_THRESHOLD
) -> list[list[str]]:
    """Groups (of size >= 2) of cases that are exact or near duplicates, transitively joined (union-find).

    Each group is sorted, and groups are sorted by their first member: the result depends only on the inputs.
    """
    n = len(case_ids)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i: int, j: int) -> None:
        ri, rj = find(i), find(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)

    first_with: dict[str, int] = {}
    for i, digest in enumerate(digests):
        union(i, first_with.setdefault(digest, i))
    if n > 1:
        close = np.argwhere(np.triu(hamming_matrix(hashes) <= threshold, k=1))
        for i, j in close:
            union(int(i), int(j))
    members: dict[int, list[str]] = {}
    for i in range(n):
        members.setdefault(find(i), []).append(case_ids[i])
    return sorted(sorted(group) for group in members.values() if len(group) > 1)

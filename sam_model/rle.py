"""Run-length encodings of binary masks, without building full-image arrays.

Formats (both as used by COCO / pycocotools):

* uncompressed RLE: ``{"size": [H, W], "counts": [int, ...]}``; the mask is
  flattened in column-major (Fortran) order and ``counts`` alternates runs of
  0s and 1s, starting with 0s (a leading 0 when the first pixel is set).
* COCO compressed RLE: the same counts as an ASCII string (``counts`` is a
  ``str``), each count stored as a difference to the count two places before
  (from the fourth on) in little-endian 5-bit groups with a continuation bit,
  offset by 48.

Masks are given as a small crop (``(h, w)`` bool, the mask's bounding box)
and the crop's top-left corner in the full ``(H, W)`` frame, so encoding costs
in proportion to the crop, not the image.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "rle_from_crop",
    "rle_to_mask",
    "rle_area",
    "coco_counts_to_string",
    "coco_string_to_counts",
    "coco_rle_from_uncompressed",
    "coco_rle_to_mask",
]


def _as_numpy_bool(mask) -> np.ndarray:
    if isinstance(mask, torch.Tensor):
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask, dtype=bool)


def rle_from_crop(crop, top_left: tuple[int, int], size: tuple[int, int]) -> dict:
    """Uncompressed RLE of a mask that is zero outside ``crop``.

    crop: ``(h, w)`` bool (numpy or torch) placed with its top-left pixel at
    ``top_left = (y0, x0)`` in an image of ``size = (H, W)``.
    Returns ``{"size": [H, W], "counts": list of int}``.
    """
    full_h, full_w = int(size[0]), int(size[1])
    y0, x0 = int(top_left[0]), int(top_left[1])
    crop = _as_numpy_bool(crop)
    h, w = crop.shape
    if y0 < 0 or x0 < 0 or y0 + h > full_h or x0 + w > full_w:
        raise ValueError(f"crop {crop.shape} at {top_left} does not fit in {size}")
    total = full_h * full_w
    if h == 0 or w == 0 or not crop.any():
        return {"size": [full_h, full_w], "counts": [total]}
    # Column-major flattening with one False row above and below each column,
    # so no run crosses a column inside the padded array.
    padded = np.zeros((h + 2, w), dtype=np.int8)
    padded[1:-1] = crop
    flat = padded.T.ravel()
    edges = np.flatnonzero(np.diff(flat))  # position before each change
    starts_local = edges[0::2] + 1
    ends_local = edges[1::2] + 1  # exclusive
    col = starts_local // (h + 2)
    # Row inside the crop = padded row - 1; both ends lie in the same column.
    starts = (x0 + col) * full_h + y0 + (starts_local % (h + 2)) - 1
    ends = (x0 + col) * full_h + y0 + (ends_local - col * (h + 2)) - 1
    # Runs that end at the bottom of one column and restart at the top of the
    # next are one run in the full image.
    joined = starts[1:] == ends[:-1]
    if joined.any():
        starts = np.concatenate([starts[:1], starts[1:][~joined]])
        ends = np.concatenate([ends[:-1][~joined], ends[-1:]])
    bounds = np.empty(2 * len(starts) + 2, dtype=np.int64)
    bounds[0] = 0
    bounds[1:-1:2] = starts
    bounds[2:-1:2] = ends
    bounds[-1] = total
    counts = np.diff(bounds)
    if counts[-1] == 0:
        counts = counts[:-1]
    return {"size": [full_h, full_w], "counts": counts.tolist()}


def rle_area(rle: dict) -> int:
    """Number of set pixels of an uncompressed RLE."""
    return int(sum(rle["counts"][1::2]))


def rle_to_mask(rle: dict) -> np.ndarray:
    """Decode an uncompressed RLE to an ``(H, W)`` bool array (C order)."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {counts.sum()}, expected {h * w}")
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(w, h).T)


def coco_counts_to_string(counts) -> str:
    """Encode run counts as a COCO compressed RLE string."""
    out = bytearray()
    cnts = [int(c) for c in counts]
    for i, c in enumerate(cnts):
        x = c - cnts[i - 2] if i > 2 else c
        more = True
        while more:
            ch = x & 0x1F
            x >>= 5  # arithmetic shift: negative values stay negative
            more = (x != -1) if (ch & 0x10) else (x != 0)
            if more:
                ch |= 0x20
            out.append(ch + 48)
    return out.decode("ascii")


def coco_string_to_counts(text: str) -> list[int]:
    """Decode a COCO compressed RLE string to run counts."""
    data = text.encode("ascii")
    counts: list[int] = []
    p = 0
    while p < len(data):
        x = 0
        k = 0
        more = True
        while more:
            ch = data[p] - 48
            x |= (ch & 0x1F) << (5 * k)
            more = bool(ch & 0x20)
            p += 1
            k += 1
            if not more and (ch & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def coco_rle_from_uncompressed(rle: dict) -> dict:
    """``{"size": [H, W], "counts": str}`` from an uncompressed RLE."""
    return {"size": list(rle["size"]), "counts": coco_counts_to_string(rle["counts"])}


def coco_rle_to_mask(rle: dict) -> np.ndarray:
    """Decode a COCO compressed RLE (``counts`` str or bytes) to ``(H, W)`` bool."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return rle_to_mask({"size": rle["size"], "counts": coco_string_to_counts(counts)})

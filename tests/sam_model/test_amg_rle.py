"""Run-length encodings from mask crops: reference RLE, COCO strings, round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils import amg as ref

from sam_model.amg_utils import masks_to_boxes
from sam_model.rle import (
    coco_counts_to_string,
    coco_rle_from_uncompressed,
    coco_rle_to_mask,
    coco_string_to_counts,
    rle_area,
    rle_from_crop,
    rle_to_mask,
)


def _random_masks(n=300, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = rng.integers(1, 14, 2)
        m = rng.random((h, w)) < rng.random()
        if i % 5 == 0:
            m[:] = rng.random() < 0.5  # empty or full
        if i % 7 == 0:
            m[:, :] = False
            m[-1, 0] = m[0, -1] = True  # runs joining across columns
        yield m


def _crop(mask):
    x0, y0, x1, y1 = masks_to_boxes(torch.as_tensor(mask)[None])[0].tolist()
    return mask[y0 : y1 + 1, x0 : x1 + 1], (y0, x0)


def test_rle_from_crop_equals_reference_full_image_rle():
    for mask in _random_masks():
        crop, top_left = _crop(mask)
        ours = rle_from_crop(crop, top_left, mask.shape)
        theirs = ref.mask_to_rle_pytorch(torch.as_tensor(mask)[None])[0]
        assert ours == theirs
        assert rle_area(ours) == ref.area_from_rle(theirs) == int(mask.sum())
        np.testing.assert_array_equal(rle_to_mask(ours), mask)


def test_crop_must_fit():
    with pytest.raises(ValueError, match="does not fit"):
        rle_from_crop(np.ones((3, 3), bool), (2, 2), (4, 4))


def test_coco_string_matches_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    for mask in _random_masks(seed=1):
        crop, top_left = _crop(mask)
        ours = coco_rle_from_uncompressed(rle_from_crop(crop, top_left, mask.shape))
        theirs = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        assert ours["size"] == list(theirs["size"])
        assert ours["counts"] == theirs["counts"].decode("ascii")
        np.testing.assert_array_equal(coco_rle_to_mask(ours), mask)
        decoded = mask_utils.decode({"size": ours["size"], "counts": ours["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), mask)


def test_coco_string_large_and_negative_differences():
    counts = [0, 70000, 3, 1, 123456, 2, 5]  # differences to counts two back go negative
    text = coco_counts_to_string(counts)
    assert coco_string_to_counts(text) == counts
    # A hand-checked value: 5 -> '5', 1 -> '1', the third count (1) is stored as is.
    assert coco_counts_to_string([5, 1, 1]) == "511"

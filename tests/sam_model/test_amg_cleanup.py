"""Small holes and islands removed from bounding-box crops, as on the full image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from sam_model.amg_utils import masks_to_boxes
from sam_model.mask_cleanup import remove_small_regions

EIGHT = np.ones((3, 3), bool)


def _full_image_rule(mask, area, mode):
    """The official rule on the whole image (8-connected components)."""
    holes = mode == "holes"
    labels, n = ndimage.label(holes ^ mask, structure=EIGHT)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)[1:]
    small = [i + 1 for i, s in enumerate(sizes) if s < area]
    if not small:
        return mask, False
    fill = [0] + small
    if not holes:
        fill = [i for i in range(n + 1) if i not in fill] or [int(np.argmax(sizes)) + 1]
    return np.isin(labels, fill), True


def _cases(seed=0, n=400):
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = rng.integers(1, 18, 2)
        noisy = rng.random((h, w)) < rng.uniform(0.1, 0.95)
        mask = ndimage.binary_opening(noisy) if i % 2 else noisy
        if i % 5 == 0:  # spans the full width: background above and below are apart
            mask = np.ones((h, w), bool)
            mask[rng.integers(0, h)] = rng.random(w) < 0.3
        yield mask, int(rng.integers(1, 30))


def test_crop_cleanup_equals_full_image_cleanup():
    changed = 0
    for mask, area in _cases():
        expected, c1 = _full_image_rule(mask, area, "holes")
        expected, c2 = _full_image_rule(expected, area, "islands")
        x0, y0, x1, y1 = masks_to_boxes(torch.as_tensor(mask)[None])[0].tolist()
        crop, (ty, tx), was_changed = remove_small_regions(
            mask[y0 : y1 + 1, x0 : x1 + 1], (y0, x0), mask.shape, area
        )
        got = np.zeros_like(mask)
        got[ty : ty + crop.shape[0], tx : tx + crop.shape[1]] = crop
        np.testing.assert_array_equal(got, expected)
        assert was_changed == (c1 or c2)
        changed += was_changed
    assert 50 < changed < 400


@pytest.mark.parametrize("area", [5, 50])
def test_hole_and_island(area):
    mask = np.zeros((40, 40), bool)
    mask[5:25, 5:25] = True
    mask[10:12, 10:12] = False  # hole of 4 px
    mask[30:32, 30:33] = True  # island of 6 px
    crop, (ty, tx), changed = remove_small_regions(mask[5:32, 5:33], (5, 5), (40, 40), area)
    assert changed
    got = np.zeros_like(mask)
    got[ty : ty + crop.shape[0], tx : tx + crop.shape[1]] = crop
    assert got[10:12, 10:12].all()  # hole filled either way
    assert got[30:32, 30:33].any() == (area <= 6)

"""Cell-wise thresholds of upsampled logits against the dense upsampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam_model.amg_utils import masks_to_boxes
from sam_model.logit_cells import DENSE_SHARE, CellUpsampler


def _dense(low, img_size, input_hw, out_hw):
    """SAM's postprocess_masks: to img_size, crop to input_hw, resize to out_hw."""
    up = F.interpolate(low[:, None], (img_size, img_size), mode="bilinear", align_corners=False)
    up = up[..., : input_hw[0], : input_hw[1]]
    if tuple(input_hw) != tuple(out_hw):
        up = F.interpolate(up, tuple(out_hw), mode="bilinear", align_corners=False)
    return up[:, 0]


def _blobs(k, n, gen, noise):
    """Smooth logits of discs of random sizes (clean boundaries), plus noise."""
    yy, xx = torch.meshgrid(torch.arange(n, dtype=torch.float32),
                            torch.arange(n, dtype=torch.float32), indexing="ij")
    maps = []
    for _ in range(k):
        cy, cx = torch.rand(2, generator=gen) * n
        r = 1 + torch.rand(1, generator=gen) * n / 3
        d = ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt()
        maps.append(2.0 * (r - d) + noise * torch.randn(n, n, generator=gen))
    return torch.stack(maps)


CASES = [
    # (low side, img_size, input_hw, out_hw): plain 4x, cropped padding, resized image
    (32, 128, (128, 128), (128, 128)),
    (32, 128, (128, 97), (128, 97)),
    (16, 64, (43, 64), (150, 223)),
    (16, 64, (64, 50), (40, 31)),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("noise", [0.05, 3.0])
def test_counts_and_masks_equal_dense_upsampling(case, noise):
    n, s, input_hw, out_hw = case
    gen = torch.Generator().manual_seed(n + int(noise * 10))
    low = _blobs(6, n, gen, noise)
    low[0] = -4.0  # empty mask
    up = _dense(low, s, input_hw, out_hw)
    cells = CellUpsampler(low_hw=(n, n), img_size=s, input_hw=input_hw, out_hw=out_hw)
    thresholds = [1.0, -1.0, 0.0]
    expected = torch.stack([(up > t).flatten(1).sum(1) for t in thresholds], dim=1)
    assert torch.equal(cells.counts_above(low, thresholds), expected)
    stab = cells.stability(low, 0.0, 1.0)
    torch.testing.assert_close(stab, expected[:, 0] / expected[:, 1], equal_nan=True)
    crops, boxes = cells.mask_crops(low, 0.0)
    masks = up > 0
    assert torch.equal(boxes, masks_to_boxes(masks))
    for mask, crop, (x0, y0, x1, y1) in zip(masks.numpy(), crops, boxes.tolist()):
        if not mask.any():
            assert crop.shape == (1, 1) and not crop.any()
            continue
        np.testing.assert_array_equal(crop, mask[y0 : y1 + 1, x0 : x1 + 1])


def test_clean_masks_use_cells_and_noisy_masks_the_dense_path():
    gen = torch.Generator().manual_seed(5)
    cells = CellUpsampler(low_hw=(64, 64), img_size=256, input_hw=(256, 256), out_hw=(256, 256))
    clean = _blobs(4, 64, gen, 0.0)
    noisy = torch.randn(4, 64, 64, generator=gen)
    for low, dense in [(clean, False), (noisy, True)]:
        lo, hi = cells._extremes(low)
        share = ((hi > -1.0) & (lo <= 1.0)).flatten(1).float().mean(1)
        assert bool((share > DENSE_SHARE).all()) == dense
        up = _dense(low, 256, (256, 256), (256, 256))
        expected = torch.stack([(up > t).flatten(1).sum(1) for t in (1.0, -1.0)], dim=1)
        assert torch.equal(cells.counts_above(low, [1.0, -1.0]), expected)


def test_output_must_fit():
    with pytest.raises(ValueError):
        CellUpsampler(low_hw=(16, 16), img_size=64, input_hw=(65, 64), out_hw=(65, 64))

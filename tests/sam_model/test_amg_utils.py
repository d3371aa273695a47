"""Geometry helpers of automatic mask generation against the reference package."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.utils import amg as ref

from sam_model.amg_utils import (
    box_near_crop_edge,
    crop_boxes_for_layers,
    layer_point_grids,
    masks_to_boxes,
    nms,
    point_grid,
    stability_score,
    xyxy_to_xywh,
)


@pytest.mark.parametrize("n", [1, 2, 7, 32])
def test_point_grid_matches_reference(n):
    np.testing.assert_array_equal(point_grid(n), ref.build_point_grid(n))


def test_layer_grids_match_reference():
    ours = layer_point_grids(32, 2, 2)
    theirs = ref.build_all_layer_point_grids(32, 2, 2)
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("size", [(1024, 1024), (600, 900), (257, 131)])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_crop_boxes_match_reference(size, layers):
    ours = crop_boxes_for_layers(size, layers, 512 / 1500)
    theirs = ref.generate_crop_boxes(size, layers, 512 / 1500)
    assert ours == (list(map(list, theirs[0])), list(theirs[1]))


def test_masks_to_boxes_matches_reference_including_empty():
    gen = torch.Generator().manual_seed(0)
    masks = torch.rand(2, 5, 23, 31, generator=gen) > 0.97
    masks[0, 1] = False
    masks[1, 2, 4, 7] = True
    ours = masks_to_boxes(masks)
    assert ours.shape == (2, 5, 4) and ours.dtype == torch.int64
    assert torch.equal(ours, ref.batched_mask_to_box(masks))
    assert ours[0, 1].tolist() == [0, 0, 0, 0]
    assert masks_to_boxes(torch.zeros(0, 4, 4, dtype=torch.bool)).shape == (0, 4)


def test_stability_matches_reference():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 40, 50, generator=gen) * 3
    logits[0] = -5.0  # empty at both thresholds: NaN in both
    ours = stability_score(logits, 0.0, 1.0)
    theirs = ref.calculate_stability_score(logits, 0.0, 1.0)
    torch.testing.assert_close(ours, theirs, equal_nan=True)


def test_box_near_crop_edge_matches_reference():
    gen = torch.Generator().manual_seed(2)
    boxes = torch.randint(0, 300, (200, 2), generator=gen)
    boxes = torch.cat([boxes, boxes + torch.randint(0, 200, (200, 2), generator=gen)], dim=1)
    crop, image = [100, 50, 500, 450], [0, 0, 600, 450]
    ours = box_near_crop_edge(boxes, crop, image)
    assert torch.equal(ours, ref.is_box_near_crop_edge(boxes, crop, image))
    assert ours.any() and not ours.all()


def _greedy_nms(boxes, scores, thr):
    """Plain greedy NMS, one box at a time, for reference."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    keep = []
    for i in order:
        ok = True
        for j in keep:
            bi, bj = boxes[i].float(), boxes[j].float()
            iw = max(0.0, min(bi[2], bj[2]) - max(bi[0], bj[0]))
            ih = max(0.0, min(bi[3], bj[3]) - max(bi[1], bj[1]))
            inter = iw * ih
            union = (bi[2] - bi[0]) * (bi[3] - bi[1]) + (bj[2] - bj[0]) * (bj[3] - bj[1]) - inter
            if union > 0 and inter / union > thr:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("thr", [0.3, 0.7])
def test_nms_is_greedy_by_score(thr):
    gen = torch.Generator().manual_seed(3)
    xy = torch.randint(0, 30, (120, 2), generator=gen)
    boxes = torch.cat([xy, xy + torch.randint(10, 40, (120, 2), generator=gen)], dim=1)
    boxes[:5, 2:] = boxes[:5, :2]  # degenerate boxes (one-pixel masks) are never suppressed
    scores = torch.rand(120, generator=gen).round(decimals=1)  # many ties
    keep = nms(boxes, scores, thr)
    assert keep.tolist() == _greedy_nms(boxes, scores, thr)
    assert len(keep) < 120
    assert nms(torch.zeros(0, 4), torch.zeros(0), thr).shape == (0,)


def test_xyxy_to_xywh():
    assert xyxy_to_xywh(torch.tensor([3, 4, 10, 20])) == [3, 4, 7, 16]
    assert xyxy_to_xywh([1, 2, 3, 4]) == [1, 2, 2, 2]

"""Simulated prompts: points inside masks, boxes around them, clicks in the error region."""

from __future__ import annotations

import numpy as np
import torch

from sam_model.train.interact import (
    centre_click,
    error_clicks,
    mask_boxes,
    noisy_boxes,
    object_centre,
    random_points_in,
)


def _masks(n=16, size=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = torch.zeros(n, size, size, dtype=torch.bool)
    for i in range(n):
        y0, x0 = torch.randint(0, size - 12, (2,), generator=g).tolist()
        h, w = torch.randint(3, 12, (2,), generator=g).tolist()
        out[i, y0:y0 + h, x0:x0 + w] = True
    return out


def test_random_points_fall_inside_their_mask():
    masks = _masks()
    masks[3] = False  # an empty mask is reported, not a crash
    pts, found = random_points_in(masks, torch.Generator().manual_seed(1))
    assert found.tolist() == [i != 3 for i in range(16)]
    for i in range(16):
        if i != 3:
            x, y = pts[i].long().tolist()
            assert masks[i, y, x]


def test_boxes_are_tight_and_noise_is_bounded():
    masks = _masks()
    boxes = mask_boxes(masks)
    for i in range(16):
        ys, xs = torch.nonzero(masks[i], as_tuple=True)
        assert boxes[i].tolist() == [xs.min().item(), ys.min().item(), xs.max().item(),
                                     ys.max().item()]
    noisy = noisy_boxes(masks, torch.Generator().manual_seed(2), max_shift=3)
    assert (noisy - boxes).abs().max() <= 3 + 1e-6
    assert (noisy[:, 2] >= noisy[:, 0]).all() and (noisy[:, 3] >= noisy[:, 1]).all()


def test_error_clicks_land_in_the_error_region_with_the_right_label():
    target = _masks(seed=3)
    pred = torch.roll(target, shifts=4, dims=2)  # shifted: both missed and false pixels
    pred[5] = target[5]  # exact: no click (label -1)
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        pts, labels = error_clicks(pred, target, gen)
        for i in range(len(target)):
            if i == 5:
                assert labels[i] == -1
                continue
            x, y = pts[i].long().tolist()
            assert pred[i, y, x] != target[i, y, x]  # in the error region
            assert labels[i] == int(target[i, y, x])  # positive where missed


def test_error_clicks_prefer_the_inside_of_thick_errors():
    target = torch.zeros(1, 40, 40, dtype=torch.bool)
    target[0, 5:35, 5:35] = True
    pred = torch.zeros_like(target)  # everything missed: clicks away from the edge
    pts, labels = error_clicks(pred, target, torch.Generator().manual_seed(0), margin=2)
    x, y = pts[0].long().tolist()
    assert labels[0] == 1 and 7 <= x <= 32 and 7 <= y <= 32


def test_centre_click_is_deterministic_and_in_the_largest_error():
    gt = np.zeros((30, 30), bool)
    gt[5:25, 5:25] = True
    pred = gt.copy()
    pred[5:25, 5:12] = False  # a missed 20x7 band
    pred[0:2, 0:2] = True  # a small false region
    (x, y), label = centre_click(pred, gt)
    assert label == 1 and 5 <= x < 12 and 5 <= y < 25
    assert centre_click(gt, gt) is None
    assert object_centre(gt) in {(14.0, 14.0), (15.0, 15.0), (14.0, 15.0), (15.0, 14.0)}

"""The evaluation's box_zoom: boxes decoded as the raster predictor decodes them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_model import build_sam, build_sam_from_config, tiny_test_config
from sam_model.train.evaluate import evaluate_pairs


def _pair(size, objects, seed=0):
    """A textured image with filled ellipses (cy, cx, ry, rx) as label ids 1..n."""
    rng = np.random.default_rng(seed)
    image = rng.normal(70, 12, (size, size, 3))
    labels = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    for i, (cy, cx, ry, rx) in enumerate(objects, 1):
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
        image[inside] = rng.uniform(150, 240, 3)
        labels[inside] = i
    return np.clip(image, 0, 255).astype(np.uint8), labels


def test_box_zoom_equals_box_when_nothing_exceeds_the_limit():
    torch.manual_seed(0)
    model = build_sam_from_config(tiny_test_config(img_size=256)).eval()
    pair = _pair(200, [(60, 60, 20, 25), (140, 130, 30, 20)])
    report = evaluate_pairs(model, [pair], clicks=1, zoom_limit=1000)
    assert report["box_zoom"] == report["box"]
    assert "box_zoom" not in evaluate_pairs(model, [pair], clicks=1)
    boxes_only = evaluate_pairs(model, [pair], clicks=1, zoom_limit=1000, zoom_clicks=False)
    assert "box_zoom" in boxes_only and "point_zoom" not in boxes_only
    assert "point_zoom" in report


def test_shipped_sam_tiny_large_boxes_work_with_zoom():
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = build_sam("sam_tiny")
    pair = _pair(1024, [(500, 500, 240, 310), (150, 850, 40, 50)], seed=2)
    report = evaluate_pairs(model, [pair], clicks=1, zoom_limit=192)
    bins = report["by_extent"]
    large = bins[">=512"]
    assert large["box_zoom"] >= 0.6, bins
    assert large["box_zoom"] > large["box"] + 0.4, bins
    small = bins["64-128"]
    assert small["box_zoom"] == pytest.approx(small["box"]), bins  # decoded at full scale


def test_point_zoom_follows_the_raster_predictor_rule():
    """A click in a ~400 px object: the zoomed-out decode is kept (point_zoom >> point);
    a small object's click stays at full scale; the clicks continue at the zoom that won."""
    torch.set_num_threads(min(2, torch.get_num_threads()))
    model = build_sam("sam_tiny")
    pair = _pair(1024, [(500, 500, 150, 200), (150, 850, 40, 50)], seed=1)
    report = evaluate_pairs(model, [pair], clicks=3, zoom_limit=192)
    bins = report["by_extent"]
    large, small = bins["256-512"], bins["64-128"]
    assert large["point_zoom"] >= 0.85, bins
    assert large["point_zoom"] > large["point_top"] + 0.15, bins
    assert large["clicks_zoom"] >= 0.85, bins
    assert small["point_zoom"] == pytest.approx(small["point_top"]), bins
    assert small["clicks_zoom"] == pytest.approx(small["clicks"]), bins
    plain = evaluate_pairs(model, [pair], clicks=3)
    assert "point_zoom" not in plain and "clicks_zoom" not in plain
    assert plain["point_top"] == report["point_top"] and plain["clicks"] == report["clicks"]

"""Propagation of one object through a generated 3D stack of cells (the embedded models)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam.core.progress import run
from napari_sam.core.prompt.propagate import (
    PropagationSettings,
    interior_point,
    overlap,
    placed_iou,
    propagate,
    touching,
)
from napari_sam.core.tiling.window import Window

CELLS = (  # centre (z, y, x), radii (z, y, x), brightness
    ((7, 60, 62), (6, 30, 24), 200),
    ((5, 120, 125), (4, 22, 26), 150),
    ((10, 122, 45), (5, 18, 18), 230),
)


def cell_stack(depth: int = 15, side: int = 176, seed: int = 3):
    """(z, y, x) uint8 stack of bright ellipsoid cells on a noisy background, and the
    (z, y, x) int labels of the cells (1, 2, 3)."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.mgrid[:depth, :side, :side]
    image = rng.normal(45, 5, (depth, side, side))
    truth = np.zeros((depth, side, side), dtype=np.int32)
    for n, ((cz, cy, cx), (rz, ry, rx), level) in enumerate(CELLS, start=1):
        inside = ((zz - cz) / rz) ** 2 + ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        image[inside] = level + rng.normal(0, 4, int(inside.sum()))
        truth[inside] = n
    return image.clip(0, 255).astype(np.uint8), truth


def test_interior_point_and_overlap():
    mask = np.zeros((9, 9), bool)
    mask[2:7, 1:8] = True
    row, col = interior_point(mask)
    assert row == 4 and 3 <= col <= 5  # three pixels are 3 px from the outline
    a = (Window(0, 0, 9, 9), mask)
    b = (Window(2, 1, 5, 7), np.ones((5, 7), bool))
    assert overlap(a, b) == 1.0
    assert overlap(a, (Window(20, 20, 3, 3), np.ones((3, 3), bool))) == 0.0
    assert placed_iou(a, b) == 1.0  # the same 35 pixels
    assert placed_iou(a, (Window(2, 1, 5, 3), np.ones((5, 3), bool))) == 15 / 35
    assert placed_iou(a, (Window(20, 20, 3, 3), np.ones((3, 3), bool))) == 0.0


def test_only_the_parts_touching_the_previous_plane_are_kept():
    mask = np.zeros((20, 30), bool)
    mask[2:8, 3:9] = True  # touches the previous mask
    mask[12:18, 20:28] = True  # a neighbour painted too
    previous = (Window(10, 10, 4, 4), np.ones((4, 4), bool))  # rows 10..13, cols 10..13
    window, kept = touching((Window(5, 8, 20, 30), mask), previous)
    assert (window.y0, window.x0, window.height, window.width) == (7, 11, 6, 6)
    assert kept.all()
    gone = touching((Window(5, 8, 20, 30), mask), (Window(0, 0, 2, 2), np.ones((2, 2), bool)))
    assert gone[1].size == 0


@pytest.fixture(scope="module", params=["sam_tiny", "sam_lite0"])
def embedded(request):
    from napari_sam.core.models import load_model

    return request.param, load_model(request.param, None, device="cpu")


def _placed(shape, window, mask):
    out = np.zeros(shape, bool)
    out[window.y0:window.y0 + window.height, window.x0:window.x0 + window.width] = mask
    return out


def _iou(a, b):
    return float((a & b).sum() / max(1, (a | b).sum()))


# 3D IoU reached from one click per cell, measured: sam_tiny 0.80, 0.86, 0.85 (one prompt per
# plane gave 0.39, 0.90, 0.71: cell 1's next plane overshot, cell 3 lost its end planes);
# sam_lite0 0.74, 0.79, 0.52 (one prompt: 0.79, 0.32, 0.19 -- it painted the neighbour cell
# and echoed the mask prompt past the cell's end). Cell 3's click candidates reach 0.50 only.
MIN_START_IOU = {"sam_tiny": 0.8, "sam_lite0": 0.45}  # the best click candidate, 2D
MIN_IOU_3D = {"sam_tiny": {1: 0.7, 2: 0.8, 3: 0.75}, "sam_lite0": {1: 0.65, 2: 0.7, 3: 0.45}}


def test_one_click_propagates_through_the_volume(embedded):
    from napari_sam.core.prompt.predictor import RasterPredictor

    name, model = embedded
    stack, truth = cell_stack()
    predictors: dict = {}

    def predictor_for(index):
        if index not in predictors:
            predictors[index] = RasterPredictor(model=model, raster=stack[index[0]])
        return predictors[index]

    for label, ((cz, cy, cx), _, _) in enumerate(CELLS, start=1):
        result = predictor_for((cz,)).predict(np.array([[cx, cy]]), coords="pixel")
        ious = [_iou(_placed(truth.shape[1:], *result.cropped(k)), truth[cz] == label)
                for k in range(len(result.scores))]
        best = int(np.argmax(ious))  # the candidate a user keeps (N shows the next)
        assert ious[best] > MIN_START_IOU[name], (name, label, ious)
        events = []
        found = run(propagate(predictor_for, (cz,), result.cropped(best), axis=0,
                              size=stack.shape[0], settings=PropagationSettings(),
                              first_score=float(result.scores[best])), events.append)
        volume = np.zeros(truth.shape, bool)
        for (z,), (w, m) in found.items():
            volume[z] = _placed(truth.shape[1:], w, m)
        iou3d = _iou(volume, truth == label)
        assert iou3d >= MIN_IOU_3D[name][label], (name, label, iou3d, sorted(found))
        assert events[-1].done == events[-1].total and len(found) >= 3
        # it stops where the object ends: nothing on planes without it
        empty_planes = [z for z in range(stack.shape[0]) if not (truth[z] == label).any()]
        assert not any((z,) in found for z in empty_planes), (label, sorted(found))


def test_propagation_stops_when_the_object_ends():
    from napari_sam.core.prompt.propagate import ends_here

    settings = PropagationSettings()
    prev = (Window(0, 0, 10, 10), np.ones((10, 10), bool))
    grown = (Window(0, 0, 20, 20), np.ones((20, 20), bool))
    assert ends_here(settings, grown, 0.9, prev, 0.9)  # 4x the area: the object vanished
    assert ends_here(settings, prev, 0.6, prev, 0.9)  # the score dropped
    assert ends_here(settings, (Window(50, 50, 10, 10), prev[1]), 0.9, prev, 0.9)  # moved away
    assert not ends_here(settings, prev, 0.85, prev, 0.9)


class _MovingDisc:
    """A stand-in predictor for frame ``t`` of a disc moving 6 px right per frame (present
    in frames 0..5): it answers with the disc under the prompted point (or the box's
    centre), or nothing."""

    def __init__(self, t, side=64):
        self.t, self.side = t, side

    def predict(self, points, labels, box, mask_input, multimask=False, **_):
        yy, xx = np.mgrid[:self.side, :self.side]
        disc = (yy - 30) ** 2 + (xx - (12 + 6 * self.t)) ** 2 < 8 ** 2
        x, y = points[0] if points is not None else ((box[0] + box[2]) / 2,
                                                    (box[1] + box[3]) / 2)
        if self.t > 5 or not disc[int(y), int(x)]:  # lost it
            disc[:] = False
        return _Result(disc, 3 if multimask else 1)


class _Result:
    def __init__(self, mask, count=1):
        self.mask = mask
        self.best_score = 0.9 if mask.any() else 0.0
        self.scores = np.full(count, self.best_score)

    def cropped(self, index=None):
        if not self.mask.any():
            return Window(0, 0, 0, 0), np.zeros((0, 0), bool)
        rows, cols = np.nonzero(self.mask)
        window = Window(int(rows.min()), int(cols.min()), int(np.ptp(rows)) + 1,
                        int(np.ptp(cols)) + 1)
        return window, self.mask[rows.min():rows.max() + 1, cols.min():cols.max() + 1]


def test_tracking_through_t_follows_the_object_and_keeps_other_axes():
    start = (2, 4)  # (t, z): track through t (axis 0) on z = 4
    window, mask = _Result(_MovingDisc(2).predict([[24, 30]], None, None, None).mask).cropped()
    found = run(propagate(lambda index: _MovingDisc(index[0]), start, (window, mask), axis=0,
                          size=10))
    assert sorted(found) == [(t, 4) for t in range(6)]  # frames 0..5; gone from frame 6
    centres = {t: w.x0 + w.width / 2 for (t, _), (w, _) in found.items()}
    assert all(centres[t + 1] > centres[t] for t in range(5))  # it moved right, and was followed

"""benchmarks/size_sweep.py keeps working and measures what it says (a tiny model, two sizes)."""

from __future__ import annotations

import numpy as np

from benchmarks.size_sweep import _iou, square_scene, sweep


def test_square_scene_is_one_flat_square_of_the_side_asked():
    image, truth = square_scene(100)
    assert truth.sum() == 100 * 100
    ys, xs = np.nonzero(truth)
    assert ys.max() - ys.min() == 99 and xs.max() - xs.min() == 99
    assert (image[truth] == (200, 180, 60)).all() and (image[~truth].mean(axis=0) < 60).all()


def test_sweep_scores_each_side_against_its_square(monkeypatch):
    from sam_model import SamPredictor, build_sam

    truths = {}

    def predict(self, point_coords=None, point_labels=None, box=None, multimask_output=True,
                **kwargs):
        # a stand-in decoder that returns the true square for a box and half of it for a click
        t = truths["now"]
        if box is not None:
            return t[None], np.array([0.9]), None
        half = t.copy()
        half[: t.shape[0] // 2] = False
        return np.stack([half, t & False, t & False]), np.array([0.9, 0.1, 0.1]), None

    real_set = SamPredictor.set_image

    def set_image(self, image, *a, **k):
        truths["now"] = square_scene(int(round(np.sqrt((image[..., 0] > 100).sum()))))[1]
        return real_set(self, image, *a, **k)

    monkeypatch.setattr(SamPredictor, "predict", predict)
    monkeypatch.setattr(SamPredictor, "set_image", set_image)
    model = build_sam("sam_tiny", checkpoint=None, img_size=1024)
    rows = sweep(model, sides=(64, 256))
    assert [r["side"] for r in rows] == [64, 256]
    for r in rows:
        assert r["box_iou"] == 1.0 and r["true_area"] == r["side"] ** 2
        assert r["click_iou"] == 0.5


def test_iou():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    assert _iou(a, a) == 1.0 and _iou(a, ~a) == 0.0


def test_similarities_compare_the_centre_with_inside_and_outside_cells():
    import torch

    from benchmarks.size_sweep import _similarities

    cells, size, side = 64, 1024, 512  # the square covers cells 16..47
    features = torch.zeros(1, 2, cells, cells)
    features[0, 0] = 1.0  # background: (1, 0)
    features[0, :, 16:48, 16:48] = torch.tensor([0.0, 1.0])[:, None, None]  # square: (0, 1)

    class Predictor:
        pass

    p = Predictor()
    p.features = features
    inside, outside = _similarities(p, side, size)
    assert inside == 1.0 and outside == 0.0

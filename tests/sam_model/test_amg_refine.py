"""Mask-to-mask refinement of decoded points (``refine=True`` of ``decode_points``)."""

from __future__ import annotations

import numpy as np
import torch
from amg_synthetic import disc_scene

from sam_model import SamPredictor, decode_points


def _refined_by_predictor(pred, points):
    """Every first-pass mask of each point refined through the plain predictor: a list of
    (mask (H, W) bool, score) for the 3 masks of each point."""
    out = []
    for x, y in points:
        coords = torch.tensor(pred._to_input_frame(np.array([[[x, y]]])), dtype=torch.float32)
        labels = torch.ones(1, 1)
        _, _, low = pred.predict_torch(coords, labels, multimask_output=True)
        for j in range(low.shape[1]):
            masks, scores, _ = pred.predict_torch(coords, labels, mask_input=low[:, j:j + 1],
                                                  multimask_output=False)
            out.append((masks[0, 0], float(scores[0, 0])))
    return out


def test_each_refined_mask_is_the_predictors_mask_from_its_point_and_first_mask(tiny_sam):
    pred = SamPredictor(tiny_sam)
    pred.set_image(disc_scene(96, 128, n=6, seed=3))
    points = np.array([[20.0, 30.0], [100.0, 64.0], [64.0, 50.0]])
    plain = decode_points(pred, points, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                          box_nms_thresh=1.0)
    batch = decode_points(pred, points, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                          box_nms_thresh=1.0, refine=True)
    assert len(batch) == 9 and batch.n_refined == 9 and plain.n_refined == 0
    expected = _refined_by_predictor(pred, points)
    for mask, score in zip(batch.masks, batch.iou_preds.tolist()):
        j = int(np.argmin([abs(s - score) for _, s in expected]))
        assert abs(expected[j][1] - score) < 1e-5
        assert torch.equal(mask, expected[j][0])
    # the refinement changes the masks (else this test could not tell it ran)
    assert not all(torch.equal(a, b) for a, b in zip(plain.masks, batch.masks))


def test_the_filters_apply_to_the_refined_masks():
    """On the shipped model and a real image (scores that vary): the filters judge the
    refined masks, and only the first pass's survivors are refined."""
    from skimage import data

    from sam_model import build_sam

    pred = SamPredictor(build_sam("sam_lite0"))
    pred.set_image(np.stack([data.coins()] * 3, axis=-1))
    points = np.random.default_rng(0).random((12, 2)) * [384, 303]
    every = decode_points(pred, points, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                          box_nms_thresh=1.0, refine=True)
    assert len(every) == every.n_refined == 36
    thr = float(every.iou_preds.median())
    stab = float(every.stability.median())
    assert thr > 0 and 0 < stab < 1
    for kwargs, scores, bar in ((dict(pred_iou_thresh=thr), "iou_preds", thr),
                                (dict(stability_score_thresh=stab), "stability", stab)):
        options = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
        options.update(kwargs)
        kept = decode_points(pred, points, refine=True, **options)
        assert 0 < len(kept) < len(every)
        assert bool((getattr(kept, scores) >= bar).all())
        first = decode_points(pred, points, **options)
        assert kept.n_refined == len(first)  # the first pass's survivors, each decoded again
        assert sorted(getattr(kept, scores).tolist()) != sorted(getattr(first, scores).tolist())

"""Automatic generation picks mask thresholds suited to the model unless told."""

from __future__ import annotations

from napari_sam.cli import build_parser
from napari_sam.cli.segment import generation_options
from napari_sam.core.automatic.run import config_for_model
from sam_model import automatic_thresholds


def test_registry_thresholds_per_model():
    assert automatic_thresholds("vit_b") == {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
    assert automatic_thresholds(None) == automatic_thresholds("vit_h")
    tiny = automatic_thresholds("sam_tiny")
    assert tiny["pred_iou_thresh"] < 0.88 and tiny["stability_score_thresh"] < 0.95


def test_config_uses_model_thresholds_unless_given():
    tiny = config_for_model("sam_tiny", {"points_per_side": 8})
    assert tiny.pred_iou_thresh == automatic_thresholds("sam_tiny")["pred_iou_thresh"]
    assert tiny.points_per_side == 8
    official = config_for_model("vit_t", {})
    assert (official.pred_iou_thresh, official.stability_score_thresh) == (0.88, 0.95)
    given = config_for_model("sam_tiny", {"pred_iou_thresh": 0.9})
    assert given.pred_iou_thresh == 0.9
    assert given.stability_score_thresh == automatic_thresholds("sam_tiny")["stability_score_thresh"]


def test_cli_leaves_thresholds_to_the_model_unless_given():
    parse = build_parser().parse_args
    options = generation_options(parse(["segment", "in.tif", "--out", "o"]))
    assert "pred_iou_thresh" not in options and "stability_score_thresh" not in options
    assert options["max_area"] is None  # other options keep their None defaults
    options = generation_options(parse(["segment", "in.tif", "--out", "o",
                                        "--pred-iou-thresh", "0.8"]))
    assert options["pred_iou_thresh"] == 0.8 and "stability_score_thresh" not in options


def test_sam_lite0_table_thresholds_keep_masks_its_iou_head_scores():
    """sam_lite0's IoU head scores real objects below the paper's 0.88, so its table entry
    lowers the threshold: with the reference's value automatic runs would keep nothing."""
    import numpy as np
    from skimage import data

    from sam_model import SamPredictor, build_sam

    predictor = SamPredictor(build_sam("sam_lite0"))
    image = data.coins()
    predictor.set_image(np.stack([image] * 3, -1))
    ys, xs = np.mgrid[24:image.shape[0]:48, 24:image.shape[1]:48]
    best = []
    for x, y in zip(xs.ravel(), ys.ravel()):
        _, iou, _ = predictor.predict(point_coords=np.array([[x, y]]),
                                      point_labels=np.array([1]), multimask_output=True)
        best.append(float(iou.max()))
    thresholds = automatic_thresholds("sam_lite0")
    assert max(best) < 0.88
    assert sum(b > thresholds["pred_iou_thresh"] for b in best) >= 3

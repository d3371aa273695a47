"""SamAutomaticMaskGenerator against the reference generator on the same models."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch
from amg_synthetic import disc_scene, synthetic_sam
from scipy import ndimage
from segment_anything import SamAutomaticMaskGenerator as ReferenceGenerator
from segment_anything.utils.amg import rle_to_mask as reference_rle_to_mask

from sam_model import (
    MODELS,
    MaskBatch,
    SamAutomaticMaskGenerator,
    SamPredictor,
    build_sam,
    decode_points,
)
from sam_model.rle import coco_rle_to_mask, rle_to_mask

KEYS = {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score",
        "crop_box"}
LOOSE = {"points_per_side": 8, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.8}


@pytest.fixture(scope="module")
def model():
    return synthetic_sam()


@pytest.fixture(scope="module")
def scene():
    return disc_scene()


def _masks(records):
    return np.stack([r["segmentation"] for r in records]).reshape(len(records), -1)


def match_report(ours, theirs, iou=0.9):
    """Share of the reference masks that one of ours matches at IoU >= ``iou``."""
    a = _masks(theirs).astype(np.float32)
    b = _masks(ours).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    best = (inter / np.maximum(union, 1)).max(axis=1)
    return float((best >= iou).mean())


def assert_same_records(ours, theirs):
    """Record by record, in order: the same masks, boxes, points, scores."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert set(a) == KEYS
        np.testing.assert_array_equal(a["segmentation"], b["segmentation"])
        assert a["area"] == b["area"] and isinstance(a["area"], int)
        assert a["bbox"] == b["bbox"]
        assert a["crop_box"] == b["crop_box"]
        assert a["point_coords"] == b["point_coords"]
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-6)
        assert a["stability_score"] == pytest.approx(b["stability_score"], abs=1e-6)


def _reference(model, *, share_predictor, **kwargs):
    gen = ReferenceGenerator(model, **kwargs)
    if share_predictor:
        gen.predictor = SamPredictor(model)
    return gen


def test_defaults_are_the_reference_defaults(model):
    gen = SamAutomaticMaskGenerator(model)
    ref = ReferenceGenerator(model)
    for name in ("points_per_batch", "pred_iou_thresh", "stability_score_thresh",
                 "stability_score_offset", "box_nms_thresh", "crop_n_layers", "crop_nms_thresh",
                 "crop_overlap_ratio", "crop_n_points_downscale_factor", "min_mask_region_area",
                 "output_mode"):
        assert getattr(gen, name) == getattr(ref, name), name
    assert len(gen.point_grids) == 1 and gen.point_grids[0].shape == (32 * 32, 2)
    np.testing.assert_array_equal(gen.point_grids[0], ref.point_grids[0])


def test_same_masks_as_reference_generator(model, scene):
    ours = SamAutomaticMaskGenerator(model, **LOOSE).generate(scene)
    # The reference generator with its own predictor: same model, same image.
    theirs = _reference(model, share_predictor=False, **LOOSE).generate(scene)
    assert len(theirs) >= 10
    assert abs(len(ours) - len(theirs)) <= 0.05 * len(theirs)
    assert match_report(ours, theirs) >= 0.95
    # With the same predictor (same embedding), records are identical, in order.
    shared = _reference(model, share_predictor=True, **LOOSE).generate(scene)
    assert_same_records(ours, shared)


def test_crop_layers_same_as_reference(model, scene):
    kwargs = dict(LOOSE, points_per_side=4, crop_n_layers=1)
    ours = SamAutomaticMaskGenerator(model, **kwargs).generate(scene)
    theirs = _reference(model, share_predictor=True, **kwargs).generate(scene)
    assert_same_records(ours, theirs)
    crops = {tuple(r["crop_box"]) for r in ours}
    assert len(crops) > 1, "masks from the zoomed crops should survive"


class _FakeCv2:
    """``cv2.connectedComponentsWithStats`` from scipy, for the reference cleanup."""

    @staticmethod
    def connectedComponentsWithStats(image, connectivity):  # noqa: N802 - cv2's name
        labels, n = ndimage.label(image.astype(bool), structure=np.ones((3, 3), bool))
        stats = np.zeros((n + 1, 5), dtype=np.int32)
        stats[:, -1] = np.bincount(labels.ravel(), minlength=n + 1)
        return n + 1, labels.astype(np.int32), stats, None


def test_min_mask_region_area_same_as_reference(model, scene, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(**vars(_FakeCv2)))
    kwargs = dict(LOOSE, min_mask_region_area=60)
    ours = SamAutomaticMaskGenerator(model, **kwargs).generate(scene)
    theirs = _reference(model, share_predictor=True, **kwargs).generate(scene)
    plain = SamAutomaticMaskGenerator(model, **LOOSE).generate(scene)
    assert_same_records(ours, theirs)
    # The cleanup changed something: a mask lost its speckles or holes.
    before = {tuple(r["point_coords"][0]): r["area"] for r in plain}
    assert any(before.get(tuple(r["point_coords"][0])) not in (None, r["area"]) for r in ours)


def test_output_modes(model, scene):
    kwargs = dict(LOOSE, points_per_side=6)
    binary = SamAutomaticMaskGenerator(model, **kwargs).generate(scene)
    rle = SamAutomaticMaskGenerator(model, output_mode="uncompressed_rle", **kwargs).generate(scene)
    coco = SamAutomaticMaskGenerator(model, output_mode="coco_rle", **kwargs).generate(scene)
    theirs = _reference(model, share_predictor=True, output_mode="uncompressed_rle",
                        **kwargs).generate(scene)
    assert len(binary) == len(rle) == len(coco) == len(theirs) > 0
    mask_utils = pytest.importorskip("pycocotools.mask")
    for b, r, c, t in zip(binary, rle, coco, theirs):
        seg = b["segmentation"]
        assert seg.dtype == bool and seg.shape == scene.shape[:2]
        assert r["segmentation"] == t["segmentation"]
        np.testing.assert_array_equal(rle_to_mask(r["segmentation"]), seg)
        np.testing.assert_array_equal(reference_rle_to_mask(r["segmentation"]), seg)
        assert isinstance(c["segmentation"]["counts"], str)
        np.testing.assert_array_equal(coco_rle_to_mask(c["segmentation"]), seg)
        encoded = mask_utils.encode(np.asfortranarray(seg.astype(np.uint8)))
        assert c["segmentation"]["counts"] == encoded["counts"].decode("ascii")
        assert b["area"] == r["area"] == c["area"] == int(seg.sum())


def test_real_network_same_as_reference(tiny_sam):
    """The tiny random-weight ViT model: junk masks, but the pipeline is the same."""
    image = disc_scene(96, 128, n=6, seed=3)
    kwargs = {"points_per_side": 4, "pred_iou_thresh": 0.0, "stability_score_thresh": 0.0,
              "box_nms_thresh": 0.95}
    ours = SamAutomaticMaskGenerator(tiny_sam, **kwargs).generate(image)
    theirs = _reference(tiny_sam, share_predictor=True, **kwargs).generate(image)
    assert len(ours) > 0
    assert_same_records(ours, theirs)


def test_explicit_point_grids(model, scene):
    grid = np.array([[0.25, 0.25], [0.5, 0.5], [0.8, 0.3]])
    kwargs = dict(LOOSE, points_per_side=None, point_grids=[grid])
    ours = SamAutomaticMaskGenerator(model, **kwargs).generate(scene)
    theirs = _reference(model, share_predictor=True, **kwargs).generate(scene)
    assert_same_records(ours, theirs)


def test_bad_parameters(model):
    with pytest.raises(ValueError, match="exactly one"):
        SamAutomaticMaskGenerator(model, points_per_side=None)
    with pytest.raises(ValueError, match="exactly one"):
        SamAutomaticMaskGenerator(model, point_grids=[np.zeros((1, 2))])
    with pytest.raises(ValueError, match="output_mode"):
        SamAutomaticMaskGenerator(model, output_mode="png")
    with pytest.raises(ValueError, match="point_grids"):
        SamAutomaticMaskGenerator(model, points_per_side=None, point_grids=[np.zeros((1, 2))],
                                  crop_n_layers=1)


def test_decode_points_on_a_cached_embedding(model, scene):
    """A tile-like use: embedding restored with input size = original size."""
    tile = np.ascontiguousarray(scene[:128, :160])
    pred = SamPredictor(model)
    padded = np.zeros((256, 256, 3), np.uint8)
    padded[:128, :160] = tile
    pred.set_image(padded)
    embedding = pred.get_image_embedding()
    pred.set_image_embedding(embedding, original_size=(128, 160), input_size=(128, 160))
    points = np.array([[20.0, 30.0], [100.0, 64.0], [150.0, 120.0]])
    batch = decode_points(pred, points, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                          box_nms_thresh=1.0)
    assert isinstance(batch, MaskBatch) and len(batch) == 9
    assert batch.masks.shape == (9, 128, 160) and batch.masks.dtype == torch.bool
    assert batch.boxes_xyxy.shape == (9, 4) and torch.equal(batch.boxes, batch.boxes_xyxy)
    assert batch.iou_preds.shape == batch.stability.shape == (9,)
    assert torch.all(batch.iou_preds[:-1] >= batch.iou_preds[1:])  # by decreasing score
    # Each mask is the predictor's own mask for its point (input frame = original frame).
    for mask, point, iou in zip(batch.masks, batch.points, batch.iou_preds):
        masks, scores, _ = pred.predict_torch(point.float()[None, None], torch.ones(1, 1))
        j = int(torch.argmin((scores[0] - iou).abs()))
        assert torch.equal(mask, masks[0, j])
    # Default filters keep fewer, and NMS leaves no pair of boxes with IoU > 0.7.
    kept = decode_points(pred, points, pred_iou_thresh=0.5, stability_score_thresh=0.8)
    assert len(kept) < 9


@pytest.mark.parametrize("multimask", [True, False])
def test_early_iou_exit_equals_the_full_decoder(tiny_sam, multimask):
    """Upscaling only prompts with a passing candidate gives the full decoder's logits."""
    from sam_model.mask_candidates import decode_low_res, decode_passing

    pred = SamPredictor(tiny_sam)
    pred.set_image(disc_scene(96, 128, n=6, seed=3))
    points = np.random.default_rng(0).random((20, 2)) * [128, 96]
    low_res, iou = decode_low_res(pred, points, multimask=multimask)
    m = iou.shape[1]
    for thr in (0.0, float(iou.flatten().median())):
        logits, scores, prompt = decode_passing(pred, points, multimask=multimask,
                                                pred_iou_thresh=thr)
        keep = (iou > thr).flatten() if thr > 0 else torch.ones(iou.numel(), dtype=torch.bool)
        idx = keep.nonzero().flatten()
        assert 0 < len(idx) <= iou.numel() and torch.equal(prompt, idx // m)
        torch.testing.assert_close(scores, iou.flatten()[idx], rtol=0, atol=1e-6)
        torch.testing.assert_close(logits, low_res.flatten(0, 1)[idx], rtol=1e-5, atol=1e-5)


def test_shipped_sam_tiny_same_masks_as_reference():
    """The trained default model on a real photograph (skimage's astronaut, 512 px).

    The first shipped weights predict IoUs below 0.7 and soft masks, so the
    default thresholds keep nothing: they are lowered here.
    """
    if not MODELS["sam_tiny"].packaged.is_file():
        pytest.skip("sam_tiny weights not installed")
    from skimage import data

    model = build_sam("sam_tiny")
    image = data.astronaut()
    kwargs = {"points_per_side": 6, "pred_iou_thresh": 0.3, "stability_score_thresh": 0.3}
    ours = SamAutomaticMaskGenerator(model, **kwargs).generate(image)
    theirs = _reference(model, share_predictor=False, **kwargs).generate(image)
    assert len(theirs) >= 3
    assert abs(len(ours) - len(theirs)) <= max(1, 0.05 * len(theirs))
    assert match_report(ours, theirs) >= 0.95
    assert match_report(theirs, ours) >= 0.95

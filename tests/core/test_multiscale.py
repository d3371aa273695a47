"""Multi-scale: the whole object from a coarse scale wins over its full-resolution fragments,
small objects come from full resolution, one id per object across tiles and scales.

The decoder is replaced by one that knows the truth: at full resolution it
returns the large object only in 48 px fragments (what a tile that cannot
see it whole gives), at coarser scales the true objects as seen downscaled.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_tiles import disks, make_tiles, mask_candidates

from napari_sam.core import progress
from napari_sam.core.automatic import decode as generate
from napari_sam.core.automatic.candidates import Candidate
from napari_sam.core.automatic.multiscale import (
    ScaleMerger,
    ScaleRules,
    coarse_objects,
    finer_extent,
    mask_nms,
    merge_scales,
    relation,
)
from napari_sam.core.automatic.point_grid import axis_windows
from napari_sam.core.automatic.seams import StitchSettings


def _cand(mask, y0=0, x0=0, iou=0.9, cut=(False, False, False, False)):
    return Candidate(mask=np.asarray(mask, bool), y0=y0, x0=x0, predicted_iou=iou,
                     stability_score=0.9, tile=(0, 0), point=(0.0, 0.0), cut=cut)


def test_relation_and_merge_rules():
    big = _cand(np.ones((100, 100)))
    piece = _cand(np.ones((20, 20)), y0=10, x0=10)
    same = _cand(np.ones((95, 100)))
    beside = _cand(np.ones((20, 20)), y0=90, x0=90)  # a quarter inside
    cut_same = _cand(np.ones((95, 100)), cut=(False, False, True, False))
    assert relation(piece, big) == "fragment"
    assert relation(same, big) == "same"
    assert relation(beside, big) == "other"
    assert relation(cut_same, big) == "fragment"  # a partial never replaces, it may be a piece
    confident = _cand(np.ones((20, 20)), y0=10, x0=10, iou=0.95)
    assert relation(confident, big) == "other"  # scored higher than the coarse mask: kept
    confident_cut = _cand(np.ones((20, 20)), y0=10, x0=10, iou=0.95, cut=(False, True, False, False))
    assert relation(confident_cut, big) == "fragment"  # cut by a seam: a piece, whatever its score
    merger = ScaleMerger([big])
    assert merger.filter([piece, beside]) == [beside] and merger.kept() == [big]
    assert merger.filter([same]) == [same] and merger.kept() == []
    # across coarse scales: the finer whole object replaces the coarser one
    assert merge_scales([[big], [same, piece]]) == [same]
    # ... but half of it does not (IoU 0.55): between coarse scales the bar is 0.75
    half = _cand(np.ones((100, 55)))
    assert relation(half, big) == "same"  # full resolution against a coarse object
    assert big in merge_scales([[big], [half]])


def test_a_finer_mask_does_not_replace_an_object_longer_than_the_model_segments_whole():
    big = _cand(np.ones((100, 100)))
    same = _cand(np.ones((95, 100)))
    other_side = _cand(np.ones((100, 40)), x0=60, iou=0.95)  # a part with IoU 0.4, kept
    limited = ScaleRules(same_extent=finer_extent(48, 2))  # 96 raster px at the finer scale
    assert limited.same_extent == 96.0 and finer_extent(None, 2) is None
    assert relation(same, big) == "same"
    assert relation(same, big, limited) == "fragment"  # truncated at that scale, not the same
    assert relation(same, big, ScaleRules(same_extent=100)) == "same"  # 100 px: within reach
    assert relation(other_side, big, limited) == "other"
    merger = ScaleMerger([big], limited)
    assert merger.filter([same, other_side]) == [other_side] and merger.kept() == [big]
    # across coarse scales: each finer set's extent from its scale and the model's limit
    assert merge_scales([[big], [same]]) == [same]
    assert merge_scales([[big], [same]], scales=[4, 2], limit=48) == [big]
    assert merge_scales([[big], [same]], scales=[4, 2], limit=64) == [same]  # 128 px reach


def test_the_whole_object_limit_applies_with_refined_coarse_masks_only():
    from napari_sam.core.automatic.scale_passes import whole_limit
    from napari_sam.core.automatic.settings import SegmentConfig
    from sam_model import prompt_extent_limit

    assert prompt_extent_limit("sam_lite0") == 384
    assert whole_limit(SegmentConfig(), "sam_lite0") is None  # refine="none" by default
    assert whole_limit(SegmentConfig(refine="coarse"), "sam_lite0") == 384
    assert whole_limit(SegmentConfig(refine="all"), "sam_lite0") == 384
    assert whole_limit(SegmentConfig(refine="coarse"), "sam_vit_b") is None  # no limit known


def _speckled(iou, dx=0):
    """A 200 x 200 object (shifted ``dx`` px) with one stray pixel 300 px off: its box is
    mostly empty, so box NMS cannot see it duplicates the plain mask."""
    mask = np.zeros((500, 500), bool)
    mask[:200, dx:200 + dx] = True
    mask[499, 499] = True
    return _cand(mask, iou=iou)


def test_mask_nms_drops_duplicates_box_nms_misses():
    plain = _cand(np.ones((200, 200)), iou=0.8)
    dup = _speckled(0.7, dx=4)  # mask IoU 0.96 with plain, box IoU 0.16
    better_dup = _speckled(0.9)
    other = _cand(np.ones((50, 50)), y0=300, x0=0, iou=0.5)
    inside = _cand(np.ones((40, 40)), y0=20, x0=20, iou=0.95)  # a part, not a duplicate
    assert mask_nms([plain, dup, other, inside], 0.5) == [plain, other, inside]
    assert mask_nms([plain, better_dup, other], 0.5) == [better_dup, other]  # order kept


def test_coarse_scale_keeps_one_of_two_masks_of_an_object():
    # one coarse tile (a whole 1/2 scale raster) decoded two masks of one object,
    # one with a stray pixel: one object comes out
    tiles = make_tiles(500, 500, 512, 0)
    rows, cols = axis_windows(tiles, 500, 500)
    fine_rows, fine_cols = axis_windows(make_tiles(500, 500, 128, 16), 500, 500)
    plain = _cand(np.ones((200, 200)), iou=0.8)
    dup = _speckled(0.7, dx=4)
    gen = coarse_objects([((0, 0), [plain, dup])], rows=rows, cols=cols, stitch=StitchSettings(),
                         dedup_box=0.7, dedup_mask=0.5, scale=2, fine_rows=fine_rows,
                         fine_cols=fine_cols, n_tiles=1)
    objects, _ = progress.run(gen)
    assert len(objects) == 1 and objects[0].area == plain.area


@pytest.fixture(scope="module")
def tiny_model():
    from sam_model import build_sam_from_config, tiny_test_config

    torch.manual_seed(0)
    model = build_sam_from_config(tiny_test_config(img_size=256)).eval()
    model.model_name = "tiny-test"
    return model


BIG = 99


def _scene():
    truth = disks(640, 640, n=25, rmin=12, rmax=16, seed=4)  # each holds a grid point
    truth[(truth > 0) & (np.arange(640)[:, None] >= 150) & (np.arange(640)[:, None] < 470)
          & (np.arange(640)[None, :] >= 170) & (np.arange(640)[None, :] < 520)] = 0
    truth[160:460, 180:510] = BIG  # 330 px across: larger than a 256 px tile
    rng = np.random.default_rng(1)
    colours = rng.integers(100, 255, (BIG + 1, 3))
    image = 50 + rng.normal(0, 4, (640, 640, 3))
    image[truth > 0] = colours[truth[truth > 0]]
    return image.clip(0, 255).astype(np.uint8), truth


def _fake_decoder(truth):
    def decode_points(predictor, points, **kwargs):
        h, w = predictor.original_size  # raster pixels of the tile, at every scale
        (oy, ox), s = predictor.origin, predictor.scale
        view = truth[oy:oy + h, ox:ox + w]
        seen, found = set(), []
        for x, y in points:
            k = int(view[int(y), int(x)])
            mask = view == k
            key = k
            if k == BIG and s == 1:  # full resolution: only a 48 px block of it
                by, bx = int(y) // 48, int(x) // 48
                block = np.zeros_like(mask)
                block[by * 48:(by + 1) * 48, bx * 48:(bx + 1) * 48] = True
                mask &= block
                key = (k, by, bx)
            if k == 0 or key in seen:
                continue
            seen.add(key)
            found.append((mask, (x, y)))
        return mask_candidates(found, (h, w))

    return decode_points


def _run(tmp_path, model, monkeypatch, scales):
    import rasterio

    from napari_sam.core.automatic.run import segment_file
    from sam_model import SamPredictor

    image, truth = _scene()
    src = tmp_path / "scene.tif"
    with rasterio.open(src, "w", driver="GTiff", height=640, width=640, count=3,
                       dtype="uint8") as ds:
        ds.write(np.moveaxis(image, -1, 0))
    monkeypatch.setattr(generate, "decode_points", _fake_decoder(truth))
    real_call = generate.TileDecoder.__call__

    def call(self, work):
        monkeypatch.setattr(SamPredictor, "origin", work.origin, raising=False)
        monkeypatch.setattr(SamPredictor, "scale", work.scale, raising=False)
        return real_call(self, work)

    monkeypatch.setattr(generate.TileDecoder, "__call__", call)
    config = generate.SegmentConfig(points_per_side=16, pred_iou_thresh=0.0,
                                    stability_score_thresh=0.0, min_area=0,
                                    max_area_fraction=None, scales=scales)
    out = tmp_path / f"out{len(scales)}"
    summary = progress.run(segment_file(src, out, model, tile_size=256, overlap=32,
                                        config=config))
    with rasterio.open(summary.outputs.labels) as ds:
        labels = ds.read(1)
    return labels, truth, summary


def test_large_object_one_id_from_coarse_scale_small_ones_from_full(tmp_path, tiny_model,
                                                                     monkeypatch):
    labels, truth, summary = _run(tmp_path, tiny_model, monkeypatch, (1, 2, 4))
    big = labels[truth == BIG]
    ids, counts = np.unique(big, return_counts=True)
    assert ids.size == 1 and ids[0] > 0, "the large object is one id"
    whole = labels == ids[0]
    iou = (whole & (truth == BIG)).sum() / (whole | (truth == BIG)).sum()
    assert iou > 0.97  # the fake decoder gives true masks at raster resolution at every scale
    small = [k for k in np.unique(truth) if 0 < k < BIG]
    assert small
    for k in small:  # each small object: one id, exactly its pixels (full resolution)
        got = np.unique(labels[truth == k])
        assert got.size == 1 and got[0] > 0
        assert ((labels == got[0]) == (truth == k)).all()
    # one id per object: as many ids as true objects
    assert len(np.unique(labels[labels > 0])) == len(small) + 1 == summary.n_objects


def test_single_scale_leaves_the_large_object_in_fragments(tmp_path, tiny_model, monkeypatch):
    labels, truth, summary = _run(tmp_path, tiny_model, monkeypatch, (1,))
    assert len(np.unique(labels[truth == BIG])) > 4

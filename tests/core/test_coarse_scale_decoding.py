"""Decoding a downscaled tile: masks at raster resolution from bilinearly upsampled logits,
and the coarse scales prompted as densely (in model pixels) as full resolution."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_sam.core.automatic import decode as generate
from napari_sam.core.automatic.decode import TileDecoder, TileWork
from napari_sam.core.automatic.point_grid import AxisWindows
from napari_sam.core.automatic.settings import SegmentConfig
from sam_model import SamPredictor
from sam_model.mask_candidates import decode_low_res

SCALE = 2


def _reference_masks(model, embedding, input_hw, point_xy, scale):
    """The three masks for one point: low-res logits -> model input (bilinear) -> crop the
    padding -> the tile's raster size (bilinear) -> threshold; (3, H, W) bool."""
    predictor = SamPredictor(model)
    h, w = input_hw
    predictor.set_image_embedding(embedding[None], original_size=(h * scale, w * scale),
                                  input_size=(h, w))
    low, _ = decode_low_res(predictor, np.asarray([point_xy], dtype=np.float64))
    size = model.image_encoder.img_size
    up = F.interpolate(low.float(), (size, size), mode="bilinear", align_corners=False)
    up = up[..., :h, :w]
    up = F.interpolate(up, (h * scale, w * scale), mode="bilinear", align_corners=False)
    return (up[0] > model.mask_threshold).numpy()


def test_downscaled_tile_masks_are_thresholded_bilinear_upsampled_logits(tiny_model):
    torch.manual_seed(3)
    c = tiny_model.prompt_encoder.embed_dim
    grid = tuple(tiny_model.prompt_encoder.image_embedding_size)
    embedding = torch.randn(c, *grid)
    input_hw = (256, 256)
    side = input_hw[0] * SCALE  # the tile's raster pixels
    windows = AxisWindows(starts=(0,), sizes=(side,), extent=side)
    config = SegmentConfig(points="full", pred_iou_thresh=0.0, stability_score_thresh=0.0,
                           box_nms_thresh=1.0, min_area=0, max_area_fraction=None)
    decoder = TileDecoder(model=tiny_model, config=config, rows=windows, cols=windows,
                          tile_size=side)
    point = (201.0, 333.0)  # raster pixels
    work = TileWork(index=(0, 0), embedding=embedding.numpy(), input_hw=input_hw, origin=(0, 0),
                    scale=SCALE, points=np.asarray([point]), valid=None)
    found = decoder(work)
    assert len(found) > 0
    reference = _reference_masks(tiny_model, embedding, input_hw, point, SCALE)
    smooth = False
    for cand in found:
        full = np.zeros((side, side), bool)
        full[cand.y0:cand.y0 + cand.mask.shape[0], cand.x0:cand.x0 + cand.mask.shape[1]] = \
            cand.mask
        # the candidate is one of the three reference masks, up to float rounding at the
        # threshold
        diffs = [int(np.count_nonzero(full != ref)) for ref in reference]
        assert min(diffs) <= 2, diffs
        assert cand.point == point
        blocks = full.reshape(side // SCALE, SCALE, side // SCALE, SCALE)
        smooth |= bool((blocks.min(axis=(1, 3)) != blocks.max(axis=(1, 3))).any())
    # repeating a model-resolution mask would make every SCALE x SCALE block uniform
    assert smooth


def test_coarse_scales_prompt_at_the_full_resolution_density_in_model_pixels(
        tmp_path, tiny_model, monkeypatch):
    from napari_sam.core import progress
    from napari_sam.core.automatic.run import segment_file

    src = _noise_scene(tmp_path)
    seen: dict[int, list] = {}
    real_call = TileDecoder.__call__

    def call(self, work):
        seen.setdefault(work.scale, []).append(np.asarray(work.points))
        return real_call(self, work)

    monkeypatch.setattr(TileDecoder, "__call__", call)
    monkeypatch.setattr(generate, "decode_points", _no_masks)
    config = SegmentConfig(points="full", points_per_side=16, scales=(1, 2, 4))
    progress.run(segment_file(src, tmp_path / "out", tiny_model, tile_size=256, overlap=32,
                              config=config))
    assert sorted(seen) == [1, 2, 4]
    for scale, points in seen.items():
        xs = np.unique(np.concatenate(points)[:, 0])
        # 256 px tiles at full resolution, 16 points per side: one every 16 model px
        assert np.allclose(np.diff(xs), 16 * scale), (scale, np.diff(xs)[:3])


@pytest.mark.parametrize("refine, refined_scales", [("none", []), ("coarse", [2, 4]),
                                                     ("all", [1, 2, 4])])
def test_refine_mode_picks_the_passes_whose_masks_are_refined(tmp_path, tiny_model, monkeypatch,
                                                              refine, refined_scales):
    from napari_sam.core import progress
    from napari_sam.core.automatic.run import segment_file

    src = _noise_scene(tmp_path)
    asked: dict[int, set] = {}
    real_call = TileDecoder.__call__

    def call(self, work):
        def decode_points(predictor, points, **kwargs):
            asked.setdefault(int(work.scale), set()).add(kwargs["refine"])
            return _no_masks(predictor, points)

        monkeypatch.setattr(generate, "decode_points", decode_points)
        return real_call(self, work)

    monkeypatch.setattr(TileDecoder, "__call__", call)
    config = SegmentConfig(points="full", points_per_side=8, scales=(1, 2, 4), refine=refine)
    progress.run(segment_file(src, tmp_path / "out", tiny_model, tile_size=256, overlap=32,
                              config=config))
    assert sorted(asked) == [1, 2, 4] and all(len(v) == 1 for v in asked.values())
    assert [s for s in sorted(asked) if asked[s] == {True}] == refined_scales


def _noise_scene(tmp_path):
    """A 640 x 640 RGB GeoTIFF of uniform noise (seeded); its path."""
    import rasterio

    rng = np.random.default_rng(0)
    src = tmp_path / "scene.tif"
    with rasterio.open(src, "w", driver="GTiff", height=640, width=640, count=3,
                       dtype="uint8") as ds:
        ds.write(rng.integers(0, 255, (3, 640, 640), dtype=np.uint8))
    return src


def _no_masks(predictor, points, **kwargs):
    from sam_model.mask_candidates import Candidates

    return Candidates.empty(tuple(predictor.original_size))


def test_coarse_scales_run_coarsest_first_with_the_coarser_objects_known(
        tmp_path, tiny_model, monkeypatch):
    from napari_sam.core import progress
    from napari_sam.core.automatic import scale_passes
    from napari_sam.core.automatic.candidates import Candidate
    from napari_sam.core.io.raster_open import open_raster
    from napari_sam.core.tiling.embed import embed_raster

    rng = np.random.default_rng(0)
    raster = open_raster(rng.integers(0, 255, (640, 640, 3), dtype=np.uint8))
    fine = progress.run(embed_raster(raster, tmp_path / "fine.zarr", tiny_model, tile_size=256,
                                     overlap=32, device=None))
    seen = []

    def decode_scale(raster, store, model, *, known=(), **kwargs):
        factor = int(store.grid.scale)
        seen.append((factor, [o.tile for o in known]))
        found = Candidate(mask=np.ones((300, 300), bool), y0=10 * factor, x0=0,
                          predicted_iou=0.9, stability_score=0.9, tile=(factor, 0),
                          point=(5.0, 10.0 * factor + 5))
        return ([found], 7)
        yield  # a generator, like the real one

    monkeypatch.setattr(scale_passes, "decode_scale", decode_scale)
    config = SegmentConfig(scales=(1, 2, 4))
    merged, decoded, used = progress.run(scale_passes.coarse_passes(
        raster, fine, tiny_model, config=config, work_dir=tmp_path))
    assert seen == [(4, []), (2, [(4, 0)])]
    assert used == (1, 2, 4) and decoded == 14
    # the two masks are one object (mask IoU 0.87): the finer scale's replaces the coarser
    assert [o.tile for o in merged] == [(2, 0)]


def test_downscaled_tile_masks_are_scored_at_the_tile_resolution():
    """Stability: the reference's score of the masks at the model's own resolution (logits
    to the model input, padding cropped, the tile's input size), not at raster size."""
    from napari_sam.core.models import load_model
    from sam_model.amg_utils import stability_score

    model = load_model("sam_tiny", device="cpu")  # real masks: a random model's are noise
    rng = np.random.default_rng(0)
    image = (60 + rng.normal(0, 4, (400, 512, 3))).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[0:400, 0:512]
    centres = [(100, 120, 30), (260, 300, 45), (330, 90, 20)]
    for cy, cx, r in centres:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = (210, 190, 80)
    predictor = SamPredictor(model)
    predictor.set_image(image)  # resized to 800 x 1024 inside the model input
    input_hw = tuple(predictor.input_size)
    embedding = predictor.features[0]
    scale = 2
    rows = AxisWindows(starts=(0,), sizes=(input_hw[0] * scale,), extent=input_hw[0] * scale)
    cols = AxisWindows(starts=(0,), sizes=(input_hw[1] * scale,), extent=input_hw[1] * scale)
    config = SegmentConfig(points="full", pred_iou_thresh=0.0, stability_score_thresh=0.0,
                           box_nms_thresh=1.0, min_area=0, max_area_fraction=None)
    decoder = TileDecoder(model=model, config=config, rows=rows, cols=cols,
                          tile_size=input_hw[1] * scale)
    # raster pixels of the downscaled tile's input pixels (cx, cy) * 2 (model) * scale
    points = np.asarray([(cx * 2 * scale, cy * 2 * scale) for cy, cx, _ in centres], float)
    work = TileWork(index=(0, 0), embedding=embedding.numpy(), input_hw=input_hw,
                    origin=(0, 0), scale=scale, points=points, valid=None)
    found = decoder(work)
    predictor.set_image_embedding(embedding[None], original_size=input_hw, input_size=input_hw)
    expected = {}
    size = model.image_encoder.img_size
    for x, y in points:
        low, _ = decode_low_res(predictor, np.asarray([(x / scale, y / scale)]))
        up = F.interpolate(low.float(), (size, size), mode="bilinear", align_corners=False)
        up = up[..., :input_hw[0], :input_hw[1]]
        expected[(x, y)] = stability_score(up[0], model.mask_threshold, 1.0).numpy()
    partial = 0
    for cand in found:
        options = expected[tuple(cand.point)]
        assert np.abs(options - cand.stability_score).min() < 1e-4, (cand.point, options)
        partial += 0.05 < cand.stability_score < 0.995  # scores that resolution can change
    assert len(found) >= 3 and partial >= 2

"""RasterPredictor: prompts anywhere, seams, map coordinates, nodata, stores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.core.io.georef import box_to_pixel, map_to_pixel, pixel_to_map
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.prompt.predictor import RasterPredictor
from napari_sam.core.tiling.embed import embed_raster
from napari_sam.core.tiling.store import DONE, MISSING, EmbeddingStore
from napari_sam.core.tiling.window import Window
from napari_sam.errors import InputError, StaleCacheError

sam_model = pytest.importorskip("sam_model")


def tiny(seed=0):
    torch.manual_seed(seed)
    return sam_model.build_sam_from_config(sam_model.tiny_test_config(img_size=256)).eval()


@pytest.fixture(scope="module")
def model():
    return tiny()


class EncoderCalls:
    def __init__(self, model):
        self.calls = 0
        self._hook = model.image_encoder.register_forward_hook(self._seen)

    def _seen(self, *args):
        self.calls += 1

    def close(self):
        self._hook.remove()


def disk_scene(height, width, centres, radius=14, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.uniform(40, 90, (height, width, 3))
    yy, xx = np.mgrid[:height, :width]
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = (230, 200, 60)
    return img.astype(np.uint8)


def untiled(model, predictor: RasterPredictor, window: Window, points=None, labels=None,
            box=None, multimask=True):
    """The reference: SamPredictor on the crop ``window`` alone (256x256, no tiling)."""
    assert window.shape == (256, 256)
    data, valid = predictor.raster.read_masked(window)
    rgb, _ = predictor.plan.normalizer.apply(data, valid)
    emb = sam_model.encode_images(model, torch.from_numpy(rgb).permute(2, 0, 1)[None].float())
    ref = sam_model.SamPredictor(model)
    ref.set_image_embedding(emb, original_size=window.shape, input_size=window.shape)
    offset = np.array([window.x0, window.y0])
    pts = None if points is None else np.asarray(points, float) - offset
    bx = None if box is None else np.asarray(box, float) - np.tile(offset, 2)
    return ref.predict(point_coords=pts, point_labels=labels, box=bx,
                       multimask_output=multimask)


@pytest.mark.parametrize("x,tile_col", [(215, 0), (240, 1)])
def test_prompt_near_seam_equals_untiled_crop(model, x, tile_col):
    # tiles cover x 0..256 and 192..448 (overlap 64); the disk sits in the overlap
    img = disk_scene(256, 448, [(128, x)])
    rp = RasterPredictor(model=model, raster=img, overlap=64)
    assert rp.grid.shape == (1, 2)
    result = rp.predict([[x, 128]], [1])
    tile = rp.grid.tile_for(0, tile_col)
    assert result.context.tile == (0, tile_col), "the tile where the object is deeper"
    assert result.window == tile.window
    masks, scores, logits = untiled(model, rp, tile.window, [[x, 128]], [1])
    np.testing.assert_array_equal(result.masks, masks)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.low_res_logits, logits, rtol=1e-4, atol=1e-4)
    assert result.masks.shape == (3, 256, 256)  # tile-local, never the raster's size


def test_box_across_a_seam_gets_a_centred_window(model):
    img = disk_scene(256, 448, [(128, 250)], radius=30)
    rp = RasterPredictor(model=model, raster=img, overlap=0)  # tiles 0..256 and 256..448
    box = [215, 95, 285, 160]
    counter = EncoderCalls(model)
    try:
        result = rp.predict(box=box)
        again = rp.predict(box=box)
    finally:
        counter.close()
    assert counter.calls == 1, "the window's embedding is kept in memory"
    win = result.window
    assert result.context.tile is None and win.shape == (256, 256)
    assert win.x0 < 215 and 285 < win.x1 and abs((win.x0 + win.x1) / 2 - 250.5) <= 1
    masks, scores, _ = untiled(model, rp, win, box=np.array(box), multimask=False)
    np.testing.assert_array_equal(result.masks, masks)
    np.testing.assert_allclose(result.scores, scores, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(again.masks, result.masks)


def test_store_backed_predictor_uses_and_fills_the_store(model, tmp_path):
    img = disk_scene(256, 448, [(128, 215), (100, 400)])
    path = tmp_path / "s.zarr"
    gen = embed_raster(img, path, model, overlap=64, device="cpu")
    for event in gen:  # stop after the first tile
        if event.done == 1:
            gen.close()
            break
    assert EmbeddingStore.open(path).status().tolist() == [[DONE, MISSING]]
    rp = RasterPredictor(model=model, raster=img, store=path)
    counter = EncoderCalls(model)
    try:
        first = rp.predict([[215, 128]])  # tile 0: from the store
        assert counter.calls == 0
        second = rp.predict([[400, 100]])  # tile 1: computed now, and kept in the store
        assert counter.calls == 1
    finally:
        counter.close()
    assert first.context.tile == (0, 0) and second.context.tile == (0, 1)
    assert EmbeddingStore.open(path).complete
    # stored embeddings are float16: the masks agree with the in-memory ones almost exactly
    mem = RasterPredictor(model=model, raster=img, overlap=64).predict([[215, 128]])
    inter = (mem.masks & first.masks).sum()
    union = (mem.masks | first.masks).sum()
    assert inter / union > 0.98
    with pytest.raises(StaleCacheError, match="model weights"):
        RasterPredictor(model=tiny(seed=1), raster=img, store=path)


def test_map_coordinates_and_nodata(model, sample_scene):
    raster = open_raster(sample_scene)
    rp = RasterPredictor(model=model, raster=raster)
    px = np.array([[60.0, 350.0]])  # near the scene's nodata border on the left
    xy = pixel_to_map(px, raster.transform)
    np.testing.assert_allclose(map_to_pixel(xy, raster.transform), px)
    by_pixel = rp.predict(px)
    by_map = rp.predict(xy, coords="map")
    np.testing.assert_array_equal(by_pixel.masks, by_map.masks)
    assert by_map.transform == by_map.window.transform(raster.transform)
    _, valid = raster.read_masked(by_map.window)
    assert not (by_map.masks & ~valid[None]).any(), "no mask pixel on nodata"
    box_px = np.array([40.0, 330.0, 90.0, 370.0])
    corners = pixel_to_map(box_px.reshape(2, 2), raster.transform).reshape(4)
    np.testing.assert_allclose(box_to_pixel(corners, raster.transform), box_px)
    np.testing.assert_array_equal(rp.predict(box=corners, coords="map").masks,
                                  rp.predict(box=box_px).masks)


def test_refining_with_a_previous_result_stays_on_its_tile(model):
    img = disk_scene(256, 448, [(128, 215)])
    rp = RasterPredictor(model=model, raster=img, overlap=64)
    first = rp.predict([[215, 128]])
    refined = rp.predict([[215, 128], [230, 140]], [1, 0], mask_input=first)
    assert refined.context == first.context and refined.masks.shape == (1, 256, 256)
    win, crop = first.cropped()
    assert crop.shape == win.shape and crop.any() == first.best_mask.any()
    by_mask = rp.predict(mask_input=(first.window, first.best_mask))
    assert by_mask.masks.shape[0] == 1


def test_large_box_is_downscaled_into_one_window(model):
    img = disk_scene(300, 520, [(150, 260)], radius=100)
    rp = RasterPredictor(model=model, raster=img, overlap=32)
    result = rp.predict(box=[120, 20, 420, 290])
    assert result.context.tile is None and result.context.scale == 2
    win = result.window
    assert win.x0 <= 120 and 420 < win.x1 and win.y0 <= 20 and 290 < win.y1
    assert result.masks.shape == (1, win.height, win.width)


def test_prompt_on_nodata_has_no_candidates_and_outside_is_refused(model):
    img = disk_scene(256, 448, [(128, 100)]).astype(np.uint16)
    img[:, 256:] = 0
    rp = RasterPredictor(model=model, raster=open_raster(img, nodata=0), overlap=0)
    empty = rp.predict([[400, 100]])
    assert empty.masks.shape == (0, 256, 192) and empty.best_index is None
    assert not empty.best_mask.any() and empty.best_score == 0.0
    with pytest.raises(InputError, match="outside the raster"):
        rp.predict([[500, 10]])
    with pytest.raises(InputError, match="at least one"):
        rp.predict()

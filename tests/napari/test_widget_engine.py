"""The widgets' calls into core, without a viewer."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._widgets import engine
from napari_sam._widgets.state import (
    AutomaticConfig,
    InteractiveConfig,
    PromptSet,
    TilingChoice,
)
from napari_sam.core.automatic.run import segment_file
from napari_sam.core.automatic.settings import SegmentConfig
from napari_sam.core.progress import Progress, run
from napari_sam.core.tiling.embed import embed_raster
from napari_sam.errors import OutputExistsError

TILING = TilingChoice(tile_size=256, overlap=32)
LOOSE = SegmentConfig(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)


def test_polygon_mask_fills_pixel_centres_on_its_window():
    window, mask = engine.polygon_mask(np.array([[2.0, 3], [6, 3], [6, 8], [2, 8]]), 20, 20)
    assert (window.y0, window.x0, window.height, window.width) == (3, 2, 6, 5)
    assert mask.all()
    window, mask = engine.polygon_mask(np.array([[-5.0, -5], [6, -5], [6, 8]]), 20, 20)
    assert (window.y0, window.x0) == (0, 0)  # clipped to the raster
    assert mask[0].all() and not mask[-1, 0] and mask[-1, -1]


def test_predict_candidates_point_box_and_polygon(tiny_model, make_scene):
    image = make_scene(300, 280)
    predictor = engine.open_prompt_engine(image, tiny_model, InteractiveConfig(tiling=TILING))
    events = []
    point = PromptSet(points_xy=np.array([[90.0, 80.0]]), labels=np.array([1]))
    cands = run(engine.predict_candidates(predictor, point), events.append)
    assert [e.done for e in events] == [0, 1] and isinstance(events[0], Progress)
    assert cands.masks.shape[0] == 3 and cands.masks.dtype == bool
    y0, x0 = cands.offset
    assert y0 <= 80 < y0 + cands.masks.shape[1] and x0 <= 90 < x0 + cands.masks.shape[2]
    single = run(engine.predict_candidates(predictor, point, multimask=False))
    assert single.masks.shape[0] == 1
    polygon = np.array([[180.0, 240], [270, 240], [270, 290], [180, 290]])
    shaped = PromptSet(box_xyxy=np.array([180.0, 240, 270, 290]), polygon_xy=polygon)
    cands = run(engine.predict_candidates(predictor, shaped))
    y0, x0 = cands.offset
    assert cands.masks.shape[0] == 1  # a box gives one candidate
    assert y0 <= 240 and y0 + cands.masks.shape[1] >= 290  # placed on a tile holding the box


def test_automatic_in_memory_and_existing_output_refused(tiny_model, make_scene, tmp_path):
    config = AutomaticConfig(tiling=TILING, segment=LOOSE)
    result = run(engine.automatic_gen(make_scene(), tiny_model, config))
    assert result.labels.shape == (256, 256) and result.labels.dtype == np.uint32
    ids = np.unique(result.labels)
    assert sorted(result.table["id"]) == ids[ids > 0].tolist() and result.folder is None
    (tmp_path / "scene").mkdir()
    kept = AutomaticConfig(tiling=TILING, out_dir=str(tmp_path))
    gen = engine.automatic_gen(make_scene(), tiny_model, kept, name="scene")
    with pytest.raises(OutputExistsError):
        next(gen)  # refused before any embedding work
    assert list((tmp_path / "scene").iterdir()) == []


def test_automatic_in_memory_labels_are_sparse_when_large(tiny_model, make_scene, monkeypatch):
    from napari_sam.core.io.sparse_labels import SparseLabels

    assert isinstance(engine.in_memory_labels(256, 256), np.ndarray)
    config = AutomaticConfig(tiling=TILING, segment=LOOSE)
    dense = run(engine.automatic_gen(make_scene(), tiny_model, config)).labels
    monkeypatch.setattr(engine, "IN_MEMORY_LIMIT", 100 * 100)  # as if 256 x 256 were huge
    sparse = run(engine.automatic_gen(make_scene(), tiny_model, config)).labels
    assert dense.any() and isinstance(sparse, SparseLabels) and sparse.shape == (256, 256)
    assert np.array_equal(np.asarray(sparse), dense)


def test_automatic_follows_an_existing_stores_tiling(tiny_model, make_scene, tmp_path):
    """A store made at another tile size gives the CLI's answer, not a stale-store error."""
    store = tmp_path / "emb.zarr"
    made = run(engine.embed_gen(make_scene(), tiny_model, InteractiveConfig(
        tiling=TilingChoice(tile_size=128, overlap=16), store=str(store))))
    result = run(engine.automatic_gen(make_scene(), tiny_model,
                                      AutomaticConfig(store=str(store), segment=LOOSE)))
    assert result.n_tiles == len(list(made.grid)) > 1  # the store's grid, not one 1024 tile
    fresh = run(engine.automatic_gen(make_scene(), tiny_model, AutomaticConfig(
        tiling=TilingChoice(tile_size=128, overlap=16), segment=LOOSE)))
    assert np.array_equal(result.labels, fresh.labels)


def test_automatic_follows_an_existing_stores_bands(tiny_model, make_scene, tmp_path):
    """A store made from band 2 alone is used with band 2, as ``napari-sam segment`` does."""
    store = tmp_path / "emb.zarr"
    run(embed_raster(make_scene(), store, tiny_model, bands=[2], tile_size=256, overlap=32,
                     device=None))
    result = run(engine.automatic_gen(make_scene(), tiny_model,
                                      AutomaticConfig(store=str(store), segment=LOOSE)))
    labels = np.zeros((256, 256), np.uint32)

    def sink(y0, x0, window):
        labels[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = window

    run(segment_file(make_scene(), None, tiny_model, config=LOOSE, sink=sink, bands=[2],
                     tile_size=256, overlap=32))
    assert labels.any() and np.array_equal(result.labels, labels)

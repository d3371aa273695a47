"""Tiled generation with a real (tiny, random-weight) model: plumbing, scale-out, nodata, sizes.

Random weights give arbitrary masks, so these tests check the machinery: the
decoder runs on every tile's cached embedding, results are the same on a dask
cluster, nodata costs nothing, awkward sizes work. That objects crossing seams
get one id is tested on true masks in test_merge.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.core import progress
from napari_sam.core.automatic.decode import segment_tiles
from napari_sam.core.automatic.settings import SegmentConfig
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.tiling.grid import TileGrid

# filters off and no edge margin, so random weights still yield candidates to merge
LOOSE = SegmentConfig(points_per_side=3, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                      edge_margin=-1)


@pytest.fixture(scope="module")
def tiny_model():
    from sam_model import build_sam_from_config, tiny_test_config

    torch.manual_seed(0)
    return build_sam_from_config(tiny_test_config(img_size=256)).eval()


def _embedder(model, image, grid):
    from sam_model import encode_images

    cache = {}

    def embedding_for(index):
        if index not in cache:
            t = grid.tile_for(*index)
            x = torch.from_numpy(image[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width]
                                 .astype(np.float32)).permute(2, 0, 1)[None]
            cache[index] = (encode_images(model, x)[0].numpy(), (t.height, t.width))
        return cache[index]

    return embedding_for


def _run(model, image, grid, config=LOOSE, executor=None, nodata=None):
    raster = open_raster(image, nodata=nodata)
    out = np.zeros(image.shape[:2], np.uint32)
    writes = []

    def sink(y0, x0, block):
        writes.append((y0, x0) + block.shape)
        out[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = block

    result = progress.run(segment_tiles(raster, grid, _embedder(model, image, grid), model,
                                        config=config, sink=sink, executor=executor))
    covered = np.zeros(out.shape, int)
    for y0, x0, h, w in writes:
        covered[y0:y0 + h, x0:x0 + w] += 1
    assert (covered == 1).all()  # every pixel written exactly once
    return out, result


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), np.uint8) + 40
    yy, xx = np.mgrid[:h, :w]
    for _ in range(12):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(8, 30)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(80, 255, 3)
    return img


def test_tiles_decode_and_table_matches_labels(tiny_model):
    image = _image(300, 420)
    grid = TileGrid(height=300, width=420, tile_size=256, overlap=64)
    labels, result = _run(tiny_model, image, grid)
    assert result.n_tiles == 4 and result.stats.candidates > 0 and result.objects
    ids = set(np.unique(labels[labels > 0]).tolist())
    assert ids == {r.id for r in result.objects}
    for r in result.objects:
        assert (labels == r.id).sum() == r.area
        assert 0 <= r.tile[0] < 2 and 0 <= r.tile[1] < 2


def test_dask_cluster_gives_identical_results(tiny_model):
    from distributed import Client, LocalCluster

    from napari_sam.core.automatic.distributed import DaskExecutor

    image = _image(300, 420, seed=1)
    grid = TileGrid(height=300, width=420, tile_size=256, overlap=64)
    local, res_local = _run(tiny_model, image, grid)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        remote, res_remote = _run(tiny_model, image, grid,
                                  executor=DaskExecutor(client=client, window=3))
    assert np.array_equal(local, remote)
    assert res_local.objects == res_remote.objects
    assert res_local.objects


def test_all_nodata_decodes_nothing(tiny_model, monkeypatch):
    from napari_sam.core.automatic import decode as generate

    calls = []
    monkeypatch.setattr(generate.TileDecoder, "__call__", lambda self, w: calls.append(w) or [])
    image = np.zeros((300, 270, 3), np.uint8)
    grid = TileGrid(height=300, width=270, tile_size=256, overlap=32)
    labels, result = _run(tiny_model, image, grid, nodata=0)
    assert not labels.any() and result.objects == [] and calls == []


@pytest.mark.parametrize("shape", [(100, 70), (257, 256), (40, 530)])
def test_awkward_sizes(tiny_model, shape):
    image = _image(*shape, seed=shape[0])
    grid = TileGrid(height=shape[0], width=shape[1], tile_size=256, overlap=48)
    labels, result = _run(tiny_model, image, grid)
    assert labels.shape == shape
    assert {r.id for r in result.objects} == set(np.unique(labels[labels > 0]).tolist())


def test_min_and_max_area(tiny_model):
    image = _image(200, 200, seed=5)
    grid = TileGrid(height=200, width=200, tile_size=256, overlap=32)
    _, base = _run(tiny_model, image, grid)
    areas = sorted(r.area for r in base.objects)
    assert areas
    limit = areas[len(areas) // 2]
    cfg = SegmentConfig(**{**LOOSE.__dict__, "max_area": limit})
    _, small = _run(tiny_model, image, grid, config=cfg)
    assert all(r.area <= limit for r in small.objects)


def test_downscaled_tiles_paint_full_resolution_masks(tiny_model, tmp_path, shared_data):
    import rasterio

    from napari_sam.core.automatic.run import segment

    [summary] = segment(shared_data / "world.rgb.tif", tmp_path, model=tiny_model, scale=2,
                        tile_size=512, overlap=128, points_per_side=3, pred_iou_thresh=0.0,
                        stability_score_thresh=0.0, edge_margin=-1)
    assert summary.n_objects > 0
    with rasterio.open(summary.outputs.labels) as ds:
        labels = ds.read(1)
    assert labels.shape == (256, 512)
    import pandas as pd

    table = pd.read_csv(summary.outputs.table)
    for row in table.itertuples():
        assert (labels == row.id).sum() == row.area

"""Writing one input's results: labels GeoTIFF/zarr, objects.gpkg, objects.csv; atomic folder."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from fake_tiles import disks, fake_results, make_tiles

from napari_sam.core import progress
from napari_sam.core.automatic.assembly import assemble_objects
from napari_sam.core.io.outputs import input_stem, write_segmentation
from napari_sam.core.io.raster_open import open_raster
from napari_sam.errors import OutputExistsError

TRANSFORM = Affine(30.0, 0.0, 101985.0, 0.0, -30.0, 2826915.0)


def _produce(truth, tiles):
    def produce(sink):
        rows, cols, results = fake_results(truth, tiles, 16, 64)
        table, stats = yield from assemble_objects(results, rows=rows, cols=cols, sink=sink,
                                                   block=64, align=16)

        class Result:
            objects = table

        return Result()

    return produce


@pytest.mark.parametrize("zarr_labels", [False, True])
def test_write_segmentation_outputs(tmp_path, zarr_labels):
    import geopandas as gpd
    import pyogrio

    from napari_sam.core.io.labels import read_labels

    truth = disks(150, 110, n=25, rmin=3, rmax=8, seed=3)
    raster = open_raster(np.zeros((150, 110, 3), np.uint8), transform=TRANSFORM, crs="EPSG:32618")
    folder = tmp_path / "out" / "scene"
    res, made = progress.run(write_segmentation(raster, folder,
                                                _produce(truth, make_tiles(150, 110, 64, 40)),
                                                zarr_labels=zarr_labels, block=32))
    assert res.n_objects == 25 and len(made.objects) == 25
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["labels.zarr" if zarr_labels else "labels.tif", "objects.gpkg", "objects.csv"])
    labels = read_labels(res.labels)
    assert (labels.height, labels.width) == (150, 110)
    assert labels.transform == TRANSFORM and labels.crs.to_epsg() == 32618
    arr = labels.read(0, 0, 150, 110)
    assert arr.dtype == np.uint32
    for k in range(1, 26):  # each true object is exactly one id
        ids = np.unique(arr[truth == k])
        assert ids.size == 1 and ids[0] > 0
        assert ((arr == ids[0]) == (truth == k)).all()
    assert pyogrio.list_layers(res.objects)[:, 0].tolist() == ["objects"]
    gdf = gpd.read_file(res.objects, layer="objects")
    assert gdf.crs.to_epsg() == 32618
    assert {"id", "predicted_iou", "stability_score", "area", "geometry"} <= set(gdf.columns)
    assert len(gdf) == 25 and gdf.geometry.is_valid.all()
    for _, row in gdf.iterrows():
        assert row["area"] == pytest.approx((arr == row["id"]).sum() * 900.0)
        assert row.geometry.area == pytest.approx(row["area"])


def test_failure_leaves_nothing_and_existing_is_kept(tmp_path):
    raster = open_raster(np.zeros((64, 64, 3), np.uint8))

    def broken(sink):
        sink(0, 0, np.zeros((16, 64), np.uint32))
        yield progress.Progress("segment", 0, 1)
        raise RuntimeError("boom")

    folder = tmp_path / "scene"
    with pytest.raises(RuntimeError):
        progress.run(write_segmentation(raster, folder, broken))
    assert list(tmp_path.iterdir()) == []
    folder.mkdir()
    (folder / "keep.txt").write_text("x")
    with pytest.raises(OutputExistsError):
        progress.run(write_segmentation(raster, folder, broken))
    assert (folder / "keep.txt").exists()


def test_input_stem():
    assert input_stem("/a/b/scene.tif") == "scene"
    assert input_stem("/a/b/scene.ome.zarr/") == "scene"
    assert input_stem("x.zarr") == "x"

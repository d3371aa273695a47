"""What GIS tools see in our outputs: MultiPolygon layers, 0 as nodata, no absolute paths.

Values are read back with pyogrio / rasterio; where GDAL's own command line
tools (``ogrinfo``, ``gdalinfo``, package gdal-bin) are installed they are
asked too.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest
from affine import Affine
from fake_tiles import disks, fake_results, make_tiles

from napari_sam.core import progress
from napari_sam.core.automatic.assembly import assemble_objects
from napari_sam.core.io.outputs import write_segmentation
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.io.vectors import read_vectors

TRANSFORM = Affine(30.0, 0.0, 101985.0, 0.0, -30.0, 2826915.0)


def _produce(truth, tiles):
    def produce(sink):
        rows, cols, results = fake_results(truth, tiles, 16, 64)
        table, _ = yield from assemble_objects(results, rows=rows, cols=cols, sink=sink, block=64,
                                       align=16)

        class Result:
            objects = table

        return Result()

    return produce


@pytest.fixture
def outputs(tmp_path):
    """A segmentation of a GeoTIFF on disk written to tmp/out/scene ."""
    import rasterio

    truth = disks(150, 110, n=12, rmin=3, rmax=8, seed=5)
    src = tmp_path / "data" / "scene.tif"
    src.parent.mkdir()
    with rasterio.open(src, "w", driver="GTiff", height=150, width=110, count=3, dtype="uint8",
                       transform=TRANSFORM, crs="EPSG:32618") as ds:
        ds.write(np.zeros((3, 150, 110), np.uint8))
    raster = open_raster(src)
    folder = tmp_path / "out" / "scene"
    res, _ = progress.run(write_segmentation(raster, folder,
                                          _produce(truth, make_tiles(150, 110, 64, 40)), block=32))
    return tmp_path, res


def test_gpkg_layer_is_multipolygon_and_source_relative(outputs):
    import geopandas as gpd
    import pyogrio

    root, res = outputs
    info = pyogrio.read_info(res.objects, layer="objects")
    assert info["geometry_type"] == "MultiPolygon"
    gdf = gpd.read_file(res.objects, layer="objects")
    assert set(gdf.geom_type) == {"MultiPolygon"}
    assert set(read_vectors(res.objects).geom_type) == {"Polygon"}  # one part each, given back
    assert len(gdf) == 12
    stored = info["layer_metadata"]["NAPARI_SAM_SOURCE"]
    assert stored == "../../data/scene.tif"
    assert str(root) not in json.dumps(info["layer_metadata"])
    # read back, the source is found again from the vector file's folder
    assert read_vectors(res.objects).attrs["source"] == str(root / "data" / "scene.tif")
    with open(res.objects, "rb") as fh:
        assert str(root).encode() not in fh.read()


def test_labels_geotiff_declares_zero_nodata(outputs):
    import rasterio

    root, res = outputs
    with rasterio.open(res.labels) as ds:
        assert ds.nodata == 0
        arr = ds.read(1)
        mask = ds.read_masks(1)
        tags = json.dumps({**ds.tags(), **ds.tags(1)})
    assert ((mask == 0) == (arr == 0)).all() and (arr > 0).any()
    assert str(root) not in tags


def test_other_formats_store_relative_source(tmp_path):
    import geopandas as gpd
    import shapely

    from napari_sam.core.io.vectors import write_vectors

    gdf = gpd.GeoDataFrame({"id": [1]}, geometry=[shapely.box(0, 0, 1, 1)], crs="EPSG:32618")
    gdf.attrs.update(transform=tuple(TRANSFORM)[:6], shape=(4, 4),
                     source=str(tmp_path / "in" / "a.tif"))
    for name in ("v.parquet", "v.geojson"):
        out = write_vectors(gdf, tmp_path / "res" / name)
        assert str(tmp_path).encode() not in out.read_bytes()
        assert read_vectors(out).attrs["source"] == str(tmp_path / "in" / "a.tif")


def test_source_far_from_the_output_is_named_by_file_name_only():
    from napari_sam.core.io.vectors import portable_source

    assert portable_source("/data/a/scene.tif", "/srv/out/scene/objects.gpkg") == "scene.tif"
    assert portable_source("/srv/in/scene.tif", "/srv/out/scene/objects.gpkg") == \
        "../../in/scene.tif"
    assert portable_source("s3://bucket/scene.tif", "/srv/out/o.gpkg") == "s3://bucket/scene.tif"


def test_non_polygon_gpkg_keeps_its_type(tmp_path):
    import geopandas as gpd
    import pyogrio
    import shapely

    from napari_sam.core.io.vectors import write_vectors

    gdf = gpd.GeoDataFrame({"id": [1, 2]}, geometry=[shapely.Point(0, 0), shapely.Point(1, 1)])
    out = write_vectors(gdf, tmp_path / "p.gpkg")
    assert pyogrio.read_info(out, layer="objects")["geometry_type"] == "Point"


@pytest.mark.skipif(shutil.which("ogrinfo") is None or shutil.which("gdalinfo") is None,
                    reason="GDAL's command line tools (gdal-bin) are not installed")
def test_gdal_command_line_tools_agree(outputs):
    root, res = outputs
    ogr = subprocess.run(["ogrinfo", "-so", str(res.objects), "objects"], capture_output=True,
                         text=True, check=True).stdout
    assert "Geometry: Multi Polygon" in ogr
    assert "Feature Count: 12" in ogr
    assert str(root) not in ogr.replace(str(res.objects), "")
    gdal = subprocess.run(["gdalinfo", str(res.labels)], capture_output=True, text=True,
                          check=True).stdout
    assert "NoData Value=0" in gdal
    assert str(root) not in gdal.replace(str(res.labels), "")

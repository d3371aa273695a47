"""``napari-sam prompt``: prompt files (GeoJSON/GeoPackage/CSV), coordinates, outputs, exit statuses."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from napari_sam.cli import main
from napari_sam.core.io.prompt_file import read_prompts
from napari_sam.core.io.raster_open import open_raster

pytestmark = pytest.mark.usefixtures("cli_tiny_model")


def _map_xy(transform, col, row):
    """Map coordinates of the centre of pixel (row, col)."""
    return transform * (col + 0.5, row + 0.5)


def _prompts_gdf(raster):
    import geopandas as gpd
    import shapely

    t = raster.transform
    p1 = shapely.Point(*_map_xy(t, 20, 30))
    p2 = shapely.Point(*_map_xy(t, 25, 33))
    neg = shapely.Point(*_map_xy(t, 40, 40))
    (x0, y0), (x1, y1) = _map_xy(t, 50, 10), _map_xy(t, 70, 25)
    box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    lone = shapely.Point(*_map_xy(t, 5, 60))
    return gpd.GeoDataFrame(
        {"object": ["a", "a", "a", "b", None], "positive": [True, True, False, True, True]},
        geometry=[p1, p2, neg, box, lone], crs=raster.crs)


def test_read_prompts_map_coordinates_and_grouping(tmp_path, shared_data):
    raster = open_raster(shared_data / "rgb-byte-tenth.tif")
    path = tmp_path / "p.gpkg"
    _prompts_gdf(raster).to_file(path, layer="prompts")
    objs = read_prompts(path, raster)
    assert [o.key for o in objs] == ["object a", "object b", "#4"] and [o.id for o in objs] == [1, 2, 3]
    a, b, lone = objs
    np.testing.assert_allclose(a.points, [[20, 30], [25, 33], [40, 40]], atol=1e-6)
    assert a.labels.tolist() == [1, 1, 0] and a.box is None
    np.testing.assert_allclose(b.box, [50, 10, 70, 25], atol=1e-6)
    np.testing.assert_allclose(lone.points, [[5, 60]], atol=1e-6)


def test_read_prompts_csv_pixels(tmp_path):
    raster = open_raster(np.zeros((80, 90, 3), np.uint8))
    path = tmp_path / "p.csv"
    path.write_text("x,y,xmin,ymin,xmax,ymax,positive,object\n"
                    "10,12,,,,,yes,1\n14,12,,,,,no,1\n,,30,30,50,60,,2\n")
    objs = read_prompts(path, raster)
    assert len(objs) == 2
    np.testing.assert_allclose(objs[0].points, [[10, 12], [14, 12]])
    assert objs[0].labels.tolist() == [1, 0]
    np.testing.assert_allclose(objs[1].box, [30, 30, 50, 60])
    path.write_text("x,y,positive\n10,12,maybe\n")
    from napari_sam.errors import InputError

    with pytest.raises(InputError, match="positive"):
        read_prompts(path, raster)


def test_prompt_cli_geojson_writes_outputs(tmp_path, shared_data, capsys):
    src = shared_data / "rgb-byte-tenth.tif"
    raster = open_raster(src)
    prompts = tmp_path / "prompts.geojson"
    _prompts_gdf(raster).to_file(prompts, driver="GeoJSON")
    out = tmp_path / "out"
    assert main(["prompt", str(src), "--prompts", str(prompts), "--out", str(out), "--quiet"]) == 0
    assert "rgb-byte-tenth" in capsys.readouterr().out
    folder = out / "rgb-byte-tenth"
    with rasterio.open(folder / "labels.tif") as ds:
        assert ds.crs == rasterio.open(src).crs and ds.shape == (raster.height, raster.width)
        labels = ds.read(1)
    ids = set(np.unique(labels[labels > 0]).tolist())
    assert ids and ids <= {1, 2, 3}
    import geopandas as gpd

    gdf = gpd.read_file(folder / "objects.gpkg", layer="objects")
    assert set(gdf["id"]) == ids
    assert gdf.crs == raster.crs


def test_prompt_cli_csv_on_raster_without_crs(tmp_path):
    path = tmp_path / "plain.tif"
    img = (np.random.default_rng(0).random((3, 120, 100)) * 255).astype(np.uint8)
    with rasterio.open(path, "w", driver="GTiff", width=100, height=120, count=3,
                       dtype="uint8") as ds:
        ds.write(img)
    prompts = tmp_path / "p.csv"
    prompts.write_text("x,y\n30,40\n70,90\n")
    out = tmp_path / "out"
    assert main(["prompt", str(path), "--prompts", str(prompts), "--out", str(out),
                 "--quiet"]) == 0
    with rasterio.open(out / "plain" / "labels.tif") as ds:
        assert ds.shape == (120, 100)


@pytest.mark.parametrize("content", ["x,y\n5000,5000\n", "a,b\n1,2\n", None])
def test_prompt_cli_bad_prompts_exit_2(tmp_path, shared_data, capsys, content):
    src = shared_data / "rgb-byte-tenth.tif"
    prompts = tmp_path / "p.csv"
    if content is not None:
        prompts.write_text(content.replace("5000,5000", "1e9,1e9"))
    out = tmp_path / "out"
    assert main(["prompt", str(src), "--prompts", str(prompts), "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert not out.exists() or list(out.iterdir()) == []

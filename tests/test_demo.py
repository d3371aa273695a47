"""The demo (``make demo``): Landsat scene -> labels, polygons in EPSG:32618, overlay PNG."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam import demo


def test_overlay_outlines_sit_on_the_polygons(tmp_path, sample_scene):
    import geopandas as gpd
    import shapely
    from PIL import Image

    from napari_sam.core.io.raster_open import open_raster

    raster = open_raster(sample_scene)
    t = raster.transform
    (x0, y0), (x1, y1) = t * (100, 200), t * (160, 260)  # pixel corners -> map
    square = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    gpkg = tmp_path / "o.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[square], crs=raster.crs).to_file(gpkg, layer="objects")
    png = demo.overlay_png(raster, gpkg, tmp_path / "overlay.png", zoom=2)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape == (raster.height * 2, raster.width * 2, 3)
    outline = (img == demo.OUTLINE).all(axis=-1)
    ys, xs = np.nonzero(outline)
    assert (xs.min(), xs.max()) == pytest.approx((200, 320), abs=2)
    assert (ys.min(), ys.max()) == pytest.approx((400, 520), abs=2)
    assert not outline[430:490, 230:290].any()  # inside: the image, not the line


def test_demo_main_with_embedded_weights(tmp_path, capsys):
    import geopandas as gpd
    import rasterio

    out = tmp_path / "d"
    args = ["--out", str(out), "--points-per-side", "6", "--quiet"]
    assert demo.main(args) == 0
    text = capsys.readouterr().out
    assert "overlay" in text and "EPSG:32618" in text
    folder = out / "landsat_rgb_epsg32618"
    for name in ("labels.tif", "objects.gpkg", "objects.csv", "overlay.png"):
        assert (folder / name).is_file()
    assert gpd.read_file(folder / "objects.gpkg", layer="objects").crs.to_epsg() == 32618
    with rasterio.open(folder / "labels.tif") as ds:
        assert ds.crs.to_epsg() == 32618 and ds.shape == (718, 791)
    assert demo.main(args) == 0  # a second run replaces the demo's own output

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

    def box(c0, r0, c1, r1):  # pixel corners -> map
        (x0, y0), (x1, y1) = t * (c0, r0), t * (c1, r1)
        return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    square = box(100, 200, 160, 260).difference(box(140, 240, 150, 250))  # with a hole
    gpkg = tmp_path / "o.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[square], crs=raster.crs).to_file(gpkg, layer="objects")
    png = demo.overlay_png(raster, gpkg, tmp_path / "overlay.png", zoom=2)
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape == (raster.height * 2, raster.width * 2, 3)
    outline = (img == demo.OUTLINE).all(axis=-1)
    ys, xs = np.nonzero(outline)
    assert (xs.min(), xs.max()) == pytest.approx((200, 320), abs=2)
    assert (ys.min(), ys.max()) == pytest.approx((400, 520), abs=2)
    assert not outline[430:470, 230:270].any()  # inside: the image, not the line
    # the inside tinted towards the object's colour, the hole and the outside not
    empty = tmp_path / "none.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[box(0, 0, 1, 1)], crs=raster.crs).to_file(
        empty, layer="objects")
    plain = np.asarray(Image.open(demo.overlay_png(raster, empty, tmp_path / "p.png", zoom=2))
                       .convert("RGB")).astype(int)
    a = demo.FILL_ALPHA / 255
    expected = plain[430:470, 230:270] * (1 - a) + np.array(demo.object_colour(1)) * a
    assert np.abs(img[430:470, 230:270] - expected).max() <= 2
    assert (img[484:496, 284:296] == plain[484:496, 284:296]).all()  # the hole
    assert (img[600:700, 600:700] == plain[600:700, 600:700]).all()
    assert demo.object_colour(1) != demo.object_colour(2)


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

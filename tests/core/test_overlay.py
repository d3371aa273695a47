"""The overlay PNG (``make demo``, ``segment --overlay``): objects tinted and outlined on
the raster; a large raster drawn from the raster read downscaled."""

from __future__ import annotations

import numpy as np
import pytest


def test_large_raster_is_read_downscaled_and_polygons_follow(tmp_path, sample_scene):
    import geopandas as gpd
    import shapely
    from PIL import Image

    from napari_sam.core.io.overlay import OUTLINE, overlay_png
    from napari_sam.core.io.raster_open import open_raster

    raster = open_raster(sample_scene)
    t = raster.transform
    (x0, y0), (x1, y1) = t * (100, 200), t * (160, 260)  # pixel corners -> map
    square = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    gpkg = tmp_path / "o.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[square], crs=raster.crs).to_file(gpkg, layer="objects")
    longest = max(raster.height, raster.width)
    max_side = longest // 2 + 1  # needs a factor of 2
    img = np.asarray(Image.open(overlay_png(raster, gpkg, tmp_path / "o.png", max_side=max_side))
                     .convert("RGB"))
    assert max(img.shape[:2]) <= max_side
    assert img.shape[:2] == (-(-raster.height // 2), -(-raster.width // 2))
    ys, xs = np.nonzero((img == OUTLINE).all(axis=-1))
    assert (xs.min(), xs.max()) == pytest.approx((50, 80), abs=2)  # the square, halved
    assert (ys.min(), ys.max()) == pytest.approx((100, 130), abs=2)


def test_overlay_outlines_sit_on_the_polygons(tmp_path, sample_scene):
    import geopandas as gpd
    import shapely
    from PIL import Image

    from napari_sam.core.io.overlay import FILL_ALPHA, OUTLINE, object_colour, overlay_png
    from napari_sam.core.io.raster_open import open_raster

    raster = open_raster(sample_scene)
    t = raster.transform

    def box(c0, r0, c1, r1):  # pixel corners -> map
        (x0, y0), (x1, y1) = t * (c0, r0), t * (c1, r1)
        return shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))

    square = box(100, 200, 160, 260).difference(box(140, 240, 150, 250))  # with a hole
    gpkg = tmp_path / "o.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[square], crs=raster.crs).to_file(gpkg, layer="objects")
    png = overlay_png(raster, gpkg, tmp_path / "overlay.png", zoom=2)
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)
    assert img.shape == (raster.height * 2, raster.width * 2, 3)
    outline = (img == OUTLINE).all(axis=-1)
    ys, xs = np.nonzero(outline)
    assert (xs.min(), xs.max()) == pytest.approx((200, 320), abs=2)
    assert (ys.min(), ys.max()) == pytest.approx((400, 520), abs=2)
    assert not outline[430:470, 230:270].any()  # inside: the image, not the line
    # the inside tinted towards the object's colour, the hole and the outside not
    empty = tmp_path / "none.gpkg"
    gpd.GeoDataFrame({"id": [1]}, geometry=[box(0, 0, 1, 1)], crs=raster.crs).to_file(
        empty, layer="objects")
    plain = np.asarray(Image.open(overlay_png(raster, empty, tmp_path / "p.png", zoom=2))
                       .convert("RGB")).astype(int)
    a = FILL_ALPHA / 255
    expected = plain[430:470, 230:270] * (1 - a) + np.array(object_colour(1)) * a
    assert np.abs(img[430:470, 230:270] - expected).max() <= 2
    assert (img[484:496, 284:296] == plain[484:496, 284:296]).all()  # the hole
    assert (img[600:700, 600:700] == plain[600:700, 600:700]).all()
    assert object_colour(1) != object_colour(2)

"""The overlay PNG of a large raster is drawn from the raster read downscaled."""

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

"""A store made for one georeference is refused for another: transform, CRS and
nodata each named in the message (same file, same pixels: only the
georeference given to ``open_raster`` changes)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS
from value_model import ValueModel

from napari_sam.core import progress
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.tiling.embed import embed_raster
from napari_sam.errors import StaleCacheError

TRANSFORM = Affine(10.0, 0.0, 600_000.0, 0.0, -10.0, 5_200_000.0)


@pytest.fixture
def embedded(tmp_path):
    path = tmp_path / "scene.tif"
    data = np.random.default_rng(0).integers(1, 255, (3, 80, 90), dtype=np.uint8)
    with rasterio.open(path, "w", driver="GTiff", height=80, width=90, count=3, dtype="uint8",
                       transform=TRANSFORM, crs=CRS.from_epsg(32632), nodata=0) as ds:
        ds.write(data)
    store = tmp_path / "s.zarr"
    model = ValueModel(img_size=64)
    progress.run(embed_raster(path, store, model, device=None))
    progress.run(embed_raster(path, store, model, device=None))  # same: resumed, no error
    return path, store, model


@pytest.mark.parametrize("change, needle", [
    (dict(transform=TRANSFORM * Affine.translation(3, 0)), "georeference transform"),
    (dict(transform=Affine(20.0, 0.0, 600_000.0, 0.0, -20.0, 5_200_000.0)),
     "georeference transform"),
    (dict(crs=CRS.from_epsg(32633)), "georeference CRS WGS 84 / UTM zone 32N "
                                     "(now WGS 84 / UTM zone 33N)"),
    (dict(nodata=255), "georeference nodata 0.0 (now 255"),
])
def test_changed_georeference_is_refused_and_named(embedded, change, needle):
    path, store, model = embedded
    moved = open_raster(path, **change)
    with pytest.raises(StaleCacheError, match="made with other settings") as info:
        progress.run(embed_raster(moved, store, model, device=None))
    assert needle in str(info.value), str(info.value)

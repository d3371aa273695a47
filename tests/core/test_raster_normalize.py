"""Normalisation: one robust stretch per raster, nodata and NaN ignored, grey to RGB."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.tiling.grid import TileGrid
from napari_sam.core.tiling.normalize import Normalizer


def test_percentiles_ignore_nodata_and_nan():
    rng = np.random.default_rng(0)
    img = rng.uniform(100, 200, (120, 100)).astype(np.float32)
    img[:40] = -9999.0  # nodata
    img[50:55, :] = np.nan
    r = open_raster(img, nodata=-9999.0)
    norm = Normalizer.from_raster(r, percentiles=(0, 100))
    valid = img[np.isfinite(img) & (img != -9999.0)]
    assert norm.low == (pytest.approx(float(valid.min())),)
    assert norm.high == (pytest.approx(float(valid.max())),)
    rgb, ok = norm.apply(r.read())
    assert rgb.dtype == np.uint8 and rgb.shape == (120, 100, 3)
    assert not ok[:40].any() and not ok[50:55].any() and ok[60:].all()
    assert (rgb[~ok] == 0).all()
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()  # grey


def test_same_stretch_for_every_tile():
    rng = np.random.default_rng(1)
    img = (rng.normal(1000, 200, (300, 260, 3)) + np.linspace(0, 3000, 260)[None, :, None])
    img = np.clip(img, 0, 65535).astype(np.uint16)
    r = open_raster(img)
    norm = Normalizer.from_raster(r)
    whole, _ = norm.apply(r.read())
    for tile in TileGrid(height=300, width=260, tile_size=128, overlap=16):
        part, _ = norm.apply(r.read(tile.window))
        np.testing.assert_array_equal(part, whole[tile.window.slices])  # no seams
    lo, hi = np.percentile(img.reshape(-1, 3), [1, 99], axis=0)
    np.testing.assert_allclose(norm.low, lo)
    np.testing.assert_allclose(norm.high, hi)


def test_uint8_full_range_is_identity():
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    norm = Normalizer.from_raster(open_raster(np.stack([img] * 3, -1)), percentiles=(0, 100))
    rgb, _ = norm.apply(np.stack([img] * 3, -1))
    np.testing.assert_array_equal(rgb[..., 0], img)
    dtype_norm = Normalizer.from_raster(open_raster(img), percentiles=None)
    assert dtype_norm.low == (0.0,) and dtype_norm.high == (255.0,)


def test_large_rasters_sample_a_level_or_windows(shared_data):
    cog = open_raster(shared_data / "cogeo.tif")
    norm = Normalizer.from_raster(cog, max_pixels=300 * 300)  # 1024^2 is too many
    assert norm.sampled_from == "level overview1"  # the 256^2 level
    full = Normalizer.from_raster(cog)
    assert full.sampled_from == "full"
    np.testing.assert_allclose(norm.low, full.low, atol=6)
    np.testing.assert_allclose(norm.high, full.high, atol=6)
    shade = open_raster(shared_data / "shade.tif")  # no overviews: a grid of windows
    win = Normalizer.from_raster(shade, max_pixels=64 * 64 * 16)
    assert win.sampled_from == "windows"
    ref = Normalizer.from_raster(shade)
    assert abs(win.low[0] - ref.low[0]) < 15 and abs(win.high[0] - ref.high[0]) < 15
    assert win.high[0] < 255  # nodata 255 ignored


def test_dict_round_trip_and_bands():
    norm = Normalizer(low=(1.5, 2.0), high=(10.0, 20.0), nodata=float("nan"),
                      percentiles=(2.0, 98.0), sampled_from="windows")
    d = json.loads(json.dumps(norm.as_dict()))
    back = Normalizer.from_dict(d)
    assert back.low == norm.low and back.high == norm.high and np.isnan(back.nodata)
    assert back.percentiles == norm.percentiles
    two = np.stack([np.full((2, 2), 10.0), np.full((2, 2), 20.0)], -1)
    rgb, _ = norm.apply(two)
    assert rgb[0, 0].tolist() == [255, 255, 255]
    rgb, _ = norm.apply(np.stack([np.full((2, 2), 1.5), np.full((2, 2), 20.0)], -1))
    assert rgb[0, 0].tolist() == [0, 255, 127]  # two bands: (b1, b2, mean)
    with pytest.raises(ValueError):
        norm.apply(np.zeros((2, 2, 3)))


def test_all_nodata_raster(shared_data):
    r = open_raster(shared_data / "all-nodata.tif")
    norm = Normalizer.from_raster(r.select_bands(r.default_bands()))
    assert norm.count == 3
    _, valid = norm.apply(*r.select_bands([1, 2, 3]).read_masked())
    assert not valid.any()

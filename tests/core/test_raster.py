"""GeoRaster: formats, georeference, pyramids, lazy windows, damaged files."""

from __future__ import annotations

import json
import pickle

import dask.array as da
import numpy as np
import pytest
import rasterio
import tifffile
import zarr
from affine import Affine

from napari_sam.core.io import raster_sources
from napari_sam.core.io.raster import GeoRaster
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.tiling.window import Window
from napari_sam.errors import InputError


def test_geotiff_georeference_and_lazy_windows(sample_scene):
    r = open_raster(sample_scene)
    with rasterio.open(sample_scene) as ds:
        full = np.moveaxis(ds.read(), 0, -1)
        assert r.transform == ds.transform and r.crs == ds.crs
    assert r.crs.to_epsg() == 32618 and r.nodata == 0
    assert r.shape == (718, 791, 3) and r.dtype == np.uint8
    assert isinstance(r.data, da.Array) and r.data.shape == (718, 791, 3)
    win = Window(100, 200, 50, 70)
    np.testing.assert_array_equal(r.read(win), full[100:150, 200:270])
    np.testing.assert_array_equal(r.data[100:150, 200:270].compute(), full[100:150, 200:270])
    np.testing.assert_array_equal(r.read((slice(3, 9), slice(0, 4))), full[3:9, 0:4])
    data, valid = r.read_masked(Window(0, 0, 718, 791))
    np.testing.assert_array_equal(valid, ~(full == 0).all(axis=-1))
    assert 0.5 < valid.mean() < 0.8  # the scene has a nodata border


def test_reading_a_window_reads_only_that_window(tmp_path, monkeypatch):
    """The dask array is made of window reads; computing a slice never reads the whole raster."""
    path = tmp_path / "big.tif"
    profile = dict(driver="GTiff", width=2048, height=2048, count=1, dtype="uint8",
                   tiled=True, blockxsize=256, blockysize=256, crs="EPSG:32618",
                   transform=Affine(10, 0, 500000, 0, -10, 4000000))
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.arange(2048 * 2048, dtype=np.uint32).reshape(1, 2048, 2048).astype(np.uint8))
    calls = []
    original = raster_sources.RasterioSource._read

    def spy(self, y0, y1, x0, x1, bands):
        calls.append((y0, y1, x0, x1))
        return original(self, y0, y1, x0, x1, bands)

    monkeypatch.setattr(raster_sources.RasterioSource, "_read", spy)
    r = open_raster(path)
    assert r.data.numblocks[:2] == (2, 2)  # 1024-px chunks made of 256-px file blocks
    part = r.data[10:20, 1500:1600].compute()
    assert part.shape == (10, 100, 1)
    assert calls == [(0, 1024, 1024, 2048)], "one chunk read, not the raster"
    calls.clear()
    r.read(Window(5, 6, 7, 8))
    assert calls == [(5, 12, 6, 14)]


def test_cog_overviews_are_pyramid_levels(shared_data):
    r = open_raster(shared_data / "cogeo.tif")
    assert [lv.scale for lv in r.levels] == [1, 2, 4, 8, 16, 32, 64]
    level = r.level_for(4)
    assert level is r.levels[2] and level.shape == (256, 256, 3)
    assert level.transform.a == pytest.approx(4 * r.transform.a)
    assert level.crs == r.crs
    with rasterio.open(shared_data / "cogeo.tif", overview_level=1) as ds:
        np.testing.assert_array_equal(level.read(), np.moveaxis(ds.read(), 0, -1))
    assert r.downsample(4) is level
    strided = r.downsample(3)  # no such overview: every third pixel
    assert strided.shape == (342, 342, 3)
    np.testing.assert_array_equal(strided.read(Window(0, 0, 20, 20)),
                                  r.read(Window(0, 0, 60, 60))[::3, ::3])


def test_corrupt_file_gives_input_error_naming_it(shared_data):
    r = open_raster(shared_data / "corrupt.tif")  # the header is fine
    r.read(Window(0, 0, 256, 256))  # so is the first block
    with pytest.raises(InputError, match="corrupt.tif.*damaged or unreadable"):
        r.read(Window(600, 600, 100, 100))
    with pytest.raises(InputError, match="corrupt.tif"):
        r.signature()  # sampled windows include the damaged block


def test_missing_and_non_raster_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        open_raster(tmp_path / "nope.tif")
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"not a tiff at all")
    with pytest.raises(InputError, match="bad.tif"):
        open_raster(bad)
    (tmp_path / "folder").mkdir()
    with pytest.raises(InputError, match="not a zarr store"):
        open_raster(tmp_path / "folder")


def test_bands_default_rgb_and_alpha_mask(shared_data):
    r = open_raster(shared_data / "RGBA.uint16.tif")  # bands are blue, green, red, alpha
    assert r.count == 4 and r.dtype == np.uint16 and r.alpha == 3
    assert r.default_bands() == [3, 2, 1]
    rgb = r.select_bands(r.default_bands())
    with rasterio.open(shared_data / "RGBA.uint16.tif") as ds:
        raw = ds.read()
    data, valid = rgb.read_masked()
    np.testing.assert_array_equal(data, np.moveaxis(raw[[2, 1, 0]], 0, -1))
    np.testing.assert_array_equal(valid, raw[3] != 0)
    assert open_raster(shared_data / "shade.tif").default_bands() == [1]
    with pytest.raises(InputError, match="bands"):
        open_raster(shared_data / "shade.tif", bands=[2])


def test_nan_and_nodata_mask(shared_data):
    r = open_raster(shared_data / "float_nan.tif")
    data, valid = r.read_masked()
    np.testing.assert_array_equal(valid, np.isfinite(data[..., 0]))
    assert not valid.all()
    shade = open_raster(shared_data / "shade.tif")
    data, valid = shade.read_masked()
    np.testing.assert_array_equal(valid, data[..., 0] != 255)


def test_plain_tiff_through_tifffile(tmp_path):
    img = np.random.default_rng(1).integers(0, 65535, (3, 300, 200), dtype=np.uint16)
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, img, tile=(64, 64), photometric="rgb", planarconfig="separate")
    r = open_raster(path)
    assert r.shape == (300, 200, 3) and r.dtype == np.uint16 and r.crs is None
    assert r.transform == Affine.identity()
    np.testing.assert_array_equal(r.read(Window(10, 20, 100, 50)),
                                  np.moveaxis(img, 0, -1)[10:110, 20:70])
    np.testing.assert_array_equal(r.data.compute(), np.moveaxis(img, 0, -1))
    clone = pickle.loads(pickle.dumps(r.source))  # what a dask worker gets
    np.testing.assert_array_equal(clone.read(0, 5, 0, 5), np.moveaxis(img, 0, -1)[:5, :5])


def test_tiff_pyramid_levels(tmp_path):
    img = np.random.default_rng(2).integers(0, 255, (512, 384), dtype=np.uint8)
    path = tmp_path / "pyramid.ome.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(img, tile=(128, 128), subifds=1)
        tw.write(img[::2, ::2], tile=(128, 128), subfiletype=1)
    r = open_raster(path)
    assert r.shape == (512, 384, 1)
    assert len(r.levels) == 2 and r.levels[1].shape == (256, 192, 1)
    assert r.level_for(2) is r.levels[1]
    np.testing.assert_array_equal(r.levels[1].read()[..., 0], img[::2, ::2])


def test_zarr_array_with_georeference_attributes(tmp_path):
    img = np.random.default_rng(3).integers(0, 255, (3, 120, 90), dtype=np.uint8)
    z = zarr.create_array(store=str(tmp_path / "img.zarr"), shape=img.shape, chunks=(3, 64, 64),
                          dtype="uint8", dimension_names=("band", "y", "x"))
    z[:] = img
    z.attrs.update({"transform": [2.0, 0.0, 100.0, 0.0, -2.0, 500.0], "crs": "EPSG:32633",
                    "nodata": 0})
    r = open_raster(tmp_path / "img.zarr")
    assert r.shape == (120, 90, 3)
    assert r.transform == Affine(2, 0, 100, 0, -2, 500) and r.crs.to_epsg() == 32633
    assert r.nodata == 0
    np.testing.assert_array_equal(r.data.compute(), np.moveaxis(img, 0, -1))


def _write_ome_zarr(root, levels, axes, version="0.4"):
    """A minimal OME-Zarr image by hand (no ome-zarr dependency)."""
    fmt = 2 if version == "0.4" else 3
    group = zarr.open_group(store=str(root), mode="w", zarr_format=fmt)
    datasets = []
    for i, arr in enumerate(levels):
        a = group.create_array(str(i), shape=arr.shape, chunks=arr.shape, dtype=arr.dtype)
        a[:] = arr
        s = [1.0] * len(axes)
        for k, name in enumerate(axes):
            if name in "yx":
                s[k] = 0.5 * 2 ** i
        datasets.append({"path": str(i), "coordinateTransformations": [
            {"type": "scale", "scale": s}]})
    ms = {"version": version, "axes": [{"name": n, "type": "space" if n in "zyx" else
                                        ("channel" if n == "c" else "time")} for n in axes],
          "datasets": datasets}
    if version == "0.4":
        group.attrs["multiscales"] = [ms]
    else:
        group.attrs["ome"] = {"version": version, "multiscales": [ms]}
    return group


@pytest.mark.parametrize("version", ["0.4", "0.5"])
def test_ome_zarr_levels_and_channel_axis(tmp_path, version):
    rng = np.random.default_rng(4)
    base = rng.integers(0, 4000, (1, 2, 1, 200, 160), dtype=np.uint16)  # t c z y x
    levels = [base, base[..., ::2, ::2]]
    _write_ome_zarr(tmp_path / "img.ome.zarr", levels, "tczyx", version)
    r = open_raster(tmp_path / "img.ome.zarr")
    assert r.shape == (200, 160, 2) and r.dtype == np.uint16
    np.testing.assert_array_equal(r.read(), np.moveaxis(base[0, :, 0], 0, -1))
    assert len(r.levels) == 2 and r.levels[1].shape == (100, 80, 2)
    assert r.level_for(2) is r.levels[1]
    assert r.transform.a == 0.5 and r.levels[1].transform.a == 1.0
    assert r.crs is None


def test_in_memory_arrays():
    img = np.random.default_rng(5).integers(0, 255, (70, 90, 3), dtype=np.uint8)
    r = open_raster(img)
    assert r.shape == (70, 90, 3) and r.path is None
    np.testing.assert_array_equal(r.read(Window(1, 2, 3, 4)), img[1:4, 2:6])
    gray = open_raster(img[..., 0])
    assert gray.shape == (70, 90, 1)
    lazy = open_raster(da.from_array(img, chunks=32), transform=Affine(1, 0, 5, 0, -1, 9),
                       crs="EPSG:4326")
    assert lazy.crs.to_epsg() == 4326 and lazy.transform.c == 5
    np.testing.assert_array_equal(lazy.data.compute(), img)
    cyx = open_raster(np.moveaxis(img, -1, 0), axes="cyx")
    np.testing.assert_array_equal(cyx.read(), img)
    assert open_raster(img, bands=[3, 1]).read()[..., 0].tolist() == img[..., 2].tolist()
    with pytest.raises(InputError):
        open_raster(np.zeros((0, 5)))


def test_signature_is_cheap_and_sensitive(tmp_path):
    img = np.random.default_rng(6).integers(0, 255, (500, 400), dtype=np.uint8)
    path = tmp_path / "a.tif"
    with rasterio.open(path, "w", driver="GTiff", width=400, height=500, count=1, dtype="uint8",
                       crs="EPSG:32618", transform=Affine(1, 0, 0, 0, -1, 0)) as ds:
        ds.write(img[None])
    sig = open_raster(path).signature()
    assert sig["shape"] == [500, 400, 1] and sig["dtype"] == "uint8"
    assert sig["size"] == path.stat().st_size and sig["path"] == str(path.resolve())
    json.dumps(sig)  # goes into zarr attributes
    assert open_raster(path).signature() == sig
    with rasterio.open(path, "r+") as ds:  # change a sampled corner pixel
        ds.write(np.full((1, 1, 1), 255 - img[0, 0], np.uint8), window=((0, 1), (0, 1)))
    assert open_raster(path).signature()["sample_hash"] != sig["sample_hash"]
    assert isinstance(open_raster(img), GeoRaster)
    assert open_raster(img).signature()["path"] is None


def test_default_bands_keep_an_earlier_selection(shared_data):
    r = open_raster(shared_data / "RGBA.uint16.tif")
    picked = r.select_bands([1, 2, 4])
    assert picked.default_bands() == [1, 2, 4]
    assert picked.select_bands(picked.default_bands()).read().shape == (411, 634, 3)
    assert r.select_bands([2]).default_bands() == [2]

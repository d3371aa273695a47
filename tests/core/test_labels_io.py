"""Labels rasters: streamed, tiled, compressed, georeferenced, atomic; non-labels refused."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import tifffile
from labels_scene import BIG_ID, crafted_labels, scene_georeference

from napari_sam.core.io.labels import LabelsWriter, read_labels, write_labels
from napari_sam.errors import InputError, OutputExistsError


@pytest.fixture(scope="module")
def georef(shared_data):
    return scene_georeference(shared_data)


@pytest.mark.parametrize("name", ["labels.tif", "labels.zarr"])
def test_round_trip_keeps_ids_transform_and_crs(tmp_path, georef, name):
    transform, crs = georef
    labels = crafted_labels("uint32")
    out = write_labels(tmp_path / name, labels, transform=transform, crs=crs, block=16)
    raster = read_labels(out)
    assert raster.shape == labels.shape and raster.dtype == np.uint32
    assert raster.crs.to_epsg() == 32618
    assert tuple(raster.transform) == tuple(transform)
    np.testing.assert_array_equal(raster.read(0, 0, *labels.shape), labels)
    np.testing.assert_array_equal(raster.to_dask(chunks=10).compute(), labels)
    assert raster.read(18, 2, 1, 1)[0, 0] == BIG_ID
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left


def test_geotiff_is_tiled_compressed_and_marked(tmp_path, georef):
    transform, crs = georef
    out = write_labels(tmp_path / "l.tif", crafted_labels(), transform=transform, crs=crs)
    with tifffile.TiffFile(out) as tif:
        assert tif.pages[0].is_tiled and tif.pages[0].tilewidth == 512
    with rasterio.open(out) as ds:
        assert ds.compression.name.lower() == "deflate"
        assert ds.dtypes[0] == "uint32" and ds.count == 1
        assert ds.tags()["NAPARI_SAM_LABELS"] == "1"


def test_windows_stream_in_and_where_keeps_other_pixels(tmp_path):
    with LabelsWriter(tmp_path / "l.tif", height=40, width=50, block=16) as writer:
        writer.write(np.full((20, 20), 5, np.uint32), y0=10, x0=10)
        mask = np.zeros((20, 20), bool)
        mask[:, 5:] = True  # columns 25..39: overlaps the first square on 10 x 5 pixels
        writer.write(np.full((20, 20), 9, np.uint64), y0=20, x0=20, where=mask)
        assert writer.read(25, 22, 1, 1)[0, 0] == 5  # masked out: kept
        assert writer.read(25, 27, 1, 1)[0, 0] == 9
        with pytest.raises(InputError, match="outside"):
            writer.write(np.ones((5, 5), np.uint8), y0=38, x0=0)
    data = read_labels(tmp_path / "l.tif").read(0, 0, 40, 50)
    assert (data == 5).sum() == 400 - 50 and (data == 9).sum() == 20 * 15
    assert read_labels(tmp_path / "l.tif").crs is None  # no CRS: pixels


def test_ome_zarr_labels_are_readable_by_ome_zarr(tmp_path, georef):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Label, Reader

    transform, crs = georef
    out = write_labels(tmp_path / "labels.zarr", crafted_labels(), transform=transform, crs=crs)
    nodes = list(Reader(parse_url(str(out)))())
    assert any(isinstance(spec, Label) for node in nodes for spec in node.specs)
    assert nodes[0].data[0].shape == crafted_labels().shape


def test_failure_leaves_nothing_and_existing_outputs_are_kept(tmp_path):
    out = tmp_path / "l.tif"
    with pytest.raises(RuntimeError), LabelsWriter(out, height=8, width=8) as writer:
        writer.write(np.ones((4, 4), np.uint8), y0=0, x0=0)
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    write_labels(out, np.ones((8, 8), np.uint8))
    with pytest.raises(OutputExistsError):
        write_labels(out, np.zeros((8, 8), np.uint8))
    assert read_labels(out).read(0, 0, 8, 8).sum() == 64
    write_labels(out, np.zeros((8, 8), np.uint8), overwrite=True)
    assert read_labels(out).read(0, 0, 8, 8).sum() == 0


@pytest.mark.parametrize("name, match", [("float32.tif", "not a label raster"),
                                         ("float_nan.tif", "not a label raster"),
                                         ("RGB.byte.tif", "3 bands")])
def test_non_label_rasters_are_refused(shared_data, name, match):
    with pytest.raises(InputError, match=match):
        read_labels(shared_data / name)


def test_bad_paths_and_values(tmp_path):
    with pytest.raises(InputError, match="no such"):
        read_labels(tmp_path / "missing.tif")
    with pytest.raises(InputError, match=".tif/.tiff"):
        LabelsWriter(tmp_path / "x.png", height=4, width=4)
    with pytest.raises(InputError, match="do not fit"), \
            LabelsWriter(tmp_path / "x.tif", height=4, width=4) as writer:
        writer.write(np.full((2, 2), 2**40, np.uint64), y0=0, x0=0)
    assert not (tmp_path / "x.tif").exists()
    with pytest.raises(InputError, match="not a label raster"):
        write_labels(tmp_path / "y.tif", np.zeros((4, 4), np.float64))

"""Exporting a vast, mostly empty SparseLabels reads and writes only its labelled blocks."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.windows import Window

from napari_sam.core.io.labels import read_labels, write_labels
from napari_sam.core.io.sparse_labels import SparseLabels, sparse_store
from napari_sam.core.progress import run
from napari_sam.core.vector.polygons import vectorize_labels

N = 20_000
# (id, y0, y1, x0, x1): a ring crossing the 2048-px vectorize window seams (and 512-px
# block seams) both ways, a small object inside one block, one in the far corner
OBJECTS = [(7, 2000, 2100, 4050, 4150), (3, 10_000, 10_010, 123, 140),
           (2**31 + 5, N - 30, N, N - 25, N)]


@pytest.fixture(scope="module")
def store() -> SparseLabels:
    store = SparseLabels((N, N))
    for ident, y0, y1, x0, x1 in OBJECTS:
        store[y0:y1, x0:x1] = ident
    store[2030:2070, 4080:4120] = 0  # a hole across the seams
    store[2040:2050, 4090:4110] = 9  # an object in the hole, on the seam too
    store[15_000:15_010, 15_000:15_010] = 4
    store[15_000:15_010, 15_000:15_010] = 0  # an allocated but empty chunk
    return store


def _boxes(margin: int = 3):
    for _, y0, y1, x0, x1 in OBJECTS:
        y0, x0 = max(0, y0 - margin), max(0, x0 - margin)
        yield y0, min(N, y1 + margin), x0, min(N, x1 + margin)


class _CountReads:
    """Counts the windows read from ``store`` (level 0)."""

    def __init__(self, monkeypatch, store: SparseLabels):
        self.boxes: list[tuple[int, int, int, int]] = []
        read = SparseLabels._read_box

        def counting(this, y0, y1, x0, x1):
            if this is store:
                self.boxes.append((y0, y1, x0, x1))
            return read(this, y0, y1, x0, x1)

        monkeypatch.setattr(SparseLabels, "_read_box", counting)


def test_any_nonzero_and_sparse_store():
    store = SparseLabels((3000, 2000), chunk=512)
    assert not store.any_nonzero(0, 3000, 0, 2000)
    store[600:610, 1030:1040] = 5
    store[2000:2010, 10:20] = 1
    store[2000:2010, 10:20] = 0  # allocated, now empty
    assert store.n_chunks == 2
    assert store.any_nonzero(0, 3000, 0, 2000)
    assert store.any_nonzero(609, 610, 1039, 1040)
    assert not store.any_nonzero(600, 610, 1040, 2000)  # same chunk, beside the object
    assert not store.any_nonzero(1500, 3000, 0, 2000)
    assert not store.any_nonzero(600, 600, 0, 2000)  # empty window
    assert store.any_nonzero(-5, 5000, -5, 5000)  # clipped to the array
    assert sparse_store(store) is store
    assert sparse_store(store.to_dask()) is store
    assert sparse_store(store.to_dask()[:100]) is None  # a derived array is not the store
    assert sparse_store(store.to_dask() + 1) is None
    assert sparse_store(np.zeros((4, 4), np.uint32)) is None


@pytest.mark.parametrize("as_dask", [False, True])
@pytest.mark.parametrize("ext", ["tif", "zarr"])
def test_labels_file_reads_back_equal_and_only_labelled_blocks_are_read(
        tmp_path, monkeypatch, store, ext, as_dask):
    counter = _CountReads(monkeypatch, store)
    out = tmp_path / f"labels.{ext}"
    start = time.perf_counter()
    write_labels(out, store.to_dask() if as_dask else store, transform=(0.5, 0, 100, 0, -0.5, 50))
    elapsed = time.perf_counter() - start
    monkeypatch.undo()
    # the ring touches 4 blocks (plus its hole's object in the same ones), the others 1 each
    assert len(counter.boxes) == 6, counter.boxes
    assert elapsed < 20
    raster = read_labels(out)
    assert raster.shape == (N, N) and raster.dtype == np.uint32
    for y0, y1, x0, x1 in _boxes():
        assert np.array_equal(raster.read(y0, x0, y1 - y0, x1 - x0), store[y0:y1, x0:x1])
    rng = np.random.default_rng(1)
    for _ in range(10):
        y0, x0 = rng.integers(0, N - 2000, 2)
        window = raster.read(int(y0), int(x0), 2000, 2000)
        assert np.array_equal(window, store[y0:y0 + 2000, x0:x0 + 2000])
    assert not raster.read(14_900, 14_900, 200, 200).any()
    if ext == "tif":
        with rasterio.open(out) as ds:
            assert ds.nodata is None
            assert ds.block_shapes == [(512, 512)]
            # a tile never written is absent from the file and reads as 0
            assert ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", bidx=1) in (None, "", "0")
            assert not ds.read(1, window=Window(0, 0, 512, 512)).any()
            assert ds.get_tag_item("BLOCK_OFFSET_7_3", "TIFF", bidx=1) not in (None, "", "0")
        assert out.stat().st_size < 1_000_000
    else:
        chunks = [p for p in (out / "0").rglob("*") if p.is_file() and p.name != "zarr.json"]
        assert len(chunks) == 6


def test_geotiff_with_nodata_zero_reads_back_zeros(tmp_path, store):
    out = tmp_path / "labels.tif"
    write_labels(out, store)
    with rasterio.open(out, "r+") as ds:
        ds.nodata = 0
    with rasterio.open(out) as ds:
        assert ds.nodata == 0
        assert not ds.read(1, window=Window(0, 0, 1024, 1024)).any()
        y0, y1, x0, x1 = next(_boxes())
        assert np.array_equal(ds.read(1, window=Window(x0, y0, x1 - x0, y1 - y0)),
                              store[y0:y1, x0:x1])
        masked = ds.read(1, window=Window(0, 0, 512, 512), masked=True)
        assert masked.mask.all() and not masked.filled(0).any()


@pytest.mark.parametrize("as_dask", [False, True])
def test_polygons_equal_the_dense_path_and_only_labelled_windows_are_read(
        monkeypatch, store, as_dask):
    counter = _CountReads(monkeypatch, store)
    start = time.perf_counter()
    gdf = run(vectorize_labels(store.to_dask() if as_dask else store))
    elapsed = time.perf_counter() - start
    monkeypatch.undo()
    # windows of 2048: the ring and its inner object span 4, the others 1 each
    assert len({b for b in counter.boxes}) == 6, counter.boxes
    assert elapsed < 20
    assert sorted(gdf.id) == [3, 7, 9, 2**31 + 5]
    by_id = dict(zip(gdf.id, gdf.geometry, strict=True))
    assert dict(zip(gdf.id, gdf.pixels, strict=True)) == {
        7: 100 * 100 - 40 * 40, 9: 10 * 20, 3: 10 * 17, 2**31 + 5: 30 * 25}
    for y0, y1, x0, x1 in _boxes():
        dense = run(vectorize_labels(np.asarray(store[y0:y1, x0:x1])))
        assert len(dense)
        for ident, geom in zip(dense.id, dense.geometry, strict=True):
            expected = shapely.affinity.translate(geom, x0, y0)
            assert shapely.equals(by_id[ident], expected), ident
            assert shapely.normalize(by_id[ident]).equals_exact(
                shapely.normalize(expected), 0), ident

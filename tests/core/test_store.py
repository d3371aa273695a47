"""The zarr embedding store: layout, flags, stale settings, atomic creation."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import zarr

from napari_sam.core.tiling.grid import TileGrid
from napari_sam.core.tiling.store import DONE, EMPTY, MISSING, EmbeddingStore, StoreSettings
from napari_sam.errors import InputError, OutputExistsError, StaleCacheError


def settings(**changes) -> StoreSettings:
    base = dict(
        model_name="tiny", weights_hash="ab" * 32,
        grid=TileGrid(height=600, width=500, tile_size=256, overlap=32),
        embed_shape=(8, 16, 16),
        normalization={"low": [0.0], "high": [255.0], "nodata": None, "nodata_is_nan": False,
                       "percentiles": [1.0, 99.0], "sampled_from": "full"},
        source={"shape": [600, 500, 1], "dtype": "uint8", "bands": [1], "path": "/a.tif",
                "size": 1000, "mtime": 1.5, "sample_hash": "cd" * 32},
        georeference={"transform": [1, 0, 0, 0, -1, 0], "crs": None, "nodata": None,
                      "nodata_is_nan": False},
    )
    base.update(changes)
    return StoreSettings(**base)


def test_layout_one_chunk_per_tile(tmp_path):
    store = EmbeddingStore.create(tmp_path / "s.zarr", settings())
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    emb, status = group["embeddings"], group["status"]
    assert group.metadata.zarr_format == 3
    assert emb.shape == (3, 3, 8, 16, 16) and emb.chunks == (1, 1, 8, 16, 16)
    assert emb.dtype == np.float16
    assert status.shape == (3, 3) and status.chunks == (1, 1)
    attrs = group.attrs["napari_sam_embeddings"]
    assert attrs["format_version"] == 1 and attrs["model_name"] == "tiny"
    assert attrs["grid"]["tile_size"] == 256 and attrs["source"]["sample_hash"] == "cd" * 32
    assert attrs["normalization"]["percentiles"] == [1.0, 99.0]
    assert attrs["georeference"]["transform"] == [1, 0, 0, 0, -1, 0]
    assert store.counts() == {"done": 0, "empty": 0, "missing": 9, "total": 9}
    assert [t.index for t in store.missing()][:2] == [(0, 0), (0, 1)]
    assert not list(tmp_path.glob(".*tmp*")), "no temporary folder left"


def test_write_read_flags_and_reopen(tmp_path):
    store = EmbeddingStore.create(tmp_path / "s.zarr", settings())
    emb = np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32)
    store.write(1, 2, emb)
    store.mark_empty(0, 0)
    with pytest.raises(KeyError, match="not computed"):
        store.read(2, 2)
    with pytest.raises(KeyError, match="empty"):
        store.read(0, 0)
    with pytest.raises(ValueError):
        store.write(0, 1, emb[:4])
    again = EmbeddingStore.open(tmp_path / "s.zarr", settings())
    np.testing.assert_array_equal(again.read(1, 2), emb.astype(np.float16).astype(np.float32))
    status = again.status()
    assert status[1, 2] == DONE and status[0, 0] == EMPTY and status[2, 2] == MISSING
    assert len(again.missing()) == 7 and not again.complete
    assert again.normalizer.percentiles == (1.0, 99.0)


def test_status_written_after_embedding(tmp_path, monkeypatch):
    """A crash between the two writes leaves the tile missing, never done with no data."""
    store = EmbeddingStore.create(tmp_path / "s.zarr", settings())
    order = []

    class Recorder:
        def __init__(self, arr, name):
            self.arr, self.name = arr, name

        def __setitem__(self, key, value):
            order.append(self.name)
            self.arr[key] = value

        def __getitem__(self, key):
            return self.arr[key]

    store._embeddings = Recorder(store._embeddings, "embeddings")
    store._status = Recorder(store._status, "status")
    store.write(0, 0, np.zeros((8, 16, 16)))
    assert order == ["embeddings", "status"]


@pytest.mark.parametrize("change,needle", [
    (dict(weights_hash="ef" * 32), "model weights"),
    (dict(model_name="other"), "model 'tiny'"),
    (dict(grid=TileGrid(height=600, width=500, tile_size=128, overlap=32)), "tile size 256 (now 128)"),
    (dict(grid=TileGrid(height=600, width=500, tile_size=256, overlap=0)), "overlap 32 (now 0)"),
    (dict(embed_shape=(4, 16, 16)), "embedding shape"),
    (dict(level="overview0"), "pyramid level"),
])
def test_other_settings_are_refused(tmp_path, change, needle):
    EmbeddingStore.create(tmp_path / "s.zarr", settings())
    with pytest.raises(StaleCacheError, match="made with other settings") as info:
        EmbeddingStore.open_or_create(tmp_path / "s.zarr", settings(**change))
    assert needle in str(info.value) and "s.zarr" in str(info.value)
    assert isinstance(info.value, InputError)  # exit status 2 on the command line


@pytest.mark.parametrize("key,value,needle", [
    ("sample_hash", "00" * 32, "source pixels"),
    ("mtime", 2.5, "modification time"),
    ("size", 999, "file size"),
    ("shape", [601, 500, 1], "source shape"),
    ("bands", [2], "source bands"),
])
def test_changed_source_is_refused(tmp_path, key, value, needle):
    EmbeddingStore.create(tmp_path / "s.zarr", settings())
    source = {**settings().source, key: value}
    with pytest.raises(StaleCacheError, match=needle):
        EmbeddingStore.open(tmp_path / "s.zarr", settings(source=source))


def test_moved_source_is_accepted_and_normalisation_checked(tmp_path):
    EmbeddingStore.create(tmp_path / "s.zarr", settings())
    moved = {**settings().source, "path": "/elsewhere/a.tif"}
    EmbeddingStore.open(tmp_path / "s.zarr", settings(source=moved))
    norm = {**settings().normalization, "high": [200.0]}
    with pytest.raises(StaleCacheError, match="normalisation"):
        EmbeddingStore.open(tmp_path / "s.zarr", settings(normalization=norm))


def test_overwrite_and_foreign_folders(tmp_path):
    path = tmp_path / "s.zarr"
    store = EmbeddingStore.create(path, settings())
    store.write(0, 0, np.ones((8, 16, 16)))
    with pytest.raises(OutputExistsError):
        EmbeddingStore.create(path, settings())
    fresh, created = EmbeddingStore.open_or_create(path, settings(weights_hash="ef" * 32),
                                                   overwrite=True)
    assert created and fresh.counts()["done"] == 0
    same, created = EmbeddingStore.open_or_create(path, settings(weights_hash="ef" * 32))
    assert not created
    other = tmp_path / "other.zarr"
    zarr.open_group(str(other), mode="w").create_array("x", shape=(2,), dtype="uint8")
    with pytest.raises(StaleCacheError, match="not a napari-sam embedding store"):
        EmbeddingStore.open(other, settings())
    with pytest.raises(InputError, match="no such"):
        EmbeddingStore.open(tmp_path / "missing.zarr")


def test_settings_round_trip_through_json():
    s = settings()
    back = StoreSettings.from_attrs(json.loads(json.dumps(s.to_attrs())))
    assert back == s and back.differences(s) == []
    assert dataclasses.replace(s, level="x").differences(s)

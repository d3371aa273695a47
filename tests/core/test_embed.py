"""embed_raster: tiled equals untiled, resume after a kill, stale stores, nodata, damage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sam.core.io.raster import GeoRaster
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.io.raster_sources import AxesSource
from napari_sam.core.progress import run
from napari_sam.core.tiling import embed as embed_mod
from napari_sam.core.tiling.embed import embed_raster, encode_batch, resolve_tiling
from napari_sam.core.tiling.normalize import Normalizer
from napari_sam.core.tiling.store import DONE, EMPTY, EmbeddingStore
from napari_sam.errors import InputError, StaleCacheError

sam_model = pytest.importorskip("sam_model")


def tiny(seed=0):
    torch.manual_seed(seed)
    return sam_model.build_sam_from_config(sam_model.tiny_test_config(img_size=256)).eval()


@pytest.fixture(scope="module")
def model():
    return tiny()


class EncoderCalls:
    """Counts image-encoder calls and the images they carried."""

    def __init__(self, model):
        self.calls, self.images = 0, 0
        self._hook = model.image_encoder.register_forward_hook(self._seen)

    def _seen(self, module, args, output):
        self.calls += 1
        self.images += args[0].shape[0]

    def close(self):
        self._hook.remove()


def scene(height, width, channels=3, dtype=np.uint8, seed=0):
    """Noise with a few bright disks, in the dtype's range."""
    rng = np.random.default_rng(seed)
    top = 255 if dtype == np.uint8 else 4000
    img = rng.uniform(0.1 * top, 0.4 * top, (height, width, channels))
    yy, xx = np.mgrid[:height, :width]
    for _ in range(6):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(10, 30)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 0.9 * top
    img = img.astype(dtype)
    return img if channels > 1 else img[..., 0]


def untiled_embedding(model, raster: GeoRaster, normalizer: Normalizer, window) -> np.ndarray:
    """The reference: the window's pixels encoded alone, unpadded, through sam_model."""
    data, valid = raster.read_masked(window)
    rgb, _ = normalizer.apply(data, valid)
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float()
    return sam_model.encode_images(model, x)[0].numpy()


@pytest.fixture(scope="module")
def rgb_store(model, tmp_path_factory):
    """A 300x520 RGB raster (not a multiple of the 256-px tile): 2x3 tiles, overlap 64."""
    img = scene(300, 520)
    path = tmp_path_factory.mktemp("embed") / "rgb.zarr"
    events = []
    store = run(embed_raster(img, path, model, overlap=64, batch_size=2, device="cpu"),
                events.append)
    return img, store, events


def test_tiles_equal_untiled_encoding_awkward_size(model, rgb_store):
    img, store, events = rgb_store
    assert store.grid.shape == (2, 3) and store.grid.tile_size == 256
    assert store.complete and store.counts()["done"] == 6
    raster = open_raster(img)
    norm = store.normalizer
    for tile in store.grid:
        ref = untiled_embedding(model, raster, norm, tile.window)
        got = store.read(tile.row, tile.col)
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    assert [e.done for e in events] == [0, 2, 4, 6] and events[-1].total == 6


@pytest.mark.parametrize("shape,dtype", [((200, 150), np.uint16), ((256, 300), np.uint8)])
def test_single_band_and_16_bit(model, tmp_path, shape, dtype):
    img = scene(*shape, channels=1, dtype=dtype, seed=3)
    store = run(embed_raster(img, tmp_path / "s.zarr", model, overlap=32, device="cpu"))
    raster = open_raster(img)
    assert store.settings.source["dtype"] == np.dtype(dtype).name
    assert store.settings.source["bands"] == [1]
    for tile in store.grid:
        ref = untiled_embedding(model, raster, store.normalizer, tile.window)
        np.testing.assert_allclose(store.read(tile.row, tile.col), ref, rtol=2e-3,
                                   atol=2e-3 * np.abs(ref).max())
    if shape == (200, 150):  # smaller than one tile: one padded tile, the whole raster
        assert store.grid.shape == (1, 1)
        assert store.grid.tile_for(0, 0).window.shape == (200, 150)


def test_encode_batch_pads_without_changing_results(model):
    a, b = scene(100, 80, seed=1), scene(256, 40, seed=2)
    alone = encode_batch(model, [a])
    ref = sam_model.encode_images(model, torch.from_numpy(a).permute(2, 0, 1)[None].float())
    np.testing.assert_array_equal(alone[0], ref[0].numpy())  # mean padding == model padding
    ab, ba = encode_batch(model, [a, b]), encode_batch(model, [b, a])
    np.testing.assert_array_equal(ab[0], ba[1])
    padded = encode_batch(model, [b], pad_to=2)
    assert padded.shape[0] == 1
    np.testing.assert_array_equal(padded[0], ab[1])  # same batch shape, same bits


class Interrupt(Exception):
    pass


def test_kill_and_resume_gives_identical_store(model, rgb_store, tmp_path):
    img, reference, _ = rgb_store
    path = tmp_path / "resume.zarr"
    gen = embed_raster(img, path, model, overlap=64, batch_size=2, device="cpu")
    for event in gen:  # kill it once two tiles are in
        if event.done >= 2:
            with pytest.raises(Interrupt):
                gen.throw(Interrupt())
            break
    partial = EmbeddingStore.open(path)
    assert partial.counts() == {"done": 2, "empty": 0, "missing": 4, "total": 6}

    # a second crash in the middle of a batch: nothing of that batch is marked done
    real = embed_mod.encode_batch
    calls = {"n": 0}

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Interrupt()
        return real(*args, **kwargs)

    embed_mod.encode_batch = crash_on_second
    try:
        with pytest.raises(Interrupt):
            run(embed_raster(img, path, model, overlap=64, batch_size=2, device="cpu"))
    finally:
        embed_mod.encode_batch = real
    assert EmbeddingStore.open(path).counts()["done"] == 4

    counter = EncoderCalls(model)
    try:
        events = []
        store = run(embed_raster(img, path, model, overlap=64, batch_size=2, device="cpu"),
                    events.append)
    finally:
        counter.close()
    assert counter.calls == 1, "only the two missing tiles were encoded"
    assert events[0].done == 4 and events[-1].done == 6
    assert store.complete
    a = reference._group["embeddings"][...]
    b = store._group["embeddings"][...]
    np.testing.assert_array_equal(a, b)  # bit for bit the uninterrupted result


def test_second_run_does_no_encoder_work(model, rgb_store):
    img, store, _ = rgb_store
    counter = EncoderCalls(model)
    try:
        events = []
        again = run(embed_raster(img, store.path, model, overlap=64, batch_size=2,
                                 device="cpu"), events.append)
    finally:
        counter.close()
    assert counter.calls == 0 and again.complete
    assert [(e.done, e.total) for e in events] == [(6, 6)]


def test_stale_store_refused(model, rgb_store):
    img, store, _ = rgb_store
    with pytest.raises(StaleCacheError, match="overlap 64 \\(now 32\\)"):
        run(embed_raster(img, store.path, model, overlap=32, device="cpu"))
    with pytest.raises(StaleCacheError, match="model weights"):
        run(embed_raster(img, store.path, tiny(seed=1), overlap=64, device="cpu"))
    changed = img.copy()
    changed[0, 0] = 255 - changed[0, 0]
    with pytest.raises(StaleCacheError, match="source pixels"):
        run(embed_raster(changed, store.path, model, overlap=64, device="cpu"))
    with pytest.raises(StaleCacheError, match="source bands"):
        run(embed_raster(img, store.path, model, overlap=64, bands=[3, 2, 1], device="cpu"))
    assert EmbeddingStore.open(store.path).complete  # refusing changed nothing


def test_all_nodata_tiles_are_skipped(model, tmp_path):
    img = scene(300, 400, channels=1, dtype=np.uint16, seed=5)
    img[:, 256:] = 0  # the right column of tiles is all nodata
    counter = EncoderCalls(model)
    try:
        store = run(embed_raster(open_raster(img, nodata=0), tmp_path / "s.zarr", model,
                                 overlap=0, device="cpu"))
    finally:
        counter.close()
    status = store.status()
    assert status.tolist() == [[DONE, EMPTY], [DONE, EMPTY]]
    assert counter.images == 2
    assert store.complete and store.counts()["empty"] == 2


def test_all_nodata_raster(model, shared_data, tmp_path):
    store = run(embed_raster(shared_data / "all-nodata.tif", tmp_path / "s.zarr", model,
                             device="cpu"))
    assert store.complete and (store.status() == EMPTY).all()


class BrokenSource(AxesSource):
    """An in-memory raster whose blocks below row 256 cannot be read (like a damaged file)."""

    def _read(self, y0, y1, x0, x1, bands):
        if y0 >= 256:
            raise OSError("decompression failed")
        return super()._read(y0, y1, x0, x1, bands)


def test_damaged_input_leaves_no_store(model, shared_data, tmp_path):
    with pytest.raises(InputError, match="corrupt.tif"):
        run(embed_raster(shared_data / "corrupt.tif", tmp_path / "c.zarr", model, device="cpu"))
    assert not (tmp_path / "c.zarr").exists()
    # damage found only after some tiles were written: the new store is removed
    img = scene(520, 300)
    broken = BrokenSource(axes="yxc", array=img, path=tmp_path / "b.tif")
    raster = GeoRaster(source=broken, path=tmp_path / "b.tif")
    raster.signature = lambda: {"shape": [520, 300, 3], "dtype": "uint8", "bands": [1, 2, 3],
                                "path": None, "size": None, "mtime": None, "sample_hash": "x"}
    raster.select_bands = lambda bands: raster
    with pytest.raises(InputError, match="b.tif.*damaged or unreadable"):
        run(embed_raster(raster, tmp_path / "b.zarr", model, overlap=0, device="cpu"))
    assert not (tmp_path / "b.zarr").exists()
    assert not list(tmp_path.glob(".b*"))


def test_downscale_reads_the_pyramid_level(model, shared_data, tmp_path):
    path = shared_data / "cogeo.tif"
    store = run(embed_raster(path, tmp_path / "s.zarr", model, tile_size=1024, device="cpu"))
    assert store.grid.scale == 4 and store.grid.shape == (1, 1)
    assert store.settings.level == "overview1"  # cogeo's 4x overview, not a strided copy
    level = open_raster(path).levels[2]
    ref = untiled_embedding(model, level, store.normalizer, store.grid.tile_for(0, 0).input_window)
    np.testing.assert_allclose(store.read(0, 0), ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())


def test_resolve_tiling():
    assert resolve_tiling(1024) == (1024, 128, 1)
    assert resolve_tiling(1024, tile_size=512, overlap=0) == (512, 0, 1)
    assert resolve_tiling(1024, tile_size=2048) == (2048, 256, 2)
    assert resolve_tiling(1024, scale=2) == (2048, 256, 2)
    assert resolve_tiling(1024, tile_size=1500, overlap=33) == (1500, 32, 2)
    with pytest.raises(InputError, match="--scale"):
        resolve_tiling(1024, tile_size=3000, scale=2)
    with pytest.raises(InputError, match="overlap"):
        resolve_tiling(256, overlap=256)


def test_script_api_and_device_choice(model, tmp_path):
    import napari_sam
    from napari_sam.core.device import pick_device

    img = scene(100, 90)
    store = napari_sam.embed(img, tmp_path / "api.zarr", model=model, device="cpu")
    assert store.complete and store.grid.shape == (1, 1)
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type in ("cpu", "cuda", "mps")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            pick_device("cuda")
    with pytest.raises(InputError, match="choose one of"):
        pick_device("tpu")

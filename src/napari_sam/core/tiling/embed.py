"""Embedding every tile of a raster into a resumable zarr store.

:func:`plan_embedding` decides the tile grid, pyramid level and normalisation
for a raster and a model; :func:`embed_raster` is a generator that yields
:class:`~napari_sam.core.progress.Progress` events while it encodes the tiles
that the store still lacks, in batches, and returns the
:class:`~napari_sam.core.tiling.store.EmbeddingStore`. :func:`embed` is the
synchronous script API behind ``napari-sam embed``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from napari_sam.core import progress as progress_mod
from napari_sam.core.device import default_batch_size, pick_device
from napari_sam.core.io.raster import GeoRaster
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.models import load_model
from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.tiling.grid import Tile, TileGrid
from napari_sam.core.tiling.normalize import DEFAULT_PERCENTILES, Normalizer
from napari_sam.core.tiling.signature import model_name as _model_name
from napari_sam.core.tiling.signature import weights_hash
from napari_sam.core.tiling.store import EmbeddingStore, StoreSettings
from napari_sam.core.tiling.window import Window
from napari_sam.errors import InputError
from sam_model import DEFAULT_MODEL, encode_images


@dataclass(frozen=True, kw_only=True)
class EmbeddingPlan:
    """How a raster is cut and shown to a model.

    ``raster``: the full-resolution raster with the bands used;
    ``level``: what tiles are read from (``raster`` itself, a pyramid level or
    a strided copy when ``grid.scale`` > 1); ``grid`` in full-resolution
    pixels; ``normalizer`` for every tile; ``settings`` for the store.
    """

    raster: GeoRaster
    level: GeoRaster
    grid: TileGrid
    normalizer: Normalizer
    settings: StoreSettings

    def input_window(self, tile: Tile) -> Window:
        """The pixels of ``level`` that make the model input of ``tile``."""
        window = tile.input_window.clip(self.level.height, self.level.width)
        if window is None:  # a level a pixel short of ceil(H / scale): reuse its last pixel
            window = Window(min(tile.input_window.y0, self.level.height - 1),
                            min(tile.input_window.x0, self.level.width - 1), 1, 1)
        return window

    def read_tile(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        """``(rgb HWC uint8, valid (h, w) bool)``: the model input of ``tile``, unpadded."""
        data, valid = self.level.read_masked(self.input_window(tile))
        return self.normalizer.apply(data, valid)


def resolve_tiling(img_size: int, *, tile_size: int | None = None, overlap: int | None = None,
                   scale: int | None = None) -> tuple[int, int, int]:
    """``(tile_size, overlap, scale)`` in full-resolution pixels, from user choices.

    Defaults: ``scale`` 1, ``tile_size`` the model input times ``scale``,
    ``overlap`` an eighth of the tile. A tile larger than the model input
    implies ``scale = ceil(tile_size / img_size)``. Tile and overlap are
    rounded down to multiples of ``scale``.
    """
    if tile_size is not None and tile_size < 1:
        raise InputError(f"--tile must be positive, got {tile_size}")
    if scale is not None and scale < 1:
        raise InputError(f"--scale must be a positive integer, got {scale}")
    if scale is None:
        scale = 1 if tile_size is None else max(1, -(-int(tile_size) // img_size))
    tile = img_size * scale if tile_size is None else int(tile_size)
    if tile > img_size * scale:
        raise InputError(f"--tile {tile} does not fit the model input ({img_size} px) at "
                         f"--scale {scale}: use --scale {-(-tile // img_size)} or a smaller tile")
    tile -= tile % scale
    if tile < scale:
        raise InputError(f"--tile {tile_size} is smaller than --scale {scale}")
    ov = tile // 8 if overlap is None else int(overlap)
    ov -= ov % scale
    if not 0 <= ov < tile:
        raise InputError(f"--overlap must be in 0..{tile - 1} px, got {overlap}")
    return tile, ov, scale


def plan_embedding(raster: GeoRaster, model, *, tile_size: int | None = None,
                   overlap: int | None = None, scale: int | None = None,
                   percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES,
                   model_name: str | None = None) -> EmbeddingPlan:
    """The grid, level, normalisation and store settings to embed ``raster`` with ``model``.

    ``raster`` should already show the bands to use (see ``GeoRaster.default_bands``).
    """
    img_size = int(model.image_encoder.img_size)
    tile, ov, s = resolve_tiling(img_size, tile_size=tile_size, overlap=overlap, scale=scale)
    grid = TileGrid(height=raster.height, width=raster.width, tile_size=tile, overlap=ov, scale=s)
    level = raster.downsample(s)
    normalizer = Normalizer.from_raster(raster, percentiles=percentiles)
    emb = tuple(int(v) for v in model.prompt_encoder.image_embedding_size)
    settings = StoreSettings(
        model_name=_model_name(model, model_name), weights_hash=weights_hash(model), grid=grid,
        embed_shape=(int(model.prompt_encoder.embed_dim), *emb),
        normalization=normalizer.as_dict(), source=raster.signature(),
        georeference=raster.georeference(), level=level.level_name)
    return EmbeddingPlan(raster=raster, level=level, grid=grid, normalizer=normalizer,
                         settings=settings)


def encode_batch(model, images: Sequence[np.ndarray], *, pad_to: int | None = None
                 ) -> np.ndarray:
    """Embed HWC uint8 RGB images (each at most ``img_size`` a side) -> (B, C, h, w) float32.

    Every image is padded bottom/right to ``img_size`` with the model's pixel
    mean, which normalises to exactly the zeros the model pads with itself.
    ``pad_to``: run the encoder on that many images (blank ones added, their
    output dropped) so that every call has the same shape; an image then gets
    bit-identical embeddings whatever batch it lands in (a CPU kernel may
    round differently for another batch size).
    """

    s = int(model.image_encoder.img_size)
    mean = model.pixel_mean.detach().to("cpu", torch.float32).reshape(3, 1, 1)
    n = max(len(images), pad_to or 0)
    batch = mean.expand(n, 3, s, s).clone()
    for i, image in enumerate(images):
        h, w = image.shape[:2]
        batch[i, :, :h, :w] = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    with torch.inference_mode():
        out = encode_images(model, batch.to(model.device))
    return out[: len(images)].detach().to("cpu", torch.float32).numpy()


def _read_all(plan: EmbeddingPlan, tiles: Iterable[Tile]):
    return [(tile, *plan.read_tile(tile)) for tile in tiles]


def embed_raster(raster, store_path: str | os.PathLike, model, *, tile_size: int | None = None,
                 overlap: int | None = None, bands: Sequence[int] | None = None,
                 scale: int | None = None, batch_size: int | None = None,
                 device: str | None = "auto", model_name: str | None = None,
                 percentiles: tuple[float, float] | None = DEFAULT_PERCENTILES,
                 overwrite: bool = False) -> ProgressGen[EmbeddingStore]:
    """Embed every tile of ``raster`` into the store at ``store_path``; a generator.

    ``raster``: a GeoRaster or anything :func:`open_raster` opens. ``bands``:
    1-based bands used as RGB (default ``raster.default_bands()``).
    ``tile_size``/``overlap`` in full-resolution pixels (default: the model
    input, an eighth of it); ``scale``: downscale factor (a pyramid level is
    used when one matches). ``batch_size``: tiles per encoder call (default
    1 on a CPU, 4 on a GPU). ``device``: ``auto``/``cpu``/``cuda``/``mps``;
    the model is moved there (None leaves it where it is).

    An existing store made with the same settings is resumed: only tiles not
    yet done are encoded (none when it is complete). One made with other
    settings raises StaleCacheError unless ``overwrite``. Tiles without any
    valid pixel are marked empty and not encoded. If the input turns out to
    be unreadable, a store this call created is removed.

    Yields Progress("embed", tiles finished, tiles in the grid); returns the store.
    """
    if device is not None:
        model.to(pick_device(device))
    model.eval()
    batch_size = int(batch_size or default_batch_size(model.device))
    if batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {batch_size}")
    geo = open_raster(raster)
    geo = geo.select_bands(bands if bands is not None else geo.default_bands())
    plan = plan_embedding(geo, model, tile_size=tile_size, overlap=overlap, scale=scale,
                          percentiles=percentiles, model_name=model_name)
    store_path = Path(store_path)
    store, created = EmbeddingStore.open_or_create(store_path, plan.settings, overwrite=overwrite)
    try:
        result = yield from _fill(store, plan, model, batch_size)
    except InputError:
        if created:
            shutil.rmtree(store_path, ignore_errors=True)
        raise
    return result


def _fill(store: EmbeddingStore, plan: EmbeddingPlan, model, batch_size: int
          ) -> ProgressGen[EmbeddingStore]:
    total = len(plan.grid)
    todo = store.missing()
    finished = total - len(todo)
    yield Progress("embed", finished, total, "resuming" if finished else "")
    if not todo:
        return store
    batches = [todo[i:i + batch_size] for i in range(0, len(todo), batch_size)]
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="napari-sam-read") as pool:
        pending = pool.submit(_read_all, plan, batches[0])
        for k in range(len(batches)):
            items = pending.result()
            if k + 1 < len(batches):  # read the next batch while this one is encoded
                pending = pool.submit(_read_all, plan, batches[k + 1])
            full = [(tile, rgb) for tile, rgb, valid in items if valid.any()]
            for tile, _rgb, valid in items:
                if not valid.any():
                    store.mark_empty(tile.row, tile.col)
            if full:
                embeddings = encode_batch(model, [rgb for _, rgb in full], pad_to=batch_size)
                for (tile, _), emb in zip(full, embeddings):
                    store.write(tile.row, tile.col, emb)
            finished += len(items)
            last = items[-1][0]
            yield Progress("embed", finished, total, f"tile {last.row},{last.col}")
    return store


def embed(source, out: str | os.PathLike, *, model=DEFAULT_MODEL, checkpoint=None,
          device: str | None = "auto", batch_size: int | None = None,
          tile_size: int | None = None, overlap: int | None = None,
          bands: Sequence[int] | None = None, scale: int | None = None,
          overwrite: bool = False, progress: bool = False) -> EmbeddingStore:
    """Embed ``source`` into the store ``out`` and return it (``napari-sam embed`` in Python).

    ``model``: a model name for ``sam_model.build_sam`` or a built ``Sam``;
    ``checkpoint``: an official checkpoint file. ``progress``: show a bar.
    Other arguments as for :func:`embed_raster`.
    """
    name = None
    if isinstance(model, str):
        name = model
        model = load_model(model, checkpoint=checkpoint, device=device)
    gen = embed_raster(source, out, model, tile_size=tile_size, overlap=overlap, bands=bands,
                       scale=scale, batch_size=batch_size, device=device, model_name=name,
                       overwrite=overwrite)
    return progress_mod.run_with_bar(gen) if progress else progress_mod.run(gen)

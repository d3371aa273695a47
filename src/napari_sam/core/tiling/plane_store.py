"""Embedding stores of a stack, one per plane, in one folder.

``ROOT/plane_3.zarr`` (``plane_2_7.zarr`` for a (t, z) index) is an ordinary
:class:`~napari_sam.core.tiling.store.EmbeddingStore` for that plane: made on
first use with the plane's grid, normalisation and signature, filled tile by
tile as prompts need them, so scrolling back to a plane, reopening the image
or a run killed half-way all start from what is already embedded. A plane
whose pixels changed is refused as stale, as for any store.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.tiling.embed import plan_embedding
from napari_sam.core.tiling.store import EmbeddingStore
from napari_sam.errors import InputError


def plane_store_path(root: str | os.PathLike, index: Sequence[int]) -> Path:
    """Where plane ``index``'s store lives under ``root``."""
    return Path(root) / ("plane_" + "_".join(str(int(i)) for i in index) + ".zarr")


def open_plane_store(root: str | os.PathLike, index: Sequence[int], plane, model, *,
                     tile_size: int | None = None, overlap: int | None = None,
                     model_name: str | None = None) -> EmbeddingStore:
    """The store of plane ``index`` (an array or raster ``plane``), made when missing."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise InputError(f"{root}: embeddings of a stack go in a folder, and this is a file")
    if (root / "zarr.json").exists() and not any(root.glob("plane_*.zarr")):
        raise InputError(f"{root}: an embedding store of one image; choose a new folder for "
                         f"the planes of a stack")
    raster = open_raster(plane)
    raster = raster.select_bands(raster.default_bands())
    plan = plan_embedding(raster, model, tile_size=tile_size, overlap=overlap,
                          model_name=model_name)
    root.mkdir(parents=True, exist_ok=True)
    store, _ = EmbeddingStore.open_or_create(plane_store_path(root, index), plan.settings)
    return store

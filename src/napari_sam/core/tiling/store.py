"""The embedding store: one zarr v3 group per raster and model.

Layout of ``STORE.zarr``::

    embeddings   (n_rows, n_cols, C, h, w) float16, one chunk per tile
    status       (n_rows, n_cols) uint8, one chunk per tile:
                 0 missing, 1 done, 2 empty (all nodata, nothing to embed)
    attributes   {"napari_sam_embeddings": {format_version, model_name, weights_hash,
                  grid, embed_shape, normalization, source, georeference, level}}

A tile's embedding is written before its status, so a run killed at any
moment leaves only tiles that are complete marked done, and a later run
computes exactly the missing ones. Opening a store with other settings raises
:class:`~napari_sam.errors.StaleCacheError` saying what differs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr

from napari_sam.core.io.atomic import atomic_path
from napari_sam.core.tiling.grid import Tile, TileGrid
from napari_sam.core.tiling.normalize import Normalizer
from napari_sam.errors import InputError, StaleCacheError

FORMAT_VERSION = 1
ATTR_KEY = "napari_sam_embeddings"
MISSING, DONE, EMPTY = 0, 1, 2

# source signature fields that must match (the path may change when files move)
_SOURCE_KEYS = ("shape", "dtype", "bands", "size", "mtime", "sample_hash")


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """Everything an embedding depends on; a store is reused only when all of it matches.

    ``embed_shape`` is ``(C, h, w)`` of one tile's embedding; ``level`` names
    the pyramid level tiles were read from (``"0"`` at full resolution).
    """

    model_name: str
    weights_hash: str
    grid: TileGrid
    embed_shape: tuple[int, int, int]
    normalization: dict
    source: dict
    georeference: dict = field(default_factory=dict)
    level: str = "0"
    format_version: int = FORMAT_VERSION

    def to_attrs(self) -> dict:
        return {"format_version": self.format_version, "model_name": self.model_name,
                "weights_hash": self.weights_hash, "grid": self.grid.as_dict(),
                "embed_shape": list(self.embed_shape), "normalization": self.normalization,
                "source": self.source, "georeference": self.georeference, "level": self.level}

    @classmethod
    def from_attrs(cls, d: dict) -> StoreSettings:
        return cls(model_name=d["model_name"], weights_hash=d["weights_hash"],
                   grid=TileGrid.from_dict(d["grid"]),
                   embed_shape=tuple(int(v) for v in d["embed_shape"]),
                   normalization=d["normalization"], source=d["source"],
                   georeference=d.get("georeference", {}), level=str(d.get("level", "0")),
                   format_version=int(d["format_version"]))

    def differences(self, other: StoreSettings) -> list[str]:
        """Human-readable ways in which ``other`` (wanted now) differs from these (stored)."""
        out = []
        if self.format_version != other.format_version:
            out.append(f"format version {self.format_version} (now {other.format_version})")
        if self.model_name != other.model_name:
            out.append(f"model {self.model_name!r} (now {other.model_name!r})")
        if self.weights_hash != other.weights_hash:
            out.append(f"model weights {self.weights_hash[:12]} (now {other.weights_hash[:12]})")
        for key, mine in self.grid.as_dict().items():
            theirs = other.grid.as_dict()[key]
            if mine != theirs:
                out.append(f"{key.replace('_', ' ')} {mine} (now {theirs})")
        if tuple(self.embed_shape) != tuple(other.embed_shape):
            out.append(f"embedding shape {list(self.embed_shape)} (now {list(other.embed_shape)})")
        if self.level != other.level:
            out.append(f"pyramid level {self.level!r} (now {other.level!r})")
        for key in _SOURCE_KEYS:
            mine, theirs = self.source.get(key), other.source.get(key)
            if mine != theirs:
                label = {"sample_hash": "source pixels", "mtime": "source modification time",
                         "size": "source file size"}.get(key, f"source {key}")
                out.append(f"{label} {_short(mine)} (now {_short(theirs)})")
        if self.normalization != other.normalization:
            out.append("normalisation (band stretch) differs")
        if self.georeference != other.georeference:
            out.append("georeference (transform, CRS or nodata) differs")
        return out


def _short(value) -> str:
    text = str(value)
    return text[:12] if len(text) > 24 and " " not in text else text


class EmbeddingStore:
    """A zarr store of per-tile embeddings; see the module docstring for the layout.

    Use :meth:`create`, :meth:`open` or :meth:`open_or_create`.
    """

    def __init__(self, *, path: Path, group, settings: StoreSettings, read_only: bool = False):
        self.path = Path(path)
        self.read_only = read_only
        self._group = group
        self.settings = settings
        self._embeddings = group["embeddings"]
        self._status = group["status"]

    # -- opening ---------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, settings: StoreSettings, *,
               overwrite: bool = False) -> EmbeddingStore:
        """Write an empty store at ``path`` (atomically: a temporary folder, then rename)."""
        n_rows, n_cols = settings.grid.shape
        c, h, w = settings.embed_shape
        with atomic_path(path, overwrite) as tmp:
            group = zarr.open_group(store=str(tmp), mode="w", zarr_format=3)
            group.create_array("embeddings", shape=(n_rows, n_cols, c, h, w),
                               chunks=(1, 1, c, h, w), dtype="float16", fill_value=0)
            group.create_array("status", shape=(n_rows, n_cols), chunks=(1, 1),
                               dtype="uint8", fill_value=MISSING)
            group.attrs[ATTR_KEY] = settings.to_attrs()
        return cls.open(path)

    @classmethod
    def open(cls, path: str | os.PathLike, expected: StoreSettings | None = None, *,
             mode: str = "r+") -> EmbeddingStore:
        """Open an existing store; with ``expected``, refuse one made with other settings."""
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: no such embedding store")
        try:
            group = zarr.open_group(store=str(path), mode=mode)
            attrs = dict(group.attrs.asdict()).get(ATTR_KEY)
            settings = None if attrs is None else StoreSettings.from_attrs(attrs)
        except (KeyError, ValueError, TypeError, OSError, zarr.errors.BaseZarrError) as exc:
            raise StaleCacheError(f"{path}: not a readable embedding store ({exc})") from exc
        if settings is None or "embeddings" not in group or "status" not in group:
            raise StaleCacheError(f"{path}: exists but is not a napari-sam embedding store "
                                  f"(pass --overwrite to replace it)")
        if expected is not None:
            diffs = settings.differences(expected)
            if diffs:
                raise StaleCacheError(f"{path}: embedding store made with other settings: "
                                      + "; ".join(diffs)
                                      + " (pass --overwrite to recompute it)")
        return cls(path=path, group=group, settings=settings, read_only=mode == "r")

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, settings: StoreSettings, *,
                       overwrite: bool = False) -> tuple[EmbeddingStore, bool]:
        """``(store, created)``: reuse a matching store, else make one.

        An existing store with other settings is refused unless ``overwrite``.
        """
        path = Path(path)
        if path.exists() and not overwrite:
            return cls.open(path, settings), False
        return cls.create(path, settings, overwrite=overwrite), True

    # -- contents ------------------------------------------------------------------
    @property
    def grid(self) -> TileGrid:
        return self.settings.grid

    @property
    def normalizer(self) -> Normalizer:
        return Normalizer.from_dict(self.settings.normalization)

    def status(self) -> np.ndarray:
        """(n_rows, n_cols) uint8: 0 missing, 1 done, 2 empty."""
        return np.asarray(self._status[...])

    def tile_status(self, row: int, col: int) -> int:
        return int(self._status[row, col])

    def missing(self) -> list[Tile]:
        """Tiles with no embedding and not known to be empty, in row-major order."""
        status = self.status()
        return [self.grid.tile_for(int(r), int(c)) for r, c in np.argwhere(status == MISSING)]

    @property
    def complete(self) -> bool:
        return bool((self.status() != MISSING).all())

    def counts(self) -> dict:
        status = self.status()
        return {"done": int((status == DONE).sum()), "empty": int((status == EMPTY).sum()),
                "missing": int((status == MISSING).sum()), "total": int(status.size)}

    def read(self, row: int, col: int) -> np.ndarray:
        """The embedding of tile ``(row, col)`` as (C, h, w) float32.

        Raises KeyError when it is missing or the tile is empty (all nodata).
        """
        state = self.tile_status(row, col)
        if state != DONE:
            what = "empty (all nodata)" if state == EMPTY else "not computed yet"
            raise KeyError(f"tile ({row}, {col}) of {self.path} is {what}")
        return np.asarray(self._embeddings[row, col], dtype=np.float32)

    def write(self, row: int, col: int, embedding: np.ndarray) -> None:
        """Store tile ``(row, col)``'s (C, h, w) embedding, then mark it done."""
        embedding = np.asarray(embedding)
        if tuple(embedding.shape) != tuple(self.settings.embed_shape):
            raise ValueError(f"embedding shape {embedding.shape} != store's "
                             f"{tuple(self.settings.embed_shape)}")
        self._embeddings[row, col] = embedding.astype(np.float16)
        self._status[row, col] = DONE

    def mark_empty(self, row: int, col: int) -> None:
        """Record that tile ``(row, col)`` holds no valid pixel (nothing to embed)."""
        self._status[row, col] = EMPTY

    def __repr__(self) -> str:
        c = self.counts()
        return (f"EmbeddingStore({self.path}, model={self.settings.model_name}, "
                f"grid={self.grid.shape}, done={c['done']}, empty={c['empty']}, "
                f"missing={c['missing']})")

"""Lazy georeferenced rasters: GeoTIFF/COG, TIFF, zarr, OME-Zarr, numpy and dask.

:func:`napari_sam.core.io.raster_open.open_raster` returns a :class:`GeoRaster`: a
dask array ``(y, x, bands)`` built from per-chunk window reads (the whole
raster is never read at once), the affine transform (``affine.Affine``, pixel corner convention as in
rasterio), the CRS (``rasterio.crs.CRS`` or None), the nodata value and the
pyramid levels when the file has them (COG overviews, OME-Zarr multiscales,
TIFF sub-resolutions).

Georeference of zarr arrays: the attributes ``transform`` (six numbers in
``affine.Affine`` order a, b, c, d, e, f), ``crs`` (anything
``rasterio.crs.CRS.from_user_input`` accepts) and ``nodata`` are read when
present; OME-Zarr ``scale``/``translation`` transformations of level 0 give
the transform otherwise (pixel centres at the OME coordinates).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import dask.array as da
import numpy as np
from affine import Affine
from dask.base import tokenize
from rasterio.crs import CRS
from rasterio.errors import CRSError

from napari_sam.core.io.georef import as_affine
from napari_sam.core.io.raster_sources import Source, StridedSource, sample_hash
from napari_sam.core.tiling.window import Window, as_window
from napari_sam.errors import InputError


class GeoRaster:
    """A lazy (y, x, bands) raster with its georeference and pyramid.

    Build with :func:`~napari_sam.core.io.raster_open.open_raster`.

    Band numbers are 1-based wherever a user or a file sees them
    (``select_bands``, ``default_bands``, ``--bands``, the embedding store's
    and the signature's ``bands``). 0-based indexes are positions in the
    source's band axis and appear only in three attributes:
    ``band_indexes`` (the bands this raster shows), ``alpha`` (an alpha band
    used as a validity mask: pixels with alpha 0 are invalid) and ``rgb``
    (the bands the file labels red, green, blue). ``scale`` is this level's
    downscale factor relative to level 0.
    """

    def __init__(self, *, source: Source, transform: Affine | None = None, crs=None,
                 nodata: float | None = None, path: str | os.PathLike | None = None,
                 band_indexes: Sequence[int] | None = None, alpha: int | None = None,
                 overviews: Sequence[GeoRaster] = (), scale: float = 1.0,
                 level_name: str = "0", rgb: Sequence[int] | None = None):
        self.source = source
        self.transform = as_affine(transform, "in-memory raster" if path is None else path)
        self.crs = crs
        self.nodata = None if nodata is None else float(nodata)
        self.path = None if path is None else Path(path)
        n = source.shape[2]
        self.band_indexes = (tuple(range(n)) if band_indexes is None
                             else tuple(int(b) for b in band_indexes))
        if not self.band_indexes or any(not 0 <= b < n for b in self.band_indexes):
            raise InputError(f"{self._name()}: bands "
                             f"{[b + 1 for b in self.band_indexes]} not in 1..{n}")
        self.alpha = alpha
        self._overviews = tuple(overviews)
        self.scale = float(scale)
        self.level_name = level_name
        self.rgb = None if rgb is None else tuple(int(b) for b in rgb)
        self._data = None

    # -- geometry ---------------------------------------------------------
    def _name(self) -> str:
        return str(self.path) if self.path is not None else "in-memory raster"

    @property
    def height(self) -> int:
        return self.source.shape[0]

    @property
    def width(self) -> int:
        return self.source.shape[1]

    @property
    def count(self) -> int:
        """Number of bands shown."""
        return len(self.band_indexes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(height, width, count)``."""
        return (self.height, self.width, self.count)

    @property
    def dtype(self) -> np.dtype:
        return self.source.dtype

    @property
    def levels(self) -> list[GeoRaster]:
        """The pyramid, finest first: ``[self, overview 1, overview 2, ...]``."""
        return [self, *self._overviews]

    @property
    def data(self):
        """The raster as a lazy dask array (y, x, bands), chunked along the file's blocks."""
        if self._data is None:
            self._data = _dask_array(self.source, self.band_indexes)
        return self._data

    def __repr__(self) -> str:
        return (f"GeoRaster({self._name()}, {self.height}x{self.width}x{self.count} "
                f"{self.dtype}, crs={self.crs}, nodata={self.nodata}, "
                f"levels={len(self.levels)})")

    # -- reading ----------------------------------------------------------
    def read(self, window=None) -> np.ndarray:
        """The pixels of ``window`` (:class:`Window`, slices or rasterio Window) as (h, w, bands)."""
        w = Window(0, 0, self.height, self.width) if window is None else as_window(window)
        return self.source.read(w.y0, w.y1, w.x0, w.x1, self.band_indexes)

    def read_masked(self, window=None) -> tuple[np.ndarray, np.ndarray]:
        """``(data (h, w, bands), valid (h, w) bool)`` for ``window`` in one read.

        A pixel is invalid when every shown band equals ``nodata``, when any
        band is NaN, or when the alpha band is 0.
        """
        w = Window(0, 0, self.height, self.width) if window is None else as_window(window)
        extra = () if self.alpha is None else (self.alpha,)
        raw = self.source.read(w.y0, w.y1, w.x0, w.x1, self.band_indexes + extra)
        data = raw[..., : self.count]
        valid = valid_mask(data, self.nodata)
        if self.alpha is not None:
            valid &= raw[..., -1] != 0
        return data, valid

    # -- derived rasters ---------------------------------------------------
    def _derive(self, **changes) -> GeoRaster:
        kwargs = dict(source=self.source, transform=self.transform, crs=self.crs,
                      nodata=self.nodata, path=self.path, band_indexes=self.band_indexes,
                      alpha=self.alpha, overviews=self._overviews, scale=self.scale,
                      level_name=self.level_name, rgb=self.rgb)
        kwargs.update(changes)
        return GeoRaster(**kwargs)

    def default_bands(self) -> list[int]:
        """1-based bands to use as RGB when none are given.

        The red, green and blue bands when the file labels them (so a BGRA
        file is shown as RGB), else the first three, else the single band.
        Once bands were selected, the first three of that selection.
        """
        if self.band_indexes != tuple(range(self.source.shape[2])):
            return [b + 1 for b in self.band_indexes][:3]
        if self.rgb is not None:
            return [b + 1 for b in self.rgb]
        shown = [b + 1 for b in self.band_indexes if b != self.alpha]
        return shown[:3] if len(shown) >= 3 else shown[:1]

    def select_bands(self, bands: Sequence[int] | None) -> GeoRaster:
        """The same raster showing ``bands`` (1-based, as on the command line)."""
        if bands is None:
            return self
        bands = [int(b) for b in bands]
        n = self.source.shape[2]
        if not bands or any(not 1 <= b <= n for b in bands):
            raise InputError(f"{self._name()}: bands {bands} not in 1..{n}")
        picked = tuple(b - 1 for b in bands)
        overviews = [o._derive(band_indexes=picked, overviews=()) for o in self._overviews]
        return self._derive(band_indexes=picked, overviews=overviews)

    def with_georeference(self, *, transform=None, crs=None, nodata=None) -> GeoRaster:
        """A copy with the given georeference fields replaced (None keeps the current one)."""
        changes = {}
        if transform is not None:
            changes["transform"] = as_affine(transform, self._name())
        if crs is not None:
            changes["crs"] = _parse_crs(crs, self._name())
        if nodata is not None:
            changes["nodata"] = nodata
        overviews = [o._derive(**{k: v for k, v in changes.items() if k != "transform"})
                     for o in self._overviews]
        return self._derive(overviews=overviews, **changes)

    def level_for(self, factor: int) -> GeoRaster | None:
        """The pyramid level downscaled by exactly ``factor`` (size ceil or floor of H/factor)."""
        for level in self._overviews:
            if all(size in (n // factor, -(-n // factor)) for size, n in
                   ((level.height, self.height), (level.width, self.width))):
                return level
        return None

    def downsample(self, factor: int) -> GeoRaster:
        """This raster ``factor`` times smaller: a pyramid level if one matches, else strided."""
        factor = int(factor)
        if factor == 1:
            return self
        level = self.level_for(factor)
        if level is not None:
            return level
        return self._derive(source=StridedSource(base=self.source, factor=factor),
                            transform=self.transform @ Affine.scale(factor), overviews=(),
                            scale=self.scale * factor, level_name=f"strided{factor}")

    # -- identity ------------------------------------------------------------
    def signature(self) -> dict:
        """A cheap fingerprint of the source: shape, dtype, path, size, mtime, sampled hash.

        Reads at most nine 32x32 windows (corners, edges and centre), so a
        damaged file is often detected here already.
        """
        size = mtime = None
        if self.path is not None:
            meta = _metadata_file(self.path)
            st = meta.stat()
            size, mtime = st.st_size, st.st_mtime
        return {
            "shape": [self.height, self.width, self.count],
            "dtype": str(self.dtype),
            "bands": [b + 1 for b in self.band_indexes],
            "path": None if self.path is None else str(self.path.resolve()),
            "size": size,
            "mtime": mtime,
            "sample_hash": sample_hash(self.source),
        }

    def georeference(self) -> dict:
        """``{"transform": [a, b, c, d, e, f], "crs": WKT or None, "nodata": value or None}``."""
        return {"transform": list(self.transform)[:6],
                "crs": None if self.crs is None else self.crs.to_wkt(),
                "nodata": None if self.nodata is None or math.isnan(self.nodata)
                else self.nodata,
                "nodata_is_nan": self.nodata is not None and math.isnan(self.nodata)}


def valid_mask(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """(h, w) bool: False where every band equals ``nodata`` or any band is NaN.

    ``data`` is (h, w, bands).
    """
    valid = np.ones(data.shape[:2], dtype=bool)
    if data.dtype.kind == "f":
        valid &= np.isfinite(data).all(axis=-1)
    if nodata is not None and not math.isnan(nodata):
        valid &= ~(data == np.asarray(nodata).astype(data.dtype)).all(axis=-1)
    return valid


def _metadata_file(path: Path) -> Path:
    """The file whose size and mtime stand for the raster (a zarr store's metadata)."""
    if path.is_dir():
        for name in ("zarr.json", ".zarray", ".zattrs", ".zgroup"):
            if (path / name).exists():
                return path / name
    return path


def _dask_array(source: Source, bands: tuple[int, ...]):
    """(y, x, bands) dask array whose chunks are window reads of ``source``."""
    h, w, _ = source.shape
    by, bx = source.chunk_hint
    # whole file blocks, grouped so that a chunk is about 1024 pixels a side
    cy = max(1, by) * max(1, 1024 // max(1, by))
    cx = max(1, bx) * max(1, 1024 // max(1, bx))
    chunks = (_split(h, cy), _split(w, cx), (len(bands),))

    def read_block(block_info=None):
        (y0, y1), (x0, x1), _ = block_info[None]["array-location"]
        return source.read(y0, y1, x0, x1, bands)


    name = f"read-raster-{tokenize(source.token(), bands)}"
    return da.map_blocks(read_block, chunks=chunks, dtype=source.dtype, name=name,
                         meta=np.empty((0, 0, 0), dtype=source.dtype))


def _split(n: int, step: int) -> tuple[int, ...]:
    return tuple(min(step, n - i) for i in range(0, n, step)) or (0,)


def _parse_crs(crs, where: str):
    if crs is None:
        return None

    if isinstance(crs, CRS):
        return crs
    try:
        return CRS.from_user_input(crs)
    except CRSError as exc:
        raise InputError(f"{where}: cannot understand the CRS {crs!r}: {exc}") from exc

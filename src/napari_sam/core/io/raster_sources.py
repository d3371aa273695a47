"""Window readers behind :class:`napari_sam.core.io.raster.GeoRaster`.

A source reads a window of one raster level as an (h, w, bands) numpy array
and nothing more. Sources are small picklable objects (they keep a file path,
not an open handle, across pickling) so that dask workers can read tiles.
Every read error is raised as :class:`~napari_sam.errors.InputError` naming
the file and the window.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from napari_sam.errors import InputError


class Source:
    """Reads windows of an (H, W, C) raster level. Subclasses set ``shape`` and ``dtype``."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    path: Path | None = None
    chunk_hint: tuple[int, int] = (512, 512)

    def read(self, y0: int, y1: int, x0: int, x1: int,
             bands: Sequence[int] | None = None) -> np.ndarray:
        """Rows ``y0:y1``, columns ``x0:x1``, bands (0-based, default all) as (h, w, b)."""
        h, w, c = self.shape
        if not (0 <= y0 <= y1 <= h and 0 <= x0 <= x1 <= w):
            raise ValueError(f"window rows {y0}:{y1} cols {x0}:{x1} outside a {h}x{w} raster")
        bands = tuple(range(c)) if bands is None else tuple(int(b) for b in bands)
        try:
            out = self._read(y0, y1, x0, x1, bands)
        except InputError:
            raise
        except (OSError, ValueError, RuntimeError, KeyError) as exc:
            where = self.path if self.path is not None else "in-memory raster"
            raise InputError(f"{where}: cannot read rows {y0}:{y1}, columns {x0}:{x1} "
                             f"(damaged or unreadable data): {_root_cause(exc)}") from exc
        return np.ascontiguousarray(out)

    def _read(self, y0, y1, x0, x1, bands) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def token(self) -> str:
        """A string that identifies what this source reads (for dask task names)."""
        return f"{type(self).__name__}-{self.path}-{self.shape}-{self.dtype}"

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_handle", None)
        state.pop("_lock", None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


def _root_cause(exc: BaseException) -> str:
    """The innermost message of an exception chain (GDAL's actual complaint), on one line."""
    while exc.__cause__ is not None and exc.__cause__ is not exc:
        exc = exc.__cause__
    return " ".join(str(exc).split()) or type(exc).__name__


class RasterioSource(Source):
    """A GeoTIFF/COG band set (or one of its overviews) read through rasterio windows."""

    def __init__(self, *, path: Path, shape, dtype, overview: int | None = None,
                 block: tuple[int, int] = (512, 512)):
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.overview = overview
        self.chunk_hint = block

    def _read(self, y0, y1, x0, x1, bands):
        kwargs = {} if self.overview is None else {"overview_level": self.overview}
        with rasterio.open(self.path, **kwargs) as ds:
            data = ds.read([b + 1 for b in bands], window=Window(x0, y0, x1 - x0, y1 - y0))
        return np.moveaxis(data, 0, -1)

    def token(self) -> str:
        return f"rio-{self.path}-{self.overview}-{self.shape}"


class AxesSource(Source):
    """An N-d array-like (zarr, tifffile's zarr store) seen as (y, x, c) through its axes.

    ``axes`` names every dimension of the stored array with one letter:
    ``y``, ``x``, ``c`` (channel; ``s`` for tifffile's samples is the same)
    and anything else (``t``, ``z``, ...) which is read at index 0.
    """

    def __init__(self, *, axes: str, path: Path | None = None, array=None, opener=None,
                 shape_nd=None, dtype=None, chunks_nd=None, name: str = ""):
        self.axes = axes.lower().replace("s", "c")
        if "y" not in self.axes or "x" not in self.axes:
            raise InputError(f"{path}: cannot find the y and x axes in {axes!r}")
        self.path = None if path is None else Path(path)
        self._array = array          # kept when it pickles (numpy, dask, zarr arrays)
        self._opener = opener        # callable () -> array-like, used after unpickling
        if array is None and opener is None:
            raise ValueError("AxesSource needs an array or an opener")
        arr = array if array is not None else opener()
        if array is None:
            self._handle = arr
        shape_nd = tuple(arr.shape) if shape_nd is None else tuple(shape_nd)
        if len(shape_nd) != len(self.axes):
            raise InputError(f"{path}: axes {axes!r} do not match the array shape {shape_nd}")
        self.shape_nd = shape_nd
        self.dtype = np.dtype(arr.dtype if dtype is None else dtype)
        sizes = dict(zip(self.axes, shape_nd))
        self.shape = (sizes["y"], sizes["x"], sizes.get("c", 1))
        chunks = getattr(arr, "chunks", None) if chunks_nd is None else chunks_nd
        if chunks is not None and len(chunks) == len(self.axes) and all(
                isinstance(c, (int, np.integer)) for c in chunks):
            ck = dict(zip(self.axes, chunks))
            self.chunk_hint = (int(ck["y"]), int(ck["x"]))
        self.name = name
        self._lock = threading.Lock()

    def _get(self):
        if self._array is not None:
            return self._array
        handle = self.__dict__.get("_handle")
        if handle is None:
            handle = self._handle = self._opener()
        return handle

    def _read(self, y0, y1, x0, x1, bands):
        pick: list[int] | None = list(bands)
        c_index = slice(None)
        if "c" in self.axes and bands and bands == tuple(range(bands[0], bands[-1] + 1)):
            c_index, pick = slice(bands[0], bands[-1] + 1), None
        index, kept = [], []
        for axis in self.axes:
            if axis in "yxc":
                index.append({"y": slice(y0, y1), "x": slice(x0, x1), "c": c_index}[axis])
                kept.append(axis)
            else:
                index.append(0)
        lock = self.__dict__.get("_lock")
        if lock is None:
            lock = self._lock = threading.Lock()
        with lock:
            data = np.asarray(self._get()[tuple(index)])
        if "c" not in kept:
            data = data[..., None]
            kept.append("c")
        data = np.transpose(data, [kept.index(a) for a in "yxc"])
        return data if pick is None else data[..., pick]

    def token(self) -> str:
        if self.path is not None:
            return f"axes-{self.path}-{self.name}-{self.axes}-{self.shape_nd}"
        return f"axes-mem-{id(self._array)}-{self.axes}-{self.shape_nd}"


class StridedSource(Source):
    """A level computed from another source by keeping every ``factor``-th pixel.

    Nearest-neighbour (GDAL's default for overviews): values, dtype and nodata
    are kept exactly. Size ``ceil(H / factor)`` x ``ceil(W / factor)``.
    """

    def __init__(self, *, base: Source, factor: int):
        self.base = base
        self.factor = int(factor)
        self.path = base.path
        h, w, c = base.shape
        self.shape = (-(-h // self.factor), -(-w // self.factor), c)
        self.dtype = base.dtype
        self.chunk_hint = base.chunk_hint

    def _read(self, y0, y1, x0, x1, bands):
        f = self.factor
        h, w, _ = self.base.shape
        data = self.base.read(y0 * f, min(h, y1 * f), x0 * f, min(w, x1 * f), bands)
        return data[::f, ::f]

    def token(self) -> str:
        return f"strided-{self.factor}-{self.base.token()}"


def sample_hash(source: Source, n: int = 3, size: int = 32) -> str:
    """sha256 of ``n`` x ``n`` windows of ``size`` pixels spread over the source (corners included)."""
    h, w, _ = source.shape
    digest = hashlib.sha256(f"{source.shape}|{source.dtype}".encode())
    ys = sorted({round(i * max(0, h - size) / max(1, n - 1)) for i in range(n)})
    xs = sorted({round(i * max(0, w - size) / max(1, n - 1)) for i in range(n)})
    for y in ys:
        for x in xs:
            block = source.read(y, min(h, y + size), x, min(w, x + size))
            digest.update(np.ascontiguousarray(block).tobytes())
    return digest.hexdigest()

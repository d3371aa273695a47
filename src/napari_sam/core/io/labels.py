"""Labels rasters on disk: uint32 ids, 0 = background, with transform and CRS.

Writing streams windows into a tiled, compressed GeoTIFF (``.tif``/``.tiff``)
or a zarr v3 store (``.zarr``) laid out as a single-level OME-Zarr (NGFF 0.5)
label image: group attributes ``ome.multiscales`` and ``ome.image-label``,
array ``0`` with dims (y, x), and the georeference as ``core.io.raster`` reads it
from zarr attributes (``transform``: 6 numbers a, b, c, d, e, f as in
``affine.Affine``; ``crs``: WKT or null), plus ``napari_sam: {"kind": "labels"}``. Outputs are written to a temporary sibling and renamed on
success (``core.io.atomic``): complete or absent.

Reading accepts GeoTIFF/TIFF (band 1 of a single-band file), our zarr labels,
any OME-Zarr label/image group (its first level) and plain zarr arrays. A
raster whose values are not integers (float, NaN) is refused with InputError.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
import zarr
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning, RasterioIOError
from rasterio.windows import Window

from napari_sam.core.io.atomic import atomic_path
from napari_sam.core.io.georef import as_affine
from napari_sam.core.io.sparse_labels import sparse_store
from napari_sam.errors import InputError

GEO_KEY = "napari_sam"
LABELS_TAG = "NAPARI_SAM_LABELS"  # GeoTIFF metadata item marking a labels raster
_ZARR_SUFFIXES = (".zarr",)
_TIFF_SUFFIXES = (".tif", ".tiff")


def check_label_dtype(dtype: Any, source: object = "labels") -> np.dtype:
    """Return ``dtype`` if it can hold label ids (bool or integer), else raise InputError."""
    dtype = np.dtype(dtype)
    if dtype.kind not in "biu":
        raise InputError(
            f"{source}: not a label raster ({dtype} values; labels must be integers, "
            "0 = background)"
        )
    return dtype


def labels_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """'tiff' or 'zarr', from ``fmt`` or ``path``'s extension."""
    if fmt is not None:
        fmt = fmt.lower().lstrip(".")
        fmt = {"tif": "tiff", "gtiff": "tiff", "geotiff": "tiff", "ome-zarr": "zarr"}.get(fmt, fmt)
        if fmt not in ("tiff", "zarr"):
            raise InputError(f"{path}: unknown labels format {fmt!r} (use tiff or zarr)")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix in _TIFF_SUFFIXES:
        return "tiff"
    if suffix in _ZARR_SUFFIXES:
        return "zarr"
    raise InputError(f"{path}: labels are written as .tif/.tiff (GeoTIFF) or .zarr")


def _crs_wkt(crs: Any) -> str | None:
    if crs is None:
        return None

    return CRS.from_user_input(crs).to_wkt()


def _crs_from(value: Any) -> Any:
    if not value:
        return None

    return CRS.from_user_input(value)


@dataclass(frozen=True)
class LabelRaster:
    """A labels raster on disk, read window by window.

    ``dtype`` is bool or an integer type; ``transform`` maps pixel corners to
    map coordinates; ``crs`` is a ``rasterio.crs.CRS`` or None (pixels).
    """

    path: Path
    kind: str  # "tiff" or "zarr"
    height: int
    width: int
    dtype: np.dtype
    transform: Affine
    crs: Any
    array_path: str = ""  # inside a zarr group, the array holding level 0

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    def read(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """The (h, w) window whose top-left pixel is (y0, x0)."""
        if self.kind == "tiff":
            with _quiet(), rasterio.open(self.path) as ds:
                return ds.read(1, window=Window(x0, y0, w, h))
        return np.asarray(self._zarr_array()[y0:y0 + h, x0:x0 + w])

    def _zarr_array(self) -> Any:
        node = zarr.open(str(self.path), mode="r")
        array = node[self.array_path] if self.array_path else node
        return array

    def to_dask(self, chunks: int = 1024) -> Any:
        """The labels as a lazy (h, w) dask array."""
        if self.kind == "zarr":
            return da.from_zarr(self._zarr_array())
        return da.from_array(_WindowReader(self), chunks=(chunks, chunks), asarray=True,
                             fancy=False, lock=False)


class _WindowReader:
    """Array-like over a labels GeoTIFF for dask: every slice opens, reads and closes."""

    def __init__(self, raster: LabelRaster):
        self.raster = raster
        self.shape = raster.shape
        self.dtype = raster.dtype
        self.ndim = 2

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        ys, xs = key
        y0, y1, _ = ys.indices(self.shape[0])
        x0, x1, _ = xs.indices(self.shape[1])
        return self.raster.read(y0, x0, y1 - y0, x1 - x0)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        yield


def read_labels(path: str | os.PathLike) -> LabelRaster:
    """Open a labels raster lazily (see module docstring); InputError if it is not one."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir() or path.suffix.lower() in _ZARR_SUFFIXES:
        return _read_zarr_labels(path)

    try:
        with _quiet(), rasterio.open(path) as ds:
            if ds.count != 1:
                raise InputError(f"{path}: not a label raster ({ds.count} bands; labels have one)")
            dtype = check_label_dtype(ds.dtypes[0], path)
            crs = ds.crs if ds.crs else None
            return LabelRaster(path=path, kind="tiff", height=ds.height, width=ds.width,
                               dtype=dtype, transform=ds.transform, crs=crs)
    except RasterioIOError as exc:
        raise InputError(f"{path}: cannot be read as a raster ({exc})") from exc


def _read_zarr_labels(path: Path) -> LabelRaster:
    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:  # zarr raises several kinds for a non-store
        raise InputError(f"{path}: not a zarr store ({exc})") from exc
    attrs = dict(node.attrs)
    array_path = ""
    if isinstance(node, zarr.Group):
        ome = attrs.get("ome", attrs)
        multiscales = ome.get("multiscales") or []
        if multiscales:
            array_path = multiscales[0]["datasets"][0]["path"]
        elif "labels" in node and isinstance(node["labels"], zarr.Array):
            array_path = "labels"
        else:
            raise InputError(f"{path}: zarr group without multiscales metadata or a "
                             "'labels' array")
        array = node[array_path]
    else:
        array = node
    shape = array.shape
    if len(shape) > 2 and all(s == 1 for s in shape[:-2]):
        raise InputError(f"{path}: labels with leading singleton axes {shape} are not "
                         "supported; store them as (y, x)")
    if len(shape) != 2:
        raise InputError(f"{path}: not a label raster (shape {shape}; labels are (y, x))")
    dtype = check_label_dtype(array.dtype, path)
    geo = {**dict(array.attrs), **attrs} if array_path else attrs
    return LabelRaster(path=path, kind="zarr", height=int(shape[0]), width=int(shape[1]),
                       dtype=dtype, transform=as_affine(geo.get("transform"), path),
                       crs=_crs_from(geo.get("crs")), array_path=array_path)


class LabelsWriter:
    """Stream label windows into a new labels raster, atomically.

    Use as a context manager::

        with LabelsWriter(out, height=h, width=w, transform=t, crs=crs) as writer:
            writer.write(window_labels, y0=y0, x0=x0)

    On a clean exit the file appears at ``out``; on an exception nothing is
    left behind (an existing ``out`` is untouched). ``out`` ending in
    ``.tif``/``.tiff`` gives a tiled (``block`` px), deflate-compressed uint32
    GeoTIFF; ``.zarr`` a zarr v3 OME-Zarr label image chunked ``block`` px.
    ``sparse``: windows may be left unwritten (GeoTIFF ``SPARSE_OK``: missing
    tiles read as 0; zarr: missing chunks read as the fill value 0).
    """

    def __init__(self, path: str | os.PathLike, *, height: int, width: int,
                 transform: Any = None, crs: Any = None, dtype: Any = "uint32",
                 block: int = 512, overwrite: bool = False, fmt: str | None = None,
                 name: str = "labels", sparse: bool = False):
        self.path = Path(path)
        self.fmt = labels_format(self.path, fmt)
        self.height, self.width = int(height), int(width)
        if self.height < 1 or self.width < 1:
            raise InputError(f"{self.path}: labels size must be positive, got {height}x{width}")
        self.dtype = check_label_dtype(dtype, self.path)
        if self.dtype.kind == "b":
            self.dtype = np.dtype("uint8")
        self.transform = as_affine(transform, path)
        self.crs = _crs_from(crs)
        if block % 16:
            raise InputError(f"{self.path}: block size must be a multiple of 16, got {block}")
        self.block = int(block)
        self.overwrite = overwrite
        self.name = name
        self.sparse = bool(sparse)
        self._stack: contextlib.ExitStack | None = None
        self._target: Any = None

    # -- lifecycle ----------------------------------------------------------
    def __enter__(self) -> LabelsWriter:
        stack = contextlib.ExitStack()
        try:
            tmp = stack.enter_context(atomic_path(self.path, self.overwrite))
            self._target = self._open_tiff(tmp, stack) if self.fmt == "tiff" \
                else self._open_zarr(tmp)
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        stack, self._stack = self._stack, None
        self._target = None
        if stack is not None:
            return bool(stack.__exit__(exc_type, exc, tb))
        return False

    def _open_tiff(self, tmp: Path, stack: contextlib.ExitStack) -> Any:
        profile = dict(driver="GTiff", height=self.height, width=self.width, count=1,
                       dtype=self.dtype.name, tiled=True, blockxsize=self.block,
                       blockysize=self.block,
                       compress="deflate", predictor=2, zlevel=6, BIGTIFF="IF_SAFER")
        if self.sparse:  # tiles never written stay absent from the file and read as 0
            profile["SPARSE_OK"] = "TRUE"
        if self.crs is not None or self.transform != Affine.identity():
            profile.update(crs=self.crs, transform=self.transform)
        with _quiet():
            ds = stack.enter_context(rasterio.open(tmp, "w+", **profile))
        ds.update_tags(**{LABELS_TAG: "1"})
        ds.set_band_description(1, self.name)
        return ds

    def _open_zarr(self, tmp: Path) -> Any:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        chunk = (min(self.block, self.height), min(self.block, self.width))
        array = group.create_array("0", shape=(self.height, self.width), dtype=self.dtype,
                                   chunks=chunk, fill_value=0, dimension_names=("y", "x"))
        group.attrs.update({
            "ome": {
                "version": "0.5",
                "multiscales": [{
                    "name": self.name,
                    "axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
                    "datasets": [{"path": "0", "coordinateTransformations": [
                        {"type": "scale", "scale": [1.0, 1.0]}]}],
                }],
                "image-label": {},
            },
            "transform": list(tuple(self.transform)[:6]),
            "crs": _crs_wkt(self.crs),
            GEO_KEY: {"kind": "labels"},
        })
        return array

    # -- windows ------------------------------------------------------------
    def _check_window(self, y0: int, x0: int, h: int, w: int) -> None:
        if self._target is None:
            raise RuntimeError("LabelsWriter is not open: use it in a with-statement")
        if y0 < 0 or x0 < 0 or y0 + h > self.height or x0 + w > self.width:
            raise InputError(f"{self.path}: window ({y0}, {x0}, {h}, {w}) outside the "
                             f"{self.height}x{self.width} raster")

    def read(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        """What was written so far in the (h, w) window at (y0, x0) (0 where nothing)."""
        self._check_window(y0, x0, h, w)
        if self.fmt == "tiff":
            return self._target.read(1, window=Window(x0, y0, w, h))
        return np.asarray(self._target[y0:y0 + h, x0:x0 + w])

    def write(self, labels: np.ndarray, *, y0: int, x0: int,
              where: np.ndarray | None = None) -> None:
        """Write an (h, w) window of ids at (y0, x0).

        ``where`` (h, w) bool: only those pixels are set, the others keep what
        was written before (a read-modify-write of the window).
        """
        labels = np.asarray(labels)
        if labels.ndim != 2:
            raise InputError(f"{self.path}: label windows are (h, w), got {labels.shape}")
        check_label_dtype(labels.dtype, self.path)
        h, w = labels.shape
        self._check_window(y0, x0, h, w)
        if labels.size and labels.dtype != self.dtype:
            info = np.iinfo(self.dtype)
            if labels.min() < info.min or labels.max() > info.max:
                raise InputError(f"{self.path}: ids do not fit in {self.dtype}")
        data = labels.astype(self.dtype, copy=False)
        if where is not None:
            data = np.where(np.asarray(where, bool), data, self.read(y0, x0, h, w))
        if self.fmt == "tiff":
            self._target.write(data, 1, window=Window(x0, y0, w, h))
        else:
            self._target[y0:y0 + h, x0:x0 + w] = data


def write_labels(path: str | os.PathLike, labels: Any, *, transform: Any = None, crs: Any = None,
                 overwrite: bool = False, block: int = 512, fmt: str | None = None,
                 dtype: Any = "uint32") -> Path:
    """Write a whole (h, w) numpy or dask labels array, one block row at a time.

    A :class:`~napari_sam.core.io.sparse_labels.SparseLabels` (or its unchanged
    ``to_dask()`` array) is written block by block instead, reading and writing
    only the blocks that hold labels; the others are left out of the file and
    read back as 0.
    """
    shape = tuple(labels.shape)
    if len(shape) != 2:
        raise InputError(f"{path}: labels must be (h, w), got shape {shape}")
    check_label_dtype(labels.dtype, path)
    store = sparse_store(labels)
    with LabelsWriter(path, height=shape[0], width=shape[1], transform=transform, crs=crs,
                      overwrite=overwrite, block=block, fmt=fmt, dtype=dtype,
                      sparse=store is not None) as writer:
        if store is not None:
            _write_sparse(writer, store)
            return Path(path)
        rows = max(writer.block, 16)
        for y0 in range(0, shape[0], rows):
            window = np.asarray(labels[y0:y0 + rows])
            writer.write(window, y0=y0, x0=0)
    return Path(path)


def _write_sparse(writer: LabelsWriter, store: Any) -> None:
    """Write the blocks of ``store`` (a SparseLabels) that hold a non-zero value."""
    b, (height, width) = writer.block, store.shape
    for y0 in range(0, height, b):
        y1 = min(height, y0 + b)
        for x0 in range(0, width, b):
            x1 = min(width, x0 + b)
            if store.any_nonzero(y0, y1, x0, x1):
                writer.write(store[y0:y1, x0:x1], y0=y0, x0=x0)


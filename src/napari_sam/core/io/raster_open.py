"""Opening rasters: :func:`open_raster` and the format detection and openers behind it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import tifffile
import zarr
from affine import Affine
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioError, RasterioIOError

from napari_sam.core.io.georef import as_affine
from napari_sam.core.io.raster import GeoRaster, _parse_crs
from napari_sam.core.io.raster_sources import AxesSource, RasterioSource
from napari_sam.errors import InputError

_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def open_raster(source, *, bands: Sequence[int] | None = None, axes: str | None = None,
                transform=None, crs=None, nodata: float | None = None) -> GeoRaster:
    """Open ``source`` lazily as a :class:`GeoRaster`.

    ``source``: a path (GeoTIFF/COG or anything GDAL reads, TIFF/OME-TIFF, a
    zarr array or group, an OME-Zarr image), a numpy/dask/zarr array, or a
    GeoRaster. ``bands``: 1-based band numbers to show (default all).
    ``axes``: the array's dimension letters (e.g. ``"cyx"``) when they cannot
    be found from metadata; in-memory 3-d arrays default to ``"yxc"``.
    ``transform``/``crs``/``nodata`` override or supply the georeference.
    """
    if isinstance(source, GeoRaster):
        raster = source
    elif isinstance(source, (str, os.PathLike)):
        raster = open_path(Path(source), axes=axes)
    else:
        raster = open_array(source, axes=axes)
    if transform is not None or crs is not None or nodata is not None:
        raster = raster.with_georeference(transform=transform, crs=crs, nodata=nodata)
    return raster.select_bands(bands)


def open_path(path: Path, *, axes: str | None = None) -> GeoRaster:
    """Open a file or store by what it is: zarr/OME-Zarr, TIFF without georeference, or GDAL."""
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    if path.is_dir():
        if any((path / m).exists() for m in _ZARR_MARKERS):
            return open_zarr(path, axes=axes)
        raise InputError(f"{path}: a folder that is not a zarr store")
    name = path.name.lower()
    if name.endswith((".ome.tif", ".ome.tiff")):
        return open_tiff(path, axes=axes)
    if name.endswith((".tif", ".tiff")) and not _is_georeferenced(path):
        return open_tiff(path, axes=axes)
    return open_gdal(path)


def _is_georeferenced(path: Path) -> bool:
    try:
        with rasterio.open(path) as ds:
            return ds.crs is not None or not ds.transform.is_identity or bool(ds.gcps[0])
    except RasterioIOError:
        return False


# -- GDAL (GeoTIFF, COG, anything rasterio opens) ------------------------------
def open_gdal(path: Path) -> GeoRaster:
    try:
        with rasterio.open(path) as ds:
            shape = (ds.height, ds.width, ds.count)
            dtypes = set(ds.dtypes)
            block = ds.block_shapes[0]
            transform, crs = ds.transform, ds.crs
            nodata = ds.nodatavals[0] if ds.nodatavals else None
            interp = list(ds.colorinterp)
            overview_factors = ds.overviews(1) if ds.count else []
    except RasterioError as exc:
        raise InputError(f"{path}: cannot open as a raster: {exc}") from exc
    if len(dtypes) != 1:
        raise InputError(f"{path}: bands of different data types ({sorted(dtypes)}) "
                         f"are not supported")
    dtype = np.dtype(dtypes.pop())
    alpha = interp.index(ColorInterp.alpha) if ColorInterp.alpha in interp else None
    rgb = None
    if all(c in interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        rgb = tuple(interp.index(c) for c in (ColorInterp.red, ColorInterp.green,
                                              ColorInterp.blue))
    overviews = []
    for i, factor in enumerate(overview_factors):
        try:
            with rasterio.open(path, overview_level=i) as ov:
                oshape, otransform, oblock = (ov.height, ov.width, ov.count), ov.transform, \
                    ov.block_shapes[0]
        except RasterioError as exc:
            raise InputError(f"{path}: cannot open overview {i}: {exc}") from exc
        src = RasterioSource(path=path, shape=oshape, dtype=dtype, overview=i, block=oblock)
        overviews.append(GeoRaster(source=src, transform=otransform, crs=crs, nodata=nodata,
                                   path=path, alpha=alpha, scale=float(factor),
                                   level_name=f"overview{i}", rgb=rgb))
    source = RasterioSource(path=path, shape=shape, dtype=dtype, block=block)
    return GeoRaster(source=source, transform=transform, crs=crs, nodata=nodata, path=path,
                     alpha=alpha, overviews=overviews, rgb=rgb)


# -- TIFF through tifffile's zarr store ----------------------------------------
class _TiffOpener:
    """Picklable ``() -> zarr array`` for one series and level of a TIFF file."""

    def __init__(self, path: Path, series: int, level: int):
        self.path, self.series, self.level = path, series, level

    def __call__(self):
        store = tifffile.imread(self.path, aszarr=True, series=self.series, level=self.level)
        return zarr.open_array(store, mode="r")


def open_tiff(path: Path, *, axes: str | None = None) -> GeoRaster:
    try:
        with tifffile.TiffFile(path) as tf:
            series = tf.series[0]
            levels = [(lvl.axes, tuple(lvl.shape), np.dtype(lvl.dtype)) for lvl in series.levels]
    except (tifffile.TiffFileError, OSError, ValueError, IndexError) as exc:
        raise InputError(f"{path}: cannot open as a TIFF: {exc}") from exc
    rasters = []
    for i, (level_axes, shape, dtype) in enumerate(levels):
        ax = _tiff_axes(level_axes, shape) if axes is None else axes
        src = AxesSource(axes=ax, path=path, opener=_TiffOpener(path, 0, i), shape_nd=shape,
                         dtype=dtype, name=f"level{i}")
        rasters.append(src)
    base = rasters[0]
    overviews = [GeoRaster(source=s, path=path, scale=base.shape[1] / s.shape[1],
                           transform=Affine.scale(base.shape[1] / s.shape[1],
                                                  base.shape[0] / s.shape[0]),
                           level_name=f"level{i + 1}")
                 for i, s in enumerate(rasters[1:])]
    return GeoRaster(source=base, path=path, overviews=overviews)


def _tiff_axes(axes: str, shape: tuple[int, ...]) -> str:
    """tifffile axes letters as ours: Y, X, S/C channels; others read at index 0."""
    out = axes.lower().replace("s", "c")
    if out.count("c") > 1:  # e.g. CYXS: keep samples as channels, read C at 0
        first = out.index("c")
        out = out[:first] + "q" + out[first + 1:]
    return out


# -- zarr and OME-Zarr -----------------------------------------------------------
def _zarr_attrs(obj) -> dict:
    return dict(obj.attrs.asdict()) if hasattr(obj.attrs, "asdict") else dict(obj.attrs)


def open_zarr(path: Path, *, axes: str | None = None) -> GeoRaster:
    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception as exc:  # zarr raises many kinds for unreadable metadata
        raise InputError(f"{path}: cannot open as zarr: {exc}") from exc
    attrs = _zarr_attrs(node)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if isinstance(node, zarr.Group) and multiscales:
        return _open_ome(path, node, multiscales[0], attrs, axes)
    if isinstance(node, zarr.Group):
        arrays = sorted(name for name, _ in node.arrays())
        pick = next((n for n in ("image", "data", "0") if n in arrays), None)
        if pick is None and len(arrays) == 1:
            pick = arrays[0]
        if pick is None:
            raise InputError(f"{path}: a zarr group without an image array "
                             f"(arrays: {arrays or 'none'}); give the array's path")
        array = node[pick]
        attrs = {**attrs, **_zarr_attrs(array)}
        name = pick
    else:
        array, name = node, ""
    ax = axes or _dimension_axes(array) or _guess_axes(array.shape, str(path))
    src = AxesSource(axes=ax, path=path, array=array, name=name)
    transform, crs, nodata = _zarr_georef(attrs, path)
    return GeoRaster(source=src, path=path, transform=transform, crs=crs, nodata=nodata)


def _dimension_axes(array) -> str | None:
    names = getattr(array.metadata, "dimension_names", None)
    if not names:
        names = _zarr_attrs(array).get("_ARRAY_DIMENSIONS")
    if not names or any(n is None for n in names):
        return None
    table = {"y": "y", "x": "x", "c": "c", "band": "c", "bands": "c", "channel": "c",
             "rows": "y", "cols": "x", "lat": "y", "lon": "x", "latitude": "y",
             "longitude": "x"}
    letters = "".join(table.get(str(n).lower(), "q") for n in names)
    return letters if "y" in letters and "x" in letters else None


def _guess_axes(shape, where: str) -> str:
    """Axes of an array without metadata: yx; yxc when the last axis is short, else cyx."""
    if len(shape) == 2:
        return "yx"
    if len(shape) == 3:
        return "yxc" if shape[-1] <= 16 or shape[0] > 16 else "cyx"
    if len(shape) > 3:
        return "q" * (len(shape) - 3) + ("yxc" if shape[-1] <= 16 else "cyx")
    raise InputError(f"{where}: a {len(shape)}-d array is not an image")


def _zarr_georef(attrs: dict, where) -> tuple[Affine | None, object, float | None]:
    transform = attrs.get("transform")
    if transform is not None:
        try:
            transform = as_affine(transform, where)
        except (TypeError, ValueError, InputError) as exc:
            raise InputError(f"{where}: bad 'transform' attribute {transform!r}") from exc
    crs = _parse_crs(attrs.get("crs"), str(where))
    nodata = attrs.get("nodata")
    return transform, crs, (None if nodata is None else float(nodata))


def _ome_axes(axes_meta, ndim: int) -> str:
    if not axes_meta:  # OME-NGFF 0.1/0.2: always tczyx
        return "tczyx"[5 - ndim:] if ndim <= 5 else "q" * (ndim - 5) + "tczyx"
    names = [a["name"] if isinstance(a, dict) else a for a in axes_meta]
    return "".join(n.lower() if n.lower() in "yxc" else "q" for n in names)


def _ome_scale_translate(dataset: dict, axes: str) -> tuple[list[float], list[float]]:
    scale = [1.0] * len(axes)
    translate = [0.0] * len(axes)
    for t in dataset.get("coordinateTransformations", []):
        if t.get("type") == "scale" and "scale" in t:
            scale = [float(v) for v in t["scale"]]
        elif t.get("type") == "translation" and "translation" in t:
            translate = [float(v) for v in t["translation"]]
    return scale, translate


def _open_ome(path: Path, group, meta: dict, attrs: dict, axes: str | None) -> GeoRaster:
    datasets = meta.get("datasets") or []
    if not datasets:
        raise InputError(f"{path}: OME-Zarr multiscales without datasets")
    level_rasters = []
    for ds in datasets:
        try:
            array = group[ds["path"]]
        except KeyError as exc:
            raise InputError(f"{path}: OME-Zarr level {ds.get('path')!r} is missing") from exc
        ax = axes or _ome_axes(meta.get("axes"), array.ndim)
        src = AxesSource(axes=ax, path=path, array=array, name=str(ds["path"]))
        s, t = _ome_scale_translate(ds, ax)
        iy, ix = ax.index("y"), ax.index("x")
        # OME coordinates are pixel centres; affine maps pixel corners
        transform = Affine(s[ix], 0.0, t[ix] - 0.5 * s[ix], 0.0, s[iy], t[iy] - 0.5 * s[iy])
        level_rasters.append((src, transform))
    base_src, base_transform = level_rasters[0]
    geo_t, crs, nodata = _zarr_georef(attrs, path)
    overviews = []
    for i, (src, transform) in enumerate(level_rasters[1:], start=1):
        factor = base_src.shape[1] / src.shape[1]
        if geo_t is not None:
            transform = geo_t @ Affine.scale(base_src.shape[1] / src.shape[1],
                                             base_src.shape[0] / src.shape[0])
        overviews.append(GeoRaster(source=src, path=path, transform=transform, crs=crs,
                                   nodata=nodata, scale=factor, level_name=str(i)))
    return GeoRaster(source=base_src, path=path, transform=geo_t or base_transform, crs=crs,
                     nodata=nodata, overviews=overviews)


# -- in-memory arrays -------------------------------------------------------------
def open_array(array, *, axes: str | None = None) -> GeoRaster:
    """numpy, dask or zarr arrays; 2-d is (y, x), 3-d is (y, x, bands) unless ``axes``."""
    if not hasattr(array, "shape") or not hasattr(array, "dtype"):
        try:
            array = np.asarray(array)
        except Exception as exc:
            raise InputError(f"cannot use {type(array).__name__} as a raster") from exc
    if array.ndim == 2:
        ax = axes or "yx"
    elif array.ndim == 3:
        ax = axes or "yxc"
    else:
        ax = axes or _guess_axes(array.shape, "in-memory raster")
    if np.dtype(array.dtype).kind not in "uifb":
        raise InputError(f"in-memory raster: unsupported data type {array.dtype}")
    if any(n == 0 for n in array.shape):
        raise InputError(f"in-memory raster: empty shape {tuple(array.shape)}")
    if np.dtype(array.dtype).kind == "b":
        array = array.astype(np.uint8)
    return GeoRaster(source=AxesSource(axes=ax, array=array))

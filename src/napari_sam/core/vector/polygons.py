"""Labels rasters to polygons: one feature per object id, holes and parts kept.

Polygons are traced in *pixel-corner* coordinates (pixel ``(row, col)`` covers
``x in [col, col + 1]``, ``y in [row, row + 1]``), where every vertex is an
integer and therefore exact in float64. Parts of one object traced in
different windows share edges exactly, so they merge without slivers; only at
the end is the affine transform applied (``x_map, y_map = T * (x, y)``).

rasterio's polygoniser takes int16/int32/uint8/uint16 but not uint32/uint64:
ids that do not fit in int32 are relabelled per window to a compact int32
range and mapped back, so ids of any size (bool, int8 .. uint64) work.

Attributes: ``id``, ``pixels`` (pixel count), ``area`` (pixels x pixel area in
map units, exact), ``perimeter`` (length of the written geometry, holes
included, map units), ``predicted_iou`` and ``stability_score`` (from an
object table when given, else empty), plus any other column of that table.
Without a CRS, map units are pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from affine import Affine
from rasterio.features import shapes
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from napari_sam.core.io.atomic import check_writable
from napari_sam.core.io.georef import as_affine
from napari_sam.core.io.labels import LabelRaster, check_label_dtype, read_labels
from napari_sam.core.io.sparse_labels import sparse_store
from napari_sam.core.io.vectors import resolve_format, write_vectors
from napari_sam.core.progress import Progress, ProgressGen, run
from napari_sam.core.tiling.window import Window
from napari_sam.errors import InputError

IDENTITY = Affine.identity()
_NATIVE = {np.dtype(t) for t in ("uint8", "uint16", "int16", "int32")}
_MAX_ID = 2**63 - 1  # ids are stored as int64 in every vector format


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Labels as an array rasterio can polygonise, plus the map back to ids.

    Returns ``(values, lookup)``: ``values`` is uint8/uint16/int16/int32 with
    0 = background; ``lookup`` is None when values are the ids themselves, else
    a uint64/int64 array with ``id = lookup[value]``.
    """
    if labels.dtype == bool:
        return labels.view(np.uint8), None
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise InputError("labels: negative label ids are not supported")
    if labels.dtype in _NATIVE:
        return labels, None
    if labels.dtype == np.int8:
        return labels.astype(np.int16), None
    if labels.size == 0 or labels.max() < 2**31:
        return labels.astype(np.int32), None

    # hash-based, O(n): codes 0..k-1 in order of appearance (background included)
    codes, uniques = pd.factorize(labels.ravel(), sort=False)
    values = (codes.astype(np.int32) + 1).reshape(labels.shape)
    values[labels == 0] = 0
    lookup = np.concatenate([np.zeros(1, labels.dtype), np.asarray(uniques, labels.dtype)])
    return values, lookup


def pixel_parts(labels: np.ndarray, *, y0: int = 0, x0: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Trace every 4-connected part of every object in a labels window.

    ``labels``: (h, w) bool or integer, 0 = background. ``y0, x0``: the
    window's offset in the raster. Returns ``(ids, parts)``: ids (K,) uint64
    and parts (K,) shapely Polygons (with their holes) in raster pixel-corner
    coordinates, one per connected part, sorted by id.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise InputError(f"labels: expected a 2-D (h, w) array, got shape {labels.shape}")
    check_label_dtype(labels.dtype)
    values, lookup = _compact(labels)
    values = np.ascontiguousarray(values)
    coords: list[tuple[float, float]] = []
    ring_sizes: list[int] = []
    ring_poly: list[int] = []
    part_values: list[float] = []
    shift = Affine.translation(x0, y0)
    for index, (geom, value) in enumerate(shapes(values, mask=values != 0, transform=shift)):
        for ring in geom["coordinates"]:
            coords.extend(ring)
            ring_sizes.append(len(ring))
            ring_poly.append(index)
        part_values.append(value)
    if not part_values:
        return np.zeros(0, np.uint64), np.empty(0, dtype=object)
    xy = np.asarray(coords, dtype=np.float64)
    rings = shapely.linearrings(xy, indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes))
    parts = shapely.polygons(rings, indices=np.asarray(ring_poly))
    ids = np.asarray(part_values, dtype=np.int64)
    ids = (lookup[ids] if lookup is not None else ids).astype(np.uint64)
    order = np.argsort(ids, kind="stable")
    return ids[order], parts[order]


def _polygonal(geom: shapely.Geometry) -> shapely.Geometry:
    """The polygons of ``geom`` as one Polygon or MultiPolygon (drops lines and points)."""
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    polys: list[shapely.Geometry] = []
    for part in shapely.get_parts(geom):
        if part.geom_type == "Polygon":
            polys.append(part)
        elif part.geom_type == "MultiPolygon":
            polys.extend(shapely.get_parts(part))
    return polys[0] if len(polys) == 1 else shapely.MultiPolygon(polys)


def repair(geoms: np.ndarray) -> np.ndarray:
    """Make every geometry valid and polygonal (pixel outlines touching at corners etc.)."""
    geoms = np.asarray(geoms, dtype=object)
    bad = ~shapely.is_valid(geoms)
    if bad.any():
        fixed = shapely.make_valid(geoms[bad], method="structure", keep_collapsed=False)
        geoms = geoms.copy()
        geoms[bad] = [_polygonal(g) for g in fixed]
    return geoms


def group_parts(ids: np.ndarray, parts: np.ndarray, *, merge: np.ndarray | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
    """Group parts by id into one valid Polygon/MultiPolygon per id.

    ``ids`` (K,) sorted, ``parts`` (K,) polygons. ``merge`` (K,) bool marks
    parts that may share edges with another part of the same id (traced in
    different windows); groups holding such parts are dissolved with a union,
    the others are simply collected (parts of one window never overlap).
    Returns ``(unique_ids, geometries)``.
    """
    if len(ids) == 0:
        return ids, parts
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, len(ids)])
    uniq = ids[starts]
    geoms = np.empty(len(uniq), dtype=object)
    single = counts == 1
    geoms[single] = parts[starts[single]]
    if not single.all():
        group = np.repeat(np.arange(len(uniq)), counts)
        take = ~single[group]
        # groups without an index in ``indices`` keep their value in ``out``
        shapely.multipolygons(parts[take], indices=group[take], out=geoms)
        if merge is not None:
            dissolve = np.unique(group[merge])
            dissolve = dissolve[counts[dissolve] > 1]
            for g in dissolve:
                s = starts[g]
                merged = shapely.union_all(parts[s:s + counts[g]])
                # drop the vertices the window edges left on straight sides
                geoms[g] = _polygonal(shapely.simplify(merged, 0.0, preserve_topology=True))
    return uniq, repair(geoms)


def to_map(geoms: np.ndarray, transform: Affine) -> np.ndarray:
    """Apply ``transform`` (pixel corner -> map) to every vertex of ``geoms``."""
    if tuple(transform) == tuple(IDENTITY):
        return geoms
    a, b, c, d, e, f = tuple(transform)[:6]

    def apply(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        return np.column_stack([a * x + b * y + c, d * x + e * y + f])

    return shapely.transform(geoms, apply)


def to_map_simplified(pixel_geoms: np.ndarray, transform: Affine,
                      tolerance: float | None) -> np.ndarray:
    """Pixel-corner geometries to map coordinates, optionally simplified (map units).

    Simplification treats touching objects together as a coverage (GEOS
    coverage simplification, one cluster of touching objects at a time): edges
    shared by touching objects are simplified once, so neighbours keep sharing
    them, with no gaps or overlaps, and every object keeps its holes and parts
    (rings are never dropped). Outlines are first
    given a vertex at every pixel corner so that shared edges match vertex for
    vertex, as the coverage algorithm requires.
    """
    if not tolerance:
        return to_map(pixel_geoms, transform)
    if tolerance < 0:
        raise InputError(f"simplify: tolerance must be >= 0, got {tolerance}")
    if len(pixel_geoms) == 0:
        return pixel_geoms
    geoms = to_map(shapely.segmentize(pixel_geoms, 1.0), transform)
    if not hasattr(shapely, "coverage_simplify"):  # GEOS < 3.12: object by object
        return repair(shapely.simplify(geoms, tolerance, preserve_topology=True))
    out = np.empty(len(geoms), dtype=object)
    for group in _touching_groups(pixel_geoms):
        out[group] = shapely.coverage_simplify(geoms[group], tolerance)
    return repair(out)


def _touching_groups(geoms: np.ndarray, batch: int = 64) -> list[np.ndarray]:
    """Indexes of ``geoms`` grouped into clusters of touching objects.

    GEOS's coverage simplification costs more than linearly in the number of
    geometries, so it runs per cluster; isolated objects go in batches of
    ``batch`` (a batch also keeps its members from crossing each other).
    """
    n = len(geoms)
    left, right = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    graph = coo_matrix((np.ones(len(left), np.int8), (left, right)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    sizes = np.bincount(component)
    alone = np.flatnonzero(sizes[component] == 1)
    groups = [alone[k:k + batch] for k in range(0, len(alone), batch)]
    clustered = np.flatnonzero(sizes[component] > 1)
    order = clustered[np.argsort(component[clustered], kind="stable")]
    bounds = np.flatnonzero(np.diff(component[order])) + 1
    groups.extend(np.split(order, bounds) if len(order) else [])
    return groups


def polygons_from_labels(labels: np.ndarray, transform: Affine = IDENTITY, *,
                         simplify: float | None = None) -> list[tuple[int, shapely.Geometry]]:
    """Polygons of every object in one labels window.

    ``labels``: (h, w) bool or integer of any width (uint32/uint64 included),
    0 = background. ``transform``: the window's affine (pixel corner -> map),
    e.g. ``tile.transform(raster.transform)``. Returns ``[(id, geometry)]``
    sorted by id; geometry is a valid Polygon (holes kept) or MultiPolygon
    (all parts of the id), in map coordinates, optionally simplified with a
    tolerance in map units (see :func:`to_map_simplified`).
    """
    ids, parts = pixel_parts(labels)
    uniq, geoms = group_parts(ids, parts)
    geoms = to_map_simplified(geoms, as_affine(transform), simplify)
    return [(int(i), g) for i, g in zip(uniq, geoms)]


class PolygonCollector:
    """Accumulate labels windows of one raster; objects crossing windows are merged.

    Feed windows with :meth:`add` in any order (each pixel once), then call
    :meth:`result` for ``(ids, geometries)`` in pixel-corner coordinates.
    """

    def __init__(self, *, height: int, width: int):
        self.height, self.width = int(height), int(width)
        self._ids: list[np.ndarray] = []
        self._parts: list[np.ndarray] = []
        self._inner: list[np.ndarray] = []

    def add(self, labels: np.ndarray, *, y0: int, x0: int) -> int:
        """Trace one window whose top-left pixel is ``(y0, x0)``; return its part count."""
        h, w = np.shape(labels)
        ids, parts = pixel_parts(labels, y0=y0, x0=x0)
        if len(ids):
            # a part touching a window edge that is not the raster's edge may
            # continue in the next window: mark it for dissolving
            xmin, ymin, xmax, ymax = shapely.bounds(parts).T
            inner = ((xmin <= x0) & (x0 > 0)) | ((ymin <= y0) & (y0 > 0))
            inner |= ((xmax >= x0 + w) & (x0 + w < self.width))
            inner |= ((ymax >= y0 + h) & (y0 + h < self.height))
            self._ids.append(ids)
            self._parts.append(parts)
            self._inner.append(inner)
        return len(ids)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(ids (N,) uint64 sorted, geometries (N,))`` in pixel-corner coordinates."""
        if not self._ids:
            return np.zeros(0, np.uint64), np.empty(0, dtype=object)
        ids = np.concatenate(self._ids)
        parts = np.concatenate(self._parts)
        inner = np.concatenate(self._inner)
        order = np.argsort(ids, kind="stable")
        return group_parts(ids[order], parts[order], merge=inner[order])


def windows(height: int, width: int, size: int) -> Iterator[Window]:
    """Row-major windows of at most ``size`` x ``size`` pixels covering the raster."""
    for y0 in range(0, height, size):
        for x0 in range(0, width, size):
            yield Window(y0, x0, min(size, height - y0), min(size, width - x0))


def objects_frame(ids: np.ndarray, pixel_geoms: np.ndarray, *, transform: Affine = IDENTITY,
                  crs: Any = None, attributes: pd.DataFrame | None = None,
                  simplify: float | None = None, shape: tuple[int, int] | None = None,
                  source: str | None = None) -> gpd.GeoDataFrame:
    """A GeoDataFrame of objects from pixel-corner geometries (see module docstring).

    ``attributes``: optional table with an ``id`` column (or index); its other
    columns (predicted_iou, stability_score, tile, ...) are joined by id.
    ``gdf.attrs`` records the raster's ``transform`` (6 numbers), ``shape``
    (h, w) and ``source`` so writers can store them and QuPath export can go
    back to pixels.
    """
    transform = as_affine(transform)
    if len(ids) and int(ids.max()) > _MAX_ID:
        raise InputError(f"{source or 'labels'}: label ids above 2**63 - 1 cannot be stored")
    pixels = np.rint(shapely.area(pixel_geoms)).astype(np.int64) if len(ids) else np.zeros(0, int)
    geoms = to_map_simplified(pixel_geoms, transform, simplify)
    pixel_area = abs(transform.a * transform.e - transform.b * transform.d)
    frame = pd.DataFrame({
        "id": ids.astype(np.int64),
        "pixels": pixels,
        "area": pixels * pixel_area,
        "perimeter": shapely.length(geoms) if len(ids) else np.zeros(0),
    })
    if attributes is not None and len(attributes):
        table = attributes.reset_index() if "id" not in attributes.columns else attributes
        if "id" not in table.columns:
            raise InputError("attributes: the object table needs an 'id' column")
        table = table.drop(columns=[c for c in ("pixels", "area", "perimeter", "geometry")
                                    if c in table.columns])
        table = table.assign(id=table["id"].astype(np.int64)).drop_duplicates("id")
        frame = frame.merge(table, on="id", how="left")
    for column in ("predicted_iou", "stability_score"):
        if column not in frame.columns:
            frame[column] = np.nan
    first = ["id", "predicted_iou", "stability_score", "area", "perimeter", "pixels"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    gdf = gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(list(geoms), crs=crs), crs=crs)
    gdf.attrs["transform"] = tuple(float(v) for v in tuple(transform)[:6])
    if shape is not None:
        gdf.attrs["shape"] = (int(shape[0]), int(shape[1]))
    if source is not None:
        gdf.attrs["source"] = str(source)
    return gdf


@dataclass(frozen=True)
class _ArraySource:
    """An in-memory labels array posing as a labels raster."""

    array: np.ndarray
    transform: Affine
    crs: Any
    path: str | None = None
    store: Any = None  # the SparseLabels behind ``array``, which knows its empty windows

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    def read(self, y0: int, x0: int, h: int, w: int) -> np.ndarray:
        return np.asarray(self.array[y0:y0 + h, x0:x0 + w])

    def is_empty(self, y0: int, x0: int, h: int, w: int) -> bool:
        """True when the window surely holds no labels (without reading it)."""
        return self.store is not None and not self.store.any_nonzero(y0, y0 + h, x0, x0 + w)


def _as_source(labels: Any, transform: Affine | None, crs: Any) -> LabelRaster | _ArraySource:
    if isinstance(labels, (str, os.PathLike)):
        source = read_labels(labels)
        if transform is not None or crs is not None:
            raise InputError(f"{labels}: transform and crs come from the file; do not pass them")
        return source
    if isinstance(labels, LabelRaster):
        return labels
    array = labels if hasattr(labels, "shape") and hasattr(labels, "dtype") else np.asarray(labels)
    if len(array.shape) != 2:
        raise InputError(f"labels: expected a 2-D (h, w) array, got shape {array.shape}")
    check_label_dtype(array.dtype)

    return _ArraySource(array, as_affine(transform), crs,
                        store=sparse_store(array))


def vectorize_labels(labels: Any, *, transform: Affine | None = None, crs: Any = None,
                     attributes: pd.DataFrame | None = None, simplify: float | None = None,
                     window: int = 2048) -> ProgressGen[gpd.GeoDataFrame]:
    """Polygons of every object of a labels raster, window by window.

    ``labels``: a path (GeoTIFF/TIFF/zarr labels, see ``core.io.labels.read_labels``),
    a ``LabelRaster``, or an (h, w) numpy/dask array with ``transform`` and
    ``crs``. Memory holds one window of pixels plus the polygons. Yields
    :class:`Progress` per window; returns the objects GeoDataFrame.
    """
    source = _as_source(labels, transform, crs)
    if window < 1:
        raise InputError(f"window must be a positive number of pixels, got {window}")
    collector = PolygonCollector(height=source.height, width=source.width)
    spans = list(windows(source.height, source.width, window))
    yield Progress("vectorize", 0, len(spans))
    is_empty = getattr(source, "is_empty", None)
    for n, win in enumerate(spans, start=1):
        # a window without labels adds no parts; parts of neighbouring windows that
        # touch it are only marked for dissolving, so skipping it changes nothing
        if is_empty is None or not is_empty(win.y0, win.x0, win.height, win.width):
            collector.add(source.read(win.y0, win.x0, win.height, win.width), y0=win.y0,
                          x0=win.x0)
        yield Progress("vectorize", n, len(spans))
    ids, geoms = collector.result()
    return objects_frame(ids, geoms, transform=source.transform, crs=source.crs,
                         attributes=attributes, simplify=simplify,
                         shape=(source.height, source.width),
                         source=str(source.path) if source.path else None)


def vectorize_to_file(labels: Any, out: str | os.PathLike, *, fmt: str | None = None,
                      simplify: float | None = None, overwrite: bool = False,
                      attributes: pd.DataFrame | None = None, transform: Affine | None = None,
                      crs: Any = None, window: int = 2048) -> ProgressGen[Path]:
    """Vectorise ``labels`` and write ``out`` (format from ``fmt`` or the extension)."""
    fmt = resolve_format(out, fmt)
    check_writable(out, overwrite)  # fail before the work, not after
    gdf = yield from vectorize_labels(labels, transform=transform, crs=crs,
                                      attributes=attributes, simplify=simplify, window=window)
    return write_vectors(gdf, out, fmt=fmt, overwrite=overwrite)


def vectorize(labels: Any, out: str | os.PathLike, *, fmt: str | None = None,
              simplify: float | None = None, overwrite: bool = False,
              attributes: pd.DataFrame | None = None, transform: Affine | None = None,
              crs: Any = None, window: int = 2048) -> Path:
    """Script API of ``napari-sam vectorize``: polygons from a labels raster into ``out``.

    Formats: gpkg (layer "objects"), geojson, parquet, shp, qupath (pixel
    coordinates). Returns the written path.
    """
    return run(vectorize_to_file(labels, out, fmt=fmt, simplify=simplify, overwrite=overwrite,
                                 attributes=attributes, transform=transform, crs=crs,
                                 window=window))

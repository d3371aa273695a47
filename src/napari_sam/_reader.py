"""napari reader: rasters (GeoTIFF/COG, TIFF, zarr, OME-Zarr) and polygon files.

Where layers land (one rule for every layer this plugin makes)
--------------------------------------------------------------
napari world coordinates are the file's map coordinates in (y, x) order, with
y negated when the raster's transform points y up (a negative determinant, as
in every north-up GIS raster), so that images show right side up::

    world = (s * y_map, x_map),   s = -1 if det(transform) < 0 else +1

Rasters keep their pixels as layer data (lazy, multiscale where the file has
levels) and get the layer ``affine`` that maps a pixel index to the world
position of its *centre* (napari puts pixel centres on integer data
coordinates, GIS transforms map pixel *corners*, hence a half-pixel shift).
A raster without a CRS has the identity transform, so its world coordinates
are plain pixel-corner coordinates.

Polygon files open as a Shapes layer (and points as a Points layer):

- when the file records the raster it was made from (``napari-sam vectorize``
  and ``segment`` store its transform), vertices are that raster's pixel
  coordinates and the layer gets the raster's affine: exact alignment, and
  prompts taken from the shapes are raster pixels;
- otherwise vertices are world coordinates (``s = -1`` when the file has a
  CRS, +1 for pixel files such as QuPath's), stored relative to an origin
  that the layer affine adds back (napari keeps vertices in float32): they
  line up with any raster of the same CRS opened here.

Holes cannot be drawn by napari's Shapes, so every ring is its own shape with
features ``id``, ``part`` and ``ring`` ("exterior" or "hole"); the writer
puts them back together. Layer metadata ``napari_sam`` holds
``{"transform": [a..f] or None, "crs": WKT or None, "shape": [h, w],
"path": file}`` for the widgets and writers.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam.core.io.georef import as_affine, map_to_pixel

GEO_KEY = "napari_sam"
RASTER_SUFFIXES = (".tif", ".tiff", ".zarr")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".parquet", ".shp")
_LABEL_DTYPES = {np.dtype(t) for t in ("uint32", "int32", "uint64", "int64")}
_RING_COLORS = {"exterior": "yellow", "hole": "cyan"}

LayerData = tuple  # (data, kwargs, layer_type)


# -- georeference <-> napari -------------------------------------------------------
def y_sign(transform: Any) -> float:
    """-1.0 when ``transform`` points y up (det < 0, north-up rasters), else +1.0."""
    t = as_affine(transform)
    return -1.0 if t.a * t.e - t.b * t.d < 0 else 1.0


def layer_affine(transform: Any) -> np.ndarray:
    """(3, 3) napari affine (row, col order) for a raster with ``transform``.

    Maps a pixel index (row, col) to the world position of the pixel centre,
    ``world = (s * y_map, x_map)`` of ``transform * (col + 0.5, row + 0.5)``.
    """
    t = as_affine(transform)
    s = y_sign(t)
    return np.array([
        [s * t.e, s * t.d, s * (t.f + 0.5 * (t.d + t.e))],
        [t.b, t.a, t.c + 0.5 * (t.a + t.b)],
        [0.0, 0.0, 1.0],
    ])


def map_to_pixels(xy: np.ndarray, transform: Any) -> np.ndarray:
    """(N, 2) map x, y -> (N, 2) napari data (row, col) of a raster with ``transform``."""
    return map_to_pixel(xy, as_affine(transform))[:, ::-1]


def map_to_world(xy: np.ndarray, sign: float) -> np.ndarray:
    """(N, 2) map x, y -> (N, 2) napari world (s * y, x)."""
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return np.column_stack([sign * xy[:, 1], xy[:, 0]])


def geo_metadata(transform: Any, crs: Any, shape: tuple[int, int] | None,
                 path: str | os.PathLike | None) -> dict[str, Any]:
    """The ``layer.metadata`` of a layer made here (see the module docstring)."""
    wkt = None
    if crs is not None:
        from rasterio.crs import CRS

        wkt = CRS.from_user_input(crs).to_wkt()
    return {GEO_KEY: {
        "transform": None if transform is None else [float(v) for v in tuple(transform)[:6]],
        "crs": wkt,
        "shape": None if shape is None else [int(shape[0]), int(shape[1])],
        "path": None if path is None else str(path),
    }}


# -- entry point -------------------------------------------------------------------
def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 reader: a function for one raster or polygon file (or zarr folder), else None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    p = Path(str(path).rstrip("/\\"))
    suffix = p.suffix.lower()
    if suffix in VECTOR_SUFFIXES and p.is_file():
        return read_vector_layers
    if suffix in RASTER_SUFFIXES or (p.is_dir() and _is_zarr_dir(p)):
        return read_raster_layers
    return None


def _is_zarr_dir(p: Path) -> bool:
    return any((p / name).exists() for name in ("zarr.json", ".zarray", ".zgroup"))


def _one(path: Any) -> Path:
    if isinstance(path, (list, tuple)):
        path = path[0]
    return Path(str(path).rstrip("/\\"))


# -- rasters -----------------------------------------------------------------------
def _is_labels(path: Path, raster: Any) -> bool:
    """Single-band rasters written as labels, or with 32/64-bit integer ids."""
    if raster.count != 1:
        return False
    if np.dtype(raster.dtype) in _LABEL_DTYPES:
        return True
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            import rasterio
            from rasterio.errors import NotGeoreferencedWarning

            from napari_sam.core.io.labels import LABELS_TAG

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                with rasterio.open(path) as ds:
                    return ds.tags().get(LABELS_TAG) == "1"
        import zarr

        attrs = dict(zarr.open(str(path), mode="r").attrs)
        return "image-label" in attrs.get("ome", attrs) or \
            (attrs.get(GEO_KEY) or {}).get("kind") == "labels"
    except Exception:  # noqa: BLE001 - a hint only; fall back to showing an image
        return False


def _contrast_limits(raster: Any) -> list[float] | None:
    """Display range from the coarsest level (a strided sample), ignoring nodata/NaN."""
    dtype = np.dtype(raster.dtype)
    if dtype == np.uint8:
        return [0.0, 255.0]
    if dtype.kind == "b":
        return [0.0, 1.0]
    coarse = raster.levels[-1]
    step = max(1, int(np.ceil(max(coarse.height, coarse.width) / 512)))
    sample = np.asarray(coarse.data[::step, ::step].compute(), dtype=float)
    if raster.nodata is not None:
        sample[sample == raster.nodata] = np.nan
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        return None
    lo, hi = np.percentile(finite, [0.5, 99.5])
    return [float(lo), float(hi if hi > lo else lo + 1)]


def raster_layer_data(path: str | os.PathLike) -> list[LayerData]:
    """Layer data for a raster file: Image (RGB, single band or one layer per band) or Labels."""
    from napari_sam.core.io.raster_open import open_raster

    p = _one(path)
    raster = open_raster(p)
    levels = raster.levels
    arrays = [lvl.data for lvl in levels]
    meta = geo_metadata(raster.transform, raster.crs, (raster.height, raster.width), p)
    kwargs: dict[str, Any] = {"name": _stem(p), "affine": layer_affine(raster.transform),
                              "metadata": meta}
    multiscale = len(arrays) > 1
    if _is_labels(p, raster):
        data = [a[..., 0] for a in arrays]
        kwargs["multiscale"] = multiscale
        return [(data if multiscale else data[0], kwargs, "labels")]
    kwargs["multiscale"] = multiscale
    count = raster.count
    if count in (3, 4) and np.dtype(raster.dtype) == np.uint8:
        kwargs["rgb"] = True
        return [(arrays if multiscale else arrays[0], kwargs, "image")]
    limits = _contrast_limits(raster)
    if limits is not None:
        kwargs["contrast_limits"] = limits
    if count == 1:
        data = [a[..., 0] for a in arrays]
        return [(data if multiscale else data[0], kwargs, "image")]
    kwargs["rgb"] = False
    kwargs["channel_axis"] = 2
    kwargs["name"] = [f"{_stem(p)} band {b}" for b in range(1, count + 1)]
    return [(arrays if multiscale else arrays[0], kwargs, "image")]


def read_raster_layers(path: str | list[str]) -> list[LayerData]:
    return raster_layer_data(_one(path))


def _stem(p: Path) -> str:
    name = p.name
    for suffix in (".ome.zarr", ".ome.tif", ".ome.tiff"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return p.stem


# -- polygons and points --------------------------------------------------------------
def _rings(geom: Any) -> list[tuple[int, str, np.ndarray]]:
    """(part, "exterior"/"hole", (N, 2) x, y without the closing vertex) of a polygon(s)."""
    import shapely

    out = []
    for part, poly in enumerate(shapely.get_parts(geom)):
        out.append((part, "exterior", np.asarray(poly.exterior.coords)[:-1, :2]))
        for ring in poly.interiors:
            out.append((part, "hole", np.asarray(ring.coords)[:-1, :2]))
    return out


def _feature_values(row: dict[str, Any]) -> dict[str, Any]:
    """Scalar attributes only (napari features are a flat table)."""
    return {k: v for k, v in row.items() if np.isscalar(v) or v is None}


def vector_layer_data(path: str | os.PathLike) -> list[LayerData]:
    """Layer data for a polygon file: one Shapes layer (and a Points layer for points)."""
    import pandas as pd

    from napari_sam.core.io.vectors import read_vectors

    p = _one(path)
    gdf = read_vectors(p)
    transform = gdf.attrs.get("transform")
    if transform is not None and as_affine(transform, p).determinant == 0:
        transform = None
    if transform is not None:
        affine = layer_affine(transform)

        def place(xy: np.ndarray) -> np.ndarray:
            return map_to_pixels(xy, transform)
    else:
        # napari keeps vertices as float32: store them relative to an origin
        # (kept in the float64 affine) so map coordinates keep their precision
        sign = -1.0 if gdf.crs is not None else 1.0
        origin = np.zeros(2)
        if len(gdf) and not gdf.geometry.is_empty.all():
            minx, miny, maxx, maxy = gdf.total_bounds
            origin = np.floor(map_to_world([[minx, miny if sign > 0 else maxy]], sign)[0])
        affine = np.eye(3)
        affine[:2, 2] = origin

        def place(xy: np.ndarray) -> np.ndarray:
            return map_to_world(xy, sign) - origin

    meta = geo_metadata(transform, gdf.crs, gdf.attrs.get("shape"),
                        gdf.attrs.get("source") or None)
    meta[GEO_KEY]["vector_path"] = str(p)
    rows = gdf.drop(columns=gdf.geometry.name).to_dict("records")
    shapes, types, feats = [], [], []
    points, point_feats = [], []
    for index, (geom, row) in enumerate(zip(gdf.geometry, rows)):
        if geom is None or geom.is_empty:
            continue
        values = _feature_values(row)
        values.setdefault("id", index + 1)
        kind = geom.geom_type
        if kind in ("Polygon", "MultiPolygon"):
            for part, ring, xy in _rings(geom):
                shapes.append(place(xy))
                types.append("polygon")
                feats.append({**values, "part": part, "ring": ring})
        elif kind in ("LineString", "MultiLineString"):
            import shapely

            for part, line in enumerate(shapely.get_parts(geom)):
                shapes.append(place(np.asarray(line.coords)[:, :2]))
                types.append("path")
                feats.append({**values, "part": part, "ring": "line"})
        elif kind in ("Point", "MultiPoint"):
            import shapely

            for pt in shapely.get_parts(geom):
                points.append(place(np.asarray(pt.coords)[:, :2])[0])
                point_feats.append(values)
    layers: list[LayerData] = []
    name = _stem(p)
    if shapes or not points:
        features = pd.DataFrame(feats)
        colors = [_RING_COLORS.get(f["ring"], "yellow") for f in feats]
        layers.append((shapes, {
            "name": name, "shape_type": types, "affine": affine, "metadata": meta,
            "features": features, "edge_color": colors or "yellow",
            "face_color": "transparent", "edge_width": _edge_width(shapes, transform),
            "feature_defaults": _defaults(features),
        }, "shapes"))
    if points:
        layers.append((np.asarray(points), {
            "name": f"{name} points", "affine": affine, "metadata": meta,
            "features": pd.DataFrame(point_feats), "size": _edge_width(
                [np.asarray(points)], transform) * 8,
        }, "points"))
    return layers


def _defaults(features: Any) -> dict[str, Any]:
    """Values for shapes drawn later: id -1 marks them as new objects for the writer."""
    defaults: dict[str, Any] = {}
    for column in features.columns:
        kind = features[column].dtype.kind
        defaults[column] = np.nan if kind == "f" else ("" if kind == "O" else 0)
    defaults.update({"id": -1, "part": 0, "ring": "exterior"})
    return defaults


def _edge_width(shapes: list[np.ndarray], transform: Any) -> float:
    """About one raster pixel, or a thousandth of the extent for world coordinates."""
    if transform is not None or not shapes:
        return 1.0
    allxy = np.concatenate([np.asarray(s).reshape(-1, 2) for s in shapes])
    extent = float(np.ptp(allxy, axis=0).max()) if len(allxy) else 0.0
    return max(extent / 1000.0, 1e-9) if extent else 1.0


def read_vector_layers(path: str | list[str]) -> list[LayerData]:
    return vector_layer_data(_one(path))

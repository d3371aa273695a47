"""napari writers: Labels layer -> GeoTIFF/zarr, Shapes layer -> GeoPackage/GeoJSON.

Georeference comes from the layer's ``metadata["napari_sam"]`` (what the reader
and the widgets store: ``transform`` a..f and ``crs`` WKT); then layer data
are raster pixels (see :mod:`napari_sam._reader` for the placement rule).
A layer without it is written from its world coordinates through the inverse
of that rule (``y_map = s * world_y``, ``s = -1`` only when a CRS is given),
and without a CRS; a Labels layer whose data-to-world transform is the
identity is written without any georeference (plain pixels).

Shapes that the reader split into rings (features ``id``, ``part``, ``ring``)
are put back together: holes go into the exterior of the same id and part,
parts of one id become one MultiPolygon; shapes drawn since (the reader sets
the default id to -1) become new objects with fresh ids. Other shapes are one feature each;
rectangles and ellipses become polygons, paths and lines become lines.

napari asks before replacing a file in its save dialog, so these writers
replace an existing file (still atomically: complete or untouched).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from affine import Affine

from napari_sam._reader import GEO_KEY
from napari_sam.core.io.georef import as_affine
from napari_sam.errors import InputError

_ELLIPSE_VERTICES = 64


def _georeference(attributes: dict[str, Any]) -> tuple[Any, Any]:
    """(transform or None, crs or None) from a layer's metadata."""
    meta = dict(attributes.get("metadata") or {})
    geo = dict(meta.get(GEO_KEY) or {})
    transform = geo.get("transform", meta.get("transform"))
    crs = geo.get("crs", meta.get("crs"))
    if transform is not None:
        transform = as_affine(transform, "layer metadata")
        if transform.determinant == 0:
            transform = None
    return transform, crs or None


def data_to_world(attributes: dict[str, Any]) -> np.ndarray:
    """(3, 3) matrix of a 2D layer's data (row, col) -> world, as napari composes it."""
    from napari.utils.transforms import Affine as NapariAffine

    given = {k: attributes[k] for k in ("scale", "translate", "rotate", "shear")
             if attributes.get(k) is not None}
    physical = NapariAffine(ndim=2, **given)
    affine = attributes.get("affine")
    if affine is None:
        return np.asarray(physical.affine_matrix, dtype=float)
    matrix = getattr(affine, "affine_matrix", affine)
    full = NapariAffine(affine_matrix=np.asarray(matrix, dtype=float)).compose(physical)
    return np.asarray(full.affine_matrix, dtype=float)


def _transform_from_layer(attributes: dict[str, Any], crs: Any) -> Affine | None:
    """The raster transform (pixel corner -> map) implied by a layer's world placement."""
    m = data_to_world(attributes)
    if m.shape != (3, 3):
        raise InputError("only 2D layers can be written as rasters or polygons")
    if np.allclose(m, np.eye(3)) and crs is None:
        return None
    s = -1.0 if crs is not None else 1.0
    # map x = world col; map y = s * world row; data index = pixel corner - 0.5
    e, d, f0 = s * m[0, 0], s * m[0, 1], s * m[0, 2]
    b, a, c0 = m[1, 0], m[1, 1], m[1, 2]
    return Affine(a, b, c0 - 0.5 * (a + b), d, e, f0 - 0.5 * (d + e))


def write_labels(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer for one Labels layer: ``.tif``/``.tiff`` GeoTIFF or ``.zarr``."""
    from napari_sam.core.io.labels import labels_format
    from napari_sam.core.io.labels import write_labels as write_raster

    labels_format(path)  # .tif/.tiff/.zarr, else InputError before any work
    level0 = data[0] if isinstance(data, (list, tuple)) else data
    if len(level0.shape) != 2:
        raise InputError(f"{path}: only 2D labels can be written, got shape {level0.shape}")
    transform, crs = _georeference(attributes)
    if transform is None:
        transform = _transform_from_layer(attributes, crs)
    dtype = "uint64" if np.dtype(level0.dtype).itemsize > 4 else "uint32"
    out = write_raster(path, level0, transform=transform, crs=crs, overwrite=True, dtype=dtype)
    return [str(out)]


def _ellipse(corners: np.ndarray) -> np.ndarray:
    """Polygon vertices of napari's ellipse given by its 4 bounding-box corners (data coords)."""
    centre = corners.mean(axis=0)
    u = (corners[1] - corners[0]) / 2.0
    v = (corners[3] - corners[0]) / 2.0
    t = np.linspace(0.0, 2.0 * np.pi, _ELLIPSE_VERTICES, endpoint=False)
    return centre + np.outer(np.cos(t), u) + np.outer(np.sin(t), v)


def _to_map(points: np.ndarray, transform: Affine | None, matrix: np.ndarray,
            sign: float) -> np.ndarray:
    """(N, 2) data (row, col) -> (N, 2) map x, y."""
    points = np.asarray(points, dtype=float)[:, -2:]
    if transform is not None:
        rows, cols = points[:, 0] + 0.5, points[:, 1] + 0.5
        t = transform
        return np.column_stack([t.a * cols + t.b * rows + t.c, t.d * cols + t.e * rows + t.f])
    homog = np.c_[points, np.ones(len(points))]
    world = (matrix @ homog.T).T
    return np.column_stack([world[:, 1], sign * world[:, 0]])


def shapes_frame(data: list[np.ndarray], attributes: dict[str, Any]) -> Any:
    """A GeoDataFrame of a Shapes layer's shapes, in map coordinates (see module docstring)."""
    import geopandas as gpd
    import pandas as pd
    import shapely

    transform, crs = _georeference(attributes)
    matrix = data_to_world(attributes) if transform is None else np.eye(3)
    sign = -1.0 if crs is not None else 1.0
    types = attributes.get("shape_type") or ["polygon"] * len(data)
    if isinstance(types, str):
        types = [types] * len(data)
    features = attributes.get("features")
    features = pd.DataFrame(features) if features is not None else pd.DataFrame()
    if len(features) != len(data):
        features = pd.DataFrame(index=range(len(data)))
    features = features.reset_index(drop=True)
    geoms = []
    for verts, kind in zip(data, types):
        verts = np.asarray(verts, dtype=float)
        if kind == "ellipse":
            verts = _ellipse(verts[:, -2:])
        xy = _to_map(verts, transform, matrix, sign)
        if kind in ("path", "line"):
            geoms.append(shapely.LineString(xy))
        elif len(xy) >= 3:
            geoms.append(shapely.make_valid(shapely.Polygon(xy)))
        else:
            geoms.append(shapely.LineString(xy))
    rings = {"id", "part", "ring"} <= set(features.columns)
    if rings:
        frame = _rebuild(features, geoms)
    else:
        frame = features.assign(geometry=geoms)
    gdf = gpd.GeoDataFrame(frame, geometry="geometry", crs=crs)
    if transform is not None:
        gdf.attrs["transform"] = tuple(tuple(transform)[:6])
        geo = dict((attributes.get("metadata") or {}).get(GEO_KEY) or {})
        if geo.get("shape"):
            gdf.attrs["shape"] = tuple(geo["shape"])
        if geo.get("path"):
            gdf.attrs["source"] = str(geo["path"])
    return gdf


def _rebuild(features: Any, geoms: list[Any]) -> Any:
    """Rings split by the reader -> one (Multi)Polygon per id, holes inside their exterior."""
    import pandas as pd
    import shapely

    records = []
    keep = [c for c in features.columns if c not in ("part", "ring")]
    frame = features.assign(_geom=geoms, _order=np.arange(len(geoms)))
    # shapes drawn in napari get the default id (-1): each is an object of its own
    ids = pd.to_numeric(frame["id"], errors="coerce")
    new = ids.isna() | (ids < 0)
    if new.any():
        start = int(ids[~new].max()) + 1 if (~new).any() else 1
        frame.loc[new, "id"] = np.arange(start, start + int(new.sum()))
        frame.loc[new, "part"] = 0
        frame.loc[new, "ring"] = "exterior"
    for _ident, group in frame.groupby("id", sort=False):
        polys = []
        lines = []
        for _part, rings in group.groupby("part", sort=True):
            outer = rings[rings["ring"] == "exterior"]["_geom"].tolist()
            holes = rings[rings["ring"] == "hole"]["_geom"].tolist()
            lines += rings[~rings["ring"].isin(["exterior", "hole"])]["_geom"].tolist()
            for shell in outer:
                inside = [h for h in holes if shell.contains(h.representative_point())]
                polys.append(shapely.difference(shell, shapely.union_all(inside))
                             if inside else shell)
        parts = [g for p in polys for g in shapely.get_parts(p) if g.geom_type == "Polygon"]
        if parts:
            geom = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
        elif lines:
            geom = lines[0] if len(lines) == 1 else shapely.MultiLineString(lines)
        else:
            continue
        row = group.iloc[0][keep].to_dict()
        row["geometry"] = geom
        row["_order"] = group["_order"].min()
        records.append(row)
    out = pd.DataFrame.from_records(records) if records else pd.DataFrame(
        columns=[*keep, "geometry", "_order"])
    return out.sort_values("_order").drop(columns="_order").reset_index(drop=True)


def write_shapes(path: str, data: Any, attributes: dict[str, Any]) -> list[str]:
    """npe2 writer for one Shapes layer: ``.gpkg`` (layer "objects") or ``.geojson``."""
    from napari_sam.core.io.vectors import write_vectors

    suffix = Path(path).suffix.lower()
    if suffix not in (".gpkg", ".geojson"):
        raise InputError(f"{path}: Shapes layers are written as .gpkg or .geojson")
    gdf = shapes_frame(list(data), attributes)
    out = write_vectors(gdf, path, overwrite=True)
    return [str(out)]



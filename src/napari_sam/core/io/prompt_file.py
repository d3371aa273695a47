"""Prompt files for ``napari-sam prompt``: points and boxes grouped into objects.

Formats:

- GeoPackage / GeoJSON (any OGR vector file): Point features are points,
  Polygon features are boxes (their bounding box); MultiPoint features give
  several points of one object.
- CSV: a row is a point (columns ``x``, ``y``) or a box (columns ``xmin``,
  ``ymin``, ``xmax``, ``ymax``); a ``wkt`` column with a WKT geometry works too.

Columns: ``positive`` (boolean: true/false, 1/0, yes/no; default true) marks
points as foreground or background; ``object`` groups features into one
object (its points and at most one box). Features without an ``object``
value are each their own object. ``plane`` (an integer, optional): the plane
of a stack the object is prompted on, along the axis ``prompt --propagate``
follows (one value per object). Objects are numbered 1.. in the order they
first appear in the file; these numbers are the label ids.

Coordinates are map coordinates when the raster has a CRS (a vector file in
another CRS is reprojected; a GeoJSON that claims WGS84 but holds values
outside longitude/latitude range is taken to be in the raster's CRS), else
raster pixels (``x`` column, ``y`` row; pixel centres at integers).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from napari_sam.core.io.georef import box_to_pixel, map_to_pixel
from napari_sam.core.io.vectors import read_vectors
from napari_sam.errors import InputError

_TRUE = {"1", "true", "t", "yes", "y", "positive", "pos"}
_FALSE = {"0", "false", "f", "no", "n", "negative", "neg"}


@dataclass(frozen=True)
class ObjectPrompt:
    """One object's prompt in raster pixels: points (N, 2) XY, labels (N,) 1/0, box XYXY or
    None; ``plane``: its stack plane from a ``plane`` column (None without)."""

    id: int
    key: str
    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    plane: int | None = None


def _parse_positive(value, where: str) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 1
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer, float, np.floating)):
        if value in (0, 1):
            return int(value)
    text = str(value).strip().lower()
    if text in _TRUE or text == "":
        return 1
    if text in _FALSE:
        return 0
    raise InputError(f"{where}: 'positive' must be true or false, got {value!r}")


def _parse_plane(value, where: str) -> int | None:
    if _missing(value):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not number.is_integer() or number < 0:
        raise InputError(f"{where}: 'plane' must be a plane number (0, 1, ...), got {value!r}")
    return int(number)


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return str(value).strip() == "" or str(value).lower() in ("nan", "none")


def _read_table(path: Path, raster):
    """A GeoDataFrame of the prompts with geometry in the raster's frame (map or pixel)."""
    if path.suffix.lower() == ".csv":
        try:
            df = pd.read_csv(path)
        except Exception as exc:  # pandas raises several kinds
            raise InputError(f"{path}: not a readable CSV file ({exc})") from exc
        cols = {c.lower(): c for c in df.columns}
        geoms = []
        for i, row in df.iterrows():
            get = {k: row[c] for k, c in cols.items()}
            if "wkt" in cols and not _missing(get["wkt"]):
                try:
                    geoms.append(shapely.from_wkt(str(get["wkt"])))
                except Exception as exc:
                    raise InputError(f"{path}: row {i + 2}: bad WKT ({exc})") from exc
            elif all(k in cols and not _missing(get[k]) for k in ("xmin", "ymin", "xmax", "ymax")):
                geoms.append(shapely.box(float(get["xmin"]), float(get["ymin"]),
                                         float(get["xmax"]), float(get["ymax"])))
            elif all(k in cols and not _missing(get[k]) for k in ("x", "y")):
                geoms.append(shapely.Point(float(get["x"]), float(get["y"])))
            else:
                raise InputError(f"{path}: row {i + 2}: needs x,y (a point), xmin,ymin,xmax,ymax "
                                 f"(a box) or wkt")
        gdf = gpd.GeoDataFrame(df.rename(columns={c: c.lower() for c in df.columns}),
                               geometry=geoms, crs=None)
        return gdf

    gdf = read_vectors(path)
    gdf = gdf.rename(columns={c: c.lower() for c in gdf.columns if c != gdf.geometry.name})
    if raster.crs is not None and gdf.crs is not None and len(gdf):
        xmin, ymin, xmax, ymax = gdf.total_bounds
        claims_lonlat = gdf.crs.to_epsg() == 4326
        if claims_lonlat and (abs(xmin) > 180 or abs(xmax) > 180 or abs(ymin) > 90
                              or abs(ymax) > 90):
            gdf = gdf.set_crs(raster.crs, allow_override=True)
        elif not gdf.crs.equals(raster.crs):
            gdf = gdf.to_crs(raster.crs)
    return gdf


def read_prompts(path: str | os.PathLike, raster) -> list[ObjectPrompt]:
    """Objects' prompts from ``path``, converted to ``raster``'s pixels."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    gdf = _read_table(path, raster)
    if len(gdf) == 0:
        raise InputError(f"{path}: no prompts in the file")
    to_map = raster.crs is not None
    groups: dict[str, dict] = {}
    order: list[str] = []
    for i, (_, row) in enumerate(gdf.iterrows()):
        geom = row.geometry
        where = f"{path}: feature {i + 1}"
        if geom is None or geom.is_empty:
            raise InputError(f"{where}: no geometry")
        obj = row.get("object") if "object" in gdf.columns else None
        key = f"#{i}" if _missing(obj) else f"object {obj}"
        if key not in groups:
            groups[key] = {"points": [], "labels": [], "box": None, "plane": None}
            order.append(key)
        g = groups[key]
        plane = _parse_plane(row.get("plane") if "plane" in gdf.columns else None, where)
        if plane is not None:
            if g["plane"] is not None and g["plane"] != plane:
                raise InputError(f"{where}: {key} is on plane {g['plane']} and on plane {plane}"
                                 f"; prompt an object on one plane")
            g["plane"] = plane
        kind = geom.geom_type
        if kind in ("Point", "MultiPoint"):
            xy = np.array([(p.x, p.y) for p in getattr(geom, "geoms", [geom])], dtype=np.float64)
            xy = map_to_pixel(xy, raster.transform) if to_map else xy
            label = _parse_positive(row.get("positive") if "positive" in gdf.columns else None,
                                    where)
            g["points"].extend(xy.tolist())
            g["labels"].extend([label] * len(xy))
        elif kind in ("Polygon", "MultiPolygon", "LineString"):
            if g["box"] is not None:
                raise InputError(f"{where}: {key} has more than one box")
            bounds = np.asarray(geom.bounds, dtype=np.float64)
            g["box"] = box_to_pixel(bounds, raster.transform) if to_map else bounds
        else:
            raise InputError(f"{where}: {kind} is neither a point nor a box")
    out = []
    for n, key in enumerate(order, start=1):
        g = groups[key]
        pts = np.asarray(g["points"], dtype=np.float64).reshape(-1, 2) if g["points"] else None
        lbl = np.asarray(g["labels"], dtype=np.int64) if g["points"] else None
        if g["box"] is None and (lbl is None or not lbl.any()):
            raise InputError(f"{path}: {key} has only negative points")
        out.append(ObjectPrompt(id=n, key=key, points=pts, labels=lbl, box=g["box"],
                                plane=g["plane"]))
    return out

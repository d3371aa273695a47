"""Polygon files: GeoPackage, GeoJSON, GeoParquet, Shapefile (with CRS) and QuPath GeoJSON.

Every writer is atomic (a temporary sibling, then rename) and keeps an
existing file unless ``overwrite``. GIS formats go through geopandas with
pyogrio (GeoParquet through pyarrow) and carry the CRS: GeoPackage in its
spatial reference table (layer ``objects``), GeoJSON as a ``crs`` member
(GDAL's convention; coordinates stay in the raster's CRS, not reprojected to
WGS 84), GeoParquet in its ``geo`` metadata, Shapefile in a ``.prj``.

Georeference of the source raster: when ``gdf.attrs`` holds ``transform``
(6 numbers a..f, pixel corner -> map) and ``shape`` (h, w), GeoPackage stores
them as layer metadata items ``NAPARI_SAM_TRANSFORM`` / ``NAPARI_SAM_SHAPE`` /
``NAPARI_SAM_SOURCE``, GeoJSON as a foreign member ``"napari_sam"`` of the
FeatureCollection. :func:`read_vectors` restores them into ``gdf.attrs`` so a
viewer can place polygons in the raster's pixel grid.

QuPath GeoJSON (``fmt="qupath"``): a FeatureCollection in *pixel*
coordinates, origin at the top-left corner of the full-resolution image, x to
the right, y down (pixel (row, col) spans [col, col+1] x [row, row+1]); each
feature has a UUID ``id`` and ``properties`` with ``objectType``
("detection" or "annotation"), ``name``, ``isLocked``, optional
``classification`` ``{"name", "color": [r, g, b]}`` and numeric
``measurements`` (every numeric column but id, area and perimeter, which
QuPath measures itself). This is what QuPath's *File > Import objects from file*
reads and what it exports itself.

Shapefile field names are limited to 10 characters: ``predicted_iou`` and
``stability_score`` are written as ``pred_iou`` and ``stability`` and read back
under their full names.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyogrio
import shapely

from napari_sam.core.io.atomic import atomic_path, check_writable
from napari_sam.core.io.georef import apply_affine, as_affine
from napari_sam.errors import InputError

FORMATS = ("gpkg", "geojson", "parquet", "shp", "qupath")
LAYER = "objects"
META_KEY = "napari_sam"
_SUFFIX_FORMAT = {".gpkg": "gpkg", ".geojson": "geojson", ".json": "geojson",
                  ".parquet": "parquet", ".geoparquet": "parquet", ".shp": "shp"}
_SHP_RENAME = {"predicted_iou": "pred_iou", "stability_score": "stability"}
_SHP_SIDECARS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_QUPATH_TYPES = ("detection", "annotation")
_QUPATH_SKIP = ("id", "area", "perimeter")
_META_ITEMS = {"transform": "NAPARI_SAM_TRANSFORM", "shape": "NAPARI_SAM_SHAPE",
               "source": "NAPARI_SAM_SOURCE"}


def resolve_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format: ``fmt`` if given (checked against the extension), else from it."""
    suffix = Path(path).suffix.lower()
    if fmt is None:
        if suffix not in _SUFFIX_FORMAT:
            raise InputError(f"{path}: cannot tell the vector format from the extension "
                             f"(use .gpkg, .geojson, .parquet, .shp, or --format)")
        return _SUFFIX_FORMAT[suffix]
    fmt = fmt.lower().lstrip(".")
    fmt = {"geopackage": "gpkg", "json": "geojson", "geoparquet": "parquet",
           "shapefile": "shp"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise InputError(f"{path}: unknown vector format {fmt!r} (one of {', '.join(FORMATS)})")
    expected = {"qupath": (".geojson", ".json")}.get(
        fmt, tuple(s for s, f in _SUFFIX_FORMAT.items() if f == fmt))
    if suffix not in expected:
        raise InputError(f"{path}: format {fmt} needs the extension {' or '.join(expected)}")
    return fmt


def _metadata(gdf: gpd.GeoDataFrame) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if gdf.attrs.get("transform") is not None:
        meta["transform"] = [float(v) for v in gdf.attrs["transform"]][:6]
    if gdf.attrs.get("shape") is not None:
        meta["shape"] = [int(v) for v in gdf.attrs["shape"]]
    if gdf.attrs.get("source"):
        meta["source"] = str(gdf.attrs["source"])
    return meta


def write_vectors(gdf: gpd.GeoDataFrame, path: str | os.PathLike, *, fmt: str | None = None,
                  overwrite: bool = False, transform: Any = None,
                  object_type: str = "detection", classification: str | None = None) -> Path:
    """Write ``gdf`` to ``path`` atomically; return the path.

    ``fmt``: gpkg, geojson, parquet, shp or qupath (default: from the
    extension). For qupath, ``transform`` (pixel corner -> map; default
    ``gdf.attrs["transform"]``) brings map coordinates back to pixels,
    ``object_type`` is "detection" or "annotation" and ``classification`` an
    optional class name.
    """
    path = Path(path)
    fmt = resolve_format(path, fmt)
    check_writable(path, overwrite)
    if fmt == "qupath":
        return _write_qupath(gdf, path, overwrite=overwrite, transform=transform,
                             object_type=object_type, classification=classification)
    if fmt == "shp":
        return _write_shapefile(gdf, path, overwrite=overwrite)

    meta = _metadata(gdf)
    with atomic_path(path, overwrite) as tmp:
        if fmt == "parquet":
            gdf.to_parquet(tmp, index=False)
        elif fmt == "gpkg":
            items = {_META_ITEMS[k]: json.dumps(v) if not isinstance(v, str) else v
                     for k, v in meta.items()}
            pyogrio.write_dataframe(gdf, tmp, layer=LAYER, driver="GPKG",
                                    layer_metadata=items or None, promote_to_multi=False)
        else:  # geojson
            pyogrio.write_dataframe(gdf, tmp, driver="GeoJSON", layer=path.stem)
            if meta:
                _add_geojson_member(tmp, meta)
    return path


def _add_geojson_member(path: Path, meta: dict[str, Any]) -> None:
    """Insert the ``napari_sam`` foreign member before ``features`` (found in the first bytes)."""
    with open(path, encoding="utf-8") as fh:
        doc = json.load(fh)
    out = {k: v for k, v in doc.items() if k != "features"}
    out[META_KEY] = meta
    out["features"] = doc.get("features", [])
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, separators=(",", ":"))


def _write_shapefile(gdf: gpd.GeoDataFrame, path: Path, *, overwrite: bool) -> Path:
    """A Shapefile is several files: write them in a temporary folder, then move each."""
    siblings = [path.with_suffix(s) for s in _SHP_SIDECARS]
    if not overwrite:
        for sibling in siblings:
            check_writable(sibling, overwrite)
    frame = gdf.rename(columns={k: v for k, v in _SHP_RENAME.items() if k in gdf.columns})
    too_long = [c for c in frame.columns if c != frame.geometry.name and len(str(c)) > 10]
    if too_long:
        raise InputError(f"{path}: Shapefile field names are at most 10 characters: {too_long}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = path.parent / f".{path.stem}.tmp-{uuid.uuid4().hex[:8]}"
    tmpdir.mkdir()
    try:
        pyogrio.write_dataframe(frame, tmpdir / path.name, driver="ESRI Shapefile",
                                layer_options={"ENCODING": "UTF-8"})
        for sibling in siblings:
            if sibling.exists():
                sibling.unlink()
        for produced in sorted(tmpdir.iterdir()):
            os.replace(produced, path.parent / produced.name)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    return path


def _qupath_json(value: Any) -> Any:
    """A measurement as a finite JSON number, else None."""
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return None


def to_pixels(gdf: gpd.GeoDataFrame, transform: Any = None) -> np.ndarray:
    """Geometries of ``gdf`` in pixel-corner coordinates (inverse of ``transform``).

    ``transform`` defaults to ``gdf.attrs["transform"]``; a frame without CRS
    and without transform is taken to be in pixels already. Vertices are
    rounded to 1e-6 pixel so that traced outlines come back as integers.
    """
    if transform is None:
        transform = gdf.attrs.get("transform")
    geoms = np.asarray(gdf.geometry.array, dtype=object)
    if transform is None:
        if gdf.crs is not None:
            raise InputError("QuPath export needs pixel coordinates: these polygons are in "
                             f"{gdf.crs.to_string()} and no raster transform is known")
        return geoms
    inverse = ~as_affine(transform)

    def apply(xy: np.ndarray) -> np.ndarray:
        return np.round(apply_affine(inverse, xy), 6) + 0.0

    return shapely.transform(geoms, apply)


def _write_qupath(gdf: gpd.GeoDataFrame, path: Path, *, overwrite: bool, transform: Any,
                  object_type: str, classification: str | None) -> Path:
    if object_type not in _QUPATH_TYPES:
        raise InputError(f"{path}: QuPath objectType must be one of {_QUPATH_TYPES}")
    geoms = to_pixels(gdf, transform)
    rows = gdf.drop(columns=gdf.geometry.name).to_dict("records")
    features = []
    for index, (geom, row) in enumerate(zip(geoms, rows)):
        if geom is None or geom.is_empty:
            continue
        # QuPath measures area and perimeter itself, in its own units
        measurements = {c: v for c, value in row.items() if c not in _QUPATH_SKIP
                        if (v := _qupath_json(value)) is not None}
        ident = row.get("id", index + 1)
        props: dict[str, Any] = {"objectType": object_type, "name": str(ident),
                                 "isLocked": False, "measurements": measurements}
        if classification:
            props["classification"] = {"name": classification, "color": _class_color(
                classification)}
        features.append({
            "type": "Feature",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"napari-sam/{path.name}/{ident}")),
            "geometry": json.loads(shapely.to_geojson(geom)),
            "properties": props,
        })
    with atomic_path(path, overwrite) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump({"type": "FeatureCollection", "features": features}, fh,
                      separators=(",", ":"))
    return path


def _class_color(name: str) -> list[int]:
    """A stable colour per class name (QuPath shows classes in their colour)."""
    digest = uuid.uuid5(uuid.NAMESPACE_OID, name).bytes
    return [64 + digest[0] % 192, 64 + digest[1] % 192, 64 + digest[2] % 192]


def _geojson_member(path: Path) -> dict[str, Any]:
    """The ``napari_sam`` member of a GeoJSON file, read from its first 64 KiB."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        head = fh.read(65536)
    key = f'"{META_KEY}"'
    at = head.find(key)
    if at < 0:
        return {}
    start = head.find("{", at + len(key))
    try:
        value, _ = json.JSONDecoder().raw_decode(head[start:])
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def read_vectors(path: str | os.PathLike, *, layer: str | None = None) -> gpd.GeoDataFrame:
    """Read a vector file written here (or any OGR-readable one) into a GeoDataFrame.

    GeoPackage: layer ``objects`` when present, else the first. The source
    raster's ``transform``/``shape``/``source`` come back in ``gdf.attrs`` when
    the file stored them. QuPath files (GeoJSON whose features have an
    ``objectType``) come back in pixel coordinates without CRS, with
    ``objectType`` as a column and ``gdf.attrs["qupath"] = True``.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    suffix = path.suffix.lower()
    meta: dict[str, Any] = {}
    try:
        if suffix in (".parquet", ".geoparquet"):
            gdf = gpd.read_parquet(path)
            meta = dict(gdf.attrs)  # pandas keeps DataFrame.attrs in the parquet metadata
        else:
            if suffix == ".gpkg" and layer is None:
                layers = [name for name, _ in pyogrio.list_layers(path)]
                layer = LAYER if LAYER in layers else (layers[0] if layers else None)
            gdf = pyogrio.read_dataframe(path, layer=layer)
            if suffix == ".gpkg":
                items = pyogrio.read_info(path, layer=layer).get("layer_metadata") or {}
                for key, item in _META_ITEMS.items():
                    if item in items:
                        meta[key] = items[item] if key == "source" else json.loads(items[item])
            elif suffix in (".geojson", ".json"):
                meta = _geojson_member(path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError, OSError,
            ValueError) as exc:
        raise InputError(f"{path}: cannot be read as a vector file ({exc})") from exc
    if "objectType" in gdf.columns and suffix in (".geojson", ".json"):
        # QuPath's GeoJSON is in pixels; GDAL assumes WGS 84 for any GeoJSON without "crs"
        gdf = gdf.set_crs(None, allow_override=True)
        gdf.attrs["qupath"] = True
    if suffix == ".shp":
        gdf = gdf.rename(columns={v: k for k, v in _SHP_RENAME.items() if v in gdf.columns})
    if meta.get("transform") is not None:
        gdf.attrs["transform"] = tuple(float(v) for v in meta["transform"])[:6]
    if meta.get("shape") is not None:
        gdf.attrs["shape"] = tuple(int(v) for v in meta["shape"])
    if meta.get("source"):
        gdf.attrs["source"] = meta["source"]
    return gdf

"""``napari-sam vectorize LABELS --out FILE``: polygons from a labels raster."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_sam.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "vectorize",
        help="polygons from a labels raster (GeoPackage, GeoJSON, GeoParquet, Shapefile, QuPath)",
        description=(
            "One feature per label id, holes and multiple parts kept, valid geometry, "
            "in the raster's CRS (qupath: pixel coordinates in QuPath's GeoJSON). "
            "--simplify simplifies all objects together, so touching objects keep "
            "their shared edges. "
            "Columns: id, predicted_iou, stability_score (from --table, else empty), "
            "area and perimeter in map units (pixels without a CRS), pixels."
        ),
    )
    parser.add_argument("labels", metavar="LABELS",
                        help="labels raster: GeoTIFF/TIFF or zarr (integer ids, 0 = background)")
    parser.add_argument("--out", required=True, metavar="FILE", help="output vector file")
    parser.add_argument("--format", dest="fmt", default=None,
                        choices=["gpkg", "geojson", "parquet", "shp", "qupath"],
                        help="output format (default: from the extension of --out)")
    parser.add_argument("--simplify", type=float, default=None, metavar="TOLERANCE",
                        help="topology-preserving simplification tolerance in map units")
    parser.add_argument("--table", default=None, metavar="CSV_OR_PARQUET",
                        help="object table with an 'id' column (e.g. objects.csv from "
                             "segment); its columns are joined onto the polygons")
    parser.add_argument("--object-type", default="detection",
                        choices=["detection", "annotation"],
                        help="QuPath objectType (qupath format only)")
    parser.add_argument("--class-name", default=None, metavar="NAME",
                        help="QuPath classification given to every object (qupath format only)")
    parser.add_argument("--window", type=int, default=2048, metavar="PX",
                        help="pixels read per window (memory, not results, depends on it)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)
    return parser


def _read_table(path: str):
    import pandas as pd

    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        if p.suffix.lower() in (".parquet", ".geoparquet"):
            table = pd.read_parquet(p)
        else:
            table = pd.read_csv(p)
    except Exception as exc:  # pandas raises many kinds for a bad table
        raise InputError(f"{p}: cannot be read as a table ({exc})") from exc
    if "id" not in table.columns:
        raise InputError(f"{p}: the object table needs an 'id' column")
    return table.drop(columns=[c for c in table.columns if c == "geometry"])


def run(args: argparse.Namespace) -> int:
    from napari_sam.core.io.atomic import check_writable
    from napari_sam.core.io.vectors import resolve_format, write_vectors
    from napari_sam.core.progress import run_with_bar
    from napari_sam.core.vector.polygons import vectorize_labels

    fmt = resolve_format(args.out, args.fmt)
    check_writable(args.out, args.overwrite)
    table = _read_table(args.table) if args.table else None
    gdf = run_with_bar(vectorize_labels(args.labels, attributes=table, simplify=args.simplify,
                                        window=args.window), disable=args.quiet or None)
    out = write_vectors(gdf, args.out, fmt=fmt, overwrite=args.overwrite,
                        object_type=args.object_type, classification=args.class_name)
    crs = "pixels (QuPath)" if fmt == "qupath" else (
        gdf.crs.to_string() if gdf.crs is not None else "pixels (no CRS)")
    print(f"{len(gdf)} polygons -> {out} ({fmt}, {crs})", file=sys.stderr)
    return 0

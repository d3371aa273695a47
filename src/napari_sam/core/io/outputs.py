"""Outputs of automatic segmentation for one input: a folder that is complete or absent.

``DIR/<stem>/`` holds

- ``labels.tif`` (``labels.zarr`` for zarr input): uint32 ids, 0 = background,
  the input's size, transform and CRS, streamed band by band;
- ``objects.gpkg``: layer ``objects``, one (Multi)Polygon per id with
  ``id, predicted_iou, stability_score, area`` (map units), ``perimeter``,
  ``pixels`` and the object table's columns, in the input's CRS; its layer
  metadata item ``NAPARI_SAM_SEGMENTATION`` (JSON) records how the points
  were placed (``points``: ``coarse`` or ``full``), the grid's size and the
  points decoded, when the producer reports them;
- ``objects.csv``: the object table (:mod:`napari_sam.core.automatic.object_table`).

The folder is built under a temporary name beside ``DIR/<stem>`` and renamed
when everything is written; an existing ``DIR/<stem>`` is kept unless
``overwrite``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam.core.automatic.object_table import to_dataframe, write_csv
from napari_sam.core.automatic.paint_labels import Sink
from napari_sam.core.io.atomic import atomic_path, check_writable
from napari_sam.core.io.labels import LabelsWriter
from napari_sam.core.io.vectors import write_vectors
from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.vector.polygons import PolygonCollector, objects_frame

_DOUBLE_SUFFIXES = (".ome.zarr", ".ome.tif", ".ome.tiff")


def input_stem(path: str | os.PathLike) -> str:
    """The input's file name without its extension (``scene.ome.zarr`` -> ``scene``)."""
    name = Path(str(path).rstrip("/\\")).name
    for suffix in _DOUBLE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem or name


def is_zarr_input(path: Any) -> bool:
    """True for a zarr store (a ``.zarr`` path or a folder with zarr metadata); False for
    anything that is not a path (None, an array)."""
    if not isinstance(path, (str, os.PathLike)):
        return False
    p = Path(path)
    return p.suffix.lower() == ".zarr" or (
        p.is_dir() and any((p / m).exists() for m in ("zarr.json", ".zarray", ".zgroup"))
    )


def run_record(result) -> dict:
    """What a segmentation result says about its run: point mode (and its coarse-to-fine
    levels and cover bar), grid points, decoded points (the decoder's prompts, refinements included),
    scales, refinement (whichever it reports)."""
    names = {"points": "points", "point_levels": "point_levels", "cover_iou": "cover_iou",
             "n_points": "grid_points",
             "n_decoded": "decoded_points", "scales": "scales", "refine": "refine"}
    out = {}
    for attr, key in names.items():
        value = getattr(result, attr, None)
        if value is not None:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


@dataclass(frozen=True)
class SegmentOutputs:
    """Where one input's results went, and how many objects they hold."""

    folder: Path
    labels: Path
    objects: Path
    table: Path
    n_objects: int


def write_segmentation(
    raster,
    folder: str | os.PathLike,
    produce: Callable[[Sink], ProgressGen],
    *,
    overwrite: bool = False,
    zarr_labels: bool = False,
    block: int = 512,
) -> ProgressGen[tuple[SegmentOutputs, Any]]:
    """Run ``produce(sink)`` and write its labels, polygons and table into ``folder``.

    ``raster``: the input GeoRaster (size, transform, CRS). ``produce`` is a
    generator function taking the labels sink and returning an object with
    ``.objects`` (list of ObjectRecord), e.g. ``core.automatic.decode.segment_tiles``.
    Returns the outputs and what ``produce`` returned.
    """
    folder = check_writable(folder, overwrite)
    labels_name = "labels.zarr" if zarr_labels else "labels.tif"
    with atomic_path(folder, overwrite) as tmp:
        tmp.mkdir(parents=True)
        collector = PolygonCollector(height=raster.height, width=raster.width)
        with LabelsWriter(tmp / labels_name, height=raster.height, width=raster.width,
                          transform=raster.transform, crs=raster.crs, block=block) as writer:

            def sink(y0: int, x0: int, labels: np.ndarray) -> None:
                writer.write(labels, y0=y0, x0=x0)
                collector.add(labels, y0=y0, x0=x0)

            result = yield from produce(sink)
        yield Progress("polygons", 0, 1)
        ids, geoms = collector.result()
        table = to_dataframe(result.objects)
        gdf = objects_frame(ids, geoms, transform=raster.transform, crs=raster.crs,
                            attributes=table, shape=(raster.height, raster.width),
                            source=str(raster.path) if raster.path else None)
        run = run_record(result)
        if run:
            gdf.attrs["segmentation"] = run
        write_vectors(gdf, tmp / "objects.gpkg", fmt="gpkg")
        write_csv(result.objects, tmp / "objects.csv")
        yield Progress("polygons", 1, 1, f"{len(gdf)} polygons")
    outputs = SegmentOutputs(folder=folder, labels=folder / labels_name,
                             objects=folder / "objects.gpkg", table=folder / "objects.csv",
                             n_objects=len(result.objects))
    return outputs, result

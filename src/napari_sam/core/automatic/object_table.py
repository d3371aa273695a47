"""The object table of automatic segmentation: one record per label id."""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

COLUMNS = (
    "id", "x0", "y0", "x1", "y1", "area", "predicted_iou", "stability_score",
    "centroid_x", "centroid_y", "tile_row", "tile_col", "point_x", "point_y",
)


@dataclass(frozen=True, slots=True)
class ObjectRecord:
    """One object as painted in the labels raster (raster pixel coordinates).

    ``bbox`` XYXY end-exclusive of its visible pixels; ``area`` their count;
    ``centroid`` (x, y) their mean position (pixel centres at k + 0.5);
    ``tile`` (row, col) of the tile that decoded it (of its largest part for
    an object stitched across tiles); ``point`` (x, y) its prompt.
    """

    id: int
    bbox: tuple[int, int, int, int]
    area: int
    predicted_iou: float
    stability_score: float
    centroid: tuple[float, float]
    tile: tuple[int, int]
    point: tuple[float, float]

    def row(self) -> dict:
        """Flat dict with the keys of :data:`COLUMNS`."""
        return {
            "id": self.id,
            "x0": self.bbox[0], "y0": self.bbox[1], "x1": self.bbox[2], "y1": self.bbox[3],
            "area": self.area,
            "predicted_iou": self.predicted_iou,
            "stability_score": self.stability_score,
            "centroid_x": self.centroid[0], "centroid_y": self.centroid[1],
            "tile_row": self.tile[0], "tile_col": self.tile[1],
            "point_x": self.point[0], "point_y": self.point[1],
        }


def to_dataframe(records: Sequence[ObjectRecord]):
    """The table as a pandas DataFrame with :data:`COLUMNS` (empty table keeps the columns)."""
    return pd.DataFrame([r.row() for r in records], columns=list(COLUMNS))


def write_csv(records: Sequence[ObjectRecord], path: str | os.PathLike) -> None:
    """Write the table as CSV with a header row of :data:`COLUMNS`."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(COLUMNS))
        writer.writeheader()
        for r in records:
            writer.writerow(r.row())

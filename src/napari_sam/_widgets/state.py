"""Frozen configuration objects that the widgets build and hand to core.

A widget gathers its inputs into one of these values (``from_widget``), and a
value can be written back into a widget (``apply``), so that settings can be
saved, restored and tested without a GUI. Nothing here imports napari or Qt:
``from_widget``/``apply`` only read and write ``.value`` on the attributes
named in each class's ``_widget_fields``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np


def _read(widget: Any, name: str) -> Any:
    return getattr(widget, name).value


class _FromWidget:
    """Mixin: map dataclass fields to widget attributes of the same name."""

    _widget_fields: tuple[str, ...] = ()
    _widget_names: dict[str, str] = {}  # field -> widget attribute, where they differ

    @classmethod
    def _attr(cls, name: str) -> str:
        return cls._widget_names.get(name, name)

    @classmethod
    def from_widget(cls, widget: Any, **overrides: Any):
        """Build a config from ``widget.<field>.value`` for every widget field."""
        values = {name: _read(widget, cls._attr(name)) for name in cls._widget_fields}
        values.update(overrides)
        return cls(**values)

    def apply(self, widget: Any) -> None:
        """Write this config's values into ``widget.<field>.value``."""
        for name in self._widget_fields:
            getattr(widget, self._attr(name)).value = self._widget_value(name)

    def _widget_value(self, name: str) -> Any:
        return getattr(self, name)


@dataclass(frozen=True)
class ModelChoice(_FromWidget):
    """Which network to run: a registered name, or an official checkpoint file.

    ``checkpoint`` is a path or None; ``device`` is "auto", "cpu", "cuda" or
    "mps". Instances are hashable and serve as cache keys for loaded models.
    """

    name: str = "sam_tiny"
    checkpoint: str | None = None
    device: str = "auto"

    _widget_fields = ("name", "checkpoint", "device")
    _widget_names = {"name": "model_name"}  # a magicgui widget already has a ``name``

    def __post_init__(self) -> None:
        text = "" if self.checkpoint is None else str(self.checkpoint).strip()
        object.__setattr__(self, "checkpoint", None if text in ("", ".") else text)

    def _widget_value(self, name: str) -> Any:
        return (self.checkpoint or "") if name == "checkpoint" else getattr(self, name)


@dataclass(frozen=True)
class TilingChoice(_FromWidget):
    """Tile size and overlap in raster pixels (``tile_size`` = the model's input side)."""

    tile_size: int = 1024
    overlap: int = 128

    _widget_fields = ("tile_size", "overlap")

    def __post_init__(self) -> None:
        if self.tile_size < 16:
            raise ValueError(f"tile size must be at least 16 px, got {self.tile_size}")
        if not 0 <= self.overlap < self.tile_size // 2:
            raise ValueError(
                f"overlap must be in [0, tile size / 2), got {self.overlap} for tile {self.tile_size}"
            )


@dataclass(frozen=True)
class InteractiveConfig(_FromWidget):
    """Settings of an interactive session: model, tiling and candidate output."""

    model: ModelChoice = field(default_factory=ModelChoice)
    tiling: TilingChoice = field(default_factory=TilingChoice)
    multimask: bool = True
    overwrite_labels: bool = False

    _widget_fields = ("multimask", "overwrite_labels")


@dataclass(frozen=True)
class AutomaticConfig(_FromWidget):
    """Parameters of automatic segmentation (names and defaults as the CLI's).

    ``max_area`` 0 means no upper limit; areas are in raster pixels.
    """

    model: ModelChoice = field(default_factory=ModelChoice)
    tiling: TilingChoice = field(default_factory=TilingChoice)
    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    box_nms_thresh: float = 0.7
    min_area: int = 0
    max_area: int = 0

    _widget_fields = (
        "points_per_side",
        "points_per_batch",
        "pred_iou_thresh",
        "stability_score_thresh",
        "box_nms_thresh",
        "min_area",
        "max_area",
    )

    def __post_init__(self) -> None:
        if self.points_per_side < 1:
            raise ValueError("points per side must be at least 1")
        if self.max_area and self.max_area < self.min_area:
            raise ValueError(f"max area {self.max_area} is below min area {self.min_area}")

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for core's automatic generator (tiling included)."""
        out = {name: getattr(self, name) for name in self._widget_fields}
        out["max_area"] = self.max_area or None
        out["tile_size"] = self.tiling.tile_size
        out["overlap"] = self.tiling.overlap
        return out


VECTOR_FORMATS = ("gpkg", "geojson", "parquet", "shp", "qupath")
LABEL_FORMATS = ("tif", "zarr")


@dataclass(frozen=True)
class ExportConfig(_FromWidget):
    """Where and how to write labels (GeoTIFF/zarr) and polygons (vector file).

    Empty paths mean "do not write this output". ``simplify`` is a tolerance in
    map units (pixels without a CRS); 0 keeps the exact pixel outlines.
    """

    labels_path: str = ""
    vectors_path: str = ""
    vector_format: str = "gpkg"
    simplify: float = 0.0
    overwrite: bool = False

    _widget_fields = ("labels_path", "vectors_path", "vector_format", "simplify", "overwrite")

    def __post_init__(self) -> None:
        for name in ("labels_path", "vectors_path"):
            value = getattr(self, name)
            text = "" if value is None else str(value)
            object.__setattr__(self, name, "" if text in ("", ".") else text)
        if self.vector_format not in VECTOR_FORMATS:
            raise ValueError(f"unknown vector format {self.vector_format!r}; use {VECTOR_FORMATS}")
        if self.simplify < 0:
            raise ValueError("simplify tolerance must be >= 0")


@dataclass(frozen=True, eq=False)
class PromptSet:
    """Prompts for one object, in the image layer's pixel frame.

    points_xy: (N, 2) float64, XY (column, row) pixels; labels: (N,) int,
    1 positive, 0 negative; box_xyxy: (4,) float64 XYXY pixels or None;
    polygon_xy: (M, 2) XY vertices of a drawn polygon or None.
    """

    points_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), dtype=np.int64))
    box_xyxy: np.ndarray | None = None
    polygon_xy: np.ndarray | None = None

    @property
    def empty(self) -> bool:
        return len(self.points_xy) == 0 and self.box_xyxy is None

    def with_box(self, box_xyxy: np.ndarray | None) -> PromptSet:
        return replace(self, box_xyxy=box_xyxy)


@dataclass(frozen=True, eq=False)
class Candidates:
    """Candidate masks for one prompt, placed in the raster.

    masks: (C, h, w) bool, tile-local; offset: (row, col) of the masks' top
    left pixel in the raster; scores: (C,) float predicted IoU; order: the
    candidate indices sorted by decreasing score.
    """

    masks: np.ndarray
    scores: np.ndarray
    offset: tuple[int, int]

    def __post_init__(self) -> None:
        if self.masks.ndim != 3 or len(self.masks) != len(self.scores):
            raise ValueError(
                f"candidates need (C,h,w) masks and C scores, got {self.masks.shape} and "
                f"{np.shape(self.scores)}"
            )

    @property
    def order(self) -> list[int]:
        return [int(i) for i in np.argsort(-np.asarray(self.scores), kind="stable")]

    def labels(self) -> list[str]:
        """One display string per candidate, best first: "1: IoU 0.93 (812 px)"."""
        return [
            f"{rank + 1}: IoU {float(self.scores[i]):.2f} ({int(self.masks[i].sum())} px)"
            for rank, i in enumerate(self.order)
        ]


def config_fields(cls: type) -> list[str]:
    """The dataclass field names of a config class (for documentation and tests)."""
    return [f.name for f in fields(cls)]

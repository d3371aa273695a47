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

from napari_sam.core.automatic.settings import SegmentConfig, format_scales, parse_scales
from sam_model import DEFAULT_MODEL


def _read(widget: Any, name: str) -> Any:
    return getattr(widget, name).value


def _path_text(value: Any) -> str:
    """A path widget's value as text; "" for nothing chosen (magicgui gives ".")."""
    text = "" if value is None else str(value).strip()
    return "" if text in ("", ".") else text


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

    name: str = DEFAULT_MODEL
    checkpoint: str | None = None
    device: str = "auto"

    _widget_fields = ("name", "checkpoint", "device")
    _widget_names = {"name": "model_name"}  # a magicgui widget already has a ``name``

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoint", _path_text(self.checkpoint) or None)

    def _widget_value(self, name: str) -> Any:
        return (self.checkpoint or "") if name == "checkpoint" else getattr(self, name)


@dataclass(frozen=True)
class TilingChoice(_FromWidget):
    """Tile size and overlap in raster pixels; 0 / -1 mean core's defaults.

    The defaults are the model's input size for the tile and an eighth of it
    for the overlap.
    """

    tile_size: int = 0
    overlap: int = -1

    _widget_fields = ("tile_size", "overlap")

    def __post_init__(self) -> None:
        if self.tile_size and self.tile_size < 16:
            raise ValueError(f"tile size must be at least 16 px (0: auto), got {self.tile_size}")
        if self.tile_size and self.overlap >= self.tile_size:
            raise ValueError(f"overlap ({self.overlap}) must be below the tile size "
                             f"({self.tile_size})")

    def core_kwargs(self) -> dict[str, int | None]:
        """``tile_size`` and ``overlap`` for core (None: core's default)."""
        return {"tile_size": self.tile_size or None,
                "overlap": self.overlap if self.overlap >= 0 else None}


@dataclass(frozen=True)
class InteractiveConfig(_FromWidget):
    """Settings of an interactive session.

    ``store``: an embedding store made by ``napari-sam embed`` for this image
    and model ("" keeps embeddings in memory); ``multimask``: three candidates
    for a lone click (False: one); ``overwrite_labels``: an accepted mask may
    replace existing labels.
    """

    model: ModelChoice = field(default_factory=ModelChoice)
    tiling: TilingChoice = field(default_factory=TilingChoice)
    store: str = ""
    multimask: bool = True
    overwrite_labels: bool = False

    _widget_fields = ("store", "multimask", "overwrite_labels")

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", _path_text(self.store))


@dataclass(frozen=True)
class AutomaticConfig(_FromWidget):
    """Parameters of automatic segmentation: core's ``SegmentConfig`` (the CLI's
    and the API's settings object) plus where the run reads and writes.

    ``segment``: the settings; the widget shows the fields in
    ``segment_widget_fields`` under their own names (``max_area`` 0 there means
    no upper limit, ``points_per_batch`` 0 the device's choice, ``scales`` text such
    as "1,2,4") with core's defaults (``min_area`` :data:`DEFAULT_MIN_AREA`: the
    1-2 px specks and thin fragments the decoder returns are dropped) and leaves the
    others (edge margin, deduplication) at core's defaults. ``store``: an
    embedding store to use and complete ("" embeds into a temporary one; an
    existing store's tiling and bands are used unless the tiling is chosen);
    ``out_dir``: also write ``labels.tif``/``objects.gpkg`` into
    ``out_dir/<name>/`` ("" keeps the result in memory only); ``scheduler``: the
    address of a running dask.distributed scheduler to decode the tiles on ("":
    here; stacks are always decoded here); ``workers``: start that many local dask
    worker processes for the run instead (the CLI's ``--workers``; 0: none).
    """

    model: ModelChoice = field(default_factory=ModelChoice)
    tiling: TilingChoice = field(default_factory=TilingChoice)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    store: str = ""
    out_dir: str = ""
    overwrite: bool = False
    scheduler: str = ""
    workers: int = 0

    segment_widget_fields = ("points_per_side", "points_per_batch", "pred_iou_thresh",
                             "stability_score_thresh", "box_nms_thresh", "points",
                             "point_levels", "cover_iou", "scales", "refine",
                             "min_region_area", "min_area", "max_area", "max_area_fraction",
                             "stitch_seams")
    _widget_fields = ("store", "out_dir", "overwrite", "scheduler", "workers")

    def __post_init__(self) -> None:
        object.__setattr__(self, "store", _path_text(self.store))
        object.__setattr__(self, "out_dir", _path_text(self.out_dir))
        object.__setattr__(self, "scheduler", str(self.scheduler or "").strip())
        object.__setattr__(self, "workers", int(self.workers or 0))
        if self.workers < 0:
            raise ValueError(f"local dask workers must be 0 or more, got {self.workers}")
        if self.workers and self.scheduler:
            raise ValueError("give a dask scheduler or local dask workers, not both")

    @classmethod
    def from_widget(cls, widget: Any, **overrides: Any) -> AutomaticConfig:
        """Build a config from the widget's values (a bad combination raises ValueError)."""
        values = {name: _read(widget, name) for name in cls.segment_widget_fields}
        values["max_area"] = values["max_area"] or None
        values["points_per_batch"] = values["points_per_batch"] or None  # 0: the device's
        values["scales"] = parse_scales(values["scales"])  # shown as text, "1,2,4"
        base = {name: _read(widget, name) for name in cls._widget_fields}
        base["segment"] = SegmentConfig(**values)
        base.update(overrides)
        return cls(**base)

    def apply(self, widget: Any) -> None:
        super().apply(widget)
        for name in self.segment_widget_fields:
            value = getattr(self.segment, name)
            zero_is_none = name in ("max_area", "points_per_batch")
            if name == "scales":
                value = format_scales(value)
            getattr(widget, name).value = (value or 0) if zero_is_none else value


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
            object.__setattr__(self, name, _path_text(getattr(self, name)))
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
        """One display string per candidate, best first: "1: IoU 0.93, 812 px"."""
        return [
            f"{rank + 1}: IoU {float(self.scores[i]):.2f}, {int(self.masks[i].sum())} px"
            for rank, i in enumerate(self.order)
        ]


def config_fields(cls: type) -> list[str]:
    """The dataclass field names of a config class (for documentation and tests)."""
    return [f.name for f in fields(cls)]

"""The settings of automatic segmentation: one object for the CLI, the widget and the API.

Standard library only, so the command line can take its defaults from here
without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentConfig:
    """Automatic segmentation settings; pixels are raster pixels.

    The first six are the reference generator's, with its defaults.
    ``dedup_box_thresh`` / ``dedup_mask_iou``: two masks from different tiles
    are one object when their boxes' IoU or their masks' IoU exceed these.
    ``edge_margin``: how close (px) to an inner tile border a mask's box may
    come; None scales the reference's 20 px per 1024 px of tile.
    ``min_region_area``: holes and islands smaller than this are filled /
    removed. ``min_area`` / ``max_area``: objects outside are dropped.
    ``stitch_seams``: join the masks of one object cut by tile borders (see
    :mod:`napari_sam.core.automatic.seams`); False drops masks cut by an
    inner border, which loses objects that straddle a seam and are larger
    than about half the overlap (the behaviour before stitching).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    dedup_box_thresh: float = 0.7
    dedup_mask_iou: float = 0.5
    edge_margin: float | None = None
    min_region_area: int = 0
    min_area: int = 0
    max_area: int | None = None
    stitch_seams: bool = True

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError("points_per_side and points_per_batch must be at least 1")
        if self.max_area is not None and self.max_area < self.min_area:
            raise ValueError(f"max_area {self.max_area} is below min_area {self.min_area}")

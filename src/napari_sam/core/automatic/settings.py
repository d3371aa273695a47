"""The settings of automatic segmentation: one object for the CLI, the widget and the API.

Standard library only, so the command line can take its defaults from here
without importing the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

DEFAULT_MIN_AREA = 16
"""Objects smaller than this (raster pixels) are dropped unless asked otherwise."""
DEFAULT_MAX_AREA_FRACTION = 0.25
"""Objects covering more than this fraction of the raster are dropped unless asked otherwise."""
DEFAULT_COVER_IOU = 0.7
"""Coarse points at full resolution: masks scored under this do not cover the finest
level's points (see :mod:`napari_sam.core.automatic.coarse_to_fine`)."""
POINT_MODES = ("coarse", "full")
"""``coarse``: coarse-to-fine points (the default); ``full``: the paper's full grid per tile."""
REFINE_MODES = ("none", "coarse", "all")
"""Which passes refine their masks once (mask to mask): none, the coarse scales, every pass."""


def _valid_scales(values: tuple[int, ...]) -> bool:
    """Scales start at 1 and increase."""
    return bool(values) and values[0] == 1 and all(b > a for a, b in zip(values, values[1:]))


def parse_scales(text: str) -> tuple[int, ...]:
    """Scales written as on the command line and in the widget ("1,2,4") -> (1, 2, 4).

    Raises ValueError naming the text when it is not increasing integers starting at 1.
    """
    try:
        values = tuple(int(v) for v in str(text).replace(" ", "").split(","))
    except ValueError:
        raise ValueError(f"scales {text!r} are not a comma-separated list of integers") from None
    if not _valid_scales(values):
        raise ValueError(f"scales {text!r} must start at 1 and increase, e.g. 1,2,4")
    return values


def format_scales(scales) -> str:
    """(1, 2, 4) -> "1,2,4", the text :func:`parse_scales` reads."""
    return ",".join(str(int(v)) for v in scales)


@dataclass(frozen=True)
class SegmentConfig:
    """Automatic segmentation settings; pixels are raster pixels.

    The first six are the reference generator's, with its defaults, but for
    ``points_per_batch``: None picks one for the device
    (:func:`napari_sam.core.automatic.decode.points_per_batch_for`; the masks
    do not depend on it: the filters are per mask and NMS runs once over all
    batches).
    ``dedup_box_thresh`` / ``dedup_mask_iou``: two masks from different tiles
    are one object when their boxes' IoU or their masks' IoU exceed these.
    ``edge_margin``: how close (px) to an inner tile border a mask's box may
    come; None scales the reference's 20 px per 1024 px of tile.
    ``min_region_area``: holes and islands smaller than this are filled /
    removed. ``min_area`` / ``max_area``: objects outside are dropped; the
    default minimum (:data:`DEFAULT_MIN_AREA`, 16 px, a 4 x 4 square) keeps
    the decoder's 1-2 px specks out of the results. ``max_area_fraction``:
    objects covering more than this fraction of the raster are dropped too
    (default 0.25: such a mask is the background, sea or sky, not an object;
    None or 1 keeps them); the limit in force is the smaller of the two
    (:meth:`for_raster`).
    ``stitch_seams``: join the masks of one object cut by tile borders (see
    :mod:`napari_sam.core.automatic.seams`); False drops masks cut by an
    inner border, which loses objects that straddle a seam and are larger than about half
    the overlap (the behaviour before stitching).
    ``points``: ``"coarse"`` decodes the grid coarse-to-fine in
    ``point_levels`` levels, skipping points under accepted masks and those
    with no edge nearby but accepted masks' outlines, the finest level's points
    moved onto blobs (:mod:`napari_sam.core.automatic.coarse_to_fine`,
    :mod:`napari_sam.core.automatic.blobs`); at full resolution a mask with a
    predicted IoU under ``cover_iou`` does not cover the finest level's points
    (a doubtful first answer gets more prompts; 0 turns this off);
    ``"full"`` decodes every grid point, as the paper's generator does.
    ``scales``: the raster is also segmented downscaled by each factor after
    the first (same points per tile side, so the same density in model
    pixels; masks upsampled smoothly to raster resolution) and objects are
    merged across scales (:mod:`napari_sam.core.automatic.multiscale`,
    :mod:`napari_sam.core.automatic.scale_passes`); ``(1,)`` segments at the
    tiling's own scale only.
    ``refine``: ``"coarse"`` decodes each mask of the coarse scales that passes
    the filters once more from its point and its own low-resolution logits and
    filters the result again (SAM 2's mask-to-mask step), ``"all"`` does so in
    every pass, ``"none"`` (the default) never; refinements count as decoder
    calls (:func:`sam_model.mask_candidates.refine_with_masks`).
    """

    points_per_side: int = 32
    points_per_batch: int | None = None
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    dedup_box_thresh: float = 0.7
    dedup_mask_iou: float = 0.5
    edge_margin: float | None = None
    min_region_area: int = 0
    min_area: int = DEFAULT_MIN_AREA
    max_area: int | None = None
    stitch_seams: bool = True
    max_area_fraction: float | None = DEFAULT_MAX_AREA_FRACTION
    points: str = "coarse"
    point_levels: int = 3
    cover_iou: float = DEFAULT_COVER_IOU
    scales: tuple[int, ...] = (1, 2, 4)
    refine: str = "none"

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or (self.points_per_batch is not None
                                        and self.points_per_batch < 1):
            raise ValueError("points_per_side and points_per_batch must be at least 1")
        if self.refine not in REFINE_MODES:
            raise ValueError(f"refine must be one of {REFINE_MODES}, got {self.refine!r}")
        if self.points not in POINT_MODES:
            raise ValueError(f"points must be one of {POINT_MODES}, got {self.points!r}")
        if not 0.0 <= self.cover_iou <= 1.0:
            raise ValueError(f"cover_iou must be in [0, 1], got {self.cover_iou}")
        if self.point_levels < 1:
            raise ValueError(f"point_levels must be at least 1, got {self.point_levels}")
        scales = tuple(int(v) for v in self.scales)
        if not _valid_scales(scales):
            raise ValueError(f"scales must start at 1 and increase, got {self.scales}")
        object.__setattr__(self, "scales", scales)
        if self.max_area is not None and self.max_area < self.min_area:
            raise ValueError(f"max_area {self.max_area} is below min_area {self.min_area}")
        if self.max_area_fraction is not None and not 0.0 < self.max_area_fraction <= 1.0:
            raise ValueError(f"max_area_fraction must be in (0, 1], got {self.max_area_fraction}")

    def for_raster(self, height: int, width: int) -> SegmentConfig:
        """This config with ``max_area`` the limit in force on a ``height`` x ``width`` raster:
        the smaller of ``max_area`` and ``max_area_fraction`` of the raster (never below
        ``min_area``); ``max_area_fraction`` is then spent (None)."""
        limit = self.max_area
        if self.max_area_fraction is not None and self.max_area_fraction < 1.0:
            share = max(int(self.max_area_fraction * int(height) * int(width)), self.min_area)
            limit = share if limit is None else min(limit, share)
        return replace(self, max_area=limit, max_area_fraction=None)

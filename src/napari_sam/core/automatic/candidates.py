"""Masks from many tiles to one set of objects: edge filter, cleanup, cross-tile deduplication.

Every mask stays *tile-local*: a :class:`Candidate` holds only the pixels of
its bounding box and the box's offset in the raster, so memory follows the
size of the objects, never the size of the raster.

Order of the steps for one tile (:func:`tile_candidates`):

1. clip to the tile's part of the raster and drop nodata pixels;
2. edge filter: a mask whose box comes within ``edge_margin`` pixels of an
   *inner* tile border (one shared with a neighbour tile, not the raster's
   edge) may go on beyond that border. With ``TileFilter.keep_partials``
   (the default) it is kept as a *partial* candidate (``Candidate.cut``
   names the borders it is cut by), skipping steps 3 and 4, and
   :mod:`napari_sam.core.automatic.seams` joins it with the partials of the
   neighbouring tiles that show the same object; a partial that finds no
   partner is dropped, so an object that fits in the neighbouring tile is
   left to it, where it is more central. Without ``keep_partials`` such a
   mask is dropped here (the behaviour before seam stitching, which loses
   objects larger than about half the overlap that straddle a seam);
3. cleanup: holes and islands smaller than ``min_region_area`` pixels are
   filled / removed (8-connectivity);
4. ``min_area`` / ``max_area`` on what is left.

Across tiles (:class:`CrossTileDeduplicator`): two candidates from different
tiles are the same object when their global boxes overlap with IoU above
``box_nms_thresh`` or their masks overlap with IoU above ``mask_iou_thresh``;
the one with the higher (predicted_iou, stability_score) stays. Candidates
arrive tile by tile and the decision is greedy in that order. A stitched
object counts as a tile of its own: it is compared with every other
candidate, and on a tie the candidate that came first (the one-tile one)
stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from napari_sam.core.automatic.point_grid import AxisWindows
from napari_sam.core.tiling.window import mask_box

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True, eq=False)
class Candidate:
    """One mask found in one tile, kept as its bounding-box crop.

    ``mask`` (h, w) bool covers raster rows ``y0 .. y0+h`` and columns
    ``x0 .. x0+w``; ``point`` is the prompt (x, y) in raster pixels; ``tile``
    the (row, col) of the tile that decoded it. ``cut`` (left, top, right,
    bottom): the inner tile borders the mask's box comes within the edge
    margin of; any True makes it a *partial*, to be stitched. ``parts``: for
    a stitched object, the tiles of its parts (``tile`` is then the tile of
    its largest part); empty for a one-tile candidate. ``nodata``: for a
    partial over nodata, (h, w) bool, True on the nodata pixels of its box
    (stitching's cleanup must not fill them); None otherwise.
    """

    mask: np.ndarray
    y0: int
    x0: int
    predicted_iou: float
    stability_score: float
    tile: tuple[int, int]
    point: tuple[float, float]
    cut: tuple[bool, bool, bool, bool] = (False, False, False, False)
    parts: tuple[tuple[int, int], ...] = ()
    nodata: np.ndarray | None = None

    def __post_init__(self) -> None:
        h, w = self.mask.shape
        # derived values, computed once (the dataclass is frozen)
        object.__setattr__(self, "box", (int(self.x0), int(self.y0), int(self.x0) + w,
                                         int(self.y0) + h))
        object.__setattr__(self, "area", int(np.count_nonzero(self.mask)))
        object.__setattr__(self, "rank", (float(self.predicted_iou),
                                          float(self.stability_score)))

    box: tuple[int, int, int, int] = field(init=False, repr=False)
    """Global box XYXY, end-exclusive: (x0, y0, x1, y1)."""
    area: int = field(init=False, repr=False)
    """Pixel count of the mask."""
    rank: tuple[float, float] = field(init=False, repr=False)
    """Sort key, higher is better: (predicted IoU, stability score)."""

    @property
    def partial(self) -> bool:
        """True when an inner tile border cuts the mask (see ``cut``)."""
        return any(self.cut)


def remove_small_regions(mask: np.ndarray, min_area: int) -> np.ndarray:
    """Fill holes and drop islands smaller than ``min_area`` pixels (8-connected).

    ``mask`` (h, w) bool; returns a new array. Background that reaches the
    outside of the array is never a hole. When every island is small, the
    largest one is kept.
    """
    if min_area <= 0 or not mask.any():
        return mask
    padded = np.pad(mask, 1)
    holes, n = ndimage.label(~padded, structure=_EIGHT)
    if n > 1:
        sizes = np.bincount(holes.ravel())
        outside = holes[0, 0]
        small = sizes < min_area
        small[0] = False
        small[outside] = False
        padded = padded | small[holes]
    islands, n = ndimage.label(padded, structure=_EIGHT)
    if n > 1:
        sizes = np.bincount(islands.ravel())
        sizes[0] = 0
        keep = sizes >= min_area
        keep[0] = False
        if not keep.any():
            keep[int(np.argmax(sizes))] = True
        padded = keep[islands]
    return padded[1:-1, 1:-1]


def inner_border_sides(
    box: tuple[int, int, int, int],
    window: tuple[int, int, int, int],
    inner: tuple[bool, bool, bool, bool],
    margin: float,
) -> tuple[bool, bool, bool, bool]:
    """Which inner borders (left, top, right, bottom) of ``window`` a global box XYXY
    comes within ``margin`` px of.

    ``window`` XYXY end-exclusive (the tile's part of the raster); ``inner``
    flags its (left, top, right, bottom) borders as shared with a neighbour.
    """
    bx0, by0, bx1, by1 = box
    wx0, wy0, wx1, wy1 = window
    left, top, right, bottom = inner
    return (
        bool(left and bx0 - wx0 <= margin),
        bool(top and by0 - wy0 <= margin),
        bool(right and wx1 - bx1 <= margin),
        bool(bottom and wy1 - by1 <= margin),
    )


def near_inner_border(
    box: tuple[int, int, int, int],
    window: tuple[int, int, int, int],
    inner: tuple[bool, bool, bool, bool],
    margin: float,
) -> bool:
    """True when a global box XYXY comes within ``margin`` px of an inner border of ``window``."""
    return any(inner_border_sides(box, window, inner, margin))


@dataclass(frozen=True)
class TileFilter:
    """Per-tile settings applied after the decoder's own filters (pixels).

    ``keep_partials``: masks cut by an inner border are kept as partials for
    seam stitching (True) or dropped (False).
    """

    edge_margin: float = 5.0
    min_region_area: int = 0
    min_area: int = 0
    max_area: int | None = None
    keep_partials: bool = True


def finish_mask(mask: np.ndarray, settings: TileFilter, valid: np.ndarray | None = None
                ) -> tuple[np.ndarray, int, int] | None:
    """Cleanup and area filters (steps 3-4) on a (h, w) bool mask.

    ``valid`` (h, w) bool or None: False on nodata, which filling small holes
    must not give back to the mask. Returns the tight crop of what is left and
    its (dy, dx) offset in ``mask``; None when nothing is left or the area is
    out of bounds.
    """
    m = remove_small_regions(mask, settings.min_region_area)
    if valid is not None:
        m = m & valid
    tight = mask_box(m)
    if tight is None:
        return None
    m = m[tight[1]:tight[3], tight[0]:tight[2]]
    area = int(m.sum())
    if area < settings.min_area or (settings.max_area is not None and area > settings.max_area):
        return None
    return np.ascontiguousarray(m), tight[1], tight[0]


def crops_from_masks(masks) -> tuple[list[np.ndarray], np.ndarray]:
    """Full-frame masks (K, H, W) to bounding-box crops and their (K, 2) XY offsets.

    Empty masks give an empty (0, 0) crop at offset (0, 0).
    """
    crops, offsets = [], []
    for m in masks:
        m = np.asarray(m).astype(bool, copy=False)
        box = mask_box(m)
        if box is None:
            crops.append(np.zeros((0, 0), bool))
            offsets.append((0, 0))
            continue
        crops.append(m[box[1]:box[3], box[0]:box[2]])
        offsets.append((box[0], box[1]))
    return crops, np.asarray(offsets, dtype=np.int64).reshape(-1, 2)


def tile_candidates(
    crops: list[np.ndarray],
    offsets: np.ndarray,
    predicted_iou: np.ndarray,
    stability_score: np.ndarray,
    points: np.ndarray,
    *,
    tile: tuple[int, int],
    rows: AxisWindows,
    cols: AxisWindows,
    valid: np.ndarray | None = None,
    settings: TileFilter = TileFilter(),
) -> list[Candidate]:
    """Turn one tile's decoder output into candidates in raster coordinates.

    ``crops``: K (h_i, w_i) bool masks, crop ``i`` placed at tile pixel
    ``offsets[i]`` (XY); masks reaching beyond the tile's part of the raster
    (into padding) are cut there. ``predicted_iou``, ``stability_score`` (K,);
    ``points`` (K, 2) XY in raster pixels; ``tile`` the (row, col) index into
    ``rows`` / ``cols``; ``valid`` (h, w) bool over the tile, False on nodata.
    Steps and their order: see the module docstring.
    """
    row, col = tile
    y0, h = rows.starts[row], rows.sizes[row]
    x0, w = cols.starts[col], cols.sizes[col]
    window = (x0, y0, x0 + w, y0 + h)
    inner = (cols.inner_low(col), rows.inner_low(row), cols.inner_high(col), rows.inner_high(row))
    out: list[Candidate] = []
    for k, crop in enumerate(crops):
        ox, oy = int(offsets[k][0]), int(offsets[k][1])
        m = np.asarray(crop).astype(bool, copy=False)[: max(0, h - oy), : max(0, w - ox)]
        if valid is not None and m.size:
            m = m & valid[oy:oy + m.shape[0], ox:ox + m.shape[1]]
        local = mask_box(m) if m.size else None
        if local is None:
            continue
        box = (local[0] + ox + x0, local[1] + oy + y0, local[2] + ox + x0, local[3] + oy + y0)
        m = m[local[1]:local[3], local[0]:local[2]]
        cut = inner_border_sides(box, window, inner, settings.edge_margin)
        here = None if valid is None else \
            valid[oy + local[1]:oy + local[3], ox + local[0]:ox + local[2]]
        if any(cut):
            if settings.keep_partials:  # raw: cleanup and area filters come after stitching
                out.append(Candidate(
                    mask=np.ascontiguousarray(m), y0=box[1], x0=box[0],
                    predicted_iou=float(predicted_iou[k]),
                    stability_score=float(stability_score[k]), tile=(int(row), int(col)),
                    point=(float(points[k][0]), float(points[k][1])), cut=cut,
                    nodata=None if here is None or here.all() else ~here))
            continue
        done = finish_mask(m, settings, here)
        if done is None:
            continue
        m, dy, dx = done
        out.append(
            Candidate(
                mask=m,
                y0=box[1] + dy,
                x0=box[0] + dx,
                predicted_iou=float(predicted_iou[k]),
                stability_score=float(stability_score[k]),
                tile=(int(row), int(col)),
                point=(float(points[k][0]), float(points[k][1])),
            )
        )
    return out


def box_iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """IoU of two XYXY end-exclusive boxes."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def mask_overlap(a: Candidate, b: Candidate) -> int:
    """Pixels two candidates' masks share, in raster coordinates (over their boxes' overlap)."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x1 <= x0 or y1 <= y0:
        return 0
    sa = a.mask[y0 - ay0:y1 - ay0, x0 - ax0:x1 - ax0]
    sb = b.mask[y0 - by0:y1 - by0, x0 - bx0:x1 - bx0]
    return int(np.count_nonzero(sa & sb))


def mask_iou(a: Candidate, b: Candidate) -> float:
    """IoU of two candidates' masks in raster coordinates."""
    inter = mask_overlap(a, b)
    if inter == 0:
        return 0.0
    return inter / (a.area + b.area - inter)


class CrossTileDeduplicator:
    """Keeps one candidate per object across tiles, streaming.

    Feed each tile's candidates with :meth:`add`; call :meth:`pop_settled`
    with the first raster row that later tiles can still reach, to take out
    the candidates no later tile can duplicate. Only candidates from different
    tiles are compared (within a tile the decoder's box NMS already ran).
    """

    def __init__(self, *, box_nms_thresh: float = 0.7, mask_iou_thresh: float = 0.5) -> None:
        self.box_nms_thresh = float(box_nms_thresh)
        self.mask_iou_thresh = float(mask_iou_thresh)
        self._kept: dict[tuple, list[Candidate]] = {}  # by tile (or stitched object)
        self._extent: dict[tuple, tuple[int, int, int, int]] = {}  # union of boxes
        self.n_duplicates = 0
        self._n_stitched = 0

    def __len__(self) -> int:
        return sum(len(v) for v in self._kept.values())

    def _same_object(self, a: Candidate, b: Candidate) -> bool:
        return (
            box_iou(a.box, b.box) > self.box_nms_thresh
            or mask_iou(a, b) > self.mask_iou_thresh
        )

    def _store(self, tile: tuple, kept: list[Candidate]) -> None:
        if not kept:
            self._kept.pop(tile, None)
            self._extent.pop(tile, None)
            return
        b = np.array([k.box for k in kept])
        self._kept[tile] = kept
        self._extent[tile] = (int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()),
                              int(b[:, 3].max()))

    def add(self, candidates: list[Candidate]) -> None:
        """Merge candidates, best first, into the kept set: each tile's as one batch, each
        stitched object (``parts`` not empty) on its own.

        They are compared with the kept candidates of other tiles (and other
        stitched objects) whose boxes intersect theirs.
        """
        batches: dict = {}
        for c in candidates:
            if c.parts:
                self._n_stitched += 1
                batches[("stitched", self._n_stitched)] = [c]
            else:
                batches.setdefault(c.tile, []).append(c)
        for key, batch in batches.items():
            self._add(key, batch)

    def _add(self, tile, candidates: list[Candidate]) -> None:
        b = np.array([c.box for c in candidates])
        ux0, uy0, ux1, uy1 = b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max()
        near_tiles = [t for t, (x0, y0, x1, y1) in self._extent.items()
                      if t != tile and x0 < ux1 and x1 > ux0 and y0 < uy1 and y1 > uy0]
        others = [k for t in near_tiles for k in self._kept[t]]
        boxes = np.array([k.box for k in others], dtype=np.int64).reshape(-1, 4)
        gone: set[int] = set()
        added: list[Candidate] = []
        for cand in sorted(candidates, key=lambda c: c.rank, reverse=True):
            x0, y0, x1, y1 = cand.box
            near = np.flatnonzero((boxes[:, 0] < x1) & (boxes[:, 2] > x0)
                                  & (boxes[:, 1] < y1) & (boxes[:, 3] > y0))
            rivals = [others[i] for i in near
                      if id(others[i]) not in gone and self._same_object(cand, others[i])]
            if any(k.rank >= cand.rank for k in rivals):
                self.n_duplicates += 1
                continue
            self.n_duplicates += len(rivals)
            gone.update(id(k) for k in rivals)
            added.append(cand)
        if gone:
            for t in near_tiles:
                self._store(t, [k for k in self._kept[t] if id(k) not in gone])
        self._store(tile, self._kept.get(tile, []) + added)

    def pop_settled(self, reach_y: int) -> list[Candidate]:
        """Remove and return kept candidates entirely above row ``reach_y``.

        ``reach_y``: no tile still to come covers a row above it, so those
        candidates can no longer be duplicated. Returned in (y0, x0) order.
        """
        settled = []
        for t in list(self._kept):
            kept = self._kept[t]
            settled.extend(k for k in kept if k.box[3] <= reach_y)
            self._store(t, [k for k in kept if k.box[3] > reach_y])
        settled.sort(key=lambda c: (c.y0, c.x0, -c.rank[0], -c.rank[1]))
        return settled

    def lowest_pending_row(self) -> int | None:
        """Top row of the highest-up candidate still pending; None when none is."""
        return min((e[1] for e in self._extent.values()), default=None)

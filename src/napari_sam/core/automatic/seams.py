"""Seam stitching: objects cut by inner tile borders, joined across tiles into one candidate.

The edge filter (:mod:`napari_sam.core.automatic.candidates`) leaves an object that touches
a border shared with a neighbour tile to that neighbour, where it is more
central. An object larger than about half the overlap that straddles a seam
touches an inner border in *every* tile that decodes it, so without
stitching it would be lost. Such masks are kept as *partials*
(``Candidate.cut`` names the borders that cut them) and joined here:

1. **pairing**: when a tile's partials arrive, they are compared with the
   pending partials of every earlier tile whose window intersects the tile's
   window (left, upper-left, upper, upper-right neighbours). Two partials
   agree when, restricted to the intersection of the two tile windows (the
   overlap strip or corner both tiles see), their masks share at least
   ``min_pixels`` pixels and have an IoU above ``iou_thresh``. Within one
   pair of tiles the pairs are taken greedily by IoU, each partial at most
   once (so nested masks, a field and a part of it, do not chain into one);
2. **groups**: the pairs form groups by union-find, so an object over three
   or more tiles (a row of tiles, a 2x2 corner, an object larger than a tile)
   becomes one group;
3. **completeness**: a group is finished once no tile still to come can hold
   any of its pixels (its box lies above the next tile-row). Each part's cut
   is checked: of the part's pixels on the tile border that cuts it, at
   least ``cut_covered`` must also be in a part from a tile beyond that
   border. So the union touches an inner border only where the object goes
   on into another joined part. A side that only *grazes* its border (the
   part's pixels on it fewer than ``graze_share``, 0.1, of the part's length
   along it: a mask that leaks a little past the object's edge, as coarse
   masks of large objects do) is not a cut: on the 4096 px benchmark mosaic
   counting grazes as cuts dropped one more object of 128-512 px;
4. **result**: the union of the parts' masks (one crop over the union box,
   memory follows the object's size), then the same cleanup
   (``min_region_area``) and ``min_area``/``max_area`` as a one-tile
   candidate; its scores are the area-weighted means of the parts'
   predicted IoU and stability score; ``tile`` is the tile of its largest
   part and ``parts`` lists them all. The stitched object then goes through
   cross-tile deduplication like any candidate.

Dropped, as before stitching: a partial that finds no partner (a group of
one), and a group with a cut that no part continues (an object truncated
because its continuation was not segmented in the neighbour). Why: a partial
without a partner is either an object that the neighbour tile sees whole (it
is kept there, with more context, so keeping the partial too would only add
a duplicate and could replace the neighbour's mask on a rank tie: objects
that fit in one tile keep exactly their result without stitching), or an
object truncated at the border, which would be published as if it were whole.

Cost: pairing compares a tile's partials with those of its (at most four)
earlier neighbours over their overlap only. Memory follows the partials
pending (about two tile-rows) and each joined object's own size; but labels
rows below the top of a pending partial are not written until its group is
finished, so an object stitched down many tile-rows (a river) holds back
writing, and the objects found meanwhile stay in memory, until its end.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_sam.core.automatic.candidates import Candidate, TileFilter, finish_mask
from napari_sam.core.automatic.point_grid import AxisWindows

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class StitchSettings:
    """When partials join (see the module docstring) and what a joined object must pass.

    ``cleanup`` (its ``min_region_area``, ``min_area``, ``max_area``) is
    applied to each joined object, as the tiles apply it to one-tile ones.
    """

    iou_thresh: float = 0.5
    min_pixels: int = 16
    cut_covered: float = 0.8
    graze_share: float = 0.1
    cleanup: TileFilter = TileFilter()


def _intersect(a: Box, b: Box) -> Box | None:
    x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    return (x0, y0, x1, y1) if x0 < x1 and y0 < y1 else None


def _window(c: Candidate, region: Box) -> np.ndarray:
    """``c``'s mask over ``region`` (global XYXY), False outside its box."""
    x0, y0, x1, y1 = region
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    part = _intersect(c.box, region)
    if part is not None:
        px0, py0, px1, py1 = part
        out[py0 - y0:py1 - y0, px0 - x0:px1 - x0] = c.mask[py0 - c.y0:py1 - c.y0,
                                                           px0 - c.x0:px1 - c.x0]
    return out


def overlap_agreement(a: Candidate, b: Candidate, region: Box) -> tuple[int, float]:
    """(shared pixels, IoU) of two masks restricted to ``region`` (global XYXY)."""
    ra, rb = _intersect(a.box, region), _intersect(b.box, region)
    if ra is None or rb is None or _intersect(ra, rb) is None:
        return 0, 0.0
    span = (min(ra[0], rb[0]), min(ra[1], rb[1]), max(ra[2], rb[2]), max(ra[3], rb[3]))
    ma, mb = _window(a, span), _window(b, span)
    inter = int(np.count_nonzero(ma & mb))
    if inter == 0:
        return 0, 0.0
    return inter, inter / int(np.count_nonzero(ma | mb))


class SeamStitcher:
    """Joins partial candidates of neighbouring tiles, streaming in row-major tile order.

    :meth:`add` each tile's partials; :meth:`pop_finished` with the first
    raster row later tiles can still reach returns the stitched objects that
    are finished (see the module docstring).
    """

    def __init__(self, *, rows: AxisWindows, cols: AxisWindows,
                 settings: StitchSettings = StitchSettings()) -> None:
        self.rows, self.cols = rows, cols
        self.settings = settings
        self._parts: dict[int, Candidate] = {}
        self._parent: dict[int, int] = {}
        self._by_tile: dict[tuple[int, int], list[int]] = {}
        self._next = 0
        self.n_partials = 0
        self.n_stitched = 0
        self.n_dropped = 0  # partials in groups that were dropped (alone, or a cut not continued)

    def __len__(self) -> int:
        return len(self._parts)

    def window(self, tile: tuple[int, int]) -> Box:
        """The tile's part of the raster, XYXY end-exclusive."""
        r, c = tile
        x0, y0 = self.cols.starts[c], self.rows.starts[r]
        return (x0, y0, x0 + self.cols.sizes[c], y0 + self.rows.sizes[r])

    def _find(self, i: int) -> int:
        while self._parent[i] != i:
            self._parent[i] = self._parent[self._parent[i]]
            i = self._parent[i]
        return i

    def _union(self, i: int, j: int) -> None:
        ri, rj = self._find(i), self._find(j)
        if ri != rj:
            self._parent[max(ri, rj)] = min(ri, rj)

    def add(self, partials: list[Candidate]) -> None:
        """Take one or more tiles' partials and pair them with earlier tiles' pending ones."""
        by_tile: dict[tuple[int, int], list[Candidate]] = {}
        for p in partials:
            by_tile.setdefault(p.tile, []).append(p)
        for tile, parts in by_tile.items():
            ids = []
            for p in parts:
                self._parts[self._next] = p
                self._parent[self._next] = self._next
                ids.append(self._next)
                self._next += 1
            self.n_partials += len(ids)
            win = self.window(tile)
            for other, other_ids in list(self._by_tile.items()):
                region = _intersect(win, self.window(other)) if other != tile else None
                if region is not None:
                    self._pair(ids, other_ids, region)
            self._by_tile.setdefault(tile, []).extend(ids)

    def _pair(self, ids: list[int], other_ids: list[int], region: Box) -> None:
        s = self.settings
        pairs = []
        for i in ids:
            a = self._parts[i]
            if _intersect(a.box, region) is None:
                continue
            for j in other_ids:
                inter, iou = overlap_agreement(a, self._parts[j], region)
                if inter >= s.min_pixels and iou > s.iou_thresh:
                    pairs.append((-iou, i, j))
        used: set[int] = set()
        for _, i, j in sorted(pairs):
            if i not in used and j not in used:
                used.update((i, j))
                self._union(i, j)

    def lowest_pending_row(self) -> int | None:
        """Top row of the highest-up pending partial; None when none is pending."""
        return min((p.box[1] for p in self._parts.values()), default=None)

    def pop_finished(self, reach_y: int) -> list[Candidate]:
        """Remove the groups lying entirely above row ``reach_y``; return their stitched
        objects (those that pass), in (y0, x0) order."""
        groups: dict[int, list[int]] = {}
        for i in self._parts:
            groups.setdefault(self._find(i), []).append(i)
        out = []
        for members in groups.values():
            if max(self._parts[i].box[3] for i in members) > reach_y:
                continue
            parts = [self._parts.pop(i) for i in members]
            for i in members:
                self._parent.pop(i)
            # once per tile: a chain of pairs can put two partials of one tile in a group
            for tile in {p.tile for p in parts}:
                ids = self._by_tile[tile]
                ids[:] = [i for i in ids if i in self._parts]
                if not ids:
                    del self._by_tile[tile]
            joined = self._join(parts)
            if joined is None:
                self.n_dropped += len(parts)
            else:
                self.n_stitched += 1
                out.append(joined)
        # a group leaves as a whole, so no pending partial's union-find chain is broken
        out.sort(key=lambda c: (c.y0, c.x0, -c.rank[0], -c.rank[1]))
        return out

    def _cut_continued(self, part: Candidate, others: list[Candidate]) -> bool:
        """Whether at least ``cut_covered`` of ``part``'s pixels on each tile border that
        cuts it are also in a part from a tile beyond that border."""
        wx0, wy0, wx1, wy1 = self.window(part.tile)
        r, c = part.tile
        lines = (  # per side (left, top, right, bottom): the border line, is a tile beyond it
            ((wx0, part.box[1], wx0 + 1, part.box[3]), lambda t: t[1] < c),
            ((part.box[0], wy0, part.box[2], wy0 + 1), lambda t: t[0] < r),
            ((wx1 - 1, part.box[1], wx1, part.box[3]), lambda t: t[1] > c),
            ((part.box[0], wy1 - 1, part.box[2], wy1), lambda t: t[0] > r),
        )
        for side, (is_cut, (line, beyond)) in enumerate(zip(part.cut, lines)):
            if not is_cut or _intersect(line, part.box) is None:
                continue
            mine = _window(part, line)
            n = int(np.count_nonzero(mine))
            if n == 0:  # within the margin of the border, but not on it: nothing goes on
                continue
            # the border grazed: a few pixels of a long side (a mask that spills a little
            # past the object's edge to the border), not an object cut across
            along = part.box[3] - part.box[1] if side in (0, 2) else part.box[2] - part.box[0]
            if n < self.settings.graze_share * along:
                continue
            covered = np.zeros_like(mine)
            for q in others:
                if beyond(q.tile) and _intersect(q.box, line) is not None:
                    covered |= _window(q, line)
            if np.count_nonzero(mine & covered) < self.settings.cut_covered * n:
                return False
        return True

    def _join(self, parts: list[Candidate]) -> Candidate | None:
        if len({p.tile for p in parts}) < 2:
            return None  # no partner in another tile
        for p in parts:
            if not self._cut_continued(p, [q for q in parts if q.tile != p.tile]):
                return None
        b = np.array([p.box for p in parts])
        x0, y0, x1, y1 = int(b[:, 0].min()), int(b[:, 1].min()), int(b[:, 2].max()), \
            int(b[:, 3].max())
        mask = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        valid = None
        for p in parts:
            mask[p.y0 - y0:p.box[3] - y0, p.x0 - x0:p.box[2] - x0] |= p.mask
            if p.nodata is not None:  # the parts' nodata stays out of the joined mask
                if valid is None:
                    valid = np.ones_like(mask)
                valid[p.y0 - y0:p.box[3] - y0, p.x0 - x0:p.box[2] - x0] &= ~p.nodata
        done = finish_mask(mask, self.settings.cleanup, valid)
        if done is None:
            return None
        mask, dy, dx = done
        areas = np.array([max(p.area, 1) for p in parts], dtype=np.float64)
        weights = areas / areas.sum()
        largest = max(parts, key=lambda p: (p.area, -p.tile[0], -p.tile[1]))
        return Candidate(
            mask=mask, y0=y0 + dy, x0=x0 + dx,
            predicted_iou=float(np.dot(weights, [p.predicted_iou for p in parts])),
            stability_score=float(np.dot(weights, [p.stability_score for p in parts])),
            tile=largest.tile, point=largest.point,
            parts=tuple(sorted({p.tile for p in parts})),
        )

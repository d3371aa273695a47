"""Multi-scale automatic segmentation: the raster also segmented at 1/2 and 1/4, objects
merged across scales.

A tile sees ``tile_size`` pixels; an object larger than about a tile (a
field, a lake, a big cloud) is cut into fragments at full resolution, and
seam stitching can only join fragments that agree. Decoded on the raster
downscaled by 2 or 4 (a pyramid level when the file has one), the same
object fits in one tile. So every extra scale ``s`` (``SegmentConfig.scales``)
is embedded and decoded like the full-resolution pass (same filters,
coarse-to-fine points, seam stitching, cross-tile deduplication), its masks
brought back to full resolution, and only its objects at least
``min_extent`` model pixels across (``64 * s`` raster pixels: smaller ones
the full-resolution pass sees whole, with sharper edges) are kept
(:func:`coarse_objects`). Within a scale, masks are also compared, not only
boxes (:func:`mask_nms`, the deduplication's mask IoU): a coarse scale has few
tiles, so most duplicates share one, where only the decoder's box NMS ran,
and a few stray pixels of an upsampled mask widen its box past that (4096
benchmark mosaic: 221 pairs of coarse objects with mask IoU above 0.5 before,
34 after, all of them pairs across scales, which the rules below decide).

Merging (:class:`ScaleMerger`), coarsest scale first, then each finer scale
including the full-resolution stream, a finer mask ``F`` against each kept
coarser object ``O``:

- *fragment*: at least ``inside`` (0.7) of ``F`` lies in ``O`` and ``F`` is
  a partial (a mask cut by a tile seam, a piece by nature), or it is
  smaller than ``fragment_share`` (0.5) of ``O`` and not scored higher than
  ``O`` (predicted IoU, then stability): ``F`` is dropped, the whole object
  wins. A whole finer mask scored higher stays and is painted over ``O``: a
  coarse mask that swallowed several objects does not erase them. A partial
  goes whatever its score: kept, it would be stitched into a piece of ``O``
  that splits ``O`` in two (on the 2048 benchmark mosaic this took the seam
  splits from 1 of 12 to none);
- *same object*: mask IoU of ``F`` and ``O`` at least ``same_iou`` (0.5) and
  ``F`` whole (not a partial cut by a seam): ``F`` replaces ``O`` (full
  resolution keeps its sharper edges). Between two coarse scales
  (:func:`merge_scales`) the bar is ``coarse_same_iou`` (0.75): half of a
  large object has an IoU of about 0.5 with it, and with 0.5 the halves that
  1/2 scale gave replaced the whole object that 1/4 gave (4096 benchmark
  mosaic: objects longer than a tile found 1 of 9 with 0.5, 4 of 9 with 0.75);
- otherwise both stay; where they overlap the painter's order (predicted
  IoU, stability) decides.

When the coarse masks are refined (``SegmentConfig.refine``), no finer mask
is the *same* object as a coarser one longer than the model segments whole
at the finer scale (``ScaleRules.same_extent``: the model's
``prompt_extent_limit``, 384 model px for sam_lite0, times the finer pass's
raster px per model px; :func:`too_long_for_finer`,
``scale_passes.whole_limit``): such a mask is the object cut short, and it
goes as a fragment. Without this, two whole full-resolution masks of halves
of a 1400 px field, each with IoU about 0.5 with it, replaced the field's
refined coarse mask (4096 benchmark mosaic: objects longer than a tile 3 of 9
against 5 of 9 with the rule); unrefined coarse masks of objects a tile can
hold are worse than the full-resolution ones, so without refinement there is
no limit.

The kept coarse objects join the full-resolution stream of
:func:`napari_sam.core.automatic.assembly.assemble_objects` before any row they cover is
written, so cross-tile deduplication, ids (one per object, counting from 1
in (y0, x0) order) and painting are those of one pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace

import numpy as np

from napari_sam.core.automatic.candidates import (
    Candidate,
    CrossTileDeduplicator,
    mask_iou,
    mask_overlap,
)
from napari_sam.core.automatic.coarse_to_fine import TileCandidates
from napari_sam.core.automatic.point_grid import AxisWindows, axis_assignment
from napari_sam.core.automatic.seams import SeamStitcher
from napari_sam.core.progress import Progress, ProgressGen


@dataclass(frozen=True)
class ScaleRules:
    """Thresholds of the merge across scales (see the module docstring)."""

    min_extent: int = 64
    inside: float = 0.7
    fragment_share: float = 0.5
    same_iou: float = 0.5
    coarse_same_iou: float = 0.75
    same_extent: float | None = None


def too_long_for_finer(coarse: Candidate, rules: ScaleRules) -> bool:
    """Whether ``coarse`` is longer than ``rules.same_extent`` (raster px): more than the
    model segments whole at the finer scale, so no finer mask is the same object."""
    if rules.same_extent is None:
        return False
    x0, y0, x1, y1 = coarse.box
    return max(x1 - x0, y1 - y0) > rules.same_extent


def finer_extent(limit: int | None, scale: float) -> float | None:
    """``ScaleRules.same_extent`` for a finer pass at ``scale`` (raster px per model px) of a
    model that segments objects up to ``limit`` model px whole (None: any size)."""
    return None if limit is None else float(limit) * float(scale)


def _meeting(boxes: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Bool (N,): which of the (N, 4) XYXY ``boxes`` intersect ``box``."""
    x0, y0, x1, y1 = box
    return (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)


def mask_nms(candidates: Iterable[Candidate], thresh: float) -> list[Candidate]:
    """The candidates, in their order, without any whose mask IoU with a better ranked
    one exceeds ``thresh`` (greedy from the best, as the paper's box NMS but on masks)."""
    candidates = list(candidates)
    best_first = sorted(candidates, key=lambda c: c.rank, reverse=True)
    boxes = np.array([c.box for c in best_first], dtype=np.int64).reshape(-1, 4)
    keep = np.zeros(len(best_first), dtype=bool)
    for i, c in enumerate(best_first):
        near = np.flatnonzero(keep & _meeting(boxes, c.box))
        keep[i] = not any(mask_iou(c, best_first[j]) > thresh for j in near)
    survivors = {id(c) for c, k in zip(best_first, keep) if k}
    return [c for c in candidates if id(c) in survivors]


def relation(fine: Candidate, coarse: Candidate, rules: ScaleRules = ScaleRules()) -> str:
    """``"fragment"``, ``"same"`` or ``"other"``: how a finer mask relates to a coarser object."""
    if fine.area == 0:
        return "other"
    inter = mask_overlap(fine, coarse)
    if inter == 0:
        return "other"
    overlapping = inter / (fine.area + coarse.area - inter) >= rules.same_iou
    if overlapping and not fine.partial and not too_long_for_finer(coarse, rules):
        return "same"
    # past here an overlapping mask is a partial or cut short: a piece of the object
    if inter >= rules.inside * fine.area and (fine.partial or overlapping or (
            fine.rank <= coarse.rank and fine.area < rules.fragment_share * coarse.area)):
        return "fragment"
    return "other"


class ScaleMerger:
    """Holds the kept coarser objects; filters finer masks against them.

    ``objects``: candidates in raster coordinates. :meth:`filter` drops
    fragments and marks replaced objects; :meth:`kept` are those not replaced.
    """

    def __init__(self, objects: Iterable[Candidate], rules: ScaleRules = ScaleRules()) -> None:
        self.objects = list(objects)
        self.rules = rules
        self.replaced: set[int] = set()
        self.n_fragments = 0
        self._boxes = np.array([o.box for o in self.objects], dtype=np.int64).reshape(-1, 4)

    def _near(self, c: Candidate) -> np.ndarray:
        return np.flatnonzero(_meeting(self._boxes, c.box))

    def filter(self, candidates: Iterable[Candidate]) -> list[Candidate]:
        """The finer ``candidates`` that are not fragments of a kept coarser object."""
        out = []
        for c in candidates:
            fragment = False
            same = []
            for i in self._near(c):
                kind = relation(c, self.objects[i], self.rules)
                if kind == "fragment":
                    fragment = True
                elif kind == "same":
                    same.append(int(i))
            if fragment and not same:
                self.n_fragments += 1
                continue
            self.replaced.update(same)
            out.append(c)
        return out

    def kept(self) -> list[Candidate]:
        """The coarser objects no finer mask replaced, in (y0, x0) order."""
        keep = [o for i, o in enumerate(self.objects) if i not in self.replaced]
        return sorted(keep, key=lambda c: (c.y0, c.x0))


def merge_scales(by_scale: list[list[Candidate]], rules: ScaleRules = ScaleRules(), *,
                 scales: list[float] | None = None, limit: int | None = None
                 ) -> list[Candidate]:
    """Objects of several coarse scales, coarsest first, merged into one set (same rules,
    with ``coarse_same_iou`` for the same object). ``scales``: each set's raster px per
    model px and ``limit`` the model's whole-object limit (model px), for
    ``same_extent`` (:func:`finer_extent`); None: no limit."""
    kept: list[Candidate] = []
    rules = replace(rules, same_iou=rules.coarse_same_iou)
    for i, objects in enumerate(by_scale):
        extent = finer_extent(limit, scales[i]) if scales is not None else None
        merger = ScaleMerger(kept, replace(rules, same_extent=extent))
        finer = merger.filter(objects)
        kept = merger.kept() + finer
    return sorted(kept, key=lambda c: (c.y0, c.x0))


def inject(results: Iterable[tuple[tuple[int, int], list]], merger: ScaleMerger,
           rows: AxisWindows) -> Iterator[tuple[tuple[int, int], list]]:
    """The full-resolution tile results, filtered by ``merger``, with its kept objects added.

    Each tile's result is held back until the next arrives; when that one
    starts a new tile-row ``q``, every kept object beginning above
    ``rows.starts[q]`` is added to the held result (assembly writes those
    rows when row ``q`` arrives). The rest go with the last result.
    """
    held = None
    done: set[int] = set()

    def due(limit: int) -> list[Candidate]:
        out = []
        for i, o in enumerate(merger.objects):
            if i not in done and i not in merger.replaced and o.y0 < limit:
                done.add(i)
                out.append(o)
        return out

    for index, candidates in results:
        kept = TileCandidates(merger.filter(candidates),
                              n_decoded=getattr(candidates, "n_decoded", len(candidates)))
        if held is not None:
            if index[0] > held[0][0]:
                held[1].extend(due(rows.starts[index[0]]))
            yield held
        held = (index, kept)
    rest = due(rows.extent + 1)
    if held is None:
        if rest:
            yield (len(rows.starts) - 1, 0), TileCandidates(rest)
        return
    held[1].extend(rest)
    yield held


def coarse_objects(tile_results: Iterable[tuple[tuple[int, int], list]], *, rows: AxisWindows,
                   cols: AxisWindows, stitch, dedup_box: float, dedup_mask: float, scale: int,
                   fine_rows: AxisWindows, fine_cols: AxisWindows, n_tiles: int,
                   rules: ScaleRules = ScaleRules()) -> ProgressGen[tuple[list[Candidate], int]]:
    """One coarse scale's objects in raster coordinates, and the points decoded for them.

    ``tile_results``: ``((row, col), candidates)`` of the scale's grid
    (``rows``/``cols``) in row-major order; ``stitch`` its StitchSettings.
    Partials are stitched, duplicates across tiles removed, objects under
    ``rules.min_extent * scale`` px across dropped; each object's ``tile``
    becomes the full-resolution tile (``fine_rows``/``fine_cols``) holding
    its prompt point, and ``parts`` names that tile (so the full-resolution
    deduplication compares it with every tile's candidates). Yields Progress(f"scale 1/{scale}", tiles done).
    """
    stage = f"scale 1/{scale}"
    dedup = CrossTileDeduplicator(box_nms_thresh=dedup_box, mask_iou_thresh=dedup_mask)
    stitcher = SeamStitcher(rows=rows, cols=cols, settings=stitch)
    decoded = 0
    done = 0
    yield Progress(stage, 0, n_tiles)
    for _, candidates in tile_results:
        decoded += int(getattr(candidates, "n_decoded", len(candidates)))
        dedup.add([c for c in candidates if not c.partial])
        stitcher.add([c for c in candidates if c.partial])
        done += 1
        yield Progress(stage, done, n_tiles)
    dedup.add(stitcher.pop_finished(rows.extent + 1))
    found = dedup.pop_settled(rows.extent + 1)
    minimum = rules.min_extent * scale
    out = []
    # within a tile only the decoder's box NMS ran, and a few stray pixels of an
    # upsampled coarse mask widen its box enough to pass it: masks compared too
    for c in mask_nms(found, dedup_mask):
        x0, y0, x1, y1 = c.box
        if max(x1 - x0, y1 - y0) < minimum:
            continue
        px, py = np.array([c.point[0]]), np.array([c.point[1]])
        tile = (int(max(axis_assignment(py, fine_rows)[0], 0)),
                int(max(axis_assignment(px, fine_cols)[0], 0)))
        # parts not empty: deduplication compares it with every tile's candidates
        out.append(replace(c, tile=tile, parts=(tile,), cut=(False, False, False, False)))
    yield Progress(stage, n_tiles, n_tiles, f"{len(out)} large objects")
    return out, decoded

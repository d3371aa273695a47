"""Stream per-tile candidates into one labels raster and one object table.

Tiles must arrive in row-major order (all tiles of tile-row r before any of
tile-row r+1). After each tile-row the candidates that no later tile can reach
are *settled*: they get their ids (in (y0, x0) order, counting from 1) and are
painted; rows that no pending candidate reaches are written to the sink. So
the pending set spans about two tile-rows whatever the raster's size.

Partial candidates (masks cut by an inner tile border, ``Candidate.cut``) go
to a :class:`~napari_sam.core.automatic.seams.SeamStitcher`; when a tile-row closes,
the stitched objects no later tile can reach join the deduplication before
the settled candidates are taken out, so a stitched object and a one-tile
candidate of the same object never both survive. Candidates reaching below
the top of a pending partial are not settled yet, and rows are written only
above it: an object stitched over many tile-rows holds them back until it
is finished.

The model plays no part here: tests drive this with a fake decoder.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from napari_sam.core.automatic.candidates import Candidate, CrossTileDeduplicator
from napari_sam.core.automatic.object_table import ObjectRecord
from napari_sam.core.automatic.paint_labels import LabelPainter, Sink
from napari_sam.core.automatic.point_grid import AxisWindows
from napari_sam.core.automatic.seams import SeamStitcher, StitchSettings
from napari_sam.core.progress import Progress, ProgressGen


@dataclass(frozen=True)
class MergeSettings:
    """Cross-tile deduplication thresholds (see :class:`CrossTileDeduplicator`) and
    seam stitching settings (see :class:`~napari_sam.core.automatic.seams.StitchSettings`)."""

    box_nms_thresh: float = 0.7
    mask_iou_thresh: float = 0.5
    stitch: StitchSettings = StitchSettings()


@dataclass(frozen=True)
class AssemblyStats:
    """What the assembly did: candidates in (partials included), duplicates removed,
    objects out; partials in and the stitched objects made of them."""

    candidates: int
    duplicates: int
    objects: int
    partials: int = 0
    stitched: int = 0


def assemble_objects(
    tile_results: Iterable[tuple[tuple[int, int], list[Candidate]]],
    *,
    rows: AxisWindows,
    cols: AxisWindows,
    sink: Sink,
    settings: MergeSettings = MergeSettings(),
    n_tiles: int | None = None,
    stage: str = "segment",
    block: int = 1024,
    align: int = 512,
) -> ProgressGen[tuple[list[ObjectRecord], AssemblyStats]]:
    """Merge tiles' candidates, paint them into ``sink``; yield Progress, return (table, stats).

    ``tile_results`` yields ``((row, col), candidates)`` in row-major order
    (tiles without work may be left out). ``sink(y0, x0, labels)`` receives
    (h, w) uint32 windows that together cover the raster exactly once.
    """
    height, width = rows.extent, cols.extent
    dedup = CrossTileDeduplicator(
        box_nms_thresh=settings.box_nms_thresh, mask_iou_thresh=settings.mask_iou_thresh
    )
    stitcher = SeamStitcher(rows=rows, cols=cols, settings=settings.stitch)
    painter = LabelPainter(height=height, width=width, sink=sink, block=block, align=align)
    total = n_tiles if n_tiles is not None else len(rows.starts) * len(cols.starts)
    next_id = 1
    n_candidates = 0
    done = 0

    def close_rows_before(row: int) -> None:
        nonlocal next_id
        reach = rows.starts[row] if row < len(rows.starts) else height
        dedup.add(stitcher.pop_finished(reach))
        # a pending partial may still become an object that duplicates a kept candidate
        top = stitcher.lowest_pending_row()
        settled = dedup.pop_settled(reach if top is None else min(reach, top))
        objects = []
        for cand in settled:
            objects.append((next_id, cand))
            next_id += 1
        painter.add(objects)
        pending = [r for r in (dedup.lowest_pending_row(), stitcher.lowest_pending_row())
                   if r is not None]
        painter.flush(min([reach, *pending]))

    current = 0
    yield Progress(stage, 0, total)
    for (row, _col), candidates in tile_results:
        if row < current:
            raise ValueError(f"tile row {row} arrived after row {current}: need row-major order")
        while current < row:
            current += 1
            close_rows_before(current)
        dedup.add([c for c in candidates if not c.partial])
        stitcher.add([c for c in candidates if c.partial])
        n_candidates += len(candidates)
        done += 1
        # found so far: objects a later overlap may still hide are counted (the final
        # message counts those left visible)
        yield Progress(stage, done, total, f"{next_id - 1 + len(dedup)} found so far")
    close_rows_before(len(rows.starts))
    table = painter.finish()
    yield Progress(stage, total, total, f"{len(table)} objects")
    return table, AssemblyStats(
        candidates=n_candidates, duplicates=dedup.n_duplicates, objects=len(table),
        partials=stitcher.n_partials, stitched=stitcher.n_stitched,
    )

"""Paint settled objects into a labels raster, band by band, and measure what is visible.

Where masks overlap, the object with the higher (predicted_iou,
stability_score) wins the pixel; on a tie the lower id wins. The object
table therefore describes the *visible* pixels: area, box and centroid are
those of the label in the raster, and an object left with no visible pixel is
dropped from the table (its id does not appear in the labels either).

Memory: the painter holds the settled objects whose rows are not all written
yet and one band of at most ``block`` x ``block`` pixels at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_sam.core.automatic.candidates import Candidate
from napari_sam.core.automatic.object_table import ObjectRecord

Sink = Callable[[int, int, np.ndarray], None]
"""``sink(y0, x0, labels)`` writes a (h, w) uint32 window at raster row y0, column x0."""


class _Stats:
    __slots__ = ("area", "sx", "sy", "x0", "y0", "x1", "y1")

    def __init__(self) -> None:
        self.area = 0
        self.sx = 0.0
        self.sy = 0.0
        self.x0 = self.y0 = np.iinfo(np.int64).max
        self.x1 = self.y1 = -1


class LabelPainter:
    """Streams uint32 labels of a ``height`` x ``width`` raster into ``sink``.

    :meth:`add` takes settled objects with their ids; :meth:`flush` writes
    every row above ``upto`` (rounded down to a multiple of ``align`` except
    at the raster's end) in windows ``block`` columns wide; :meth:`finish`
    writes the rest and returns the object table, sorted by id.
    """

    def __init__(
        self, *, height: int, width: int, sink: Sink, block: int = 1024, align: int = 256
    ) -> None:
        self.height, self.width = int(height), int(width)
        self.sink = sink
        self.block = max(1, int(block))
        self.align = max(1, int(align))
        self.written = 0
        self._objects: list[tuple[int, Candidate]] = []
        self._stats: dict[int, _Stats] = {}
        self._records: list[ObjectRecord] = []

    def add(self, objects: list[tuple[int, Candidate]]) -> None:
        """Queue settled objects ``(id, candidate)``; none may reach above the written rows."""
        for oid, cand in objects:
            if cand.y0 < self.written:
                raise ValueError(f"object {oid} starts at row {cand.y0}, already written")
            self._objects.append((int(oid), cand))
            self._stats[int(oid)] = _Stats()

    def flush(self, upto: int) -> None:
        """Write all rows above ``upto``: the caller promises no object still to come reaches them."""
        upto = min(int(upto), self.height)
        if upto < self.height:
            upto -= upto % self.align
        while self.written < upto:
            stop = min(upto, self.written + self.block)
            self._paint_band(self.written, stop)
            self.written = stop
            self._retire()

    def finish(self) -> list[ObjectRecord]:
        """Write the remaining rows; return the table of visible objects, by id."""
        self.flush(self.height)
        self._retire()
        return sorted(self._records, key=lambda r: r.id)

    def _paint_band(self, y0: int, y1: int) -> None:
        live = [(oid, c) for oid, c in self._objects if c.y0 < y1 and c.box[3] > y0]
        # lowest priority first: later paints win
        live.sort(key=lambda oc: (oc[1].rank, -oc[0]))
        boxes = np.array([c.box for _, c in live], dtype=np.int64).reshape(-1, 4)
        for x0 in range(0, self.width, self.block):
            x1 = min(self.width, x0 + self.block)
            band = np.zeros((y1 - y0, x1 - x0), dtype=np.uint32)
            hit = np.flatnonzero((boxes[:, 0] < x1) & (boxes[:, 2] > x0))
            for i in hit:
                oid, c = live[i]
                cx0, cy0, cx1, cy1 = c.box
                ys, ye = max(cy0, y0), min(cy1, y1)
                xs, xe = max(cx0, x0), min(cx1, x1)
                part = c.mask[ys - cy0:ye - cy0, xs - cx0:xe - cx0]
                band[ys - y0:ye - y0, xs - x0:xe - x0][part] = oid
            self._measure(band, y0, x0)
            self.sink(y0, x0, band)

    def _measure(self, band: np.ndarray, y0: int, x0: int) -> None:
        rr, cc = np.nonzero(band)
        if rr.size == 0:
            return
        vals = band[rr, cc]
        ids, inv, counts = np.unique(vals, return_inverse=True, return_counts=True)
        sy = np.bincount(inv, weights=rr + y0 + 0.5)
        sx = np.bincount(inv, weights=cc + x0 + 0.5)
        n = ids.size
        ymin = np.full(n, np.iinfo(np.int64).max)
        xmin = np.full(n, np.iinfo(np.int64).max)
        ymax = np.full(n, -1)
        xmax = np.full(n, -1)
        np.minimum.at(ymin, inv, rr + y0)
        np.minimum.at(xmin, inv, cc + x0)
        np.maximum.at(ymax, inv, rr + y0)
        np.maximum.at(xmax, inv, cc + x0)
        for j, oid in enumerate(ids.tolist()):
            s = self._stats[oid]
            s.area += int(counts[j])
            s.sx += float(sx[j])
            s.sy += float(sy[j])
            s.x0 = min(s.x0, int(xmin[j]))
            s.y0 = min(s.y0, int(ymin[j]))
            s.x1 = max(s.x1, int(xmax[j]) + 1)
            s.y1 = max(s.y1, int(ymax[j]) + 1)

    def _retire(self) -> None:
        """Move objects whose rows are all written from the queue to the table."""
        still = []
        for oid, c in self._objects:
            if c.box[3] > self.written:
                still.append((oid, c))
                continue
            s = self._stats.pop(oid)
            if s.area == 0:
                continue
            self._records.append(
                ObjectRecord(
                    id=oid,
                    bbox=(s.x0, s.y0, s.x1, s.y1),
                    area=s.area,
                    predicted_iou=c.predicted_iou,
                    stability_score=c.stability_score,
                    centroid=(s.sx / s.area, s.sy / s.area),
                    tile=c.tile,
                    point=c.point,
                )
            )
        self._objects = still

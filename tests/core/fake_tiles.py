"""Synthetic tiles for the merge-layer tests: true objects seen through tile windows."""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from napari_sam.core import progress
from napari_sam.core.automatic.assembly import assemble_objects
from napari_sam.core.automatic.candidates import TileFilter, crops_from_masks, tile_candidates
from napari_sam.core.automatic.point_grid import assign_points, axis_windows

FakeTile = namedtuple("FakeTile", "row col y0 x0 height width")


def make_tiles(height, width, tile, overlap):
    """A simple product grid: stride tile-overlap, last tile clipped to the raster."""
    stride = tile - overlap

    def starts(extent):
        s = list(range(0, max(extent - overlap, 1), stride))
        return s

    out = []
    for r, y0 in enumerate(starts(height)):
        for c, x0 in enumerate(starts(width)):
            out.append(FakeTile(r, c, y0, x0, min(tile, height - y0), min(tile, width - x0)))
    return out


def disks(height, width, n, rmin, rmax, seed):
    """A labels image of n non-overlapping disks (ids 1..n), radius in [rmin, rmax]."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((height, width), np.int32)
    yy, xx = np.mgrid[:height, :width]
    k = 0
    for _ in range(n * 20):
        r = rng.uniform(rmin, rmax)
        cy, cx = rng.uniform(0, height), rng.uniform(0, width)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        if disk.sum() < 12 or (labels[np.pad(disk, 0)] > 0).any():
            continue
        grown = np.zeros_like(disk)
        grown[max(0, int(cy - r - 2)):int(cy + r + 3), max(0, int(cx - r - 2)):int(cx + r + 3)] = True
        if (labels[grown & ((yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 2) ** 2)] > 0).any():
            continue
        k += 1
        labels[disk] = k
        if k == n:
            break
    return labels


FakeWork = namedtuple("FakeWork", "index tile points")


def decode_fake(truth, tile, points, rows, cols, settings, keep=None, valid=None):
    """One tile's candidates from a decoder returning the true objects under its points.

    ``keep(tile_index, k)``: False hides object ``k`` from that tile (as if the
    decoder had not segmented it there); None keeps all. ``valid``: the raster's
    valid-pixel mask (False on nodata), or None.
    """
    t = tile
    window = truth[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width]
    seen = {}
    for x, y in points:
        k = truth[int(y), int(x)]
        if k and k not in seen and (keep is None or keep((t.row, t.col), int(k))):
            seen[k] = (x, y)
    masks = np.stack([window == k for k in seen]) if seen else np.zeros((0, 1, 1), bool)
    n = len(seen)
    crops, offsets = crops_from_masks(masks)
    return tile_candidates(
        crops, offsets, np.full(n, 0.95), np.full(n, 0.97), np.array(list(seen.values())).reshape(-1, 2),
        tile=(t.row, t.col), rows=rows, cols=cols, settings=settings,
        valid=None if valid is None else valid[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width],
    )


class FakeDecoder:
    """``decode_fake`` as a picklable callable on ``FakeWork``, for an executor."""

    def __init__(self, truth, rows, cols, settings):
        self.truth, self.rows, self.cols, self.settings = truth, rows, cols, settings

    def __call__(self, work):
        return decode_fake(self.truth, work.tile, work.points, self.rows, self.cols, self.settings)


def fake_works(truth, tiles, points_per_side, tile_size):
    """(rows, cols, works): one FakeWork per tile, row-major."""
    height, width = truth.shape
    rows, cols = axis_windows(tiles, height, width)
    grid = assign_points(tiles, height, width, tile_size=tile_size, points_per_side=points_per_side)
    works = [FakeWork((t.row, t.col), t, grid.points_for(t.row, t.col))
             for t in sorted(tiles, key=lambda t: (t.row, t.col))]
    return rows, cols, works


def fake_results(truth, tiles, points_per_side, tile_size, settings=None, keep=None):
    """(rows, cols, results): the merge layer's input from a decoder returning the true objects."""
    settings = settings or TileFilter(edge_margin=2)
    rows, cols, works = fake_works(truth, tiles, points_per_side, tile_size)

    def results():
        for w in works:
            yield w.index, decode_fake(truth, w.tile, w.points, rows, cols, settings, keep)

    return rows, cols, results()


def assemble_into(truth_shape, rows, cols, results, merge=None):
    """Run the merge layer on ``results``; return (labels, table, stats)."""
    out = np.zeros(truth_shape, np.uint32)

    def sink(y0, x0, block):
        assert (out[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] == 0).all()
        out[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = block

    kwargs = {} if merge is None else {"settings": merge}
    table, stats = progress.run(assemble_objects(results, rows=rows, cols=cols, sink=sink,
                                                 block=48, align=16, **kwargs))
    return out, table, stats


def fake_run(truth, tiles, points_per_side, tile_size, settings=None, keep=None):
    """Run the merge layer on a fake decoder; return (labels, table, stats)."""
    rows, cols, results = fake_results(truth, tiles, points_per_side, tile_size, settings, keep)
    return assemble_into(truth.shape, rows, cols, results)


def mask_candidates(found, image_hw):
    """``sam_model`` Candidates from ``found``: (bool mask over the tile, (x, y) prompt)
    pairs, each mask cropped to its box; predicted IoU and stability 0.9."""
    import torch

    from sam_model.mask_candidates import Candidates

    crops, boxes, pts = [], [], []
    for mask, point in found:
        ys, xs = np.nonzero(mask)
        box = [xs.min(), ys.min(), xs.max(), ys.max()]
        crops.append(mask[box[1]:box[3] + 1, box[0]:box[2] + 1])
        boxes.append(box)
        pts.append(point)
    n = len(crops)
    return Candidates(crops=crops, boxes=torch.tensor(boxes, dtype=torch.int64).reshape(n, 4),
                      iou_preds=torch.full((n,), 0.9), stability=torch.full((n,), 0.9),
                      points=torch.tensor(pts, dtype=torch.float64).reshape(n, 2),
                      image_hw=tuple(image_hw))

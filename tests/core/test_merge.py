"""The merge layer on synthetic masks: a fake decoder returns the true objects seen through each tile."""

from __future__ import annotations

import numpy as np
import pytest
from fake_tiles import disks, fake_run, make_tiles

from napari_sam.core.automatic.candidates import (
    Candidate,
    CrossTileDeduplicator,
    TileFilter,
    mask_iou,
    near_inner_border,
    remove_small_regions,
)
from napari_sam.core.automatic.point_grid import assign_points, axis_windows, grid_coordinates


def match(truth, labels):
    """For each true object: the set of output ids covering it, and the best IoU."""
    found = {}
    for k in np.unique(truth[truth > 0]):
        ids = np.unique(labels[truth == k])
        ids = ids[ids > 0]
        best = 0.0
        for i in ids:
            a, b = truth == k, labels == i
            best = max(best, (a & b).sum() / (a | b).sum())
        found[int(k)] = (set(ids.tolist()), best)
    return found


@pytest.mark.parametrize("shape", [(203, 170), (96, 250), (64, 64)])
def test_objects_across_seams_get_one_id_each_and_match_untiled(shape):
    truth = disks(*shape, n=40, rmin=3, rmax=9, seed=sum(shape))
    tiled, table, stats = fake_run(truth, make_tiles(*shape, tile=64, overlap=24), 16, 64)
    whole, table1, _ = fake_run(truth, make_tiles(*shape, tile=max(shape), overlap=0), 16 * max(shape) // 64, max(shape))
    n_true = int(truth.max())
    assert stats.objects == len(table) == n_true
    assert len(table1) == n_true
    # every object exactly once, exactly its pixels; ids unique
    for labels in (tiled, whole):
        for k, (ids, best) in match(truth, labels).items():
            assert len(ids) == 1, (k, ids)
            assert best == 1.0
    assert len({r.id for r in table}) == len(table)
    # the table describes the labels raster
    for r in table:
        m = tiled == r.id
        assert m.sum() == r.area
        ys, xs = np.nonzero(m)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == r.bbox
        assert r.centroid == pytest.approx((xs.mean() + 0.5, ys.mean() + 0.5))
    # several objects straddle seams, and at least one duplicate was removed
    assert stats.duplicates > 0 or shape == (64, 64)


def test_point_grid_density_and_assignment():
    tiles = make_tiles(300, 200, tile=100, overlap=20)
    grid = assign_points(tiles, 300, 200, tile_size=100, points_per_side=10)
    assert np.allclose(np.diff(grid.xs), 10.0) and grid.xs[0] == 5.0
    assert grid.ys[-1] < 300 and grid.xs[-1] < 200
    # every point in exactly one tile, and inside it
    total = 0
    rows, cols = axis_windows(tiles, 300, 200)
    for t in tiles:
        pts = grid.points_for(t.row, t.col)
        total += len(pts)
        if len(pts):
            assert (pts[:, 0] >= t.x0).all() and (pts[:, 0] < t.x0 + t.width).all()
            assert (pts[:, 1] >= t.y0).all() and (pts[:, 1] < t.y0 + t.height).all()
    assert total == grid.n_points == grid.xs.size * grid.ys.size
    # a point near a seam goes to the tile where it is farther from an inner border
    assert grid.col_of_x[np.searchsorted(grid.xs, 75)] == 0  # x=75: 25 from col 0's right edge
    assert grid.col_of_x[np.searchsorted(grid.xs, 95)] == 1  # x=95: 15 into col 1
    assert grid_coordinates(7, 10.0).tolist() == [5.0]
    assert grid_coordinates(5, 10.0).size == 0


def test_edge_filter_only_inner_borders():
    window = (100, 0, 200, 100)
    inner = (True, False, True, True)  # the top border is the raster's edge
    assert not near_inner_border((120, 0, 150, 30), window, inner, 2)  # on the raster edge: kept
    assert near_inner_border((100, 10, 150, 30), window, inner, 2)  # touches left neighbour
    assert near_inner_border((120, 10, 199, 30), window, inner, 2)
    assert not near_inner_border((120, 10, 190, 30), window, inner, 2)


def test_remove_small_regions():
    m = np.zeros((20, 20), bool)
    m[2:12, 2:12] = True
    m[5, 5] = False  # small hole
    m[15:17, 15:17] = True  # small island
    out = remove_small_regions(m, 5)
    assert out[5, 5] and not out[15:17, 15:17].any() and out[2:12, 2:12].all()
    # background reaching the outside is never a hole, even in a tight crop
    ring = np.ones((5, 5), bool)
    ring[0, 2] = False
    assert not remove_small_regions(ring, 5)[0, 2]
    # a lone small object is kept
    assert remove_small_regions(m[15:17, 15:17], 5).all()


def _cand(mask, y0, x0, iou, tile):
    return Candidate(mask=mask, y0=y0, x0=x0, predicted_iou=iou, stability_score=0.9, tile=tile, point=(0, 0))


def test_deduplicator_keeps_the_better_of_two_tiles_and_ignores_same_tile():
    sq = np.ones((10, 10), bool)
    a = _cand(sq, 0, 0, 0.9, (0, 0))
    b = _cand(sq, 1, 1, 0.95, (0, 1))
    c = _cand(sq, 0, 0, 0.99, (0, 0))  # same tile as a: not compared with a
    assert mask_iou(a, b) == pytest.approx(81 / 119)
    d = CrossTileDeduplicator()
    d.add([a])
    d.add([b])
    assert d.pop_settled(100) == [b]
    d = CrossTileDeduplicator()
    d.add([a, c])
    assert len(d) == 2


def _straddlers(height=160, width=170):
    """Disks (radius 9) across the seams of 64-px tiles with 24-px overlap, off-centre so that
    the tile decoding some of their points sees them cut at its border."""
    yy, xx = np.mgrid[:height, :width]
    truth = np.zeros((height, width), np.int32)
    centres = [(20, 59), (20, 99), (59, 20), (99, 135), (139, 61), (61, 101)]
    for k, (cy, cx) in enumerate(centres, start=1):
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= 81] = k
    return truth


@pytest.mark.parametrize("margin", [2, -1])
def test_edge_filter_keeps_cut_masks_out(margin):
    truth = _straddlers()
    tiled, table, stats = fake_run(truth, make_tiles(*truth.shape, tile=64, overlap=24), 16, 64,
                                   settings=TileFilter(edge_margin=margin))
    found = match(truth, tiled)
    exact = all(len(ids) == 1 and best == 1.0 for ids, best in found.values())
    # with the edge filter every object is whole; without it a cut mask wins somewhere
    assert exact == (margin >= 0), found

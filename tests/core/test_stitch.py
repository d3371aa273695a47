"""Seam stitching on synthetic masks: objects larger than the overlap across seams, corners and
several tiles come out once, whole, with one id; a fake decoder returns the true objects."""

from __future__ import annotations

import numpy as np
import pytest
from fake_tiles import FakeDecoder, assemble_into, fake_run, fake_works, make_tiles

from napari_sam.core.automatic.assembly import MergeSettings
from napari_sam.core.automatic.candidates import Candidate, TileFilter
from napari_sam.core.automatic.point_grid import AxisWindows
from napari_sam.core.automatic.seams import SeamStitcher, StitchSettings, overlap_agreement

TILE, OVERLAP, PPS = 64, 24, 16  # stride 40: seams' overlap strips at 40..64, 80..104, ...
SHAPE = (300, 340)
STITCH = TileFilter(edge_margin=2)
NO_STITCH = TileFilter(edge_margin=2, keep_partials=False)


def _scene(seed=3):
    """Labels: big objects 1..5 across seams (ids below 10), small disks from 10 on."""
    h, w = SHAPE
    yy, xx = np.mgrid[:h, :w]
    truth = np.zeros(SHAPE, np.int32)
    # 1: a disk where four tiles meet (the seams' strips cross at 40..64)
    truth[(yy - 52) ** 2 + (xx - 52) ** 2 <= 18 ** 2] = 1
    # 2: a bar inside one tile-row over five tiles of that row
    truth[106:118, 110:270] = 2
    # 3: an ellipse larger than a tile both ways (140 x 90 px), over 4 x 3 tiles
    truth[((xx - 90) / 70.0) ** 2 + ((yy - 220) / 45.0) ** 2 <= 1] = 3
    # 4: an L at the corner of four other tiles
    truth[195:205, 235:275] = 4
    truth[195:240, 235:245] = 4
    # 5: a ring (a hole in the middle) across a vertical seam
    ring = ((yy - 30) ** 2 + (xx - 172) ** 2 <= 22 ** 2) & ((yy - 30) ** 2 + (xx - 172) ** 2 > 8 ** 2)
    truth[ring] = 5
    rng = np.random.default_rng(seed)
    k = 10
    for _ in range(400):
        r = rng.uniform(3, 7)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        if (cy - 30) ** 2 + (cx - 172) ** 2 < 35 ** 2:  # not in the ring's hole
            continue
        near = (yy - cy) ** 2 + (xx - cx) ** 2 <= (r + 3) ** 2
        if truth[near].any():
            continue
        truth[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
        k += 1
        if k == 40:
            break
    return truth


def _big(truth):
    return [k for k in np.unique(truth) if 0 < k < 10]


def _small(truth):
    return [k for k in np.unique(truth) if k >= 10]


def _ids_and_iou(truth, labels, k):
    ids = np.unique(labels[truth == k])
    ids = ids[ids > 0]
    best = max(((((truth == k) & (labels == i)).sum() / ((truth == k) | (labels == i)).sum())
                for i in ids), default=0.0)
    return set(ids.tolist()), best


def _tiles():
    return make_tiles(*SHAPE, tile=TILE, overlap=OVERLAP)


def test_scene_is_what_the_test_claims():
    truth = _scene()
    tiles = _tiles()
    for k in _big(truth):
        ys, xs = np.nonzero(truth == k)
        # larger than half the overlap, and in at least two tiles that see it cut
        assert max(np.ptp(ys), np.ptp(xs)) > OVERLAP
        holding = [t for t in tiles if (truth[t.y0:t.y0 + t.height, t.x0:t.x0 + t.width] == k).any()]
        assert len(holding) >= 2
    assert (truth == 2).any(axis=0).sum() == 160  # the bar: over cols 2..6
    assert np.ptp(np.nonzero(truth == 3)[1]) >= TILE and np.ptp(np.nonzero(truth == 3)[0]) >= TILE
    assert len(_small(truth)) >= 20


def test_big_objects_across_seams_come_out_once_and_whole():
    truth = _scene()
    labels, table, stats = fake_run(truth, _tiles(), PPS, TILE, settings=STITCH)
    off, table_off, stats_off = fake_run(truth, _tiles(), PPS, TILE, settings=NO_STITCH)
    for k in _big(truth):
        ids, best = _ids_and_iou(truth, labels, k)
        assert len(ids) == 1 and best == 1.0, (k, ids, best)
        # without stitching the same object is lost: the test can fail
        assert not off[truth == k].any(), k
    for k in _small(truth):
        ids, best = _ids_and_iou(truth, labels, k)
        assert len(ids) == 1 and best == 1.0, (k, ids, best)
        # small objects: the same pixels with and without stitching
        ids_off, best_off = _ids_and_iou(truth, off, k)
        assert len(ids_off) == 1 and best_off == 1.0
    assert len(table) == len(_big(truth)) + len(_small(truth)) == stats.objects
    assert len(table_off) == len(_small(truth))
    assert stats.stitched >= len(_big(truth)) and stats.partials > stats.stitched
    assert stats_off.partials == 0 and stats_off.stitched == 0
    # the table describes the labels, and a stitched object names its largest part's tile
    for r in table:
        m = labels == r.id
        assert m.sum() == r.area
        assert (r.predicted_iou, r.stability_score) == pytest.approx((0.95, 0.97))


def test_a_truncated_object_is_dropped_not_published_cut():
    """The bar's middle tile (row 2, col 4) does not segment it: the parts left and right of
    the gap each end at a border nothing continues, so the bar is dropped (as before
    stitching), not published as two cut pieces."""
    truth = _scene()
    labels, table, stats = fake_run(truth, _tiles(), PPS, TILE, settings=STITCH,
                                    keep=lambda tile, k: not (k == 2 and tile == (2, 4)))
    assert not labels[truth == 2].any()
    for k in [k for k in _big(truth) if k != 2] + _small(truth):
        ids, best = _ids_and_iou(truth, labels, k)
        assert len(ids) == 1 and best == 1.0


def test_unpartnered_partial_is_dropped_and_the_whole_neighbour_kept():
    """A disk (r 15) cut by col 0's right border; col 1 sees it whole and keeps it."""
    cols = AxisWindows((0, 40), (64, 64), 104)
    rows = AxisWindows((0,), (60,), 60)
    yy, xx = np.mgrid[:60, :104]
    disk = (yy - 30) ** 2 + (xx - 70) ** 2 <= 15 ** 2  # x 55..85: cut in col 0, whole in col 1
    part = Candidate(mask=disk[15:46, 55:64], y0=15, x0=55, predicted_iou=0.99,
                     stability_score=0.99, tile=(0, 0), point=(60, 30),
                     cut=(False, False, True, False))
    whole = Candidate(mask=disk[15:46, 55:86], y0=15, x0=55, predicted_iou=0.9,
                      stability_score=0.9, tile=(0, 1), point=(70, 30))
    labels, table, stats = assemble_into((60, 104), rows, cols, iter([((0, 0), [part]),
                                                                       ((0, 1), [whole])]))
    assert len(table) == 1 and table[0].tile == (0, 1) and table[0].area == disk.sum()
    assert stats.partials == 1 and stats.stitched == 0


@pytest.mark.parametrize("graze_share", [0.1, 0.0])
def test_a_part_that_grazes_a_border_nothing_continues_still_joins(graze_share):
    """A bar across the seam of tiles (1, 0) and (1, 1); the left part's mask spills up to
    the tile's top border on 2 px of its 44 px side (a leak past the object's edge, as a
    coarse mask of a large object often has). The top border is not continued by any part
    above, but the object is not cut there: it is joined, unless grazes count as cuts."""
    rows = AxisWindows((0, 40), (64, 64), 104)
    cols = AxisWindows((0, 40), (64, 64), 104)
    bar = np.zeros((104, 104), bool)
    bar[50:70, 20:90] = True
    left_mask = bar.copy()
    left_mask[40:50, 30:32] = True  # the spill, up to the top border (row 40)
    a = Candidate(mask=left_mask[40:70, 20:64], y0=40, x0=20, predicted_iou=0.9,
                  stability_score=0.95, tile=(1, 0), point=(30, 60), cut=(False, True, True, False))
    b = Candidate(mask=bar[50:70, 40:90], y0=50, x0=40, predicted_iou=0.9,
                  stability_score=0.95, tile=(1, 1), point=(70, 60), cut=(True, False, False, False))
    stitcher = SeamStitcher(rows=rows, cols=cols, settings=StitchSettings(graze_share=graze_share))
    stitcher.add([a])
    stitcher.add([b])
    out = stitcher.pop_finished(200)
    if graze_share > 0:
        assert len(out) == 1 and out[0].area == bar.sum() + 20
    else:
        assert out == [] and stitcher.n_dropped == 2


@pytest.mark.parametrize("stitched_better", [False, True])
def test_a_stitched_object_and_a_one_tile_candidate_of_it_do_not_both_survive(stitched_better):
    cols = AxisWindows((0, 40), (64, 64), 104)
    rows = AxisWindows((0,), (60,), 60)
    yy, xx = np.mgrid[:60, :104]
    disk = (yy - 30) ** 2 + (xx - 52) ** 2 <= 15 ** 2  # x 37..67: cut in both tiles
    inner = (yy - 30) ** 2 + (xx - 52) ** 2 <= 14 ** 2
    score = 0.95
    left = Candidate(mask=disk[15:46, 37:64], y0=15, x0=37, predicted_iou=score,
                     stability_score=0.97, tile=(0, 0), point=(45, 30), cut=(False, False, True, False))
    right = Candidate(mask=disk[15:46, 40:68], y0=15, x0=40, predicted_iou=score,
                      stability_score=0.97, tile=(0, 1), point=(60, 30), cut=(True, False, False, False))
    one = Candidate(mask=inner[16:45, 38:67], y0=16, x0=38, predicted_iou=0.9 if stitched_better
                    else 0.95, stability_score=0.97, tile=(0, 1), point=(52, 30))
    labels, table, stats = assemble_into((60, 104), rows, cols, iter([((0, 0), [left]),
                                                                       ((0, 1), [right, one])]))
    assert len(table) == 1 and stats.stitched == 1 and stats.duplicates == 1
    # on a tie the one-tile candidate (first in) stays, as it would without stitching
    assert table[0].area == (disk.sum() if stitched_better else inner.sum())


def test_nested_partials_pair_one_to_one():
    """A field and a strip of it, both cut by the seam in both tiles: two objects, not one."""
    cols = AxisWindows((0, 40), (64, 64), 104)
    rows = AxisWindows((0,), (80,), 80)
    field = np.zeros((80, 104), bool)
    field[10:70, 20:90] = True
    strip = np.zeros((80, 104), bool)
    strip[10:50, 20:90] = True  # IoU with the field in the overlap: 40/60 > 0.5

    def cand(m, tile, lo, hi, cut):
        sub = np.zeros_like(m)
        sub[:, lo:hi] = m[:, lo:hi]
        ys, xs = np.nonzero(sub)
        return Candidate(mask=sub[ys.min():ys.max() + 1, xs.min():xs.max() + 1], y0=int(ys.min()),
                         x0=int(xs.min()), predicted_iou=0.95, stability_score=0.97, tile=tile,
                         point=(0, 0), cut=cut)

    a = [cand(field, (0, 0), 0, 64, (False, False, True, False)),
         cand(strip, (0, 0), 0, 64, (False, False, True, False))]
    b = [cand(field, (0, 1), 40, 104, (True, False, False, False)),
         cand(strip, (0, 1), 40, 104, (True, False, False, False))]
    assert overlap_agreement(a[0], b[1], (40, 0, 64, 80))[1] > 0.5  # would chain without 1:1
    st = SeamStitcher(rows=rows, cols=cols)
    st.add(a)
    st.add(b)
    out = st.pop_finished(80)
    assert sorted(c.area for c in out) == [strip.sum(), field.sum()]
    assert all(c.parts == ((0, 0), (0, 1)) for c in out)


def test_stitched_object_goes_through_area_filters_and_cleanup():
    truth = _scene()
    area = int((truth == 3).sum())
    rows, cols, works = fake_works(truth, _tiles(), PPS, TILE)
    decoder = FakeDecoder(truth, rows, cols, TileFilter(edge_margin=2, max_area=area - 1))
    merge = MergeSettings(stitch=StitchSettings(cleanup=TileFilter(max_area=area - 1)))
    labels, table, _ = assemble_into(truth.shape, rows, cols,
                                     ((w.index, decoder(w)) for w in works), merge=merge)
    assert not labels[truth == 3].any()
    assert all(r.area < area for r in table)
    # the ring's hole (radius 8, ~200 px) is filled by min_region_area like any mask's
    hole = int(np.pi * 8 ** 2) + 40
    decoder = FakeDecoder(truth, rows, cols, TileFilter(edge_margin=2, min_region_area=hole))
    merge = MergeSettings(stitch=StitchSettings(cleanup=TileFilter(min_region_area=hole)))
    labels, table, _ = assemble_into(truth.shape, rows, cols,
                                     ((w.index, decoder(w)) for w in works), merge=merge)
    ring_id = labels[30, 172 + 15]
    assert ring_id and labels[30, 172] == ring_id


def test_stitching_cleanup_does_not_fill_nodata():
    """The ring's hole is nodata and the decoder's mask covers it (a disk): the parts are cut
    to valid pixels, and filling holes after stitching must not give the nodata back."""
    from fake_tiles import decode_fake

    truth = _scene()
    yy, xx = np.mgrid[:SHAPE[0], :SHAPE[1]]
    hole = ((yy - 30) ** 2 + (xx - 172) ** 2 <= 8 ** 2)
    disk = truth.copy()
    disk[hole] = 5
    valid = ~hole
    area = int(hole.sum()) + 40
    settings = TileFilter(edge_margin=2, min_region_area=area)
    rows, cols, works = fake_works(truth, _tiles(), PPS, TILE)
    results = ((w.index, decode_fake(disk, w.tile, w.points, rows, cols, settings,
                                     valid=valid)) for w in works)
    merge = MergeSettings(stitch=StitchSettings(cleanup=TileFilter(min_region_area=area)))
    labels, table, stats = assemble_into(truth.shape, rows, cols, results, merge=merge)
    ring_id = labels[30, 172 + 15]
    assert ring_id and stats.stitched >= 1
    assert not labels[hole].any()
    assert (labels == ring_id).sum() == (truth == 5).sum()


def test_dask_executor_gives_the_local_labels():
    from distributed import Client, LocalCluster

    from napari_sam.core.automatic.distributed import DaskExecutor

    truth = _scene()
    rows, cols, works = fake_works(truth, _tiles(), PPS, TILE)
    decoder = FakeDecoder(truth, rows, cols, STITCH)
    local, table_local, _ = assemble_into(truth.shape, rows, cols,
                                          ((w.index, decoder(w)) for w in works))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        remote, table_remote, stats = assemble_into(
            truth.shape, rows, cols, DaskExecutor(client=client, window=3).map_ordered(decoder, works))
    assert stats.stitched >= len(_big(truth))
    assert np.array_equal(local, remote) and table_local == table_remote


def test_a_group_with_two_partials_of_one_tile_is_popped():
    """A large object that the decoder gave as two fragments in one tile, each continued
    across a different seam: the chain of pairs puts both fragments in one group, which
    comes out as one object (it raised KeyError when the tile's list emptied twice)."""
    cols = AxisWindows((0, 40), (64, 64), 104)
    rows = AxisWindows((0, 40), (64, 64), 104)

    def rect(tile, x0, x1, y0, y1, cut):
        return Candidate(mask=np.ones((y1 - y0, x1 - x0), bool), y0=y0, x0=x0,
                         predicted_iou=0.9, stability_score=0.95, tile=tile, point=(0, 0),
                         cut=cut)

    # the square x 10-90, y 10-90; tile (0, 0) holds it as two fragments, split at x = 50
    a1 = rect((0, 0), 50, 64, 10, 64, (False, False, True, True))
    a2 = rect((0, 0), 10, 50, 10, 64, (False, False, False, True))
    b1 = rect((0, 1), 40, 90, 10, 64, (True, False, False, True))
    c1 = rect((1, 0), 10, 64, 40, 90, (False, True, True, False))
    d1 = rect((1, 1), 40, 90, 40, 90, (True, True, False, False))
    st = SeamStitcher(rows=rows, cols=cols)
    for tile_parts in ([a1, a2], [b1], [c1], [d1]):
        st.add(tile_parts)
    out = st.pop_finished(200)
    assert len(out) == 1 and out[0].area == 80 * 80
    assert out[0].parts == ((0, 0), (0, 1), (1, 0), (1, 1))
    assert len(st) == 0

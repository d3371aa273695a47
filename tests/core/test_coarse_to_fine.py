"""Coarse-to-fine points: nested lattices, no point under an accepted mask, none on uniform
image after the first level, the full grid unchanged with ``points="full"``.

The decoder is replaced by one that returns the true object under each point
(recording every call), so the tests see exactly which points were decoded.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fake_tiles import disks, mask_candidates

from napari_sam.core import progress
from napari_sam.core.automatic import decode as generate
from napari_sam.core.automatic.coarse_to_fine import (
    COLOUR_SMOOTH,
    EXPLAINED_MARGIN,
    colour_at,
    colour_field,
    content_at,
    decode_coarse_to_fine,
    edge_map,
    edges_near,
    explained_by_colour,
    explained_edges,
    lattice_offsets,
    point_levels,
)
from napari_sam.core.automatic.decode import SegmentConfig, plan_points, segment_tiles
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.tiling.grid import TileGrid

LOOSE = dict(pred_iou_thresh=0.0, stability_score_thresh=0.0, min_area=0,
             max_area_fraction=None)


@pytest.fixture(scope="module")
def tiny_model():
    from sam_model import build_sam_from_config, tiny_test_config

    torch.manual_seed(0)
    return build_sam_from_config(tiny_test_config(img_size=256)).eval()


def test_levels_are_nested_lattices_that_partition_the_grid():
    assert lattice_offsets(3) == [2, 0, 0]
    spacing = 8.0
    xs = (np.arange(32) + 0.5) * spacing
    grid = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    level = point_levels(grid, spacing, 3)
    assert np.bincount(level).tolist() == [64, 192, 768]
    idx = (grid / spacing - 0.5).round().astype(int)
    for k, stride in ((0, 4), (1, 2)):
        upto = idx[level <= k]
        # every stride-th index in both directions, nothing else
        assert len(upto) == (32 // stride) ** 2
        assert len(np.unique(upto % stride, axis=0)) == 1
    assert (point_levels(grid, spacing, 1) == 0).all()


def test_content_marks_only_points_near_edges():
    rng = np.random.default_rng(0)
    data = (90 + rng.normal(0, 6, (96, 160, 3))).clip(0, 255).astype(np.uint8)  # noisy background
    data[30:60, 20:50] = (200, 40, 40)  # an object
    pts = np.array([[45, 35], [45, 60], [45, 120], [5, 5]])
    # at the object (its edges within 16 px), next to it, in plain noise, far away
    assert content_at(data, None, pts, window=32).tolist() == [True, True, False, False]
    valid = np.ones((96, 160), bool)
    valid[20:70, 10:60] = False  # the object is nodata: no content anywhere
    assert not content_at(data, valid, pts, window=32).any()


def _square_on_a_grid():
    """A 40 px square in a 64 px tile, the tile's 16 x 16 grid and its three levels."""
    truth = np.zeros((64, 64), bool)
    truth[0:40, 0:40] = True
    spacing = 4.0
    xs = (np.arange(16) + 0.5) * spacing
    pts = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    return truth, pts, point_levels(pts, spacing, 3)


def test_decode_coarse_to_fine_skips_covered_points():
    # one object (a square) on the left: level-0 finds it, later levels skip its points
    truth, pts, level = _square_on_a_grid()
    calls = []

    class Found:
        mask, y0, x0 = truth[:40, :40], 0, 0

    def decode(p):
        calls.append(p)
        return [Found] if truth[p[:, 1].astype(int), p[:, 0].astype(int)].any() else []

    outputs, decoded = decode_coarse_to_fine(pts, level, None, decode=decode,
                                             accept=lambda out: out, origin=(0, 0),
                                             shape=(64, 64))
    assert len(calls) == 3 and decoded.sum() == sum(len(c) for c in calls)
    for later in calls[1:]:
        assert not truth[later[:, 1].astype(int), later[:, 0].astype(int)].any()
    inside = truth[pts[:, 1].astype(int), pts[:, 0].astype(int)]
    assert decoded[~inside].all() and decoded[inside].sum() == (inside & (level == 0)).sum()



def test_the_finest_level_decodes_under_doubtful_masks_only():
    """A mask scored under ``cover_iou`` covers the points of the middle level, not those
    of the finest: one point in a mid-size object gives one chance at its mask, the full
    grid several, and a doubtful first answer is where the others pay."""
    truth, pts, level = _square_on_a_grid()

    def run(score, cover_iou):
        calls = []

        class Found:
            mask, y0, x0, predicted_iou = truth[:40, :40], 0, 0, score

        def decode(p):
            calls.append(p)
            return [Found] if truth[p[:, 1].astype(int), p[:, 0].astype(int)].any() else []

        decode_coarse_to_fine(pts, level, None, decode=decode, accept=lambda out: out,
                              origin=(0, 0), shape=(64, 64), cover_iou=cover_iou)
        return [truth[c[:, 1].astype(int), c[:, 0].astype(int)].sum() for c in calls]

    inside_last = (truth[pts[:, 1].astype(int), pts[:, 0].astype(int)] & (level == 2)).sum()
    assert run(0.9, 0.7)[1:] == [0, 0]  # a confident mask covers every later level
    assert run(0.5, 0.0)[1:] == [0, 0]  # no bar: as before
    assert run(0.5, 0.7)[1:] == [0, inside_last]  # doubtful: the finest level goes in


def _fake_decoder(truth, calls, swallow=None):
    """decode_points stand-in: the true object under each point, deduplicated like NMS;
    ``swallow`` {outer id: inner ids}: a point on the outer object gets a mask over both."""

    def decode_points(predictor, points, **kwargs):
        h, w = predictor.original_size
        origin = predictor.origin
        calls.append((origin, np.asarray(points, np.float64).copy()))
        seen, found = set(), []
        oy, ox = origin
        tile = truth[oy:oy + h, ox:ox + w]
        for x, y in points:
            k = int(tile[int(y), int(x)])
            if k == 0 or k in seen:
                continue
            seen.add(k)
            found.append((np.isin(tile, [k, *(swallow or {}).get(k, ())]), (x, y)))
        return mask_candidates(found, (h, w))

    return decode_points


def _segment(model, image, truth, grid, config, monkeypatch, swallow=None):
    """Run segment_tiles with the fake decoder; return (labels, result, calls)."""
    from sam_model import SamPredictor

    calls = []
    monkeypatch.setattr(generate, "decode_points", _fake_decoder(truth, calls, swallow))

    def embedding_for(index):
        t = grid.tile_for(*index)
        return np.zeros((32, 16, 16), np.float32), (t.height, t.width)

    class Origin:  # tells the fake decoder which tile it decodes
        def __init__(self, decoder):
            self.decoder = decoder

        def __call__(self, work):
            monkeypatch.setattr(SamPredictor, "origin", work.origin, raising=False)
            return self.decoder(work)

    real = generate.TileDecoder
    monkeypatch.setattr(generate, "TileDecoder", lambda **kw: Origin(real(**kw)))
    out = np.zeros(image.shape[:2], np.uint32)

    def sink(y0, x0, block):
        out[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = block

    result = progress.run(segment_tiles(open_raster(image), grid, embedding_for, model,
                                        config=config, sink=sink))
    return out, result, calls


def _scene():
    truth = disks(300, 300, n=30, rmin=4, rmax=20, seed=2)
    truth[140:295, 10:295] = 31  # one large rectangle, over several tiles
    rng = np.random.default_rng(0)
    colours = rng.integers(120, 255, (32, 3))
    image = 60 + rng.normal(0, 5, (300, 300, 3))  # noisy background, objects in colour
    image[truth > 0] = colours[truth[truth > 0]]
    return image.clip(0, 255).astype(np.uint8), truth


def test_full_grid_decodes_every_point_once(tiny_model, monkeypatch):
    image, truth = _scene()
    grid = TileGrid(height=300, width=300, tile_size=256, overlap=64)
    config = SegmentConfig(points_per_side=16, points="full", **LOOSE)
    labels, result, calls = _segment(tiny_model, image, truth, grid, config, monkeypatch)
    plan = plan_points(open_raster(image), list(grid), tile_size=256, points_per_side=16)
    assert len(calls) == len(list(grid))  # one call per tile, all its points
    for (y0, x0), local in calls:
        t = next(t for t in grid if (t.y0, t.x0) == (y0, x0))
        assert np.array_equal(local + [x0, y0], plan.points_for(t.row, t.col))
    assert result.n_decoded == result.n_points == plan.n_points
    assert result.points == "full"


def test_coarse_points_never_under_accepted_masks_and_same_objects(tiny_model, monkeypatch):
    image, truth = _scene()
    grid = TileGrid(height=300, width=300, tile_size=256, overlap=64)
    full = SegmentConfig(points_per_side=16, points="full", **LOOSE)
    coarse = SegmentConfig(points_per_side=16, points="coarse", **LOOSE)
    ref, ref_result, _ = _segment(tiny_model, image, truth, grid, full, monkeypatch)
    got, result, calls = _segment(tiny_model, image, truth, grid, coarse, monkeypatch)
    assert result.points == "coarse"
    assert result.n_decoded < 0.75 * ref_result.n_decoded
    assert result.n_decoded == sum(len(p) for _, p in calls)
    # per tile, a later level's points lie under no object an earlier level found
    found: dict = {}
    for (y0, x0), local in calls:
        ids = found.setdefault((y0, x0), set())
        pts = (local + [x0, y0]).astype(int)
        under = truth[pts[:, 1], pts[:, 0]]
        assert not (set(under.tolist()) & ids), "a point was placed under an accepted mask"
        ids.update(int(k) for k in under if k)
    # the objects of the full grid: each true object is one id in both, but for slivers
    # lying wholly within EXPLAINED_MARGIN of another object's outline (their edges are
    # that object's, as far as the edge map can tell): the price of skipping explained
    # edges, like that of skipping covered points. And more: small disks that no grid
    # point hits, found by the finest level's points on blob centres
    from scipy import ndimage

    slivers, gained = 0, 0
    for k in np.unique(truth[truth > 0]):
        a, b = np.unique(ref[truth == k]), np.unique(got[truth == k])
        if a[0] > 0 and b[0] == 0:
            near_other = ndimage.distance_transform_edt(~((truth > 0) & (truth != k)))
            assert (near_other[truth == k] <= EXPLAINED_MARGIN + 1).all(), k
            slivers += 1
            continue
        if b[0] > 0 and a[0] == 0:
            assert b.size == 1 and (truth == k).sum() < 16 * 16, k  # whole, and small
            gained += 1
            continue
        assert (a.size == 1) == (b.size == 1)
    assert slivers <= 3  # the three 5 px strips between the rectangle and the raster's edge
    assert gained >= 2
    assert len(result.objects) == len(ref_result.objects) - slivers + gained


def _two_squares():
    """A noisy background with square A (found) and square B (not yet) 12 px apart."""
    rng = np.random.default_rng(0)
    data = (90 + rng.normal(0, 6, (96, 160, 3))).clip(0, 255).astype(np.uint8)
    data[20:60, 20:60] = (200, 40, 40)  # A
    data[30:50, 72:92] = (40, 200, 40)  # B
    covered = np.zeros((96, 160), bool)
    covered[20:60, 20:60] = True
    return data, covered


def test_edges_on_an_accepted_outline_are_explained_the_others_not():
    data, covered = _two_squares()
    edges = edge_map(data, None)
    live = edges & ~explained_edges(covered)
    # points by A's left outline, by its right outline (B's edge 12 px away), by B,
    # in plain noise
    pts = np.array([[40, 14], [40, 64], [40, 96], [85, 140]])
    assert edges_near(edges, pts, 12).tolist() == [True, True, True, False]
    assert edges_near(live, pts, 12).tolist() == [False, True, True, False]
    assert not edges_near(live, np.array([[40, 14]]), 12).any()
    # A's outline, on both sides, within the margin
    band = explained_edges(covered)
    assert band[40, 20 - EXPLAINED_MARGIN] and band[40, 20 + EXPLAINED_MARGIN]
    assert not band[40, 20 - EXPLAINED_MARGIN - 1] and not band[40, 40]
    assert not explained_edges(np.zeros((8, 8), bool)).any()
    # the summed-area lookup agrees with a plain maximum filter
    from scipy import ndimage

    yy, xx = np.mgrid[0:96:7, 0:160:9]
    grid = np.stack([yy.ravel(), xx.ravel()], 1)
    dense = ndimage.maximum_filter(edges, size=12, mode="constant")
    assert np.array_equal(edges_near(edges, grid, 12), dense[grid[:, 0], grid[:, 1]])


def test_later_levels_skip_points_whose_only_edge_an_accepted_mask_explains():
    data, covered = _two_squares()
    edges = edge_map(data, None)
    # level 0: one point in A; level 1: one beside A's left outline and one beside B
    pts = np.array([[40.0, 40.0], [14.0, 40.0], [96.0, 40.0]])  # XY
    level = np.array([0, 1, 1])

    class FoundA:
        mask, y0, x0 = covered[20:60, 20:60], 20, 20

    calls = []

    def decode(p):
        calls.append(p.copy())
        return [FoundA] if (p[:, 0] == 40).any() else []

    _, decoded = decode_coarse_to_fine(pts, level, edges, decode=decode,
                                       accept=lambda out: out, origin=(0, 0),
                                       shape=covered.shape, window=12)
    assert decoded.tolist() == [True, False, True]
    # without the accepted mask, its outline is content like any edge
    _, decoded = decode_coarse_to_fine(pts, level, edges, decode=decode, accept=lambda out: [],
                                       origin=(0, 0), shape=covered.shape, window=12)
    assert decoded.tolist() == [True, True, True]
    with pytest.raises(ValueError, match="edge map"):
        decode_coarse_to_fine(pts, level, edges[:50], decode=decode, accept=lambda out: [],
                              origin=(0, 0), shape=covered.shape, window=12)


def test_outlines_of_objects_from_coarser_scales_are_no_content(monkeypatch):
    from napari_sam.core.automatic.candidates import Candidate
    from napari_sam.core.automatic.point_grid import assign_points

    data, covered = _two_squares()
    raster = open_raster(data)
    grid = TileGrid(height=96, width=160, tile_size=160, overlap=0)
    tiles = list(grid)
    points = assign_points(tiles, 96, 160, tile_size=160, points_per_side=10)
    emb = lambda index: (np.zeros((32, 16, 16), np.float32), (96, 160))  # noqa: E731
    [plain] = generate._tile_works(raster, tiles, points, emb, with_edges=True)
    a = Candidate(mask=covered[20:60, 20:60], y0=20, x0=20, predicted_iou=0.9,
                  stability_score=0.9, tile=(0, 0), point=(40.0, 40.0))
    [hinted] = generate._tile_works(raster, tiles, points, emb, with_edges=True, known=[a])
    assert np.array_equal(plain.edges, edge_map(data, None))
    assert np.array_equal(hinted.edges, plain.edges & ~explained_edges(covered))
    assert plain.edges[20:60, 14:26].any() and not hinted.edges[20:60, 14:26].any()
    assert np.array_equal(hinted.edges[:, 70:], plain.edges[:, 70:])  # B's edges stay


def _swallowed_square():
    """A 64 px tile: background of one colour with a 16 px red square inside; the 'decoder'
    answers a background point with one mask over everything (the square swallowed, as a
    prompt beside a small object often does) and a point in the square with the square."""
    rng = np.random.default_rng(1)
    data = (90 + rng.normal(0, 3, (64, 64, 3))).clip(0, 255).astype(np.uint8)
    square = np.zeros((64, 64), bool)
    square[36:52, 36:52] = True
    data[square] = (200, 40, 40)
    return data, square


class _Mask:
    def __init__(self, mask, point):
        self.mask, self.y0, self.x0, self.point = mask, 0, 0, point


def test_colour_field_is_smoothed_scaled_and_strided():
    data, square = _swallowed_square()
    field = colour_field(data, None)
    assert field.shape == (16, 16, 3) and field.dtype == np.float32
    red = colour_at(field, np.array([[44, 44]]))[0]
    grey = colour_at(field, np.array([[10, 10]]))[0]
    # each band scaled to its own range: red is the top of band 0, grey near the top of band 1
    assert red[0] > 0.9 and red[1] < 0.1 and grey[0] < 0.15 and grey[1] > 0.7
    # nodata is left out of the ranges, and does not switch the colour off
    valid = np.ones((64, 64), bool)
    valid[:, :6] = False
    holed = data.copy()
    holed[~valid] = 255
    with_nodata = colour_field(holed, valid)
    assert with_nodata.shape == (16, 16, 3)
    np.testing.assert_allclose(colour_at(with_nodata, np.array([[44, 44]]))[0], red, atol=0.02)
    # a flat band carries no colour: no band at all for a flat tile
    assert colour_field(np.full((20, 20), 7, np.uint8), None).shape == (5, 5, 0)


def test_a_covered_point_of_another_colour_than_its_mask_is_not_explained():
    data, square = _swallowed_square()
    field = colour_field(data, None)
    everything = _Mask(np.ones((64, 64), bool), (8.0, 8.0))  # prompt on the background
    pts = np.array([[20, 20], [44, 44], [5, 60]])  # background, square, background
    assert explained_by_colour([everything], field, (0, 0), pts).tolist() == [True, False, True]
    # a mask prompted inside the square explains the square's points
    own = _Mask(square.copy(), (44.0, 44.0))
    assert explained_by_colour([everything, own], field, (0, 0), pts).all()
    # a point no mask covers is not explained; without colour every covered point is
    assert not explained_by_colour([own], field, (0, 0), pts[:1]).any()
    flat = np.zeros((16, 16, 0), np.float32)
    assert explained_by_colour([everything], flat, (0, 0), pts).all()


def test_coarse_to_fine_decodes_an_object_its_background_mask_swallowed():
    data, square = _swallowed_square()
    spacing = 8.0
    xs = (np.arange(8) + 0.5) * spacing
    pts = np.stack(np.meshgrid(xs, xs), -1).reshape(-1, 2)
    level = point_levels(pts, spacing, 3)
    assert not square[pts[level == 0, 1].astype(int), pts[level == 0, 0].astype(int)].any()

    def run(colours):
        found = []

        def decode(p):
            out = []
            for x, y in p:
                mask = square if square[int(y), int(x)] else np.ones((64, 64), bool)
                out.append(_Mask(mask, (x, y)))
            found.extend(out)
            return out

        decode_coarse_to_fine(pts, level, None, decode=decode, accept=lambda out: out,
                              origin=(0, 0), shape=(64, 64), colours=colours)
        return found

    assert not any(m.mask is square for m in run(None))  # covered: never prompted
    got = run(colour_field(data, None))
    inside = [m for m in got if m.mask is square]
    assert inside, "the square got no point of its own"
    # background points stay explained by the background mask: the square's are added, and
    # those on its rim (their colour blurred with the square's), no others
    from scipy import ndimage

    rim = ndimage.distance_transform_edt(~square) <= 2 * COLOUR_SMOOTH
    grey = [m for m in got if m.mask is not square]
    later = [(x, y) for m in grey[(level == 0).sum():] for x, y in [m.point]]
    assert all(rim[int(y), int(x)] and not square[int(y), int(x)] for x, y in later)
    assert len(later) < len(inside)


def test_segment_tiles_gives_an_object_its_background_mask_swallowed_an_id(tiny_model,
                                                                          monkeypatch):
    """A red square inside a grey field: the field's points get a mask over both (as a
    prompt beside a small object often does); the square's own points are decoded (their
    colour is not the field's) and it comes out as an object of its own."""
    rng = np.random.default_rng(3)
    image = (60 + rng.normal(0, 4, (300, 300, 3))).clip(0, 255).astype(np.uint8)
    truth = np.zeros((300, 300), np.int32)
    truth[30:230, 30:230] = 1  # the field
    truth[116:140, 116:140] = 2  # the square: between the coarsest level's points
    image[truth == 1] = (140, 140, 140)
    image[truth == 2] = (210, 40, 40)
    grid = TileGrid(height=300, width=300, tile_size=256, overlap=64)
    config = SegmentConfig(points_per_side=16, points="coarse", **LOOSE)
    labels, result, calls = _segment(tiny_model, image, truth, grid, config, monkeypatch,
                                     swallow={1: (2,)})
    square = np.unique(labels[truth == 2])
    assert square.size == 1 and square[0] > 0
    assert square[0] not in np.unique(labels[truth == 1])

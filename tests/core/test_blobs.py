"""The finest coarse-to-fine level's content points: each grid point moved to the strongest
blob of its cell or dropped; decoded there, never under an accepted mask; coarse scales
skip the level."""

from __future__ import annotations

import numpy as np

from napari_sam.core.automatic.blobs import blob_peaks, blob_strength, cell_targets
from napari_sam.core.automatic.coarse_to_fine import decode_coarse_to_fine, point_levels

SPACING = 32.0


def _spots(size=128, centres=((40, 20), (90, 100)), radius=5, contrast=(120, 60)):
    """A noisy grey image with bright disks at ``centres`` (row, col) of the given contrasts."""
    rng = np.random.default_rng(0)
    image = 80 + rng.normal(0, 3, (size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    for (r, c), amount in zip(centres, contrast):
        image[(yy - r) ** 2 + (xx - c) ** 2 <= radius ** 2] += amount
    return image.clip(0, 255).astype(np.uint8)


def _grid(size=128, spacing=SPACING):
    ticks = (np.arange(int(size // spacing)) + 0.5) * spacing
    gx, gy = np.meshgrid(ticks, ticks)
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def test_points_move_to_the_blob_of_their_cell_or_are_dropped():
    image = _spots()
    pts = _grid()
    targets = cell_targets(pts, blob_strength(image, None, SPACING), (0, 0), SPACING)
    moved = np.isfinite(targets).all(axis=1)
    # two disks, in cells (row 1, col 0) and (row 2, col 3): those two points move, onto them
    cells = np.floor(pts[moved] / SPACING).astype(int)
    assert sorted(map(tuple, cells[:, ::-1])) == [(1, 0), (2, 3)]
    got = sorted(map(tuple, np.round(targets[moved][:, ::-1] - 0.5).astype(int)))
    assert np.abs(np.array(got) - [(40, 20), (90, 100)]).max() <= 1


def test_the_stronger_blob_wins_a_shared_cell_and_the_tile_origin_counts():
    # two disks in one cell: the brighter one is the target
    image = _spots(centres=((8, 8), (24, 24)), radius=3, contrast=(40, 150))
    origin = (64, 96)  # the tile's window starts at raster row 64, col 96
    pts = _grid(256)
    pts = pts[(pts[:, 0] > 96) & (pts[:, 0] < 96 + 128) & (pts[:, 1] > 64) & (pts[:, 1] < 192)]
    targets = cell_targets(pts, blob_strength(image, None, SPACING), origin, SPACING)
    moved = np.isfinite(targets).all(axis=1)
    assert moved.sum() == 1
    assert np.abs(targets[moved][0] - (96 + 24.5, 64 + 24.5)).max() <= 1


def test_uniform_noise_and_nodata_give_no_blob():
    rng = np.random.default_rng(1)
    noise = (100 + rng.normal(0, 4, (128, 128, 3))).clip(0, 255).astype(np.uint8)
    rows, _ = blob_peaks(blob_strength(noise, None, SPACING))
    assert rows.size == 0
    image = _spots()
    valid = np.ones(image.shape[:2], bool)
    valid[:, :64] = False  # the first disk's half is nodata
    strength = blob_strength(image, valid, SPACING)
    assert strength[:, :64].max() < 0  # nodata and its border: no blob
    targets = cell_targets(_grid(), strength, (0, 0), SPACING)
    assert np.isfinite(targets).all(axis=1).sum() == 1


def test_the_finest_level_decodes_its_targets_never_under_accepted_masks():
    pts = _grid(256)
    level = point_levels(pts, SPACING, 3)
    last = level == 2
    targets = np.full(pts.shape, np.nan)
    idx = np.flatnonzero(last)
    targets[idx[0]] = pts[idx[0]] + (3.0, -5.0)   # moved onto a blob
    targets[idx[1]] = pts[idx[1]] + (7.0, 2.0)    # moved, but under the accepted mask below
    calls = []
    covered_box = np.floor(targets[idx[1]]).astype(int)

    def decode(points):
        calls.append(np.asarray(points))
        return points

    class Mask:  # an accepted mask of 3 x 3 px over the second target
        def __init__(self):
            self.mask = np.ones((3, 3), bool)
            self.y0, self.x0 = covered_box[1] - 1, covered_box[0] - 1

    outputs, decoded = decode_coarse_to_fine(
        pts, level, None, decode=decode, accept=lambda out: [Mask()] if len(calls) == 1 else [],
        origin=(0, 0), shape=(256, 256), targets=targets)
    assert len(calls) == 3  # levels 0, 1 and the one target left at level 2
    assert np.array_equal(calls[2], targets[idx[:1]])
    assert decoded.sum() == (level < 2).sum() + 1 and decoded[idx[0]] and not decoded[idx[1]]


def test_coarse_scales_do_not_decode_the_finest_level(tmp_path, monkeypatch):
    import rasterio

    from napari_sam.core import progress
    from napari_sam.core.automatic import decode as generate
    from napari_sam.core.automatic.decode import TileDecoder
    from napari_sam.core.automatic.run import segment_file
    from napari_sam.core.automatic.settings import SegmentConfig
    from sam_model import build_sam
    from sam_model.mask_candidates import Candidates

    image = np.moveaxis(_spots(256, centres=[(r, c) for r in range(20, 256, 37)
                                             for c in range(12, 256, 41)], radius=4,
                               contrast=[90] * 49), -1, 0)
    src = tmp_path / "spots.tif"
    with rasterio.open(src, "w", driver="GTiff", height=256, width=256, count=3,
                       dtype="uint8") as ds:
        ds.write(image)
    seen: dict[int, list] = {}
    real_call = TileDecoder.__call__

    def call(self, work):
        seen.setdefault(work.scale, []).append(work)
        return real_call(self, work)

    def no_masks(predictor, points, **kwargs):
        return Candidates.empty(tuple(predictor.original_size))

    monkeypatch.setattr(TileDecoder, "__call__", call)
    monkeypatch.setattr(generate, "decode_points", no_masks)
    model = build_sam("sam_tiny", checkpoint=None)
    config = SegmentConfig(points_per_side=16, scales=(1, 2))
    summary = progress.run(segment_file(src, tmp_path / "out", model, tile_size=256,
                                        overlap=32, config=config))
    assert sorted(seen) == [1, 2]
    full, = seen[1]
    half, = seen[2]
    last = point_levels(full.points, 16.0, 3) == 2
    assert np.isfinite(full.targets[last]).all(axis=1).any()  # blobs at full resolution
    last = point_levels(half.points, 32.0, 3) == 2
    assert last.any() and not np.isfinite(half.targets[last]).any()  # none at 1/2
    assert summary.n_decoded < summary.n_points

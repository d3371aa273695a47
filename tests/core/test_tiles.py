"""The tile grid: coverage, edge tiles, overlap, point ownership and margins."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from affine import Affine

from napari_sam.core.tiling.grid import Tile, TileGrid
from napari_sam.core.tiling.window import Window, as_window


@pytest.mark.parametrize("height,width,tile,overlap", [
    (300, 520, 256, 32), (256, 256, 256, 0), (257, 100, 256, 0), (90, 70, 256, 64),
    (1000, 1001, 256, 64), (481, 480, 256, 32),
])
def test_grid_covers_raster_with_overlap_and_clipped_edge_tiles(height, width, tile, overlap):
    grid = TileGrid(height=height, width=width, tile_size=tile, overlap=overlap)
    n_rows, n_cols = grid.shape
    cover = np.zeros((height, width), np.int32)
    for t in grid:
        assert t.height <= tile and t.width <= tile
        assert t.y0 == t.row * (tile - overlap) and t.x0 == t.col * (tile - overlap)
        assert t.window.y1 <= height and t.window.x1 <= width
        cover[t.window.slices] += 1
    assert cover.min() >= 1, "every pixel is in a tile"
    assert len(list(grid)) == len(grid) == n_rows * n_cols
    # no tile is redundant: each one has pixels the previous along its axis lacks
    for r in range(1, n_rows):
        assert grid.tile_for(r, 0).window.y1 > grid.tile_for(r - 1, 0).window.y1
    # the last tile reaches the edge, inner tiles are full size
    assert grid.tile_for(n_rows - 1, n_cols - 1).window.y1 == height
    assert grid.tile_for(n_rows - 1, n_cols - 1).window.x1 == width
    if n_rows > 1:
        assert grid.tile_for(0, 0).height == tile
    if overlap and n_cols > 1:
        a, b = grid.tile_for(0, 0), grid.tile_for(0, 1)
        assert a.window.x1 - b.window.x0 == overlap


def test_smaller_than_one_tile_is_one_clipped_tile():
    grid = TileGrid(height=90, width=70, tile_size=256, overlap=32)
    assert grid.shape == (1, 1)
    (t,) = list(grid)
    assert (t.y0, t.x0, t.height, t.width) == (0, 0, 90, 70)
    assert t.input_shape == (90, 70)


def test_tiles_are_frozen_values():
    grid = TileGrid(height=600, width=600, tile_size=256, overlap=32)
    a, b = grid.tile_for(1, 2), grid.tile_for(1, 2)
    assert a == b and hash(a) == hash(b) and {a, b} == {a}
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.row = 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        grid.tile_size = 5
    assert TileGrid.from_dict(grid.as_dict()) == grid
    with pytest.raises(IndexError):
        grid.tile_for(3, 0)


def test_tile_affine_is_the_window_offset():
    t = Affine(30.0, 0.0, 1000.0, 0.0, -30.0, 5000.0)
    grid = TileGrid(height=600, width=600, tile_size=256, overlap=32)
    tile = grid.tile_for(1, 2)
    assert tile.transform(t) @ (0, 0) == t @ (tile.x0, tile.y0)
    assert tile.transform(t) @ (3, 4) == t @ (tile.x0 + 3, tile.y0 + 4)


def test_tiles_containing_and_most_central_partition():
    grid = TileGrid(height=700, width=900, tile_size=256, overlap=64)
    rng = np.random.default_rng(0)
    for y, x in rng.uniform([0, 0], [700, 900], size=(300, 2)):
        holders = grid.tiles_containing(y, x)
        expected = [t for t in grid if t.y0 <= y < t.y0 + t.height and t.x0 <= x < t.x0 + t.width]
        assert holders == expected
        best = grid.most_central_tile(y, x)
        assert best in holders
        margins = [grid.margin(t, y, x, y, x) for t in holders]
        assert grid.margin(best, y, x, y, x) == max(margins)
    with pytest.raises(IndexError):
        grid.most_central_tile(700, 5)


def test_point_in_overlap_goes_to_the_tile_where_it_is_deeper():
    grid = TileGrid(height=256, width=448, tile_size=256, overlap=64)  # tiles at x 0 and 192
    assert grid.shape == (1, 2)
    assert grid.most_central_tile(100, 200).col == 0  # 56 px from tile 0's edge, 8 from tile 1's
    assert grid.most_central_tile(100, 250).col == 1
    # raster borders are not seams: a point at the raster's edge is well inside its tile
    assert grid.margin(grid.tile_for(0, 0), 100, 1, 100, 1) == 255.0
    assert math.isinf(TileGrid(height=100, width=100, tile_size=256).margin(
        TileGrid(height=100, width=100, tile_size=256).tile_for(0, 0), 1, 1, 2, 2))


def test_tile_holding_an_extent():
    grid = TileGrid(height=256, width=448, tile_size=256, overlap=64)
    tile, margin = grid.tile_holding(10, 150, 40, 230)  # inside the overlap 192..256
    assert tile.col == 0 and margin == 26
    tile, margin = grid.tile_holding(10, 200, 40, 250)
    assert tile.col == 1 and margin == 8  # 200 - 192
    tile, margin = grid.tile_holding(10, 100, 40, 300)  # spans both: no tile holds it
    assert tile is None and margin == -math.inf


def test_tiles_intersecting_window():
    grid = TileGrid(height=700, width=900, tile_size=256, overlap=64)
    for win in [Window(0, 0, 1, 1), Window(190, 190, 10, 10), Window(300, 500, 200, 300),
                Window(0, 0, 700, 900), Window(699, 899, 1, 1)]:
        got = grid.tiles_intersecting(win)
        want = [t for t in grid if t.window.intersection(win) is not None]
        assert got == want


def test_downscaled_grid():
    grid = TileGrid(height=1000, width=700, tile_size=512, overlap=64, scale=2)
    assert grid.input_tile_size == 256
    last = grid.tile_for(*[n - 1 for n in grid.shape])
    assert last.input_window.y1 == math.ceil(1000 / 2) and last.input_window.x1 == 350
    assert last.input_transform(Affine.identity()) @ (1, 1) == (last.x0 + 2, last.y0 + 2)
    with pytest.raises(ValueError):
        TileGrid(height=10, width=10, tile_size=255, overlap=0, scale=2)


def test_bad_grids_refused():
    for kwargs in [dict(tile_size=0), dict(tile_size=10, overlap=10), dict(tile_size=10, overlap=-1)]:
        with pytest.raises(ValueError):
            TileGrid(height=10, width=10, **kwargs)


def test_windows():
    w = Window(5, 6, 10, 20)
    assert w.slices == (slice(5, 15), slice(6, 26))
    assert as_window(w.slices) == w
    assert as_window(w.to_rasterio()) == w
    assert w.intersection(Window(10, 20, 100, 100)) == Window(10, 20, 5, 6)
    assert w.intersection(Window(100, 100, 1, 1)) is None
    assert w.clip(8, 100) == Window(5, 6, 3, 20)
    assert Window(0, 0, 30, 30).contains(w) and not w.contains(Window(0, 0, 30, 30))
    assert isinstance(Tile(row=0, col=0, y0=0, x0=0, height=1, width=1).window, Window)

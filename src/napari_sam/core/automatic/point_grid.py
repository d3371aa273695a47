"""The global prompt-point grid of tiled automatic generation, and which tile decodes each point.

The reference generator puts ``points_per_side`` x ``points_per_side`` points
on each crop. Over a raster we lay one grid in raster pixels with the same
spacing (``tile_size / points_per_side``), so every tile sees the same density
of points as the reference on one image, and no point is decoded twice: each
point goes to the tile where it is *most central*.

Centrality of a point in a tile is its distance to the nearest *inner* border
of the tile: a border shared with a neighbour tile. The raster's own edges do
not count (nothing lies beyond them). This is the same notion of border as the
edge filter in :mod:`napari_sam.core.automatic.candidates`, so a point's mask is judged by
the tile that sees the most context around the point.

Tiles form a product grid (a tile row fixes ``y0, height``, a tile column
fixes ``x0, width``) and centrality is the minimum of a per-axis term, so the
best tile is found per axis: cheap even for millions of points.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AxisWindows:
    """Tile windows along one axis: ``starts[i]`` and ``sizes[i]`` (pixels) of tile index ``i``.

    ``extent`` is the raster's size along this axis; windows are clipped to it.
    """

    starts: tuple[int, ...]
    sizes: tuple[int, ...]
    extent: int

    def inner_low(self, i: int) -> bool:
        """True when window ``i``'s low edge is shared with a neighbour (not the raster edge)."""
        return self.starts[i] > 0

    def inner_high(self, i: int) -> bool:
        """True when window ``i``'s high edge is shared with a neighbour (not the raster edge)."""
        return self.starts[i] + self.sizes[i] < self.extent


def axis_windows(tiles: Iterable, height: int, width: int) -> tuple[AxisWindows, AxisWindows]:
    """Row and column windows of a tile grid, clipped to a ``height`` x ``width`` raster.

    ``tiles``: objects with ``row, col, y0, x0, height, width`` (a ``TileGrid``
    iterates such tiles). Returns ``(rows, cols)``.
    """
    rows: dict[int, tuple[int, int]] = {}
    cols: dict[int, tuple[int, int]] = {}
    for t in tiles:
        y0, x0 = int(t.y0), int(t.x0)
        rows[int(t.row)] = (y0, max(0, min(y0 + int(t.height), height) - y0))
        cols[int(t.col)] = (x0, max(0, min(x0 + int(t.width), width) - x0))
    r = [rows[i] for i in sorted(rows)]
    c = [cols[i] for i in sorted(cols)]
    return (
        AxisWindows(tuple(s for s, _ in r), tuple(n for _, n in r), int(height)),
        AxisWindows(tuple(s for s, _ in c), tuple(n for _, n in c), int(width)),
    )


def grid_coordinates(extent: int, spacing: float) -> np.ndarray:
    """Point coordinates along one axis: ``(i + 0.5) * spacing`` for every one below ``extent``.

    Returns float64 (n,), pixel coordinates where pixel ``k`` spans ``[k, k+1)``.
    """
    n = int(np.ceil(extent / spacing - 0.5))
    coords = (np.arange(max(n, 0), dtype=np.float64) + 0.5) * spacing
    return coords[coords < extent]


def axis_assignment(coords: np.ndarray, windows: AxisWindows) -> np.ndarray:
    """Index of the window where each coordinate is most central; -1 where none holds it.

    Ties go to the lower index, so the assignment is deterministic.
    """
    coords = np.asarray(coords, dtype=np.float64)
    best = np.full(coords.shape, -1, dtype=np.int64)
    best_score = np.full(coords.shape, -np.inf)
    for i, (start, size) in enumerate(zip(windows.starts, windows.sizes)):
        inside = (coords >= start) & (coords < start + size)
        low = coords - start if windows.inner_low(i) else np.inf
        high = start + size - coords if windows.inner_high(i) else np.inf
        score = np.where(inside, np.minimum(low, high), -np.inf)
        better = score > best_score
        best = np.where(better, i, best)
        best_score = np.where(better, score, best_score)
    return best


@dataclass(frozen=True)
class PointAssignment:
    """The global grid and its split over tiles.

    ``xs`` (nx,) and ``ys`` (ny,) are the grid's coordinates in raster pixels;
    ``col_of_x`` (nx,) and ``row_of_y`` (ny,) the tile column/row decoding each.
    """

    xs: np.ndarray
    ys: np.ndarray
    col_of_x: np.ndarray
    row_of_y: np.ndarray

    @property
    def n_points(self) -> int:
        return int(self.xs.size * self.ys.size)

    def points_for(self, row: int, col: int) -> np.ndarray:
        """Grid points decoded in tile (row, col): (N, 2) float64 XY in raster pixels, row-major."""
        xs = self.xs[self.col_of_x == col]
        ys = self.ys[self.row_of_y == row]
        if xs.size == 0 or ys.size == 0:
            return np.zeros((0, 2), dtype=np.float64)
        gx, gy = np.meshgrid(xs, ys)
        return np.stack([gx.ravel(), gy.ravel()], axis=1)


def assign_points(
    tiles: Iterable, height: int, width: int, *, tile_size: int, points_per_side: int
) -> PointAssignment:
    """Lay the global grid over a ``height`` x ``width`` raster and assign each point to one tile.

    The spacing is ``tile_size / points_per_side`` pixels in both directions.
    """
    if points_per_side < 1:
        raise ValueError(f"points_per_side must be >= 1, got {points_per_side}")
    rows, cols = axis_windows(tiles, height, width)
    spacing = tile_size / points_per_side
    xs = grid_coordinates(width, spacing)
    ys = grid_coordinates(height, spacing)
    return PointAssignment(
        xs=xs, ys=ys, col_of_x=axis_assignment(xs, cols), row_of_y=axis_assignment(ys, rows)
    )

"""A grid of overlapping tiles over a raster, as frozen values.

Tiles start every ``tile_size - overlap`` pixels. The last row and column of
tiles are cut by the raster's edge: their windows are smaller than
``tile_size`` and the model input is padded (never stretched) to its size.

With ``scale`` > 1 (downscaling, for objects larger than a tile) every tile
covers ``tile_size`` raster pixels that are read ``scale`` times smaller, so
the model sees ``tile_size // scale`` pixels; ``tile_size`` and ``overlap``
are then multiples of ``scale`` so that tiles fall on whole pixels of the
downscaled raster (or pyramid level).

All coordinates here are raster pixels of the full-resolution raster, in
(row, column) order, with pixel ``(r, c)`` covering ``[r, r+1) x [c, c+1)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from affine import Affine

from napari_sam.core.tiling.window import Window


@dataclass(frozen=True, kw_only=True)
class Tile:
    """One tile: grid position ``(row, col)`` and its pixel window in the raster.

    ``height`` x ``width`` raster pixels starting at ``(y0, x0)``; edge tiles
    are smaller than the grid's ``tile_size``. ``scale`` is the grid's
    downscale factor.
    """

    row: int
    col: int
    y0: int
    x0: int
    height: int
    width: int
    scale: int = 1

    @property
    def index(self) -> tuple[int, int]:
        """``(row, col)`` in the grid."""
        return (self.row, self.col)

    @property
    def window(self) -> Window:
        """The raster pixels this tile covers (full resolution)."""
        return Window(self.y0, self.x0, self.height, self.width)

    @property
    def input_window(self) -> Window:
        """The same area in pixels of the raster downscaled by ``scale``."""
        s = self.scale
        return Window(self.y0 // s, self.x0 // s, -(-self.height // s), -(-self.width // s))

    @property
    def input_shape(self) -> tuple[int, int]:
        """``(h, w)`` of the image the model sees for this tile (before padding)."""
        return self.input_window.shape

    def transform(self, affine: Affine) -> Affine:
        """The affine of this tile's full-resolution pixels, given the raster's affine."""
        return self.window.transform(affine)

    def input_transform(self, affine: Affine) -> Affine:
        """The affine of the model-input pixels of this tile (scaled by ``scale``)."""
        return self.transform(affine) @ Affine.scale(self.scale)

    def as_dict(self) -> dict:
        return {"row": self.row, "col": self.col, "y0": self.y0, "x0": self.x0,
                "height": self.height, "width": self.width, "scale": self.scale}


@dataclass(frozen=True, kw_only=True)
class TileGrid:
    """Overlapping tiles of ``tile_size`` pixels over a ``height`` x ``width`` raster."""

    height: int
    width: int
    tile_size: int
    overlap: int = 0
    scale: int = 1

    def __post_init__(self) -> None:
        if self.height < 1 or self.width < 1:
            raise ValueError(f"empty raster {self.height}x{self.width}")
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.tile_size < 1 or not 0 <= self.overlap < self.tile_size:
            raise ValueError(f"need tile_size > overlap >= 0, got tile_size={self.tile_size}, "
                             f"overlap={self.overlap}")
        if self.tile_size % self.scale or self.overlap % self.scale:
            raise ValueError(f"tile_size ({self.tile_size}) and overlap ({self.overlap}) must be "
                             f"multiples of scale ({self.scale})")

    @property
    def stride(self) -> int:
        """Pixels from one tile's start to the next."""
        return self.tile_size - self.overlap

    def _count(self, length: int) -> int:
        if length <= self.tile_size:
            return 1
        return 1 + math.ceil((length - self.tile_size) / self.stride)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_rows, n_cols)``."""
        return (self._count(self.height), self._count(self.width))

    def __len__(self) -> int:
        n_rows, n_cols = self.shape
        return n_rows * n_cols

    def __iter__(self) -> Iterator[Tile]:
        n_rows, n_cols = self.shape
        for row in range(n_rows):
            for col in range(n_cols):
                yield self.tile_for(row, col)

    @property
    def input_tile_size(self) -> int:
        """Model-input pixels per tile side (``tile_size // scale``)."""
        return self.tile_size // self.scale

    def tile_for(self, row: int, col: int) -> Tile:
        """The tile at grid position ``(row, col)``."""
        n_rows, n_cols = self.shape
        if not (0 <= row < n_rows and 0 <= col < n_cols):
            raise IndexError(f"tile ({row}, {col}) outside a {n_rows}x{n_cols} grid")
        y0, x0 = row * self.stride, col * self.stride
        return Tile(row=row, col=col, y0=y0, x0=x0,
                    height=min(self.tile_size, self.height - y0),
                    width=min(self.tile_size, self.width - x0), scale=self.scale)

    def _candidates(self, lo: float, hi: float, length: int) -> range:
        """Indices of tiles along one axis whose start is <= ``lo`` and end >= ``hi``."""
        first = max(0, math.ceil((hi - self.tile_size) / self.stride))
        last = min(self._count(length) - 1, math.floor(lo / self.stride))
        return range(first, last + 1)

    def tiles_intersecting(self, window: Window) -> list[Tile]:
        """Tiles whose window overlaps ``window``, in row-major order."""
        n_rows, n_cols = self.shape
        s, t = self.stride, self.tile_size
        rows = range(max(0, math.floor((window.y0 - t) / s)), min(n_rows, -(-window.y1 // s)))
        cols = range(max(0, math.floor((window.x0 - t) / s)), min(n_cols, -(-window.x1 // s)))
        tiles = (self.tile_for(r, c) for r in rows for c in cols)
        return [tile for tile in tiles if tile.window.intersection(window) is not None]

    def tiles_containing(self, y: float, x: float) -> list[Tile]:
        """Tiles whose window contains the point ``(y, x)`` (continuous pixel coordinates)."""
        return [tile for tile, _ in self._holding(y, x, y, x)]

    def margin(self, tile: Tile, y0: float, x0: float, y1: float, x1: float) -> float:
        """Distance from the extent ``[y0, y1] x [x0, x1]`` to ``tile``'s inner edges.

        Edges that lie on the raster's border do not count (nothing is cut
        there), so a tile alone on an axis has an infinite margin along it.
        Negative when the extent sticks out of the tile.
        """
        w = tile.window
        gaps = (
            (y0 - w.y0, w.y0 == 0),
            (w.y1 - y1, w.y1 >= self.height),
            (x0 - w.x0, w.x0 == 0),
            (w.x1 - x1, w.x1 >= self.width),
        )
        return min(gap if gap < 0 or not on_border else math.inf for gap, on_border in gaps)

    def _holding(self, y0: float, x0: float, y1: float, x1: float) -> list[tuple[Tile, float]]:
        """Tiles holding the extent (a point when y0 == y1 and x0 == x1), with margins."""
        point = y0 == y1 and x0 == x1
        found = []
        for row in self._candidates(y0, y1, self.height):
            for col in self._candidates(x0, x1, self.width):
                tile = self.tile_for(row, col)
                w = tile.window
                if point:
                    inside = w.y0 <= y0 < w.y1 and w.x0 <= x0 < w.x1
                else:
                    inside = w.y0 <= y0 and w.x0 <= x0 and y1 <= w.y1 and x1 <= w.x1
                if inside:
                    found.append((tile, self.margin(tile, y0, x0, y1, x1)))
        return found

    def tile_holding(self, y0: float, x0: float, y1: float, x1: float
                     ) -> tuple[Tile, float] | tuple[None, float]:
        """The tile holding the extent ``[y0, y1] x [x0, x1]`` with the most margin.

        Returns ``(tile, margin)``; ties go to the first tile in row-major
        order. ``(None, -inf)`` when no tile holds the whole extent.
        """
        best: tuple[Tile | None, float] = (None, -math.inf)
        for tile, margin in self._holding(y0, x0, y1, x1):
            if margin > best[1]:
                best = (tile, margin)
        return best

    def most_central_tile(self, y: float, x: float) -> Tile:
        """The one tile in which the point ``(y, x)`` is farthest from an inner edge.

        A partition of the raster: every point inside it gets exactly one tile.
        ``y``, ``x`` are continuous pixel coordinates (the centre of pixel
        ``(r, c)`` is ``(r + 0.5, c + 0.5)``).
        """
        if not (0 <= y < self.height and 0 <= x < self.width):
            raise IndexError(f"point ({y}, {x}) outside a {self.height}x{self.width} raster")
        tile, _ = self.tile_holding(y, x, y, x)
        assert tile is not None
        return tile

    def as_dict(self) -> dict:
        return {"height": self.height, "width": self.width, "tile_size": self.tile_size,
                "overlap": self.overlap, "scale": self.scale}

    @classmethod
    def from_dict(cls, d: dict) -> TileGrid:
        return cls(height=int(d["height"]), width=int(d["width"]),
                   tile_size=int(d["tile_size"]), overlap=int(d.get("overlap", 0)),
                   scale=int(d.get("scale", 1)))

"""Pixel windows: frozen rectangles of a raster, in (row, column) order.

A :class:`Window` is ``height`` rows starting at row ``y0`` and ``width``
columns starting at column ``x0``. Pixel ``(r, c)`` covers the square
``[c, c + 1) x [r, r + 1)`` in continuous pixel space, as in rasterio, so the
affine of a window is the raster's affine translated by ``(x0, y0)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from affine import Affine
from rasterio.windows import Window as RioWindow


@dataclass(frozen=True, order=True)
class Window:
    """``height`` x ``width`` pixels starting at row ``y0``, column ``x0`` (all ints)."""

    y0: int
    x0: int
    height: int
    width: int

    def __post_init__(self) -> None:
        for name in ("y0", "x0", "height", "width"):
            value = getattr(self, name)
            if int(value) != value:
                raise ValueError(f"Window.{name} must be an integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.height < 0 or self.width < 0:
            raise ValueError(f"negative window size {self.height}x{self.width}")

    @property
    def y1(self) -> int:
        """One past the last row."""
        return self.y0 + self.height

    @property
    def x1(self) -> int:
        """One past the last column."""
        return self.x0 + self.width

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)``."""
        return (self.height, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        """``(row slice, column slice)`` for indexing a (y, x, ...) array."""
        return (slice(self.y0, self.y1), slice(self.x0, self.x1))

    def transform(self, affine: Affine) -> Affine:
        """The affine of this window's pixel (0, 0) corner, given the raster's affine."""
        return affine @ Affine.translation(self.x0, self.y0)

    def intersection(self, other: Window) -> Window | None:
        """The overlap with ``other``, or None when they do not overlap."""
        y0, x0 = max(self.y0, other.y0), max(self.x0, other.x0)
        y1, x1 = min(self.y1, other.y1), min(self.x1, other.x1)
        if y1 <= y0 or x1 <= x0:
            return None
        return Window(y0, x0, y1 - y0, x1 - x0)

    def clip(self, height: int, width: int) -> Window | None:
        """The part of this window inside a ``height`` x ``width`` raster."""
        return self.intersection(Window(0, 0, height, width))

    def relative_to(self, outer: Window) -> Window:
        """This window in the pixel frame of ``outer`` (offsets subtracted)."""
        return Window(self.y0 - outer.y0, self.x0 - outer.x0, self.height, self.width)

    def contains(self, other: Window) -> bool:
        """True when ``other`` lies entirely inside this window."""
        return (self.y0 <= other.y0 and self.x0 <= other.x0
                and other.y1 <= self.y1 and other.x1 <= self.x1)

    def to_rasterio(self):
        """The same window as a ``rasterio.windows.Window``."""
        return RioWindow(self.x0, self.y0, self.width, self.height)

    def as_dict(self) -> dict:
        return {"y0": self.y0, "x0": self.x0, "height": self.height, "width": self.width}

    @classmethod
    def from_box(cls, box: tuple[int, int, int, int], *, y0: int = 0, x0: int = 0) -> Window:
        """The window of an XYXY end-exclusive ``box``, shifted by ``(y0, x0)``."""
        bx0, by0, bx1, by1 = box
        return cls(y0 + by0, x0 + bx0, by1 - by0, bx1 - bx0)


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """XYXY end-exclusive box of the True pixels of a (h, w) mask; None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def as_window(window) -> Window:
    """Accept a :class:`Window`, a pair of slices (rows, cols) or a rasterio Window."""
    if isinstance(window, Window):
        return window
    if isinstance(window, tuple) and len(window) == 2 and all(isinstance(s, slice) for s in window):
        rows, cols = window
        if rows.step not in (None, 1) or cols.step not in (None, 1):
            raise ValueError("strided windows are not supported")
        y0, x0 = rows.start or 0, cols.start or 0
        return Window(y0, x0, rows.stop - y0, cols.stop - x0)
    if hasattr(window, "col_off") and hasattr(window, "row_off"):
        return Window(int(window.row_off), int(window.col_off), int(window.height),
                      int(window.width))
    if isinstance(window, tuple) and len(window) == 4:
        return Window(*window)
    raise TypeError(f"not a window: {window!r}")

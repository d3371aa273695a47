"""Content points for the finest coarse-to-fine level: one point per grid cell, on the
strongest blob in the cell, or none.

At the finest level a grid point lands on a small object only by chance: a
10 px object in a 32 px cell is hit one time in ten. The image says where the
small things are: a blob (a spot brighter or darker than its surroundings,
or of another colour) gives a strong response of the scale-normalised
Laplacian of Gaussian at its centre, at a sigma near its radius over
sqrt(2). So the finest level moves each grid point to the strongest blob
centre of its cell, the ``spacing`` x ``spacing`` square of the global grid
around it (:func:`cell_targets`), and drops the points whose cell has no blob
above the tile's texture floor: smooth background, or only the inside of an
object a coarser point already probed. Every cell still holds at most one
point, so the level never decodes more than the full grid would.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from napari_sam.core.automatic.coarse_to_fine import usable_bands

BLOB_SIGMAS = (1 / 16, 1 / 8, 1 / 4)
"""Sigmas of the Laplacian of Gaussian in grid spacings (2, 4 and 8 px at the default 32 px
spacing): blobs of about a fifth of a spacing to a spacing across, the objects the
finest level exists for (larger ones mostly hold a coarser level's point, every two
or four spacings)."""

BLOB_FACTOR = 8.0
"""A blob is a local maximum of the strength at least this many times its median over the
tile (the texture floor). On ``benchmarks/bench_recall.py``'s 2048 px mosaic 4 decoded
9% more points than 8 for the same recall; 16 lost a fifth of the objects found."""


def blob_strength(data: np.ndarray, valid: np.ndarray | None, spacing: float, *,
                  sigmas: Sequence[float] = BLOB_SIGMAS) -> np.ndarray:
    """(H, W) float32: the largest ``sigma**2 * |LoG|`` over ``sigmas`` (grid spacings, of
    ``spacing`` px) and bands, each band scaled to its value range over the valid pixels
    (so it is in units of that range); -1 on and near nodata."""
    sigmas = [max(0.5, float(s) * float(spacing)) for s in sigmas]
    usable, bands = usable_bands(data, valid, int(np.ceil(3 * max(sigmas))) + 1)
    out = np.zeros(usable.shape, dtype=np.float32)
    for values, low, high in bands:
        values = (values - low) / (high - low)
        for sigma in sigmas:
            response = np.abs(ndimage.gaussian_laplace(values, sigma)) * (sigma * sigma)
            np.maximum(out, response, out=out)
    out[~usable] = -1.0
    return out


def blob_peaks(strength: np.ndarray, *, factor: float = BLOB_FACTOR,
               min_strength: float = 0.02,
               size: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Local maxima of ``strength`` (in a ``size`` px square) above ``factor`` times its median
    over the usable pixels (those not negative: the texture floor; 0 in a flat image)
    and above ``min_strength``: ``(rows (M,), cols (M,))``."""
    usable = strength[strength >= 0]
    if usable.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    floor = max(factor * float(np.median(usable)), float(min_strength))
    peak = (strength == ndimage.maximum_filter(strength, size=size, mode="nearest"))
    rows, cols = np.nonzero(peak & (strength > floor))
    return rows.astype(np.int64), cols.astype(np.int64)


def cell_targets(points_xy: np.ndarray, strength: np.ndarray, origin: tuple[int, int],
                 spacing: float, **peak_options) -> np.ndarray:
    """Where to decode each grid point at the finest level: (N, 2) raster XY, NaN for none.

    ``points_xy`` (N, 2) raster XY on the global grid ``(i + 0.5) * spacing``;
    ``strength`` (H, W) from :func:`blob_strength` over the tile's raster
    window whose top-left pixel is ``origin`` (y0, x0). A point goes to the
    strongest peak (:func:`blob_peaks`) in its cell (the square
    ``[i * spacing, (i + 1) * spacing)`` in each axis), at the pixel's centre.
    """
    pts = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    out = np.full(pts.shape, np.nan)
    if len(pts) == 0:
        return out
    oy, ox = origin
    rows, cols = blob_peaks(strength, **peak_options)
    if rows.size == 0:
        return out
    values = strength[rows, cols]
    cell_x = np.floor((cols + ox + 0.5) / spacing).astype(np.int64)
    cell_y = np.floor((rows + oy + 0.5) / spacing).astype(np.int64)
    # strongest peak per cell: sort by strength, keep the last of each cell
    order = np.lexsort((values, cell_x, cell_y))
    cy, cx = cell_y[order], cell_x[order]
    last = np.ones(order.size, dtype=bool)
    last[:-1] = (cy[1:] != cy[:-1]) | (cx[1:] != cx[:-1])
    best = order[last]
    lookup = {(int(y), int(x)): i for y, x, i in zip(cell_y[best], cell_x[best], best)}
    point_cells = np.floor(pts / spacing).astype(np.int64)
    for n, (px, py) in enumerate(point_cells):
        i = lookup.get((int(py), int(px)))
        if i is not None:
            out[n] = (cols[i] + ox + 0.5, rows[i] + oy + 0.5)
    return out

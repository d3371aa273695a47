"""Georeference: a raster's affine transform, and map <-> pixel coordinates.

Conventions (those of rasterio): ``transform * (col, row)`` is the map position
of the *corner* of pixel (row, col); a pixel's centre is at ``(col + 0.5,
row + 0.5)``. The pixel coordinates here (``map_to_pixel``) put pixel centres
at integers, as numpy indexing and SAM's point prompts do. Points are (N, 2)
XY arrays: x (map X, or pixel column) first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from affine import Affine

from napari_sam.errors import InputError


def as_affine(value: Any, where: object = "transform") -> Affine:
    """An ``Affine`` from an Affine, six or more numbers (a, b, c, d, e, f first, the
    GDAL/rasterio order) or None (the identity); InputError naming ``where`` otherwise."""
    if value is None:
        return Affine.identity()
    values = tuple(value)[:6]
    if len(values) != 6:
        raise InputError(f"{where}: a transform needs 6 numbers (a, b, c, d, e, f), "
                         f"got {value!r}")
    return Affine(*(float(v) for v in values))


def apply_affine(transform: Affine, xy: Any) -> np.ndarray:
    """(N, 2) XY points through ``transform`` -> (N, 2) float64."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    t = transform
    return np.stack([t.a * xy[:, 0] + t.b * xy[:, 1] + t.c,
                     t.d * xy[:, 0] + t.e * xy[:, 1] + t.f], axis=1)


def map_to_pixel(xy: Any, transform: Affine) -> np.ndarray:
    """(N, 2) map X, Y -> (N, 2) pixel x (column), y (row), pixel centres at integers."""
    return apply_affine(~transform, xy) - 0.5


def pixel_to_map(xy: Any, transform: Affine) -> np.ndarray:
    """Inverse of :func:`map_to_pixel`."""
    return apply_affine(transform, np.asarray(xy, dtype=np.float64).reshape(-1, 2) + 0.5)


def box_to_pixel(box: Any, transform: Affine) -> np.ndarray:
    """A map-coordinate XYXY box -> the pixel XYXY box holding its four corners."""
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64).reshape(4)
    corners = map_to_pixel([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], transform)
    return np.concatenate([corners.min(axis=0), corners.max(axis=0)])

"""A crafted labels raster in the georeference of the real Landsat scene (EPSG:32618).

Shared by the vectorisation, vector IO and labels IO tests. Every case the
polygoniser must get right has its own id; ``EXPECTED`` says what each must
become.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from affine import Affine

HEIGHT, WIDTH = 24, 32
BIG_ID = 3_000_000_000  # > 2**31: rasterio's polygoniser cannot take it directly

# id -> (geometry type, number of parts, number of holes over all parts)
EXPECTED = {
    1: ("Polygon", 1, 1),        # a square with a 2x2 hole (filled by id 7)
    2: ("MultiPolygon", 2, 0),   # two separate squares, one feature
    3: ("Polygon", 1, 0),        # a single pixel
    4: ("MultiPolygon", 3, 0),   # three pixels touching only at corners
    5: ("Polygon", 1, 1),        # a ring whose hole touches the outside at a corner
    6: ("Polygon", 1, 0),        # on the top and right borders of the raster
    7: ("Polygon", 1, 0),        # inside the hole of id 1
    BIG_ID: ("Polygon", 1, 0),   # an id that does not fit in int32
}


def crafted_labels(dtype: str = "uint32") -> np.ndarray:
    """(24, 32) labels with the cases of ``EXPECTED``; 0 = background."""
    a = np.zeros((HEIGHT, WIDTH), dtype=np.uint64)
    a[2:10, 2:10] = 1
    a[5:7, 5:7] = 7
    a[12:15, 2:5] = 2
    a[12:15, 8:11] = 2
    a[20, 20] = 3
    for k in range(3):
        a[12 + k, 14 + k] = 4
    a[2:5, 14:17] = 5
    a[3, 15] = 0
    a[4, 16] = 0
    a[0:4, 28:32] = 6
    a[18:22, 2:6] = BIG_ID
    return a.astype(dtype)


def scene_georeference(shared_data: Path) -> tuple[Affine, object]:
    """Transform and CRS of the real Landsat scene RGB.byte.tif (EPSG:32618, ~300 m pixels)."""
    import rasterio

    with rasterio.open(shared_data / "RGB.byte.tif") as ds:
        return ds.transform, ds.crs


def pixel_area(transform: Affine) -> float:
    return abs(transform.a * transform.e - transform.b * transform.d)

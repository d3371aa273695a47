"""Tiled automatic segmentation against a known answer (the content oracle).

A GeoTIFF of flat rectangles, several tiles wide and high, goes through the
real pipeline (``segment_file``: tiles read and normalised, embedded into a
store, point grid, per-tile decoding, filters, seam stitching, deduplication,
painting, polygons) with :class:`value_model.ValueModel`, whose mask for a
point is exactly the rectangle under it. Every rectangle must come back as one
object, with exactly its pixels in the labels raster and its outline as the
polygon in the raster's CRS, whatever tile decoded it: a prompt sent to the
wrong place, a wrong tile origin or a wrong scale breaks this.
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from value_model import ValueModel

from napari_sam.core import progress
from napari_sam.core.automatic.run import segment_file
from napari_sam.core.automatic.settings import SegmentConfig

HEIGHT, WIDTH = 248, 296
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_100_000.0)
CRS_ = CRS.from_epsg(32633)
# (y0, x0, h, w): multiples of 8 px, so they are whole 4x4 cells at scale 1 and 2;
# spread over the raster, several straddling tile seams or ending exactly on a
# tile border (tiles of 64 * scale px, stride 40 * scale: x = 144 at scale 1, x = 208
# at scale 2) and one in the corner.
# The overlap (24 * scale px) holds more than one point spacing (8 * scale px)
# on each side of its middle: with a narrower one, an object that ends on a
# tile's border and reaches into the neighbour by less than a point spacing is
# prompted by neither tile as a whole, and stitching has no partner for it.
RECTS = [
    (16, 16, 24, 32), (8, 96, 40, 24), (40, 200, 48, 40), (64, 128, 32, 16),
    (104, 24, 48, 48), (120, 104, 32, 56), (104, 224, 56, 48), (176, 48, 40, 64),
    (168, 144, 64, 64), (200, 248, 48, 48),
]


def _truth() -> np.ndarray:
    truth = np.zeros((HEIGHT, WIDTH), np.int32)
    for k, (y0, x0, h, w) in enumerate(RECTS, start=1):
        assert not truth[max(0, y0 - 8):y0 + h + 8, max(0, x0 - 8):x0 + w + 8].any()
        truth[y0:y0 + h, x0:x0 + w] = k
    return truth


def _write_scene(path) -> np.ndarray:
    truth = _truth()
    value = np.where(truth > 0, 20 + 20 * truth, 0).astype(np.uint8)  # 40, 60, ... 220
    with rasterio.open(path, "w", driver="GTiff", height=HEIGHT, width=WIDTH, count=3,
                       dtype="uint8", transform=TRANSFORM, crs=CRS_) as ds:
        for b in (1, 2, 3):
            ds.write(value, b)
    return truth


def _check_labels_match(labels: np.ndarray, truth: np.ndarray) -> dict[int, int]:
    """Each true object is one label with exactly its pixels; returns truth id -> label id."""
    found = {}
    for k in range(1, truth.max() + 1):
        ids = np.unique(labels[truth == k])
        assert len(ids) == 1 and ids[0] != 0, f"rectangle {RECTS[k - 1]} came back as {ids}"
        found[k] = int(ids[0])
        assert np.array_equal(labels == ids[0], truth == k), f"rectangle {RECTS[k - 1]}"
    assert not labels[truth == 0].any()
    return found


@pytest.mark.parametrize("scale", [1, 2])
def test_every_rectangle_is_found_where_it_is(tmp_path, scale):
    scene = tmp_path / "rects.tif"
    truth = _write_scene(scene)
    summary = progress.run(segment_file(scene, tmp_path / "out", ValueModel(img_size=64),
                                        scale=scale, overlap=24 * scale, config=SegmentConfig(points_per_side=8)))
    assert summary.n_tiles >= 9  # several tiles, most of them away from the origin
    with rasterio.open(summary.outputs.labels) as ds:
        labels = ds.read(1)
        assert ds.transform == TRANSFORM and ds.crs == CRS_
    found = _check_labels_match(labels, truth)
    assert summary.n_objects == len(RECTS)

    gdf = gpd.read_file(summary.outputs.objects, layer="objects")
    assert gdf.crs == CRS_ and len(gdf) == len(RECTS)
    by_id = dict(zip(gdf["id"].astype(int), gdf.geometry))
    for k, (y0, x0, h, w) in enumerate(RECTS, start=1):
        (ax, ay), (bx, by) = TRANSFORM * (x0, y0), TRANSFORM * (x0 + w, y0 + h)
        expected = shapely.box(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))
        poly = by_id[found[k]]
        assert poly.symmetric_difference(expected).area == pytest.approx(0.0, abs=1e-6)

"""Where masks overlap, the higher predicted IoU wins the pixel: in the labels
raster, in the polygons and in the object table (``core/paint.py``).

Two square objects of one tile overlap in a 15 x 15 square (box IoU 0.14, so
deduplication keeps both); their scores are set, then swapped. Ties on the
predicted IoU go to the higher stability score, full ties to the lower id.
"""

from __future__ import annotations

from types import SimpleNamespace

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from fake_tiles import make_tiles
from rasterio.crs import CRS

from napari_sam.core import progress
from napari_sam.core.automatic.assembly import assemble_objects
from napari_sam.core.automatic.candidates import Candidate
from napari_sam.core.automatic.point_grid import axis_windows
from napari_sam.core.io.outputs import write_segmentation
from napari_sam.core.io.raster_open import open_raster

H = W = 64
TRANSFORM = Affine(2.0, 0.0, 300_000.0, 0.0, -2.0, 5_000_000.0)
A_BOX, B_BOX = (10, 10, 40, 40), (25, 25, 55, 55)  # XYXY end-exclusive, raster px
CONTESTED = (25, 25, 40, 40)


def _square(box, iou, stability):
    x0, y0, x1, y1 = box
    return Candidate(mask=np.ones((y1 - y0, x1 - x0), bool), y0=y0, x0=x0, predicted_iou=iou,
                     stability_score=stability, tile=(0, 0),
                     point=((x0 + x1) / 2, (y0 + y1) / 2))


def _map_box(box):
    x0, y0, x1, y1 = box
    (ax, ay), (bx, by) = TRANSFORM * (x0, y0), TRANSFORM * (x1, y1)
    return shapely.box(min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def _segment(tmp_path, a_scores, b_scores):
    path = tmp_path / "scene.tif"
    with rasterio.open(path, "w", driver="GTiff", height=H, width=W, count=1, dtype="uint8",
                       transform=TRANSFORM, crs=CRS.from_epsg(32631)) as ds:
        ds.write(np.full((1, H, W), 100, np.uint8))
    raster = open_raster(path)
    rows, cols = axis_windows(make_tiles(H, W, 64, 8), H, W)
    cands = [_square(A_BOX, *a_scores), _square(B_BOX, *b_scores)]

    def produce(sink):
        table, _ = yield from assemble_objects([((0, 0), cands)], rows=rows, cols=cols, sink=sink)
        return SimpleNamespace(objects=table)

    out, _ = progress.run(write_segmentation(raster, tmp_path / "out", produce))
    with rasterio.open(out.labels) as ds:
        labels = ds.read(1)
    gdf = gpd.read_file(out.objects, layer="objects")
    table = {r.id: r for r in gdf.itertuples()}
    # ids in (y0, x0) order: A is 1, B is 2
    return labels, table


@pytest.mark.parametrize("a_scores, b_scores, winner", [
    ((0.90, 0.95), (0.97, 0.95), "B"),  # higher predicted IoU wins
    ((0.97, 0.95), (0.90, 0.95), "A"),  # ... whichever object has it
    ((0.92, 0.99), (0.92, 0.96), "A"),  # same IoU: higher stability wins
    ((0.92, 0.96), (0.92, 0.99), "B"),
    ((0.92, 0.96), (0.92, 0.96), "A"),  # full tie: the lower id (A, found first)
])
def test_higher_score_wins_every_contested_pixel(tmp_path, a_scores, b_scores, winner):
    labels, table = _segment(tmp_path, a_scores, b_scores)
    win, lose = (1, 2) if winner == "A" else (2, 1)
    x0, y0, x1, y1 = CONTESTED
    assert (labels[y0:y1, x0:x1] == win).all()
    assert np.count_nonzero(labels == win) == 900 and np.count_nonzero(labels == lose) == 675
    contested = _map_box(CONTESTED)
    pixel_area = abs(TRANSFORM.a * TRANSFORM.e)
    assert table[win].geometry.contains(contested)
    assert table[lose].geometry.intersection(contested).area == 0.0
    assert table[lose].geometry.area == pytest.approx(675 * pixel_area)
    winner_box = A_BOX if winner == "A" else B_BOX
    assert table[win].geometry.symmetric_difference(_map_box(winner_box)).area == 0.0
    assert table[win].pixels == 900 and table[lose].pixels == 675  # visible pixels

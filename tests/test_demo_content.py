"""The demo finds real objects, where they are: on the scene's pixels, outlined by
its polygons in EPSG:32618, described by its table, their borders on image edges.

No exact counts: a better default model may find other objects. What must hold
for any model that segments anything: objects exist, lie on valid (not nodata)
pixels of the rotated Landsat footprint, each polygon is its label's pixels in
map coordinates, the table describes the labels, and the objects' borders run
along the image's edges (mean gradient there clearly above the scene's mean).
"""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio
from rasterio import features
from scipy import ndimage

from napari_sam import demo
from napari_sam._sample_data import LANDSAT, sample_path


def _gradient(image: np.ndarray) -> np.ndarray:
    """Sum over bands of the Sobel gradient magnitude; image (bands, h, w)."""
    return sum(np.hypot(ndimage.sobel(b, 0), ndimage.sobel(b, 1)) for b in image.astype(float))


def _borders(labels: np.ndarray) -> np.ndarray:
    """Pixels whose label differs from the one above or to the left."""
    out = np.zeros(labels.shape, bool)
    out[1:] |= labels[1:] != labels[:-1]
    out[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    return out


def test_demo_objects_are_real_and_in_place(tmp_path):
    assert demo.main(["--out", str(tmp_path), "--points-per-side", "16", "--quiet"]) == 0
    folder = tmp_path / "landsat_rgb_epsg32618"
    with rasterio.open(sample_path(LANDSAT)) as src:
        image, transform, bounds = src.read(), src.transform, src.bounds
        valid = src.dataset_mask() > 0
    with rasterio.open(folder / "labels.tif") as ds:
        labels = ds.read(1)
        assert ds.transform == transform
    ids = np.unique(labels[labels > 0])
    assert len(ids) >= 5, f"the demo found {len(ids)} objects"
    # on the scene's pixels (a few nodata pixels may sit in filled holes)
    assert np.count_nonzero(labels[~valid]) <= 0.002 * np.count_nonzero(labels)

    gdf = gpd.read_file(folder / "objects.gpkg", layer="objects")
    assert gdf.crs.to_epsg() == 32618
    assert sorted(gdf["id"].astype(int)) == ids.tolist()
    x0, y0, x1, y1 = gdf.total_bounds
    assert bounds.left <= x0 < x1 <= bounds.right and bounds.bottom <= y0 < y1 <= bounds.top
    burnt = features.rasterize(zip(gdf.geometry, gdf["id"].astype(int)), out_shape=labels.shape,
                               transform=transform, dtype="uint32")
    assert np.mean(burnt == labels) >= 0.999  # each polygon is its label, in map coordinates

    table = pd.read_csv(folder / "objects.csv").set_index("id")
    assert sorted(table.index) == ids.tolist()
    for oid in ids:
        rows, cols = np.nonzero(labels == oid)
        row = table.loc[oid]
        assert row["area"] == rows.size
        assert (row["x0"], row["y0"], row["x1"], row["y1"]) == (
            cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)

    # the objects' borders follow the image: away from the footprint's own edge,
    # the mean gradient on them is well above the scene's (1.5x with sam_tiny;
    # borders drawn at random or shifted off the objects give about 1x)
    grad = _gradient(image)
    inside = ndimage.binary_erosion(valid, iterations=4)
    on_borders = grad[_borders(labels) & inside].mean()
    assert on_borders >= 1.25 * grad[inside].mean()

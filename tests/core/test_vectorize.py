"""Labels to polygons: exact areas, holes, parts, validity, ids of any size, seams."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from affine import Affine
from labels_scene import BIG_ID, EXPECTED, crafted_labels, pixel_area, scene_georeference

from napari_sam.core.progress import run
from napari_sam.core.vector.polygons import (
    PolygonCollector,
    pixel_parts,
    polygons_from_labels,
    vectorize_labels,
)
from napari_sam.errors import InputError


def _holes(geom) -> int:
    return sum(len(p.interiors) for p in shapely.get_parts(geom))


@pytest.fixture(scope="module")
def georef(shared_data):
    return scene_georeference(shared_data)


def test_crafted_cases_in_the_scene_crs(georef):
    transform, crs = georef
    labels = crafted_labels("uint32")
    gdf = run(vectorize_labels(labels, transform=transform, crs=crs))
    assert gdf.crs.to_epsg() == 32618
    assert sorted(gdf["id"]) == sorted(EXPECTED)
    assert len(gdf) == len(EXPECTED)
    px_area = pixel_area(transform)
    for row in gdf.itertuples():
        geom = row.geometry
        kind, parts, holes = EXPECTED[row.id]
        assert geom.is_valid, (row.id, shapely.is_valid_reason(geom))
        assert geom.geom_type == kind, row.id
        assert len(shapely.get_parts(geom)) == parts, row.id
        assert _holes(geom) == holes, row.id
        count = int((labels == row.id).sum())
        assert row.pixels == count
        assert row.area == count * px_area  # exact: pixel count x pixel area
        assert geom.area == pytest.approx(count * px_area, rel=1e-9)
        assert np.isnan(row.predicted_iou) and np.isnan(row.stability_score)


def test_polygons_land_on_their_pixels(georef):
    transform, _ = georef
    labels = crafted_labels()
    result = dict(polygons_from_labels(labels, transform))
    x0, y0 = transform @ (20, 20)  # the one-pixel object at row 20, col 20
    x1, y1 = transform @ (21, 21)
    expected = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    assert shapely.equals_exact(shapely.normalize(result[3]), shapely.normalize(expected), 1e-6)
    # the border object reaches the raster's top-right corner exactly
    right, top = transform @ (32, 0)
    minx, miny, maxx, maxy = result[6].bounds
    assert maxx == pytest.approx(right, abs=1e-6) and maxy == pytest.approx(top, abs=1e-6)
    # the hole of id 1 is exactly where id 7 sits
    hole = shapely.Polygon(result[1].interiors[0])
    assert shapely.equals(hole, result[7])


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32", "uint32", "int64",
                                   "uint64", "bool"])
def test_every_integer_width(dtype):
    labels = crafted_labels("uint64")
    if dtype == "bool":
        labels = labels > 0
    else:
        labels = labels % np.iinfo(dtype).max if np.iinfo(dtype).max < BIG_ID else labels
        labels = labels.astype(dtype)
    result = dict(polygons_from_labels(labels))
    ids = np.unique(labels[labels > 0]).astype(np.uint64)
    assert sorted(result) == [int(i) for i in ids]
    for i, geom in result.items():
        assert geom.is_valid
        assert geom.area == int((labels == (True if dtype == "bool" else i)).sum())


def test_ids_beyond_int32_and_int64_map_back():
    labels = np.zeros((6, 6), np.uint64)
    labels[0:2, 0:2] = 2**40 + 3
    labels[3:6, 3:6] = 2**63 - 1
    labels[0, 5] = 2**31
    assert {i: g.area for i, g in polygons_from_labels(labels)} == {
        2**31: 1.0, 2**40 + 3: 4.0, 2**63 - 1: 9.0}


def test_window_without_background_keeps_every_id():
    labels = np.full((3, 3), 2**33, np.uint64)
    labels[1, 1] = 2**34
    result = dict(polygons_from_labels(labels))
    assert result[2**33].area == 8 and result[2**34].area == 1


@pytest.mark.parametrize("window", [1, 5, 7, 16])
def test_windows_give_the_same_polygons_as_one_pass(window):
    labels = crafted_labels("uint64")
    whole = dict(polygons_from_labels(labels))
    tiled = run(vectorize_labels(labels, window=window))
    assert sorted(tiled["id"]) == sorted(whole)
    for row in tiled.itertuples():
        assert row.geometry.is_valid
        assert shapely.equals(row.geometry, whole[row.id]), row.id
        # no vertex left behind on straight edges by the window seams
        assert shapely.get_num_coordinates(row.geometry) == shapely.get_num_coordinates(
            whole[row.id])


def test_random_labels_are_valid_with_exact_areas():
    rng = np.random.default_rng(7)
    for _ in range(15):
        labels = rng.integers(0, 4, size=(13, 11)).astype(np.uint32) * (2**31 + 1)
        collector = PolygonCollector(height=13, width=11)
        for y0 in range(0, 13, 4):
            for x0 in range(0, 11, 3):
                collector.add(labels[y0:y0 + 4, x0:x0 + 3], y0=y0, x0=x0)
        ids, geoms = collector.result()
        assert list(ids) == sorted(np.unique(labels[labels > 0]).tolist())
        assert shapely.is_valid(geoms).all()
        for i, geom in zip(ids, geoms):
            assert geom.area == (labels == i).sum()


def test_offset_parts_are_in_raster_pixels():
    ids, parts = pixel_parts(np.ones((2, 3), np.uint8), y0=10, x0=20)
    assert list(ids) == [1]
    assert parts[0].bounds == (20.0, 10.0, 23.0, 12.0)


def test_simplify_in_map_units_keeps_valid_topology(georef):
    transform, crs = georef
    yy, xx = np.mgrid[:80, :80]
    disk = ((yy - 40) ** 2 + (xx - 40) ** 2 < 35**2).astype(np.uint32)
    disk[35:45, 35:45] = 0  # a hole that simplification must keep
    plain = dict(polygons_from_labels(disk, transform))[1]
    simple = dict(polygons_from_labels(disk, transform, simplify=2 * transform.a))[1]
    assert simple.is_valid and len(simple.interiors) == 1
    assert shapely.get_num_coordinates(simple) < shapely.get_num_coordinates(plain) / 2
    assert simple.area == pytest.approx(plain.area, rel=0.02)
    gdf = run(vectorize_labels(disk, transform=transform, crs=crs, simplify=2 * transform.a))
    assert gdf["area"].iloc[0] == disk.sum() * pixel_area(transform)  # mask area, unchanged
    assert gdf["perimeter"].iloc[0] == pytest.approx(simple.length)


def test_simplify_keeps_touching_objects_gap_and_overlap_free(georef):
    transform, _ = georef
    yy, xx = np.mgrid[:60, :60]
    labels = (((yy - 30) ** 2 + (xx - 30) ** 2) < 26**2).astype(np.uint32)
    labels[(labels == 1) & (xx + 0.4 * yy > 40)] = 2  # a slanted, staircase border
    labels[(labels == 1) & (yy > 45)] = 3
    plain = dict(polygons_from_labels(labels, transform))
    simple = dict(polygons_from_labels(labels, transform, simplify=1.5 * transform.a))
    for a, b in ((1, 2), (1, 3), (2, 3)):
        shared = simple[a].intersection(simple[b])
        assert shared.area == pytest.approx(0.0, abs=1e-6)  # no overlap
        assert shared.length > 0 or not plain[a].intersects(plain[b])  # still touching
    union = shapely.union_all(list(simple.values()))
    assert union.area == pytest.approx(sum(g.area for g in simple.values()), rel=1e-9)
    assert union.geom_type == "Polygon" and len(union.interiors) == 0  # no gap between them
    assert sum(shapely.get_num_coordinates(g) for g in simple.values()) < sum(
        shapely.get_num_coordinates(g) for g in plain.values()) / 2


def test_attributes_are_joined_by_id(georef):
    import pandas as pd

    transform, crs = georef
    table = pd.DataFrame({"id": [1, BIG_ID, 99], "predicted_iou": [0.9, 0.8, 0.1],
                          "stability_score": [0.97, 0.96, 0.5], "tile": [3, 4, 5]})
    gdf = run(vectorize_labels(crafted_labels(), transform=transform, crs=crs,
                               attributes=table)).set_index("id")
    assert gdf.loc[1, "predicted_iou"] == 0.9 and gdf.loc[BIG_ID, "tile"] == 4
    assert np.isnan(gdf.loc[2, "predicted_iou"])
    assert 99 not in gdf.index
    assert list(gdf.columns[:5]) == ["predicted_iou", "stability_score", "area", "perimeter",
                                     "pixels"]


def test_rotated_transform_gives_exact_area():
    transform = Affine.translation(500, 100) @ Affine.rotation(30) @ Affine.scale(2, -3)
    labels = crafted_labels()
    gdf = run(vectorize_labels(labels, transform=transform))
    for row in gdf.itertuples():
        assert row.area == (labels == row.id).sum() * 6.0
        assert row.geometry.area == pytest.approx(row.area, rel=1e-9)


def test_empty_and_bad_input():
    gdf = run(vectorize_labels(np.zeros((5, 5), np.uint32)))
    assert len(gdf) == 0 and "geometry" in gdf
    with pytest.raises(InputError, match="not a label raster"):
        polygons_from_labels(np.zeros((4, 4), np.float32))
    with pytest.raises(InputError, match="negative"):
        polygons_from_labels(np.full((2, 2), -1, np.int32))
    with pytest.raises(InputError, match="2-D"):
        polygons_from_labels(np.zeros((2, 2, 2), np.uint8))

"""napari reader and writers without a viewer: layers land where their pixels are.

Each test builds napari layers from the reader's layer data, takes them back
with ``as_layer_data_tuple`` (what napari hands a writer) and checks world
positions, georeference and geometry through file round trips.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import shapely

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from labels_scene import BIG_ID, EXPECTED, crafted_labels, scene_georeference  # noqa: E402

from napari_sam._reader import get_reader, layer_affine  # noqa: E402
from napari_sam._sample_data import landsat_scene, microscopy_cells  # noqa: E402
from napari_sam._writer import write_labels, write_shapes  # noqa: E402
from napari_sam.core.io.labels import read_labels  # noqa: E402
from napari_sam.core.io.labels import write_labels as write_label_raster  # noqa: E402
from napari_sam.core.io.vectors import read_vectors  # noqa: E402
from napari_sam.core.vector.polygons import vectorize  # noqa: E402

napari_layers = pytest.importorskip("napari.layers")


def _layers(path):
    reader = get_reader(str(path))
    assert reader is not None, path
    made = []
    for data, kwargs, kind in reader(str(path)):
        cls = {"image": napari_layers.Image, "labels": napari_layers.Labels,
               "shapes": napari_layers.Shapes, "points": napari_layers.Points}[kind]
        made.append(cls(data, **kwargs))
    return made


def _world(layer, rc):
    return np.asarray(layer.data_to_world(np.asarray(rc, dtype=float)))


@pytest.fixture()
def scene_files(tmp_path, shared_data):
    transform, crs = scene_georeference(shared_data)
    labels = write_label_raster(tmp_path / "labels.tif", crafted_labels(), transform=transform,
                                crs=crs)
    objects = vectorize(labels, tmp_path / "objects.gpkg")
    return labels, objects, transform


def test_raster_layer_affine_puts_pixel_centres_at_their_map_position(sample_scene):
    (layer,) = _layers(sample_scene)
    assert layer.rgb and not layer.multiscale
    geo = layer.metadata["napari_sam"]
    t = __import__("affine").Affine(*geo["transform"])
    assert geo["shape"] == [718, 791]
    from rasterio.crs import CRS

    assert CRS.from_wkt(geo["crs"]).to_epsg() == 32618
    x, y = t @ (10.5, 20.5)  # centre of pixel row 20, col 10
    np.testing.assert_allclose(_world(layer, (20, 10)), [-y, x], rtol=0, atol=1e-6)
    assert layer.data.shape == (718, 791, 3)


def test_cog_opens_multiscale_with_its_georeference(shared_data):
    (layer,) = _layers(shared_data / "cogeo.tif")
    assert layer.multiscale and len(layer.data) > 3
    assert [tuple(d.shape[:2]) for d in layer.data[:2]] == [(1024, 1024), (512, 512)]
    from rasterio.crs import CRS

    assert CRS.from_wkt(layer.metadata["napari_sam"]["crs"]).to_epsg() == 3857


def test_labels_layer_round_trip_keeps_ids_and_georeference(scene_files, tmp_path):
    labels_path, _, transform = scene_files
    (layer,) = _layers(labels_path)
    assert isinstance(layer, napari_layers.Labels)
    data, meta, kind = layer.as_layer_data_tuple()
    for name in ("again.tif", "again.zarr"):
        (out,) = write_labels(str(tmp_path / name), data, meta)
        back = read_labels(out)
        assert tuple(back.transform) == tuple(transform) and back.crs.to_epsg() == 32618
        np.testing.assert_array_equal(back.read(0, 0, *back.shape), crafted_labels())
        (again,) = _layers(out)
        np.testing.assert_allclose(again.affine.affine_matrix, layer.affine.affine_matrix)


def test_plain_labels_layer_is_written_without_georeference(tmp_path):
    layer = napari_layers.Labels(crafted_labels())
    (out,) = write_labels(str(tmp_path / "plain.tif"), *layer.as_layer_data_tuple()[:2])
    back = read_labels(out)
    assert back.crs is None and back.transform.is_identity
    scaled = napari_layers.Labels(crafted_labels(), scale=(0.5, 0.25))
    (out,) = write_labels(str(tmp_path / "scaled.tif"), *scaled.as_layer_data_tuple()[:2])
    t = read_labels(out).transform
    # pixel (row 3, col 4) centre: napari world (1.5, 1.0) = map (x 1.0, y 1.5)
    np.testing.assert_allclose(t @ (4.5, 3.5), (1.0, 1.5))


def test_polygons_open_on_the_pixels_they_came_from(scene_files):
    labels_path, objects_path, _ = scene_files
    (image,) = _layers(labels_path)
    (shapes,) = _layers(objects_path)
    np.testing.assert_allclose(shapes.affine.affine_matrix, image.affine.affine_matrix)
    feats = shapes.features
    assert set(feats["id"]) == set(EXPECTED)
    # the one-pixel object at row 20, col 20: its corners are that pixel's corners
    (k,) = np.flatnonzero(feats["id"] == 3)
    corners = np.array([_world(shapes, v) for v in shapes.data[k]])
    centre = _world(image, (20, 20))
    half = np.abs(_world(image, (20.5, 20.5)) - centre)
    np.testing.assert_allclose(corners.min(axis=0), centre - half, atol=1e-6)
    np.testing.assert_allclose(corners.max(axis=0), centre + half, atol=1e-6)
    # the hole of id 1 is its own ring, flagged as a hole
    rings = feats[feats["id"] == 1]["ring"].tolist()
    assert sorted(rings) == ["exterior", "hole"]
    assert (feats[feats["id"] == 2]["part"].nunique(), len(feats[feats["id"] == 4])) == (2, 3)


@pytest.mark.parametrize("name", ["back.gpkg", "back.geojson"])
def test_shapes_round_trip_keeps_positions_holes_and_parts(scene_files, tmp_path, name):
    _, objects_path, _ = scene_files
    (shapes,) = _layers(objects_path)
    data, meta, kind = shapes.as_layer_data_tuple()
    assert kind == "shapes"
    (out,) = write_shapes(str(tmp_path / name), data, meta)
    original = read_vectors(objects_path).set_index("id")
    back = read_vectors(out)
    assert back.crs.to_epsg() == 32618
    back = back.set_index(back["id"].astype(np.int64))
    assert sorted(back.index) == sorted(EXPECTED)
    for ident in EXPECTED:
        a, b = original.loc[ident, "geometry"], back.loc[ident, "geometry"]
        assert b.is_valid and b.geom_type == a.geom_type, ident
        assert shapely.equals_exact(shapely.normalize(a), shapely.normalize(b), 1e-6), ident
    assert back.loc[BIG_ID, "area"] == original.loc[BIG_ID, "area"]
    (again,) = _layers(out)
    np.testing.assert_allclose(again.affine.affine_matrix, shapes.affine.affine_matrix)
    assert len(again.data) == len(shapes.data)
    for before, after in zip(shapes.data, again.data):  # same rings, maybe reoriented
        assert shapely.equals_exact(shapely.normalize(shapely.Polygon(before)),
                                    shapely.normalize(shapely.Polygon(after)), 1e-6)


def test_drawn_shapes_become_new_objects_in_map_coordinates(scene_files, tmp_path):
    labels_path, objects_path, transform = scene_files
    (shapes,) = _layers(objects_path)
    shapes.add_rectangles(np.array([[9.5, 19.5], [11.5, 22.5]]))  # pixels rows 10-11, cols 20-22
    data, meta, _ = shapes.as_layer_data_tuple()
    (out,) = write_shapes(str(tmp_path / "edited.gpkg"), data, meta)
    back = read_vectors(out)
    assert len(back) == len(EXPECTED) + 1
    new = back[~back["id"].isin(list(EXPECTED))]
    assert len(new) == 1 and int(new["id"].iloc[0]) > max(EXPECTED)
    x0, y0 = transform @ (20, 10)
    x1, y1 = transform @ (23, 12)
    box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    assert shapely.equals_exact(shapely.normalize(new.geometry.iloc[0]), shapely.normalize(box),
                                1e-6)


def test_layers_without_georeference_use_world_coordinates(tmp_path, scene_files):
    labels_path, _, transform = scene_files
    (image,) = _layers(labels_path)
    # a foreign file in the scene's CRS, no raster recorded: world = (-y, x)
    x0, y0 = transform @ (20, 20)
    x1, y1 = transform @ (21, 21)
    import geopandas as gpd

    pixel_box = shapely.box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    foreign = gpd.GeoDataFrame({"name": ["a"]}, geometry=[pixel_box], crs=32618)
    foreign.to_file(tmp_path / "foreign.geojson", driver="GeoJSON")
    (shapes,) = _layers(tmp_path / "foreign.geojson")
    assert np.abs(shapes.data[0]).max() < 400  # one 300 m pixel; the origin is in the affine
    corners = np.array([_world(shapes, v) for v in shapes.data[0]])
    centre = _world(image, (20, 20))
    np.testing.assert_allclose(corners.mean(axis=0), centre, atol=1e-3)
    # written back with the CRS it came with, at the same map position
    data, meta, _ = shapes.as_layer_data_tuple()
    (out,) = write_shapes(str(tmp_path / "foreign_back.gpkg"), data, meta)
    back = read_vectors(out)
    assert back.crs.to_epsg() == 32618
    # napari holds vertices in float32: ~1e-5 of the 300 m extent, far below a millimetre
    assert shapely.equals_exact(shapely.normalize(back.geometry.iloc[0]),
                                shapely.normalize(pixel_box), 1e-3)


def test_qupath_file_opens_in_pixels_over_the_raster(tmp_path):
    labels = crafted_labels()
    plain = write_label_raster(tmp_path / "plain.tif", labels)
    out = vectorize(plain, tmp_path / "cells.geojson", fmt="qupath")
    assert json.loads(out.read_text())["features"][0]["properties"]["objectType"]
    (image,) = _layers(plain)
    (shapes,) = _layers(out)
    k = [i for i, v in enumerate(shapes.features["name"]) if str(v) == "3"][0]
    corners = np.array([_world(shapes, v) for v in shapes.data[k]])
    np.testing.assert_allclose(corners.mean(axis=0), _world(image, (20, 20)), atol=1e-9)


def test_prompt_points_open_as_a_points_layer(tmp_path, shared_data):
    import geopandas as gpd

    transform, crs = scene_georeference(shared_data)
    x, y = transform @ (5.5, 7.5)
    gpd.GeoDataFrame({"positive": [True]}, geometry=[shapely.Point(x, y)], crs=crs).to_file(
        tmp_path / "prompts.gpkg")
    (points,) = _layers(tmp_path / "prompts.gpkg")
    assert isinstance(points, napari_layers.Points) and bool(points.features["positive"][0])
    np.testing.assert_allclose(_world(points, points.data[0]), [-y, x], atol=1e-3)


def test_get_reader_declines_what_it_cannot_open(tmp_path):
    assert get_reader(str(tmp_path / "a.png")) is None
    assert get_reader([str(tmp_path / "a.tif"), str(tmp_path / "b.tif")]) is None
    (tmp_path / "store.zarr").mkdir()
    assert get_reader(str(tmp_path / "store.zarr")) is not None


def test_writers_refuse_other_extensions(tmp_path):
    from napari_sam.errors import InputError

    with pytest.raises(InputError):
        write_shapes(str(tmp_path / "a.shp"), [np.zeros((3, 2))], {"shape_type": ["polygon"]})
    with pytest.raises(InputError):
        write_labels(str(tmp_path / "a.png"), np.zeros((4, 4), np.uint8), {})


def test_sample_data():
    ((scene, kwargs, kind),) = landsat_scene()
    assert kind == "image" and kwargs["rgb"] and scene.shape == (718, 791, 3)
    from rasterio.crs import CRS

    assert CRS.from_wkt(kwargs["metadata"]["napari_sam"]["crs"]).to_epsg() == 32618
    np.testing.assert_allclose(kwargs["affine"], layer_affine(
        kwargs["metadata"]["napari_sam"]["transform"]))
    ((cells, kwargs, kind),) = microscopy_cells()
    assert kind == "image" and kwargs["rgb"] and cells.shape == (512, 512, 3)
    assert kwargs["metadata"]["napari_sam"]["crs"] is None
    assert int(np.asarray(cells).std()) > 10  # a real image, not a blank

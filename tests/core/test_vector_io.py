"""Vector files: every format keeps the CRS; QuPath in pixels; atomic, no silent overwrite."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely
from labels_scene import BIG_ID, EXPECTED, crafted_labels, pixel_area, scene_georeference

from napari_sam.core.io.vectors import read_vectors, resolve_format, write_vectors
from napari_sam.core.progress import run
from napari_sam.core.vector.polygons import vectorize, vectorize_labels
from napari_sam.errors import InputError, OutputExistsError


@pytest.fixture(scope="module")
def georef(shared_data):
    return scene_georeference(shared_data)


@pytest.fixture(scope="module")
def objects(georef):
    transform, crs = georef
    return run(vectorize_labels(crafted_labels(), transform=transform, crs=crs))


@pytest.mark.parametrize("name", ["objects.gpkg", "objects.geojson", "objects.parquet",
                                  "objects.shp"])
def test_each_format_reads_back_crs_ids_and_areas(tmp_path, objects, georef, name):
    transform, _ = georef
    out = write_vectors(objects, tmp_path / name)
    back = read_vectors(out)
    assert back.crs is not None and back.crs.to_epsg() == 32618
    assert sorted(back["id"].astype(np.int64)) == sorted(EXPECTED)
    assert {"predicted_iou", "stability_score", "area", "perimeter"} <= set(back.columns)
    back = back.set_index(back["id"].astype(np.int64))
    labels = crafted_labels()
    for ident, kind in ((i, e[0]) for i, e in EXPECTED.items()):
        geom = back.loc[ident, "geometry"]
        assert geom.is_valid and geom.geom_type in (kind, "Multi" + kind.replace("Multi", ""))
        assert back.loc[ident, "area"] == int((labels == ident).sum()) * pixel_area(transform)
        assert shapely.equals_exact(shapely.normalize(geom), shapely.normalize(
            objects.set_index("id").loc[ident, "geometry"]), 1e-6)


@pytest.mark.parametrize("name", ["objects.gpkg", "objects.geojson", "objects.parquet"])
def test_source_georeference_travels_with_the_file(tmp_path, objects, georef, name):
    back = read_vectors(write_vectors(objects, tmp_path / name))
    assert back.attrs["transform"] == tuple(georef[0])[:6]
    assert back.attrs["shape"] == (24, 32)


def test_gpkg_layer_is_objects(tmp_path, objects):
    import pyogrio

    out = write_vectors(objects, tmp_path / "o.gpkg")
    assert [name for name, _ in pyogrio.list_layers(out)] == ["objects"]


def test_qupath_geojson_is_in_pixels(tmp_path, objects):
    out = write_vectors(objects, tmp_path / "cells.geojson", fmt="qupath",
                        classification="Object")
    doc = json.loads(out.read_text())
    assert doc["type"] == "FeatureCollection" and "crs" not in doc
    features = {int(f["properties"]["name"]): f for f in doc["features"]}
    assert sorted(features) == sorted(EXPECTED)
    for feature in features.values():
        props = feature["properties"]
        assert props["objectType"] == "detection"
        assert props["classification"]["name"] == "Object"
        assert len(props["classification"]["color"]) == 3
        assert set(props["measurements"]) == {"pixels"}  # NaN scores are left out
        assert len(feature["id"]) == 36  # a UUID, as QuPath writes them
    # the one-pixel object at row 20, col 20 covers [20, 21] x [20, 21] in pixels
    ring = np.asarray(features[3]["geometry"]["coordinates"][0])
    assert ring.min(axis=0).tolist() == [20, 20] and ring.max(axis=0).tolist() == [21, 21]
    hole = features[1]["geometry"]["coordinates"][1]
    assert sorted(map(tuple, hole[:-1])) == [(5, 5), (5, 7), (7, 5), (7, 7)]
    assert features[BIG_ID]["geometry"]["type"] == "Polygon"
    assert features[2]["geometry"]["type"] == "MultiPolygon"
    # GDAL parses it too, as pixel coordinates without a CRS
    back = read_vectors(out)
    assert back.crs is None and set(back["objectType"]) == {"detection"}
    assert back.total_bounds.tolist() == [2.0, 0.0, 32.0, 22.0]


def test_qupath_annotations_and_pixel_only_frames(tmp_path):
    out = vectorize(crafted_labels() > 0, tmp_path / "a.json", fmt="qupath")
    assert json.loads(out.read_text())["features"][0]["properties"]["objectType"] == "detection"
    gdf = run(vectorize_labels(crafted_labels()))
    out = write_vectors(gdf, tmp_path / "b.geojson", fmt="qupath", object_type="annotation")
    feats = json.loads(out.read_text())["features"]
    assert {f["properties"]["objectType"] for f in feats} == {"annotation"}
    gdf.attrs.clear()
    gdf = gdf.set_crs(32618)
    with pytest.raises(InputError, match="pixel coordinates"):
        write_vectors(gdf, tmp_path / "c.geojson", fmt="qupath")
    assert not (tmp_path / "c.geojson").exists()


def test_existing_files_are_kept_unless_overwrite(tmp_path, objects):
    for name in ("o.gpkg", "o.shp", "o.geojson"):
        out = write_vectors(objects.iloc[:2], tmp_path / name)
        with pytest.raises(OutputExistsError):
            write_vectors(objects, out)
        assert len(read_vectors(out)) == 2
        write_vectors(objects, out, overwrite=True)
        assert len(read_vectors(out)) == len(objects)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_a_failed_write_leaves_nothing(tmp_path, objects, monkeypatch):
    import pyogrio

    def broken(df, path, **kwargs):
        open(path, "w").write("half")
        raise OSError("disk full")

    monkeypatch.setattr(pyogrio, "write_dataframe", broken)
    for name in ("o.gpkg", "o.shp"):
        with pytest.raises(OSError):
            write_vectors(objects, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_format_resolution():
    assert resolve_format("a.GPKG") == "gpkg"
    assert resolve_format("a.json") == "geojson"
    assert resolve_format("a.geojson", "qupath") == "qupath"
    with pytest.raises(InputError, match="extension"):
        resolve_format("a.txt")
    with pytest.raises(InputError, match="needs the extension"):
        resolve_format("a.gpkg", "shp")
    with pytest.raises(InputError, match="unknown"):
        resolve_format("a.gpkg", "kml")


def test_read_errors(tmp_path):
    with pytest.raises(InputError, match="no such"):
        read_vectors(tmp_path / "nope.gpkg")
    bad = tmp_path / "bad.geojson"
    bad.write_text("{ not json")
    with pytest.raises(InputError, match="cannot be read"):
        read_vectors(bad)

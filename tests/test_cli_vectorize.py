"""``napari-sam vectorize``: formats, CRS, refusal of existing outputs and non-label rasters."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from napari_sam.cli import main
from napari_sam.core.io.labels import write_labels
from napari_sam.core.io.vectors import read_vectors


@pytest.fixture()
def labels_tif(tmp_path, shared_data):
    with rasterio.open(shared_data / "RGB.byte.tif") as ds:
        transform, crs = ds.transform, ds.crs
    labels = np.zeros((30, 40), np.uint32)
    labels[2:12, 2:12] = 7
    labels[5:7, 5:7] = 0
    labels[20:25, 30:40] = 3_000_000_000
    return write_labels(tmp_path / "labels.tif", labels, transform=transform, crs=crs)


def test_vectorize_writes_gpkg_in_the_raster_crs(tmp_path, labels_tif, capsys):
    out = tmp_path / "objects.gpkg"
    assert main(["vectorize", str(labels_tif), "--out", str(out), "--quiet"]) == 0
    gdf = read_vectors(out)
    assert gdf.crs.to_epsg() == 32618
    assert sorted(gdf["id"]) == [7, 3_000_000_000]
    assert len(gdf.set_index("id").loc[7, "geometry"].interiors) == 1
    assert "2 polygons" in capsys.readouterr().err


def test_existing_output_is_kept_without_overwrite(tmp_path, labels_tif, capsys):
    out = tmp_path / "objects.geojson"
    out.write_text("keep me")
    assert main(["vectorize", str(labels_tif), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0] and str(out) in err[0]
    assert out.read_text() == "keep me"
    assert main(["vectorize", str(labels_tif), "--out", str(out), "--overwrite", "--quiet"]) == 0
    assert read_vectors(out).crs.to_epsg() == 32618


@pytest.mark.parametrize("name", ["float_nan.tif", "float32.tif"])
def test_a_float_raster_is_refused_with_one_line(tmp_path, shared_data, name, capsys):
    out = tmp_path / "o.gpkg"
    assert main(["vectorize", str(shared_data / name), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a label raster" in err[0] and name in err[0]
    assert list(tmp_path.iterdir()) == []


def test_qupath_format_table_and_simplify(tmp_path, labels_tif):
    table = tmp_path / "objects.csv"
    table.write_text("id,predicted_iou,stability_score\n7,0.91,0.97\n")
    out = tmp_path / "cells.geojson"
    rc = main(["vectorize", str(labels_tif), "--out", str(out), "--format", "qupath",
               "--table", str(table), "--object-type", "annotation", "--class-name", "Gland",
               "--quiet"])
    assert rc == 0
    feats = {f["properties"]["name"]: f for f in json.loads(out.read_text())["features"]}
    assert feats["7"]["properties"]["measurements"]["predicted_iou"] == 0.91
    assert feats["7"]["properties"]["objectType"] == "annotation"
    assert feats["7"]["properties"]["classification"]["name"] == "Gland"
    ring = np.asarray(feats["7"]["geometry"]["coordinates"][0])
    assert ring.min(axis=0).tolist() == [2, 2] and ring.max(axis=0).tolist() == [12, 12]
    simple = tmp_path / "simple.parquet"
    assert main(["vectorize", str(labels_tif), "--out", str(simple), "--simplify", "300",
                 "--quiet"]) == 0
    assert read_vectors(simple).is_valid.all()


def test_unknown_extension_is_bad_usage(tmp_path, labels_tif, capsys):
    assert main(["vectorize", str(labels_tif), "--out", str(tmp_path / "o.txt")]) == 2
    assert "extension" in capsys.readouterr().err

"""Export widget: labels to GeoTIFF and polygons to GeoPackage, keeping the CRS."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sam._widgets.export import ExportWidget
from napari_sam._widgets.layers import set_georeference

CRS_WKT = 'PROJCS["WGS 84 / UTM zone 18N",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",-75],PARAMETER["scale_factor",0.9996],PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1],AUTHORITY["EPSG","32618"]]'  # noqa: E501
TRANSFORM = [30.0, 0.0, 101985.0, 0.0, -30.0, 2826915.0]


@pytest.fixture
def labelled(make_napari_viewer):
    viewer = make_napari_viewer()
    data = np.zeros((64, 80), dtype=np.uint32)
    data[5:15, 10:30] = 7
    data[40:60, 50:70] = 9
    data[45:50, 55:60] = 0  # a hole
    layer = viewer.add_labels(data, name="objects")
    set_georeference(layer, {"transform": TRANSFORM, "crs": CRS_WKT})
    widget = ExportWidget(viewer)
    viewer.window.add_dock_widget(widget)
    return viewer, layer, widget


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.busy, timeout=30000)


def test_export_writes_geotiff_and_gpkg_with_crs(labelled, qtbot, tmp_path):
    import rasterio

    from napari_sam.core.io.vectors import read_vectors

    viewer, layer, widget = labelled
    assert widget.layer.value is layer
    assert widget.crs.value == "EPSG:32618"
    widget.labels_path.value = tmp_path / "labels.tif"
    widget.vectors_path.value = tmp_path / "objects.gpkg"
    assert widget.vector_format.value == "gpkg"
    widget.export_button.clicked.emit()
    _wait(qtbot, widget)
    assert [p.name for p in widget.written] == ["labels.tif", "objects.gpkg"]
    with rasterio.open(tmp_path / "labels.tif") as src:
        assert src.crs.to_epsg() == 32618
        assert list(src.transform)[:6] == TRANSFORM
        assert np.array_equal(src.read(1), layer.data)
    gdf = read_vectors(tmp_path / "objects.gpkg")
    assert gdf.crs.to_epsg() == 32618
    assert sorted(gdf["id"]) == [7, 9]
    areas = dict(zip(gdf["id"], gdf["area"]))
    assert areas[7] == 200 * 900 and areas[9] == (400 - 25) * 900
    assert len(gdf.geometry[gdf["id"] == 9].iloc[0].interiors) == 1


def test_export_keeps_existing_file_unless_overwrite(labelled, qtbot, tmp_path):
    viewer, layer, widget = labelled
    target = tmp_path / "objects.geojson"
    target.write_text("keep me")
    widget.vectors_path.value = target
    assert widget.vector_format.value == "geojson"
    task = widget.export()
    _wait(qtbot, widget)
    assert task.state == "failed" and "already exists" in str(task.error)
    assert target.read_text() == "keep me"
    widget.overwrite.value = True
    widget.export()
    _wait(qtbot, widget)
    assert widget.written == [target] and '"FeatureCollection"' in target.read_text()

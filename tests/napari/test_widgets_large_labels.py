"""Accepted labels on rasters too large for a full-size array: sparse, multiscale, exportable."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from napari_sam._widgets.export import ExportWidget
from napari_sam._widgets.interactive import LABELS, InteractiveWidget
from napari_sam._widgets.state import Candidates
from napari_sam.core.io.sparse_labels import SparseLabels

CRS_WKT = "EPSG:32618"
TRANSFORM = [0.5, 0.0, 600000.0, 0.0, -0.5, 4500000.0]


def _lazy_pyramid(size: int) -> list:
    """A multiscale uint8 image of ``size`` x ``size`` px that is never computed whole."""
    import dask.array as da

    levels = []
    while size > 1000:
        levels.append(da.zeros((size, size), dtype=np.uint8, chunks=2048))
        size //= 2
    return levels


def _disc(height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[:height, :width]
    return ((yy - height / 2) / (height / 2)) ** 2 + ((xx - width / 2) / (width / 2)) ** 2 < 1


def _accept(widget: InteractiveWidget, mask: np.ndarray, offset: tuple[int, int]) -> int:
    """Show ``mask`` at ``offset`` as the only candidate and accept it (as key A does)."""
    widget._set_candidates(Candidates(masks=mask[None], scores=np.array([0.9]), offset=offset))
    return widget.accept()


@pytest.fixture
def widget_on(make_napari_viewer, model_factory):
    def make(data, **kwargs):
        viewer = make_napari_viewer()
        image = viewer.add_image(data, name="mosaic", **kwargs)
        widget = InteractiveWidget(viewer, model_factory=model_factory,
                                   model_names=["sam_tiny"], tile_size=256, overlap=32)
        viewer.window.add_dock_widget(widget, name="SAM interactive")
        return viewer, image, widget

    return make


def test_accept_and_undo_on_a_50k_multiscale_image(widget_on, qtbot):
    viewer, image, widget = widget_on(_lazy_pyramid(50_000), multiscale=True)
    first, second = _disc(700, 900), _disc(400, 400)
    tracemalloc.start()
    try:
        assert _accept(widget, first, (30_000, 41_000)) == 1
        assert _accept(widget, second, (30_500, 41_700)) == 2  # overlaps object 1
        labels = viewer.layers[LABELS]
        viewer.reset_view()
        qtbot.wait(50)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 300e6  # a full 50k x 50k uint32 array would be 10 GB
    assert labels.multiscale and labels.data.shapes[0] == (50_000, 50_000)
    store = labels.data[0]
    assert isinstance(store, SparseLabels)
    assert store.allocated_bytes < 30e6
    region = (slice(30_000, 31_000), slice(41_000, 42_100))
    expected = np.zeros((1000, 1100), dtype=np.uint32)
    expected[:700, :900][first] = 1
    overlap = expected[500:900, 700:1100] == 0
    expected[500:900, 700:1100][second & overlap] = 2
    assert np.array_equal(store[region], expected)
    coarse = labels.data[-1]  # the level napari shows for the whole raster
    assert coarse.shape == (1563, 1563)
    rows, cols = slice(930, 980), slice(1275, 1320)  # coarse[i, j] is store[32 i, 32 j]
    assert np.array_equal(coarse[rows, cols], store[930 * 32:980 * 32:32, 1275 * 32:1320 * 32:32])
    assert coarse.max() == 2

    # the canvas shows the objects where the image is all black
    viewer.window.show()  # a hidden window's canvas is never drawn
    viewer.camera.center = (30_450, 41_450)
    viewer.camera.zoom = 0.5
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert (shot[..., :3].max(axis=-1) > 40).mean() > 0.05
    labels.visible = False
    hidden = viewer.screenshot(canvas_only=True, flash=False)
    assert (hidden[..., :3].max(axis=-1) > 40).mean() < 0.001
    labels.visible = True

    assert widget.undo() == 2
    expected[expected == 2] = 0
    assert np.array_equal(store[region], expected)
    assert widget.undo() == 1 and store.max() == 0 and labels.data[-1].max() == 0
    assert _accept(widget, second, (10, 10)) == 1  # ids restart after undoing all


def test_export_from_a_sparse_labels_layer(widget_on, qtbot, tmp_path):
    import dask.array as da
    import rasterio

    from napari_sam._widgets.layers import georeference, set_georeference
    from napari_sam.core.io.vectors import read_vectors

    size = 5_000  # above the sparse threshold, small enough to write whole
    viewer, image, widget = widget_on(da.zeros((size, size), dtype=np.uint8, chunks=1024))
    set_georeference(image, {"transform": TRANSFORM, "crs": CRS_WKT})
    assert not image.multiscale
    first, second = _disc(400, 600), _disc(120, 120)
    assert _accept(widget, first, (4_700, 4_500)) == 1  # clipped at the raster's corner
    assert _accept(widget, second, (1_000, 2_000)) == 2
    labels = viewer.layers[LABELS]
    assert isinstance(labels.data[0], SparseLabels) and labels.multiscale
    assert georeference(labels)["transform"] == TRANSFORM
    labels.data[0].dense_limit = 2048 * 2048  # any whole-array read fails from here on

    export = ExportWidget(viewer)
    viewer.window.add_dock_widget(export)
    export.layer.value = labels
    export.labels_path.value = tmp_path / "labels.tif"
    export.vectors_path.value = tmp_path / "objects.gpkg"
    export.export()
    qtbot.waitUntil(lambda: not export.busy, timeout=120000)
    assert [p.name for p in export.written] == ["labels.tif", "objects.gpkg"], export.status.value
    expected = np.zeros((size, size), dtype=np.uint32)
    expected[4_700:, 4_500:] = first[:300, :500]
    expected[1_000:1_120, 2_000:2_120][second] = 2
    with rasterio.open(tmp_path / "labels.tif") as src:
        assert src.shape == (size, size) and src.crs.to_epsg() == 32618
        assert list(src.transform)[:6] == TRANSFORM
        written = src.read(1)
    assert np.array_equal(written, expected)
    gdf = read_vectors(tmp_path / "objects.gpkg")
    areas = dict(zip(gdf["id"], gdf["area"], strict=True))
    assert sorted(areas) == [1, 2]
    assert areas[1] == pytest.approx(np.count_nonzero(expected == 1) * 0.25)
    assert areas[2] == pytest.approx(second.sum() * 0.25)


def test_small_multiscale_image_gets_sparse_single_scale_labels(widget_on):
    import dask.array as da

    pyramid = [da.zeros((1500, 1400), dtype=np.uint8), da.zeros((750, 700), dtype=np.uint8)]
    viewer, image, widget = widget_on(pyramid, multiscale=True)
    mask = _disc(200, 300)
    assert _accept(widget, mask, (1_400, 100)) == 1
    labels = viewer.layers[LABELS]
    assert not labels.multiscale and isinstance(labels.data, SparseLabels)
    assert np.array_equal(labels.data[1_400:, 100:400], mask[:100] * 1)
    assert widget.undo() == 1 and labels.data.max() == 0

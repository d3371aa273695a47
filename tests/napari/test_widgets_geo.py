"""Widgets on a georeferenced raster opened by the plugin, and the manifest's contributions."""

from __future__ import annotations

import numpy as np

from napari_sam._widgets import layers as L
from napari_sam._widgets.export import ExportWidget
from napari_sam._widgets.interactive import LABELS, InteractiveWidget


def test_widgets_open_from_the_manifest(make_napari_viewer, make_scene):
    from napari_sam._widgets.automatic import AutomaticWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(make_scene(64, 64), name="scene", rgb=True)
    labels = viewer.add_labels(np.zeros((64, 64), np.uint32), name="objects")
    found = {}
    for name, cls in (("Interactive segmentation", InteractiveWidget),
                      ("Automatic segmentation", AutomaticWidget),
                      ("Export labels and polygons", ExportWidget)):
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-sam", name)
        assert isinstance(widget, cls)
        found[name] = widget
    # napari hands plugins a proxy of the viewer: the widgets work through it
    assert found["Interactive segmentation"].image.value is image
    assert found["Automatic segmentation"].image.value is image
    assert found["Export labels and polygons"].layer.value is labels
    assert "SAM points" in viewer.layers and "SAM boxes" in viewer.layers


def test_prompt_on_landsat_scene_keeps_crs_through_export(make_napari_viewer, model_factory,
                                                          sample_scene, wait_idle, tmp_path):
    import rasterio
    from napari.layers import Shapes

    viewer = make_napari_viewer()
    (image,) = viewer.open(sample_scene, plugin="napari-sam")
    with rasterio.open(sample_scene) as src:
        transform, crs, shape = src.transform, src.crs, src.shape
    widget = InteractiveWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"],
                               tile_size=256, overlap=32)
    viewer.window.add_dock_widget(widget)
    assert widget.image.value is image and L.raster_source(image) == str(sample_scene)

    # a box drawn in world (map) coordinates on another layer reaches core in pixels
    row0, col0, row1, col1 = 300.0, 400.0, 360.0, 470.0
    corners = [image.data_to_world([r, c]) for r, c in ((row0, col0), (row1, col1))]
    world_shapes = Shapes([np.array(corners)], shape_type="rectangle")
    prompts = L.prompts_from_layers(image, None, world_shapes)
    assert np.allclose(prompts.box_xyxy, [col0, row0, col1, row1])

    widget.points_layer.add([330.0, 435.0])  # data of the aligned layer = raster pixels
    wait_idle(widget)
    cands = widget.candidates
    y0, x0 = cands.offset
    h, w = cands.masks.shape[1:]
    assert y0 <= 330 < y0 + h and x0 <= 435 < x0 + w and (h, w) == (256, 256)
    new_id = widget.accept()
    labels = viewer.layers[LABELS]
    assert labels.data.shape == shape and (labels.data == new_id).sum() > 0
    geo = L.georeference(labels)
    assert geo["transform"] == list(transform)[:6] and "32618" in geo["crs"]
    assert np.allclose(labels.affine.affine_matrix, image.affine.affine_matrix)

    export = ExportWidget(viewer)
    viewer.window.add_dock_widget(export)
    export.layer.value = labels
    assert export.crs.value == "EPSG:32618"
    export.labels_path.value = tmp_path / "labels.tif"
    export.export()
    wait_idle(export)
    with rasterio.open(tmp_path / "labels.tif") as out:
        assert out.crs == crs and out.transform == transform
        assert np.array_equal(out.read(1), labels.data)

"""Layer helpers: frames, prompts from layers, the label editor (no viewer needed)."""

from __future__ import annotations

import numpy as np
from napari.layers import Image, Labels, Points, Shapes

from napari_sam._widgets import layers as L


def _geo_image():
    """A 40x50 image whose pixels are 30 m, north up, like a GeoTIFF opened by the reader."""
    affine = np.array([[-30.0, 0.0, -1000.0], [0.0, 30.0, 5000.0], [0.0, 0.0, 1.0]])
    return Image(np.zeros((40, 50)), affine=affine)


def test_aligned_layers_share_the_image_pixel_frame():
    image = _geo_image()
    points = L.new_points_layer(image, "p")
    points.add([10.0, 20.0])
    assert np.allclose(points.data_to_world([10.0, 20.0]), image.data_to_world([10.0, 20.0]))
    shifted = np.linalg.inv(L.data_to_world_matrix(image)) @ L.aligned_affine(image, (5, 7))
    assert np.allclose(shifted[:2, 2], [5, 7])  # a candidate window at row 5, col 7
    assert points.features["positive"].tolist() == [True]


def test_prompts_from_layers_in_other_frames():
    image = _geo_image()
    scaled = Points(np.array([[2.0, 3.0], [4.0, 1.0]]), scale=(2.0, 3.0),
                    features={"positive": [True, False]})
    # a Points layer in world coordinates of its own: map through the world to pixels
    world_pts = Points(np.array([image.data_to_world([8.0, 6.0])]))
    prompts = L.prompts_from_layers(image, world_pts, None)
    assert np.allclose(prompts.points_xy, [[6.0, 8.0]]) and prompts.labels.tolist() == [1]
    plain = Image(np.zeros((40, 50)))
    prompts = L.prompts_from_layers(plain, scaled, None)
    assert np.allclose(prompts.points_xy, [[9.0, 4.0], [3.0, 8.0]])  # XY = (col, row)
    assert prompts.labels.tolist() == [1, 0]
    shapes = Shapes([np.array([[1.0, 2.0], [1.0, 9.0], [6.0, 9.0]]),
                     np.array([[10.0, 10.0], [20.0, 30.0]])],
                    shape_type=["polygon", "rectangle"])
    prompts = L.prompts_from_layers(plain, None, shapes)  # the last shape is the box
    assert np.allclose(prompts.box_xyxy, [10, 10, 30, 20]) and prompts.polygon_xy is None
    shapes.selected_data = {1}
    shapes.remove_selected()
    prompts = L.prompts_from_layers(plain, None, shapes)
    assert np.allclose(prompts.box_xyxy, [2, 1, 9, 6]) and prompts.polygon_xy.shape == (3, 2)


def test_label_editor_new_ids_overwrite_and_undo():
    layer = Labels(np.zeros((20, 20), np.uint32))
    layer.data[0, 0] = 5  # an existing id: new ones start above it
    editor = L.LabelEditor(layer)
    mask = np.zeros((6, 6), bool)
    mask[1:5, 1:5] = True
    assert editor.paste(mask, (2, 2)) == 6
    assert (layer.data == 6).sum() == 16 and layer.data[3, 3] == 6
    assert editor.paste(mask, (4, 4)) == 7  # overlaps object 6: only free pixels
    assert (layer.data == 6).sum() == 16 and (layer.data == 7).sum() == 16 - 4
    assert editor.paste(mask, (4, 4), overwrite=True) == 8
    assert (layer.data == 6).sum() == 12 and (layer.data == 7).sum() == 0
    before = layer.data.copy()
    assert editor.paste(mask, (17, 17)) == 9  # clipped at the raster edge
    assert (layer.data == 9).sum() == 4
    for expected in (9, 8, 7, 6):
        assert editor.undo() == expected
        if expected == 9:
            assert np.array_equal(layer.data, before)
    assert layer.data.sum() == 5 and editor.undo() == 0 and editor.next_id == 6
    assert editor.paste(np.zeros((3, 3), bool), (0, 0)) == 0


def test_georeference_round_trip_and_crs_name():
    layer = Labels(np.zeros((4, 4), np.uint32))
    assert L.georeference(layer) == {"transform": None, "crs": None}
    assert L.crs_name(L.georeference(layer)) == "none (pixels)"
    L.set_georeference(layer, {"transform": [1, 0, 0, 0, -1, 4], "crs": "EPSG:4326"})
    assert L.georeference(layer)["transform"] == [1.0, 0.0, 0.0, 0.0, -1.0, 4.0]
    assert L.crs_name(L.georeference(layer)) == "EPSG:4326"
    assert layer.metadata["napari_sam"]["shape"] == [4, 4]

"""Interactive widget: prompts -> candidates -> accepted labels, undo, keys, screenshot."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_sam._widgets.interactive import CANDIDATE, LABELS, InteractiveWidget
from sam_model import DEFAULT_MODEL

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "interactive.png"


@pytest.fixture
def session(make_napari_viewer, model_factory, make_scene):
    viewer = make_napari_viewer()
    image = viewer.add_image(make_scene(), name="scene", rgb=True)
    widget = InteractiveWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"],
                               tile_size=256, overlap=32)
    viewer.window.add_dock_widget(widget, name="SAM interactive")
    return viewer, image, widget


def test_point_gives_candidates_accept_and_undo(session, wait_idle, model_factory):
    viewer, image, widget = session
    assert widget.image.value is image
    points, shapes = widget.points_layer, widget.shapes_layer
    assert points is not None and shapes is not None

    points.add([80.0, 90.0])  # (row, col) on the yellow disc; predicts on its own
    wait_idle(widget)
    assert model_factory.calls and model_factory.calls[0].name == "sam_tiny"
    cands = widget.candidates
    assert cands is not None and cands.masks.shape == (3, 256, 256)
    assert len(widget.candidate.choices) == 3 and widget.candidate.value.startswith("1: IoU")
    shown = viewer.layers[CANDIDATE]
    best = cands.order[0]
    assert np.array_equal(shown.data.astype(bool), cands.masks[best])
    widget.next_candidate()
    assert np.array_equal(shown.data.astype(bool), cands.masks[cands.order[1]])

    chosen = cands.masks[widget.selected_index()]
    first = widget.accept()
    labels = viewer.layers[LABELS]
    assert first == 1 and len(points.data) == 0 and widget.candidates is None
    assert np.array_equal(labels.data == 1, chosen)

    # a box prompt: a second object gets id 2 and never overwrites object 1
    shapes.add_rectangles(np.array([[140.0, 130.0], [230.0, 240.0]]))
    wait_idle(widget)
    second_mask = widget.candidates.masks[widget.selected_index()]
    assert widget.accept() == 2
    assert np.array_equal(labels.data == 1, chosen)
    assert np.array_equal(labels.data == 2, second_mask & ~chosen)

    assert widget.undo() == 2
    assert np.array_equal(labels.data == 1, chosen) and not (labels.data == 2).any()
    assert widget.undo() == 1 and not labels.data.any()
    assert widget.undo() == 0


def test_negative_points_and_keyboard_shortcuts(session, qtbot, wait_idle):
    viewer, image, widget = session
    points = widget.points_layer
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.layers.selection.active = image  # viewer-level keys, as with any layer selected
    qtbot.keyClick(canvas, "t")
    assert widget.positive.value is False
    points.add([80.0, 90.0])
    assert points.features["positive"].tolist() == [False]
    assert np.allclose(points.face_color[0], [1, 0, 0, 1])  # negative points are red
    wait_idle(widget)
    qtbot.keyClick(canvas, "t")
    points.add([60.0, 95.0])
    wait_idle(widget)
    prompts = widget.prompts()
    assert prompts.labels.tolist() == [0, 1]
    assert np.allclose(prompts.points_xy, [[90, 80], [95, 60]])
    assert widget.candidates is not None
    qtbot.keyClick(canvas, "a")
    assert viewer.layers[LABELS].data.max() == 1
    qtbot.keyClick(canvas, "z")
    assert viewer.layers[LABELS].data.max() == 0


def test_screenshot_with_the_default_model_on_the_sample_scene(make_napari_viewer, qtbot,
                                                               sample_scene, wait_idle,
                                                               tmp_path):
    """The embedded default model (the widget's own loading path) on the bundled Landsat scene."""
    from PIL import Image

    viewer = make_napari_viewer()
    viewer.open(sample_scene, plugin="napari-sam")
    widget = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM interactive")
    assert widget.model.model_choice().name == DEFAULT_MODEL
    for row, col in ((95.0, 455.0), (183.0, 520.0)):  # a cloud, an island
        widget.points_layer.add([row, col])
        wait_idle(widget)
        assert widget.accept() > 0
    widget.points_layer.add([212.0, 330.0])  # another cloud, left as candidates
    wait_idle(widget)
    assert widget.candidates is not None
    viewer.window._qt_window.resize(1280, 860)
    viewer.reset_view()
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    assert shot.ndim == 3 and shot.shape[0] > 300 and shot.shape[1] > 500
    colours = np.unique(shot[..., :3].reshape(-1, 3)[::7], axis=0)
    assert len(colours) > 50 and shot[..., :3].std() > 10
    Image.fromarray(shot[..., :3]).save(tmp_path / "interactive.png")
    if os.environ.get("NAPARI_SAM_SAVE_SCREENSHOT"):  # refresh the one in docs/
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(shot[..., :3]).save(SCREENSHOT)


def test_embed_all_tiles_into_a_store_then_prompts_read_it(session, wait_idle, tmp_path):
    viewer, image, widget = session
    assert widget.embed_all() is not None
    wait_idle(widget)
    assert widget.status.value.startswith("failed: choose an embeddings store")
    widget.store.value = tmp_path / "scene.zarr"
    task = widget.embed_all()
    assert widget.cancel_button.enabled
    wait_idle(widget)
    assert task.state == "done" and widget.status.value.startswith("1 of 1 tiles embedded")
    assert not widget.cancel_button.enabled
    widget.points_layer.add([80.0, 90.0])
    wait_idle(widget)
    assert widget.candidates is not None
    assert widget._engine.store is not None and widget._engine.store.complete

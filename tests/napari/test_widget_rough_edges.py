"""The rough edges a new user hit in the 2D widgets (issue 14), one test each."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_sam._widgets.automatic import AutomaticWidget
from napari_sam._widgets.interactive import InteractiveWidget


def _slow_blocks(model, seconds):
    """Make every encoder block of ``model`` sleep (no CPU): returns the hook handles."""
    blocks = [m for name, m in model.image_encoder.named_modules()
              if name and name.count(".") <= 1]
    return [b.register_forward_pre_hook(lambda *_: time.sleep(seconds)) for b in blocks]


def test_single_tile_run_shows_progress_inside_the_tile_and_cancels_fast(
        make_napari_viewer, model_factory, make_scene, tiny_model, qtbot, wait_idle):
    viewer = make_napari_viewer()
    viewer.add_image(make_scene(), name="scene", rgb=True)
    widget = AutomaticWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"],
                             tile_size=256, overlap=32)
    hooks = _slow_blocks(tiny_model, 0.05)
    try:
        values = []
        task = widget.run()
        qtbot.waitUntil(lambda: widget.progress.value > 0, timeout=20000)
        values.append(widget.progress.value)
        assert 0 < values[0] < widget.progress.max  # within the one tile: not 0% until it ends
        assert "% of the next tile" in widget.status.value
        started = time.monotonic()
        widget.cancel()
        wait_idle(widget)
        assert time.monotonic() - started < 3.0
    finally:
        for hook in hooks:
            hook.remove()
    assert task.state == "cancelled" and widget.status.value == "cancelled"
    assert "scene SAM objects" not in viewer.layers


@pytest.fixture
def interactive(make_napari_viewer, model_factory):
    def make(viewer=None):
        viewer = viewer or make_napari_viewer()
        widget = InteractiveWidget(viewer, model_factory=model_factory,
                                   model_names=["sam_tiny"], tile_size=256, overlap=32)
        viewer.window.add_dock_widget(widget, name="SAM interactive")
        return viewer, widget

    return make


def test_accepted_objects_go_to_the_chosen_images_labels(interactive, make_scene, wait_idle):
    viewer, widget = interactive()
    first = viewer.add_image(make_scene(), name="first", rgb=True)
    widget.image.value = first
    widget.points_layer.add([80.0, 90.0])
    wait_idle(widget)
    assert widget.accept() == 1
    second = viewer.add_image(make_scene(200, 240)[::-1], name="second", rgb=True)
    widget.image.value = second
    widget.points_layer.add([120.0, 60.0])
    wait_idle(widget)
    assert widget.accept() == 1  # its own labels: ids start again
    mine = widget.layers.labels_for(second)
    assert mine is not None and mine.data.shape == (200, 240) and mine.data.max() == 1
    theirs = widget.layers.labels_for(first)
    assert theirs.name == "SAM labels" and mine.name == "SAM labels [second]"
    assert theirs.data.max() == 1  # untouched by the second image's object


def test_an_image_opened_after_docking_gets_clicks(interactive, make_scene, qtbot):
    viewer, widget = interactive()
    image = viewer.add_image(make_scene(), name="opened", rgb=True)
    qtbot.waitUntil(lambda: viewer.layers.selection.active is widget.points_layer,
                    timeout=5000)
    assert widget.image.value is image and widget.points_layer.mode == "add"


def test_a_point_outside_the_image_is_removed_and_later_clicks_work(interactive, make_scene,
                                                                    wait_idle):
    viewer, widget = interactive()
    viewer.add_image(make_scene(), name="scene", rgb=True)
    widget.points_layer.add([-40.0, 300.0])
    wait_idle(widget)
    assert len(widget.points_layer.data) == 0
    assert "outside the image removed" in widget.status.value
    widget.points_layer.add([80.0, 90.0])
    wait_idle(widget)
    assert widget.candidates is not None and len(widget.candidates.scores) == 3


def test_a_click_on_nodata_gives_no_candidate(interactive, make_scene, wait_idle):
    viewer, widget = interactive()
    scene = make_scene()
    scene[:60, :60] = 0
    viewer.add_image(scene, name="scene", rgb=True,
                     metadata={"napari_sam": {"transform": None, "crs": None}})
    widget.image.value = viewer.layers["scene"]
    import napari_sam._widgets.layers as layers_mod

    # the array as a raster whose nodata is 0 (as the Landsat scene's corners)
    original = layers_mod.raster_source
    try:
        from napari_sam.core.io.raster_open import open_raster

        layers_mod.raster_source = lambda image: open_raster(scene, nodata=0)
        widget.points_layer.add([20.0, 20.0])
        wait_idle(widget)
        assert widget.candidates is not None and len(widget.candidates.scores) == 0
        assert "is on nodata" in widget.status.value
        widget.points_layer.add([80.0, 90.0])  # a second, valid click still refuses:
        wait_idle(widget)                       # the first one stays on nodata
        widget.clear_prompts()
        widget.points_layer.add([80.0, 90.0])
        wait_idle(widget)
        assert len(widget.candidates.scores) == 3
    finally:
        layers_mod.raster_source = original


def test_clear_prompts_resets_the_status(interactive, make_scene, wait_idle):
    viewer, widget = interactive()
    viewer.add_image(make_scene(), name="scene", rgb=True)
    widget.points_layer.add([80.0, 90.0])
    wait_idle(widget)
    assert "candidate(s)" in widget.status.value
    widget.clear_prompts()
    assert widget.status.value == "add a point or draw a box"


def test_actions_without_an_image_or_labels_say_why(make_napari_viewer, model_factory):
    from napari_sam._widgets.export import ExportWidget

    viewer = make_napari_viewer()
    inter = InteractiveWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"])
    auto = AutomaticWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"])
    export = ExportWidget(viewer)
    for action, widget, words in ((lambda: inter.predict(explicit=True), inter, "no image"),
                                  (inter.accept, inter, "no image"),
                                  (inter.embed_all, inter, "no image"),
                                  (auto.run, auto, "no image"),
                                  (export.export, export, "no labels layer")):
        widget.status.value = ""
        assert not action()
        assert words in widget.status.value


def test_accept_and_predict_without_prompts_say_why(interactive, make_scene):
    viewer, widget = interactive()
    viewer.add_image(make_scene(), name="scene", rgb=True)
    assert widget.predict(explicit=True) is None
    assert widget.status.value.startswith("nothing to predict")
    assert widget.accept() == 0 and widget.status.value.startswith("nothing to accept")


def test_automatic_defaults_drop_specks(make_napari_viewer, model_factory):
    from napari_sam._widgets.state import AutomaticConfig
    from napari_sam.core.automatic.settings import DEFAULT_MIN_AREA

    widget = AutomaticWidget(make_napari_viewer(), model_factory=model_factory,
                             model_names=["sam_tiny"])
    assert widget.min_area.value == DEFAULT_MIN_AREA == AutomaticConfig().segment.min_area >= 16
    assert widget.config().segment.min_area == DEFAULT_MIN_AREA


def test_three_docks_fit_a_small_screen(make_napari_viewer, model_factory, make_scene):
    from napari_sam._widgets.export import ExportWidget

    viewer = make_napari_viewer()
    viewer.add_image(make_scene(), name="scene", rgb=True)
    for name, widget in (("interactive", InteractiveWidget(viewer, model_factory=model_factory,
                                                            model_names=["sam_tiny"])),
                         ("automatic", AutomaticWidget(viewer, model_factory=model_factory,
                                                       model_names=["sam_tiny"])),
                         ("export", ExportWidget(viewer))):
        viewer.window.add_dock_widget(widget, name=name)
    window = viewer.window._qt_window
    assert window.minimumSizeHint().height() < 800
    window.resize(1200, 900)
    window.show()
    assert window.height() <= 900


def test_export_refuses_a_bad_polygons_path_before_writing_labels(make_napari_viewer,
                                                                  tmp_path, wait_idle):
    from napari_sam._widgets.export import ExportWidget

    viewer = make_napari_viewer()
    labels = np.zeros((32, 32), dtype=np.uint32)
    labels[4:12, 4:12] = 1
    viewer.add_labels(labels, name="objects")
    widget = ExportWidget(viewer)
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    widget.labels_path.value = tmp_path / "new" / "labels.tif"
    widget.vectors_path.value = blocker / "objects.gpkg"
    task = widget.export()
    wait_idle(widget)
    assert task.state == "failed"
    assert "polygons file" in widget.status.value and "nothing was written" in \
        widget.status.value
    assert not (tmp_path / "new").exists()


def test_export_does_not_offer_the_candidate_layer(interactive, make_scene, wait_idle):
    from napari_sam._widgets.export import ExportWidget
    from napari_sam._widgets.session import CANDIDATE

    viewer, widget = interactive()
    viewer.add_image(make_scene(), name="scene", rgb=True)
    widget.points_layer.add([80.0, 90.0])
    wait_idle(widget)
    widget.accept()
    export = ExportWidget(viewer)
    names = [layer.name for layer in export.layer.choices]
    assert CANDIDATE in viewer.layers and CANDIDATE not in names and "SAM labels" in names


def test_new_widgets_pick_the_top_visible_image(make_napari_viewer, model_factory, make_scene):
    viewer = make_napari_viewer()
    viewer.add_image(make_scene(), name="bottom", rgb=True)
    viewer.add_image(make_scene(), name="middle", rgb=True)
    viewer.add_image(make_scene(), name="hidden top", rgb=True, visible=False)
    inter = InteractiveWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"])
    auto = AutomaticWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"])
    assert inter.image.value.name == "middle" and auto.image.value.name == "middle"


def test_first_embedding_shows_progress_and_cancels(interactive, make_scene, tiny_model,
                                                    qtbot, wait_idle):
    viewer, widget = interactive()
    viewer.add_image(make_scene(), name="scene", rgb=True)
    hooks = _slow_blocks(tiny_model, 0.05)
    try:
        task = widget.points_layer.add([80.0, 90.0]) or widget._task
        assert widget.cancel_button.enabled
        qtbot.waitUntil(lambda: "embedding this tile" in widget.status.value, timeout=20000)
        started = time.monotonic()
        widget.cancel()
        wait_idle(widget)
        assert time.monotonic() - started < 3.0
    finally:
        for hook in hooks:
            hook.remove()
    assert task.state == "cancelled" and widget.candidates is None
    assert widget.status.value == "cancelled" and not widget.cancel_button.enabled


def test_an_image_without_crs_opens_beside_a_geotiff(make_napari_viewer, sample_scene,
                                                     tmp_path):
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.random.default_rng(0).integers(0, 255, (120, 160), np.uint8))
    viewer = make_napari_viewer()
    [geo] = viewer.open(sample_scene, plugin="napari-sam")
    [other] = viewer.open(plain, plugin="napari-sam")
    lo_a, hi_a = np.asarray(geo.extent.world)
    lo_b, hi_b = np.asarray(other.extent.world)
    assert (lo_b >= lo_a - 1e-6).all() and (hi_b <= hi_a + 1e-6).all()  # on the scene
    assert other.metadata["napari_sam"]["crs"] is None  # outputs stay in pixels
    assert other.metadata["napari_sam"]["placed_beside"] == geo.name

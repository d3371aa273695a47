"""nD images in the interactive widget: the shown plane is prompted, labels have the stack's
shape, embeddings are cached per plane, an object propagates through z (issue 14)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from napari_sam._widgets.interactive import LABELS, InteractiveWidget

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOT = SHOTS / "stack_3d.png"
VOLUME_SHOT = SHOTS / "stack_3d_volume.png"


def _stack(depth=5, side=128):
    rng = np.random.default_rng(0)
    stack = rng.normal(40, 6, (depth, side, side)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:side, :side]
    for z in range(depth):
        stack[z][(yy - 60) ** 2 + (xx - 64) ** 2 < (20 + 2 * z) ** 2] = 200
    return stack


def test_stack_docks_prompts_the_shown_plane_and_caches_embeddings(make_napari_viewer,
                                                                   model_factory, wait_idle):
    viewer = make_napari_viewer()
    image = viewer.add_image(_stack(), name="stack")  # only the stack in the viewer
    widget = InteractiveWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"],
                               tile_size=128, overlap=16)
    viewer.window.add_dock_widget(widget, name="SAM interactive")
    assert widget.image.value is image and widget.points_layer is not None
    viewer.dims.set_current_step(0, 3)
    widget.points_layer.add([60.0, 64.0])
    wait_idle(widget)
    assert widget.candidates is not None and widget._plane == (3,)
    new_id = widget.accept()
    labels = viewer.layers[LABELS]
    assert new_id == 1 and labels.data.shape == (5, 128, 128)
    assert labels.data[3].any() and not np.delete(labels.data, 3, axis=0).any()
    viewer.dims.set_current_step(0, 1)
    widget.points_layer.add([60.0, 64.0])
    wait_idle(widget)
    assert widget._plane == (1,) and len(widget._engines) == 2
    viewer.dims.set_current_step(0, 3)  # scrolling clears the other plane's prompts
    assert widget.candidates is None and len(widget.points_layer.data) == 0
    engine = widget._engines[next(k for k in widget._engines if k[-1] == (3,))]
    widget.points_layer.add([62.0, 66.0])
    wait_idle(widget)
    assert widget._engine is engine  # plane 3 again: its embedding is reused
    assert widget.accept() == 2 and (labels.data[3] == 2).any()


def test_sparse_labels_for_a_large_stack(make_napari_viewer, model_factory):
    import dask.array as da

    from napari_sam._widgets.session import new_labels_data
    from napari_sam.core.io.sparse_stack import SparseStack

    viewer = make_napari_viewer()
    big = da.zeros((100, 2048, 2048), dtype=np.uint16, chunks=(1, 1024, 1024))
    image = viewer.add_image(big, name="big", contrast_limits=(0, 1))
    data = new_labels_data(image)
    assert isinstance(data, SparseStack) and data.shape == (100, 2048, 2048)
    data[(np.full(4, 7), np.array([1, 1, 2, 2]), np.array([3, 4, 3, 4]))] = 5
    assert data[7, :4, :6].sum() == 20 and len(data.planes()) == 1 and data.max() == 5
    assert data[8, 0:2, 0:2].sum() == 0


def test_propagate_a_cell_through_the_volume_with_the_default_model(make_napari_viewer, qtbot,
                                                                    wait_idle, tmp_path):
    """The embedded model, one click, Accept, Propagate: one 3D object (screenshot)."""
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
    from test_propagate import CELLS, cell_stack

    stack, truth = cell_stack()
    viewer = make_napari_viewer()
    viewer.add_image(stack, name="cells")
    widget = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(widget, name="SAM interactive")
    (cz, cy, cx) = CELLS[1][0]
    viewer.dims.set_current_step(0, cz)
    widget.points_layer.add([float(cy), float(cx)])
    wait_idle(widget)
    truth_plane = truth[cz] == 2
    ious = []
    for rank in range(len(widget.candidates.scores)):  # keep the candidate a user would
        mask = np.zeros(truth_plane.shape, bool)
        m = widget.candidates.masks[widget.candidates.order[rank]]
        oy, ox = widget.candidates.offset
        mask[oy:oy + m.shape[0], ox:ox + m.shape[1]] = m
        ious.append((mask & truth_plane).sum() / (mask | truth_plane).sum())
    for _ in range(int(np.argmax(ious))):
        widget.next_candidate()
    assert widget.accept() == 1
    task = widget.propagate()
    assert widget.cancel_button.enabled
    wait_idle(widget, timeout=300000)
    assert task.state == "done", widget.status.value
    volume = viewer.layers[LABELS].data == 1
    iou = (volume & (truth == 2)).sum() / (volume | (truth == 2)).sum()
    assert iou >= 0.75, iou  # measured: sam_lite0 0.79 (one prompt per plane: 0.32), sam_tiny 0.86
    assert "plane(s)" in widget.status.value
    planes = {int(z) for z in np.nonzero(volume.any(axis=(1, 2)))[0]}
    assert len(planes) >= 5 and cz in planes
    viewer.window._qt_window.resize(1280, 860)
    viewer.dims.set_current_step(0, cz + 2)
    viewer.reset_view()
    qtbot.wait(50)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    viewer.dims.ndisplay = 3  # the propagated object as a volume
    viewer.layers["cells"].opacity = 0.35
    viewer.camera.angles = (10, -30, 60)
    qtbot.wait(50)
    volume_shot = viewer.screenshot(canvas_only=True, flash=False)
    viewer.dims.ndisplay = 2
    red = volume_shot[..., 0].astype(int) - volume_shot[..., 2].astype(int)
    assert volume_shot[..., :3].std() > 10 and (red > 40).sum() > 500  # the object is drawn
    data = viewer.layers[LABELS].data
    assert widget.undo() == 1  # the propagation is one undo step; the accepted plane stays
    assert set(np.nonzero(data.any(axis=(1, 2)))[0].tolist()) == {cz}
    assert shot[..., :3].std() > 10 and len(np.unique(shot[..., :3].reshape(-1, 3)[::7],
                                                      axis=0)) > 50
    Image.fromarray(shot[..., :3]).save(tmp_path / "stack.png")
    if os.environ.get("NAPARI_SAM_SAVE_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(shot[..., :3]).save(SCREENSHOT)
        Image.fromarray(volume_shot[..., :3]).save(VOLUME_SHOT)


def _ome_stack(path, stack, names=("z", "y", "x"), label=False):
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("0", data=stack, chunks=(1,) + stack.shape[1:])
    ome = {"version": "0.5", "multiscales": [{
        "axes": [{"name": n} for n in names],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * len(names)}]}]}]}
    if label:
        ome["image-label"] = {}
    group.attrs["ome"] = ome


def test_reader_opens_an_ome_zarr_stack_as_one_nd_layer(make_napari_viewer, model_factory,
                                                        wait_idle, tmp_path):
    stack = _stack(depth=4, side=96)
    _ome_stack(tmp_path / "cells.ome.zarr", stack)
    _ome_stack(tmp_path / "labels.zarr", (stack > 100).astype(np.uint32), label=True)
    viewer = make_napari_viewer()
    [image] = viewer.open(tmp_path / "cells.ome.zarr", plugin="napari-sam")
    assert image.data.shape == (4, 96, 96) and tuple(image.axis_labels) == ("z", "y", "x")
    [labels] = viewer.open(tmp_path / "labels.zarr", plugin="napari-sam")
    assert labels.__class__.__name__ == "Labels" and labels.data.shape == (4, 96, 96)
    widget = InteractiveWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"],
                               tile_size=96, overlap=16)
    viewer.window.add_dock_widget(widget, name="SAM interactive")
    widget.image.value = image
    viewer.dims.set_current_step(0, 2)
    widget.points_layer.add([60.0, 64.0])
    wait_idle(widget)
    assert widget._plane == (2,) and widget.candidates is not None
    assert widget.propagate_axis.choices and widget.accept() == 1
    assert viewer.layers[LABELS].data[2].any() and not viewer.layers[LABELS].data[0].any()


def test_automatic_on_the_shown_plane_and_on_every_plane_joined(make_napari_viewer,
                                                                 model_factory, wait_idle):
    from napari_sam._widgets.automatic import AutomaticWidget

    plane = _stack(depth=1, side=96)[0]
    viewer = make_napari_viewer()
    image = viewer.add_image(np.repeat(plane[None], 3, axis=0), name="same")
    widget = AutomaticWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"],
                             tile_size=96, overlap=16)
    viewer.window.add_dock_widget(widget, name="SAM automatic")
    widget.points_per_side.value = 3
    widget.pred_iou_thresh.value = 0.0
    widget.stability_score_thresh.value = 0.0
    widget.max_area_fraction.value = 1.0  # random weights' masks are large
    assert widget.image.value is image
    viewer.dims.set_current_step(0, 1)
    task = widget.run()
    wait_idle(widget)
    assert task.state == "done", widget.status.value
    shown = viewer.layers["same SAM objects"].data
    assert shown.shape == (3, 96, 96) and shown[1].any() and not shown[[0, 2]].any()
    widget.planes.value = widget.planes.choices[2]  # every plane, joined
    task = widget.run()
    wait_idle(widget)
    assert task.state == "done", widget.status.value
    joined = viewer.layers["same SAM objects"].data
    assert np.array_equal(joined[0], joined[1]) and np.array_equal(joined[1], joined[2])
    assert np.array_equal(joined[1] > 0, shown[1] > 0)
    assert "plane" in viewer.layers["same SAM objects"].features.columns


def test_plane_embeddings_go_to_a_store_folder_and_are_reused(make_napari_viewer,
                                                              model_factory, tiny_model,
                                                              wait_idle, tmp_path):
    root = tmp_path / "stack_embeddings"
    calls = []
    hook = tiny_model.image_encoder.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        for attempt in range(2):  # the second widget finds plane 2 already embedded
            viewer = make_napari_viewer()
            viewer.add_image(_stack(depth=4, side=96), name="stack")
            widget = InteractiveWidget(viewer, model_factory=model_factory,
                                       model_names=["sam_tiny"], tile_size=96, overlap=16)
            widget.store.value = root
            viewer.dims.set_current_step(0, 2)
            widget.points_layer.add([60.0, 64.0])
            wait_idle(widget)
            assert widget.candidates is not None, widget.status.value
            if attempt == 0:
                assert len(calls) == 1 and (root / "plane_2.zarr").is_dir()
                viewer.close()
        assert len(calls) == 1  # read from plane_2.zarr, not embedded again
    finally:
        hook.remove()


def test_export_writes_stack_labels_as_ome_zarr(make_napari_viewer, wait_idle, tmp_path):
    from napari_sam._widgets.export import ExportWidget
    from napari_sam.core.io.sparse_stack import SparseStack

    viewer = make_napari_viewer()
    labels = SparseStack((4, 40, 48))
    labels[(np.full(9, 2), np.repeat([5, 6, 7], 3), np.tile([8, 9, 10], 3))] = 3
    viewer.add_labels(labels, name="objects")
    widget = ExportWidget(viewer)
    widget.labels_path.value = tmp_path / "objects.tif"
    task = widget.export()
    wait_idle(widget)
    assert task.state == "failed" and "OME-Zarr" in widget.status.value
    widget.labels_path.value = tmp_path / "objects.zarr"
    task = widget.export()
    wait_idle(widget)
    assert task.state == "done", widget.status.value
    [layer] = viewer.open(tmp_path / "objects.zarr", plugin="napari-sam")
    data = np.asarray(layer.data)
    assert data.shape == (4, 40, 48) and (data == 3).sum() == 9 and data[2, 5:8, 8:11].all()
    assert tuple(layer.axis_labels) == ("z", "y", "x")

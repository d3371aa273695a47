"""Automatic widget: a run gives a Labels layer with an object table; cancel stops a run."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_sam._widgets.automatic import AutomaticWidget


@pytest.fixture
def auto(make_napari_viewer, model_factory, make_scene):
    viewer = make_napari_viewer()
    widget = AutomaticWidget(viewer, model_factory=model_factory, model_names=["sam_tiny"],
                             tile_size=256, overlap=32)
    viewer.window.add_dock_widget(widget, name="SAM automatic")
    # random weights: open the filters so that some masks survive
    widget.points_per_side.value = 2
    widget.pred_iou_thresh.value = 0.0
    widget.stability_score_thresh.value = 0.0
    widget.max_area_fraction.value = 1.0  # random weights' masks are large
    return viewer, widget


def test_run_adds_labels_with_object_table_and_writes_outputs(auto, make_scene, wait_idle,
                                                              tmp_path):
    viewer, widget = auto
    image = viewer.add_image(make_scene(), name="scene", rgb=True)
    assert widget.image.value is image
    widget.out_dir.value = tmp_path
    task = widget.run()
    assert widget.busy and widget.cancel_button.enabled and not widget.run_button.enabled
    wait_idle(widget)
    assert task.state == "done", widget.status.value
    layer = viewer.layers["scene SAM objects"]
    ids = np.unique(layer.data)
    ids = ids[ids > 0]
    assert len(ids) >= 1
    table = layer.features
    assert sorted(table["id"]) == ids.tolist()
    assert {"predicted_iou", "stability_score", "area", "centroid_x"} <= set(table.columns)
    for _, row in table.iterrows():
        assert row["area"] == int((layer.data == row["id"]).sum())
    assert np.allclose(layer.affine.affine_matrix, image.affine.affine_matrix)
    folder = tmp_path / "scene"
    assert {p.name for p in folder.iterdir()} == {"labels.tif", "objects.gpkg", "objects.csv"}
    assert not widget.busy and widget.run_button.enabled and not widget.cancel_button.enabled
    assert widget.status.value.startswith(f"{len(ids)} objects")


def test_cancel_stops_the_run_and_leaves_nothing(auto, make_scene, tiny_model, wait_idle,
                                                  tmp_path, monkeypatch):
    import tempfile

    viewer, widget = auto
    viewer.add_image(make_scene(1024, 1024), name="big", rgb=True)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    encoded = []

    def slow(module, args):  # each encoder call takes a while, without using the CPU
        encoded.append(1)
        time.sleep(0.2)

    hook = tiny_model.image_encoder.register_forward_pre_hook(slow)
    try:
        widget.out_dir.value = tmp_path / "out"
        task = widget.run()
        task.worker.yielded.connect(lambda _event: widget.cancel())
        wait_idle(widget)
    finally:
        hook.remove()
    assert task.state == "cancelled"
    assert widget.status.value == "cancelled"
    assert len(encoded) <= 1  # a 5x5 grid: stopped inside the first encoder call
    assert "big SAM objects" not in viewer.layers
    assert not (tmp_path / "out" / "big").exists()
    assert list(scratch.iterdir()) == []  # the temporary embedding store is gone
    assert widget.run_button.enabled and not widget.progress.visible


def test_thresholds_follow_the_chosen_model(make_napari_viewer, model_factory):
    from sam_model import automatic_thresholds

    widget = AutomaticWidget(make_napari_viewer(), model_factory=model_factory,
                             model_names=["sam_tiny", "vit_b"])
    assert widget.pred_iou_thresh.value == automatic_thresholds("sam_tiny")["pred_iou_thresh"]
    widget.model.model_name.value = "vit_b"
    assert widget.pred_iou_thresh.value == 0.88
    assert widget.stability_score_thresh.value == 0.95


def test_point_mode_scales_and_refinement_reach_the_run(auto, make_scene, wait_idle, tmp_path):
    """The widget's points / scales / refine are the run's: its objects.gpkg records them,
    and refining decodes more prompts than the same run without it; a bad scales text
    starts nothing and names itself in the status."""
    import json

    import pyogrio

    viewer, widget = auto
    viewer.add_image(make_scene(512, 512), name="scene", rgb=True)
    widget.scales.value = "1,x"
    assert widget.run() is None and "integers" in widget.status.value
    runs = {}
    for refine in ("none", "all"):
        widget.points.value, widget.scales.value, widget.refine.value = "full", "1,2", refine
        widget.out_dir.value = tmp_path / refine
        task = widget.run()
        wait_idle(widget)
        assert task.state == "done", widget.status.value
        info = pyogrio.read_info(tmp_path / refine / "scene" / "objects.gpkg", layer="objects")
        runs[refine] = json.loads(info["layer_metadata"]["NAPARI_SAM_SEGMENTATION"])
    for refine, run in runs.items():
        assert (run["points"], run["scales"], run["refine"]) == ("full", [1, 2], refine)
        assert "point_levels" not in run  # the full grid has no levels
    assert not widget.point_levels.enabled and not widget.cover_iou.enabled
    widget.points.value, widget.point_levels.value, widget.scales.value = "coarse", 2, "1"
    widget.cover_iou.value = 0.55
    assert widget.point_levels.enabled and widget.cover_iou.enabled
    widget.out_dir.value = tmp_path / "levels"
    task = widget.run()
    wait_idle(widget)
    assert task.state == "done", widget.status.value
    info = pyogrio.read_info(tmp_path / "levels" / "scene" / "objects.gpkg", layer="objects")
    run = json.loads(info["layer_metadata"]["NAPARI_SAM_SEGMENTATION"])
    assert (run["points"], run["point_levels"], run["scales"]) == ("coarse", 2, [1])
    assert run["cover_iou"] == pytest.approx(0.55)
    assert runs["all"]["grid_points"] == runs["none"]["grid_points"]
    assert runs["all"]["decoded_points"] > runs["none"]["decoded_points"]


def test_tiles_decoded_on_a_dask_scheduler_give_the_local_labels(auto, make_scene, wait_idle):
    """The widget's dask scheduler: the same labels as decoding here; an unreachable one
    fails the run and names the scheduler."""
    from distributed import LocalCluster

    viewer, widget = auto
    viewer.add_image(make_scene(512, 512), name="scene", rgb=True)
    results = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        before = cluster.scheduler.transition_counter
        for address in ("", cluster.scheduler_address):
            widget.scheduler.value = address
            task = widget.run()
            wait_idle(widget)
            assert task.state == "done", widget.status.value
            results.append(np.asarray(viewer.layers["scene SAM objects"].data).copy())
            # the scheduler worked for the second run only
            assert (cluster.scheduler.transition_counter > before) == bool(address)
    assert results[0].any() and np.array_equal(results[0], results[1])
    widget.scheduler.value = "tcp://127.0.0.1:9"
    task = widget.run()
    wait_idle(widget)
    assert task.state == "failed"
    assert "tcp://127.0.0.1:9" in widget.status.value and "scheduler" in widget.status.value


def test_local_dask_workers_decode_the_tiles(auto, make_scene, wait_idle, monkeypatch):
    """The widget's local dask workers (the CLI's --workers): a cluster of worker processes
    is started for the run, decodes its tiles (the scheduler's transitions move) and gives
    the labels of decoding here; with a scheduler address as well nothing starts."""
    import contextlib

    from napari_sam.core.automatic import distributed

    viewer, widget = auto
    viewer.add_image(make_scene(512, 512), name="scene", rgb=True)
    real, seen = distributed.dask_executor, []

    @contextlib.contextmanager
    def recording(**kwargs):
        with real(**kwargs) as executor:
            yield executor
            client = executor.client
            seen.append((kwargs, len(client.scheduler_info()["workers"]),
                         client.run_on_scheduler(lambda dask_scheduler:
                                                 dask_scheduler.transition_counter)))

    monkeypatch.setattr(distributed, "dask_executor", recording)
    results = []
    for workers in (0, 1):
        widget.workers.value = workers
        task = widget.run()
        wait_idle(widget)
        assert task.state == "done", widget.status.value
        results.append(np.asarray(viewer.layers["scene SAM objects"].data).copy())
    assert len(seen) == 1
    kwargs, n_workers, transitions = seen[0]
    assert kwargs == {"workers": 1} and n_workers == 1 and transitions > 0
    assert results[0].any() and np.array_equal(results[0], results[1])
    widget.scheduler.value = "tcp://127.0.0.1:9"
    assert widget.run() is None and "not both" in widget.status.value

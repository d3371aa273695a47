"""``napari-sam segment`` on a z stack (OME-Zarr): plane by plane, OME-Zarr labels, 3D ids."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from napari_sam.cli import main
from napari_sam.core.automatic.stack import join_plane

pytestmark = pytest.mark.usefixtures("cli_tiny_model")

LOOSE = ["--points-per-side", "3", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
         "--edge-margin", "-1", "--min-area", "20", "--max-area-fraction", "1",
         "--points", "full", "--scales", "1", "--quiet"]  # random weights: large masks


def _write_stack(path, depth=3, side=96):
    """An OME-Zarr (z, y, x) uint8 stack whose planes are all the same scene."""
    rng = np.random.default_rng(0)
    plane = rng.normal(40, 6, (side, side)).clip(0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:side, :side]
    plane[(yy - 30) ** 2 + (xx - 35) ** 2 < 15 ** 2] = 210
    plane[55:85, 50:90] = 150
    stack = np.repeat(plane[None], depth, axis=0)
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("0", data=stack, chunks=(1, side, side))
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "z", "type": "space"}, {"name": "y", "type": "space"},
                 {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]}
    return stack


def _labels(folder):
    group = zarr.open_group(str(folder / "labels.zarr"), mode="r")
    axes = [a["name"] for a in group.attrs["ome"]["multiscales"][0]["axes"]]
    return np.asarray(group["0"]), axes, group.attrs["ome"]


def test_a_z_stack_is_segmented_plane_by_plane(tmp_path, capsys):
    import pandas as pd

    src = tmp_path / "stack.ome.zarr"
    stack = _write_stack(src)
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), *LOOSE]) == 0
    assert "on 3 planes" in capsys.readouterr().out
    labels, axes, ome = _labels(out / "stack")
    assert labels.shape == stack.shape and axes == ["z", "y", "x"] and "image-label" in ome
    ids = [set(np.unique(labels[z][labels[z] > 0]).tolist()) for z in range(3)]
    assert all(ids) and not ids[0] & ids[1] and not ids[1] & ids[2]  # per-plane ids
    table = pd.read_csv(out / "stack" / "objects.csv")
    assert set(table["plane"].astype(str)) == {"0", "1", "2"}

    assert main(["segment", str(src), "--out", str(out), "--join-planes", "--overwrite",
                 *LOOSE]) == 0
    joined, _, _ = _labels(out / "stack")
    # the planes are the same scene: every object continues through z with one id
    assert np.array_equal(joined[0], joined[1]) and np.array_equal(joined[1], joined[2])
    assert np.array_equal(joined[0] > 0, labels[0] > 0)


def test_join_plane_takes_the_best_overlapping_previous_object():
    previous = np.zeros((10, 10), np.uint32)
    previous[0:5, 0:5] = 7
    previous[5:10, 5:10] = 8
    current = np.zeros((10, 10), np.uint32)
    current[0:5, 0:4] = 1   # inside 7
    current[6:10, 6:10] = 2  # inside 8
    current[0:2, 7:10] = 3   # over background: a new object
    assert join_plane(previous, current) == {1: 7, 2: 8}
    current[0:5, 4:5] = 4  # a sliver of 7: 7 stays with the larger object 1
    assert join_plane(previous, current)[1] == 7 and 4 not in join_plane(previous, current)
    assert join_plane(None, current) == {}

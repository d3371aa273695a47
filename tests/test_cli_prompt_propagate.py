"""``napari-sam prompt STACK --prompts FILE --propagate z|t`` (issue 16).

Objects prompted on a plane (or each on its file's ``plane``) are followed
through a stack: OME-Zarr labels of the stack's shape and an object table
with a plane column, written whole or not at all. SAM 1 models (the embedded
default model, which follows objects where random weights do not) follow each
object plane to plane; a SAM 2.1 checkpoint file
(random weights saved by the test, the official layout) tracks them together
with its memory, and the CLI gives exactly what core gives on that model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from sam2_tiny import tiny_sam2

from napari_sam.cli import main

DEPTH, SIDE = 5, 96


def _scene(depth: int = DEPTH) -> np.ndarray:
    rng = np.random.default_rng(0)
    stack = rng.normal(40, 6, (depth, SIDE, SIDE)).clip(0, 255).astype(np.uint8)
    for z in range(depth):
        stack[z, 20 + 2 * z:48 + 2 * z, 15 + 3 * z:45 + 3 * z] = 200  # object 1
        stack[z, 60:85, 55 - 2 * z:85 - 2 * z] = 130  # object 2
    return stack


def _write_stack(path, stack: np.ndarray, axis: str = "z") -> None:
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    group.create_array("0", data=stack, chunks=(1, SIDE, SIDE))
    group.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": axis, "type": "time" if axis == "t" else "space"},
                 {"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]}


def _labels(folder):
    group = zarr.open_group(str(folder / "labels.zarr"), mode="r")
    axes = [a["name"] for a in group.attrs["ome"]["multiscales"][0]["axes"]]
    return np.asarray(group["0"]), axes


@pytest.fixture
def stack_file(tmp_path):
    src = tmp_path / "stack.ome.zarr"
    _write_stack(src, _scene())
    prompts = tmp_path / "p.csv"
    prompts.write_text("x,y,xmin,ymin,xmax,ymax,object\n30,28,,,,,1\n,,47,57,79,88,2\n")
    return src, prompts


def test_sam1_objects_followed_through_z(tmp_path, stack_file, capsys):
    src, prompts = stack_file
    out = tmp_path / "out"
    rc = main(["prompt", str(src), "--prompts", str(prompts), "--out", str(out),
               "--propagate", "z", "--plane", "2", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert "planes" in capsys.readouterr().out
    labels, axes = _labels(out / "stack")
    assert labels.shape == (DEPTH, SIDE, SIDE) and axes == ["z", "y", "x"]
    table = pd.read_csv(out / "stack" / "objects.csv", dtype={"plane": str, "prompted": str})
    assert list(table.columns) == ["id", "plane", "prompted", "area", "x0", "y0", "x1", "y1"]
    assert set(table["prompted"]) == {"2"} and "2" in set(table["plane"])
    for row in table.itertuples():  # every row is what the labels hold
        z = int(row.plane)
        ids = labels[z, row.y0:row.y1, row.x0:row.x1]
        assert (ids == row.id).sum() <= row.area and (labels[z] == row.id).sum() > 0
    assert set(table["id"]) == {1, 2}
    assert table.groupby("id")["plane"].count().max() > 1  # followed beyond plane 2


def test_refuses_to_overwrite_and_names_the_folder(tmp_path, stack_file, capsys):
    src, prompts = stack_file
    out = tmp_path / "out"
    args = ["prompt", str(src), "--prompts", str(prompts), "--out", str(out), "--propagate",
            "z", "--plane", "2", "--quiet"]
    assert main(args) == 0
    before = (out / "stack" / "objects.csv").read_text()
    capsys.readouterr()
    assert main(args) == 2
    assert "stack: already exists (pass --overwrite" in capsys.readouterr().err
    assert (out / "stack" / "objects.csv").read_text() == before
    assert main([*args, "--overwrite", "--max-planes", "1", "--bands", "1,1,1"]) == 0
    table = pd.read_csv(out / "stack" / "objects.csv", dtype={"plane": str})
    assert set(table["plane"]) <= {"1", "2", "3"}


def test_an_interrupted_run_leaves_nothing(tmp_path, stack_file, monkeypatch):
    import napari_sam.core.prompt.propagate_file as PF

    src, prompts = stack_file
    out = tmp_path / "out"
    painted = []
    paint = PF.paint_plane

    def paint_then_stop(shape, masks):  # interrupted while writing the second plane
        painted.append(1)
        if len(painted) == 2:
            raise KeyboardInterrupt
        return paint(shape, masks)

    monkeypatch.setattr(PF, "paint_plane", paint_then_stop)
    rc = main(["prompt", str(src), "--prompts", str(prompts), "--out", str(out),
               "--propagate", "z", "--plane", "2", "--quiet"])
    assert rc == 130 and len(painted) == 2
    assert not out.exists() or list(out.iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    (["--propagate", "t"], "stack.ome.zarr: --propagate t: the stack has no 't' axis"),
    (["--propagate", "z", "--plane", "9"], "stack.ome.zarr: --plane '9': z index 9 outside"),
    (["--propagate", "z", "--plane", "1,2"], "needs 1 number(s), one per stack axis z"),
    (["--plane", "2"], "--plane and --max-planes go with --propagate"),
])
def test_bad_options_name_the_problem(tmp_path, stack_file, cli_tiny_model, capsys, extra,
                                      message):
    src, prompts = stack_file
    rc = main(["prompt", str(src), "--prompts", str(prompts), "--out", str(tmp_path / "o"),
               "--quiet", *extra])
    assert rc == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o" / "stack").exists()


def test_a_2d_raster_cannot_be_propagated(tmp_path, shared_data, cli_tiny_model, capsys):
    prompts = tmp_path / "p.csv"
    prompts.write_text("x,y\n10,10\n")
    src = shared_data / "rgb-byte-tenth.tif"
    rc = main(["prompt", str(src), "--prompts", str(prompts), "--out", str(tmp_path / "o"),
               "--propagate", "z", "--quiet"])
    assert rc == 2
    assert f"{src}: --propagate needs a stack" in capsys.readouterr().err


def test_a_plane_column_outside_the_stack_names_the_file(tmp_path, stack_file, cli_tiny_model,
                                                        capsys):
    src, _ = stack_file
    prompts = tmp_path / "planes.csv"
    prompts.write_text("x,y,plane\n30,28,7\n")
    rc = main(["prompt", str(src), "--prompts", str(prompts), "--out", str(tmp_path / "o"),
               "--propagate", "z", "--quiet"])
    assert rc == 2
    assert "planes.csv: #0 is on plane 7; the stack has 5 along 'z'" in capsys.readouterr().err


def test_sam2_checkpoint_tracks_objects_through_time(tmp_path, monkeypatch, capsys):
    """A time series, objects prompted on different frames (a plane column), a
    ``sam2.1_hiera_tiny`` checkpoint file; run at 128 px so that the test is quick
    (the weights do not depend on the input size)."""
    import napari_sam.core.models as models
    import sam_model
    from napari_sam.core.progress import run
    from napari_sam.core.prompt.propagate_file import propagate_stack_file

    model = tiny_sam2()
    ckpt = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": model.state_dict()}, ckpt)
    build = sam_model.build_sam
    monkeypatch.setattr(models.sam_model, "build_sam",
                        lambda name, checkpoint=None, **kw: build(name, checkpoint,
                                                                  **{**kw, "img_size": 128}))
    src = tmp_path / "movie.ome.zarr"
    _write_stack(src, _scene(), axis="t")
    prompts = tmp_path / "p.csv"
    prompts.write_text("x,y,xmin,ymin,xmax,ymax,plane\n30,26,,,,,1\n,,49,57,81,88,3\n")
    out = tmp_path / "out"
    rc = main(["prompt", str(src), "--prompts", str(prompts), "--out", str(out),
               "--propagate", "t", "--model", "sam2.1_hiera_tiny", "--checkpoint", str(ckpt),
               "--device", "cpu", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    labels, axes = _labels(out / "movie")
    assert axes == ["t", "y", "x"] and labels.shape == (DEPTH, SIDE, SIDE)
    table = pd.read_csv(out / "movie" / "objects.csv", dtype={"plane": str, "prompted": str})
    assert dict(zip(table["id"], table["prompted"])) == {1: "1", 2: "3"}
    # the object-score head says present everywhere: both objects on every frame
    assert sorted(table.loc[table["id"] == 1, "plane"]) == [str(t) for t in range(DEPTH)]
    assert sorted(table.loc[table["id"] == 2, "plane"]) == [str(t) for t in range(DEPTH)]
    # what core gives with the same weights, written by the same code
    direct = run(propagate_stack_file(src, prompts, tmp_path / "direct", model, axis="t"))
    assert direct.n_objects == 2
    expected, _ = _labels(tmp_path / "direct" / "movie")
    assert np.array_equal(labels, expected)
    assert {1, 2} <= set(np.unique(labels).tolist())


def test_read_prompts_plane_column(tmp_path):
    from napari_sam.core.io.prompt_file import read_prompts
    from napari_sam.core.io.raster_open import open_raster
    from napari_sam.errors import InputError

    raster = open_raster(np.zeros((40, 40), np.uint8))
    path = tmp_path / "p.csv"
    path.write_text("x,y,object,plane\n5,5,a,3\n8,8,a,\n20,20,b,0\n30,30,,\n")
    objs = read_prompts(path, raster)
    assert [o.plane for o in objs] == [3, 0, None]
    path.write_text("x,y,object,plane\n5,5,a,3\n8,8,a,4\n")
    with pytest.raises(InputError, match="p.csv: feature 2: object a is on plane 3 and on "
                                         "plane 4"):
        read_prompts(path, raster)
    path.write_text("x,y,plane\n5,5,2.5\n")
    with pytest.raises(InputError, match="'plane' must be a plane number"):
        read_prompts(path, raster)

"""``napari-sam segment``: outputs, summary line, exit statuses, no partial output."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import rasterio

from napari_sam.cli import main

pytestmark = pytest.mark.usefixtures("cli_tiny_model")


# filters off and no edge filter, so random weights still give objects
LOOSE = ["--points-per-side", "3", "--pred-iou-thresh", "0", "--stability-score-thresh", "0",
         "--max-area-fraction", "1",
         "--edge-margin", "-1", "--quiet"]


def test_segment_writes_outputs_in_input_crs(tmp_path, shared_data, capsys):
    src = shared_data / "rgb-byte-tenth.tif"
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), *LOOSE]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "rgb-byte-tenth" in line and "objects" in line
    folder = out / "rgb-byte-tenth"
    assert sorted(p.name for p in folder.iterdir()) == ["labels.tif", "objects.csv", "objects.gpkg"]
    assert sorted(p.name for p in out.iterdir()) == ["rgb-byte-tenth"]  # no temporary store left
    with rasterio.open(src) as a, rasterio.open(folder / "labels.tif") as b:
        assert (b.width, b.height, b.count, b.dtypes[0]) == (a.width, a.height, 1, "uint32")
        assert b.transform == a.transform and b.crs == a.crs
        labels = b.read(1)
    import geopandas as gpd

    gdf = gpd.read_file(folder / "objects.gpkg", layer="objects")
    assert labels.any() and len(gdf) > 0
    assert set(gdf["id"]) == set(np.unique(labels[labels > 0]).tolist())
    assert gdf.crs == gpd.read_file(folder / "objects.gpkg").crs


def test_all_nodata_gives_empty_result_exit_0(tmp_path, shared_data):
    out = tmp_path / "out"
    assert main(["segment", str(shared_data / "all-nodata.tif"), "--out", str(out), *LOOSE]) == 0
    with rasterio.open(out / "all-nodata" / "labels.tif") as ds:
        assert ds.shape == (2475, 71) and not ds.read(1).any()
    import geopandas as gpd

    assert len(gpd.read_file(out / "all-nodata" / "objects.gpkg")) == 0


def test_existing_output_kept_without_overwrite(tmp_path, shared_data, capsys):
    src = shared_data / "rgb-byte-tenth.tif"
    folder = tmp_path / "rgb-byte-tenth"
    folder.mkdir()
    (folder / "mine.txt").write_text("keep")
    assert main(["segment", str(src), "--out", str(tmp_path), *LOOSE]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]
    assert (folder / "mine.txt").exists()
    assert main(["segment", str(src), "--out", str(tmp_path), "--overwrite", *LOOSE]) == 0
    assert not (folder / "mine.txt").exists() and (folder / "labels.tif").exists()


def test_tiny_float_raster_with_nan(tmp_path, shared_data):
    out = tmp_path / "out"
    assert main(["segment", str(shared_data / "float_nan.tif"), "--out", str(out), *LOOSE]) == 0
    with rasterio.open(out / "float_nan" / "labels.tif") as ds:
        assert ds.shape == (2, 3)


@pytest.mark.parametrize("name", ["corrupt.tif", "missing.tif"])
def test_bad_input_exit_2_nothing_written(tmp_path, shared_data, capsys, name):
    src = shared_data / name
    rc = main(["segment", str(src), "--out", str(tmp_path / "out"), *LOOSE])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and name in err[0]
    assert not (tmp_path / "out").exists()  # not even an empty folder


def test_failure_midway_leaves_no_partial_output(tmp_path, shared_data, monkeypatch):
    from napari_sam.core.automatic import decode as generate

    def broken(self, work):
        raise RuntimeError("decoder exploded")

    monkeypatch.setattr(generate.TileDecoder, "__call__", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        main(["segment", str(shared_data / "rgb-byte-tenth.tif"), "--out", str(out), *LOOSE])
    assert not out.exists() or list(out.iterdir()) == []


def test_two_inputs_and_embedding_store_reuse(tmp_path, shared_data, capsys):
    a = shared_data / "rgb-byte-tenth.tif"
    b = tmp_path / "second.tif"
    shutil.copy(shared_data / "world.rgb.tif", b)
    out = tmp_path / "out"
    assert main(["segment", str(a), str(b), "--out", str(out), *LOOSE]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and "second" in lines[1]
    with rasterio.open(out / "second" / "labels.tif") as ds:
        assert ds.crs.to_epsg() == 4326
    # with a store: the store is made (and kept), and a second run reuses it
    store = tmp_path / "emb.zarr"
    assert main(["segment", str(a), "--out", str(tmp_path / "o2"), "--embeddings", str(store),
                 *LOOSE]) == 0
    assert store.exists()
    assert main(["segment", str(a), "--out", str(tmp_path / "o3"), "--embeddings", str(store),
                 *LOOSE]) == 0
    with rasterio.open(tmp_path / "o2" / "rgb-byte-tenth" / "labels.tif") as x, \
            rasterio.open(tmp_path / "o3" / "rgb-byte-tenth" / "labels.tif") as y:
        first = x.read(1)
        assert first.any() and np.array_equal(first, y.read(1))
    # a store made by `napari-sam embed` with its own tiling is used without repeating it
    store2 = tmp_path / "emb2.zarr"
    assert main(["embed", str(a), "--out", str(store2), "--tile", "64", "--overlap", "16",
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["segment", str(a), "--out", str(tmp_path / "o4"), "--embeddings", str(store2),
                 *LOOSE]) == 0
    assert "(4 tiles)" in capsys.readouterr().out  # the store's 64-px tiles were used
    # one store for two inputs is bad usage
    assert main(["segment", str(a), str(b), "--out", str(out), "--embeddings", str(store),
                 *LOOSE]) == 2


def test_bad_options_exit_2(tmp_path, shared_data):
    src = str(shared_data / "rgb-byte-tenth.tif")
    with pytest.raises(SystemExit) as exc:
        main(["segment", src, "--out", str(tmp_path), "--pred-iou-thresh", "3"])
    assert exc.value.code == 2
    assert main(["segment", src, "--out", str(tmp_path), "--min-area", "50", "--max-area", "10",
                 "--quiet"]) == 2


def test_downscaled_tiles_give_full_resolution_labels(tmp_path, shared_data):
    src = shared_data / "world.rgb.tif"  # 512 x 256
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), "--scale", "2", "--tile", "256",
                 "--overlap", "64", *LOOSE]) == 0
    with rasterio.open(out / "world.rgb" / "labels.tif") as ds, rasterio.open(src) as s:
        assert ds.shape == s.shape and ds.transform == s.transform


def test_scheduler_option_gives_the_single_process_result(tmp_path, shared_data):
    from distributed import LocalCluster

    src = str(shared_data / "world.rgb.tif")
    assert main(["segment", src, "--out", str(tmp_path / "a"), *LOOSE]) == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        assert main(["segment", src, "--out", str(tmp_path / "b"), "--scheduler",
                     cluster.scheduler_address, *LOOSE]) == 0
    with rasterio.open(tmp_path / "a" / "world.rgb" / "labels.tif") as x, \
            rasterio.open(tmp_path / "b" / "world.rgb" / "labels.tif") as y:
        labels = x.read(1)
        assert labels.any() and np.array_equal(labels, y.read(1))
    assert (tmp_path / "a" / "world.rgb" / "objects.csv").read_text() == \
        (tmp_path / "b" / "world.rgb" / "objects.csv").read_text()


def test_unreachable_scheduler_exit_2(tmp_path, shared_data, capsys):
    rc = main(["segment", str(shared_data / "rgb-byte-tenth.tif"), "--out", str(tmp_path / "o"),
               "--scheduler", "tcp://127.0.0.1:9", *LOOSE])
    assert rc == 2
    assert "scheduler" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


def test_zarr_input_gives_zarr_labels(tmp_path):
    import zarr

    from napari_sam.core.io.labels import read_labels

    rng = np.random.default_rng(0)
    src = tmp_path / "mosaic.zarr"
    arr = zarr.create_array(str(src), shape=(90, 120, 3), chunks=(64, 64, 3), dtype="uint8")
    arr[:] = (rng.random((90, 120, 3)) * 255).astype(np.uint8)
    arr.attrs.update({"transform": [2.0, 0, 1000.0, 0, -2.0, 5000.0], "crs": "EPSG:32618"})
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), *LOOSE]) == 0
    labels = read_labels(out / "mosaic" / "labels.zarr")
    assert (labels.height, labels.width) == (90, 120)
    assert labels.crs.to_epsg() == 32618 and tuple(labels.transform)[:6] == (2, 0, 1000, 0, -2, 5000)
    assert (out / "mosaic" / "objects.gpkg").is_file()


def test_no_stitch_flag_turns_seam_stitching_off(tmp_path, shared_data, monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    from napari_sam.core.automatic import run as pipeline

    seen = []

    def segment_file(src, out, model, *, config, **kwargs):
        seen.append(config.stitch_seams)
        yield from ()
        return pipeline.SegmentSummary(input=Path(src), outputs=SimpleNamespace(folder=Path(out)),
                                       objects=[], n_objects=0, n_tiles=0, n_points=0,
                                       seconds=0.0)

    monkeypatch.setattr(pipeline, "segment_file", segment_file)
    src = str(shared_data / "rgb-byte-tenth.tif")
    assert main(["segment", src, "--out", str(tmp_path), "--quiet"]) == 0
    assert main(["segment", src, "--out", str(tmp_path), "--no-stitch", "--quiet"]) == 0
    assert seen == [True, False]


def test_area_defaults_reach_the_config_and_the_help(tmp_path, shared_data, monkeypatch, capsys):
    from pathlib import Path
    from types import SimpleNamespace

    from napari_sam.core.automatic import run as pipeline

    seen = []

    def segment_file(src, out, model, *, config, **kwargs):
        seen.append((config.min_area, config.max_area, config.max_area_fraction))
        seen.append((config.scales, config.points, config.points_per_batch, config.refine))
        yield from ()
        return pipeline.SegmentSummary(input=Path(src), outputs=SimpleNamespace(folder=Path(out)),
                                       objects=[], n_objects=0, n_tiles=0, n_points=0,
                                       seconds=0.0)

    monkeypatch.setattr(pipeline, "segment_file", segment_file)
    src = str(shared_data / "rgb-byte-tenth.tif")
    assert main(["segment", src, "--out", str(tmp_path), "--quiet"]) == 0
    assert main(["segment", src, "--out", str(tmp_path), "--min-area", "0", "--max-area", "900",
                 "--max-area-fraction", "1", "--scales", "1,4", "--points", "full",
                 "--points-per-batch", "8", "--refine", "coarse", "--quiet"]) == 0
    assert seen == [(16, None, 0.25), ((1, 2, 4), "coarse", None, "none"),
                    (0, 900, 1.0), ((1, 4), "full", 8, "coarse")]
    with pytest.raises(SystemExit):
        main(["segment", src, "--out", str(tmp_path), "--scales", "2,4"])
    with pytest.raises(SystemExit):
        main(["segment", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default 16: the decoder's specks; 0 keeps all)" in text
    assert "(default 0.25: background such as sea or sky; 1 keeps them)" in text


@pytest.mark.parametrize("mode", ["coarse", "full"])
def test_point_mode_recorded_in_the_object_layer(tmp_path, shared_data, mode):
    import json

    import pyogrio

    src = shared_data / "rgb-byte-tenth.tif"
    extra = ["--cover-iou", "0.6"] if mode == "coarse" else ["--points", "full"]
    assert main(["segment", str(src), "--out", str(tmp_path), *LOOSE, *extra]) == 0
    info = pyogrio.read_info(tmp_path / "rgb-byte-tenth" / "objects.gpkg", layer="objects")
    run = json.loads(info["layer_metadata"]["NAPARI_SAM_SEGMENTATION"])
    assert run["points"] == mode
    assert run["scales"] == [1]  # one tile at full resolution: no coarser pass needed
    assert 0 < run["decoded_points"] <= run["grid_points"]
    assert run["refine"] == "none"
    if mode == "full":
        assert run["decoded_points"] == run["grid_points"]
        assert "cover_iou" not in run  # the full grid covers nothing
    else:
        assert run["cover_iou"] == 0.6


def test_refinement_recorded_and_its_decoder_calls_counted(tmp_path, shared_data):
    import json

    import pyogrio

    src = shared_data / "rgb-byte-tenth.tif"
    runs = {}
    for refine in ("none", "all"):
        out = tmp_path / refine
        assert main(["segment", str(src), "--out", str(out), *LOOSE, "--points", "full",
                     "--refine", refine]) == 0
        info = pyogrio.read_info(out / "rgb-byte-tenth" / "objects.gpkg", layer="objects")
        runs[refine] = json.loads(info["layer_metadata"]["NAPARI_SAM_SEGMENTATION"])
    assert runs["all"]["refine"] == "all" and runs["none"]["refine"] == "none"
    # the refined masks were decoded a second time: more decoder prompts than grid points
    assert runs["none"]["decoded_points"] == runs["none"]["grid_points"]
    assert runs["all"]["decoded_points"] > runs["all"]["grid_points"]


def test_overlay_option_draws_the_objects(tmp_path, shared_data):
    from PIL import Image

    from napari_sam.core.io.overlay import OUTLINE

    src = shared_data / "rgb-byte-tenth.tif"
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), "--overlay", *LOOSE]) == 0
    folder = out / "rgb-byte-tenth"
    with rasterio.open(folder / "labels.tif") as ds:
        labels = ds.read(1)
    img = np.asarray(Image.open(folder / "overlay.png").convert("RGB"))
    assert img.shape[:2] == (2 * labels.shape[0], 2 * labels.shape[1])  # small: enlarged twice
    assert (img == OUTLINE).all(axis=-1).any()  # the objects' outlines


def test_overlay_shows_the_bands_segmented(tmp_path, shared_data):
    from PIL import Image
    from scipy import ndimage

    src = shared_data / "rgb-byte-tenth.tif"
    out = tmp_path / "out"
    assert main(["segment", str(src), "--out", str(out), "--overlay", "--bands", "1,1,1",
                 *LOOSE]) == 0
    folder = out / "rgb-byte-tenth"
    with rasterio.open(folder / "labels.tif") as ds:
        labels = ds.read(1)
    with rasterio.open(src) as ds:
        valid = ds.dataset_mask() > 0
    img = np.asarray(Image.open(folder / "overlay.png").convert("RGB")).astype(int)
    # away from objects and nodata the picture is band 1 alone: grey
    plain = ndimage.binary_erosion((labels == 0) & valid, iterations=2)
    plain = plain.repeat(2, axis=0).repeat(2, axis=1)
    assert plain.sum() > 100
    r, g, b = img[plain].T
    assert (r == g).all() and (g == b).all()

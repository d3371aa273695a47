"""``napari-sam prompt`` with the shipped sam_tiny: large boxes, and clicks in large
objects, are decoded zoomed out."""

from __future__ import annotations

import numpy as np
import rasterio

from napari_sam.cli import main


def _ellipse_tif(path, cy, cx, ry, rx, seed):
    rng = np.random.default_rng(seed)
    size = 1024
    img = rng.normal(70, 12, (size, size, 3))
    yy, xx = np.mgrid[:size, :size]
    truth = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
    img[truth] = (210, 160, 80)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=3,
                       dtype="uint8") as ds:
        ds.write(np.clip(img, 0, 255).astype(np.uint8).transpose(2, 0, 1))
    return truth


def _segmenter(path, prompts, truth):
    def segment(out, *extra):
        assert main(["prompt", str(path), "--prompts", str(prompts), "--out", str(out),
                     "--model", "sam_tiny", "--device", "cpu", "--quiet", *extra]) == 0
        with rasterio.open(out / "big" / "labels.tif") as ds:
            mask = ds.read(1) == 1
        return (mask & truth).sum() / (mask | truth).sum()
    return segment


def test_large_box_prompt_uses_the_models_zoom_limit(tmp_path):
    path = tmp_path / "big.tif"
    truth = _ellipse_tif(path, 520, 480, 250, 320, seed=5)
    ys, xs = np.nonzero(truth)
    prompts = tmp_path / "box.csv"
    prompts.write_text(f"xmin,ymin,xmax,ymax\n{xs.min()},{ys.min()},{xs.max()},{ys.max()}\n")
    segment = _segmenter(path, prompts, truth)

    zoomed = segment(tmp_path / "auto")
    full = segment(tmp_path / "full", "--zoom-limit", "0")
    assert zoomed >= 0.6, (zoomed, full)  # full scale: an almost empty mask
    assert zoomed > full + 0.4, (zoomed, full)


def test_a_click_in_a_large_object_is_decoded_zoomed_out_too(tmp_path):
    path = tmp_path / "big.tif"
    truth = _ellipse_tif(path, 500, 500, 150, 200, seed=1)
    prompts = tmp_path / "click.csv"
    prompts.write_text("x,y\n500,500\n")
    segment = _segmenter(path, prompts, truth)
    zoomed = segment(tmp_path / "auto")
    full = segment(tmp_path / "full", "--zoom-limit", "0")
    assert zoomed >= 0.85, (zoomed, full)  # full scale: part of the object
    assert zoomed > full + 0.15, (zoomed, full)


def test_negative_zoom_limit_is_refused(tmp_path, capsys):
    prompts = tmp_path / "p.csv"
    prompts.write_text("x,y\n1,1\n")
    rc = main(["prompt", str(tmp_path / "any.tif"), "--prompts", str(prompts), "--out",
               str(tmp_path / "out"), "--zoom-limit", "-3", "--quiet"])
    assert rc == 2 and "--zoom-limit -3" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

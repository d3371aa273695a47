"""Quality of a model (default: the shipped sam_tiny) with simulated prompts.

(Any registered model: ``--model sam_lite0``.)

mIoU for a centre point (top-scored and best of three candidates), a tight
box and 5 simulated clicks (see ``sam_model.train.evaluate``) on:

* held-out generated scenes (seeds the training stream never uses);
* real images with references drawn by classical methods (threshold,
  watershed, connected components): scikit-image's ``coins`` (watershed on
  the Sobel elevation map), ``immunohistochemistry`` (DAB-stained glands by
  colour deconvolution and threshold), ``cell`` (one cell, threshold),
  ``hubble_deep_field`` (bright galaxies, threshold); the bundled Landsat
  scene (clouds: bright in all bands) and ``world.rgb.tif`` (land masses:
  not blue-dominated), both from rasterio's test data.

The references are rough where the classical method is rough; the figures
say how well the model agrees with them, nothing more.

    python -m benchmarks.eval_sam_tiny --scenes 100 [--model NAME | --checkpoint PATH]

Results go to ``benchmarks/results/eval_sam_tiny.json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _largest(labels: np.ndarray, *, min_area: int, keep: int) -> np.ndarray:
    """Relabel 1..n keeping the ``keep`` largest components of at least ``min_area`` px."""
    ids, counts = np.unique(labels[labels > 0], return_counts=True)
    order = [i for c, i in sorted(zip(counts, ids), reverse=True) if c >= min_area][:keep]
    out = np.zeros(labels.shape, np.int32)
    for new, old in enumerate(order, 1):
        out[labels == old] = new
    return out


def coins():
    from skimage import data, filters, segmentation

    image = data.coins()
    markers = np.zeros_like(image, np.int32)
    markers[image < 30] = 1
    markers[image > 150] = 2
    ws = segmentation.watershed(filters.sobel(image), markers)
    fg = ndi.binary_fill_holes(ws == 2)
    labels, _ = ndi.label(fg)
    return image, _largest(labels, min_area=200, keep=40)


def immunohistochemistry():
    from skimage import color, data, filters, morphology

    image = data.immunohistochemistry()
    dab = color.rgb2hed(image)[..., 2]
    mask = dab > filters.threshold_otsu(dab)
    mask = ndi.binary_closing(mask, morphology.disk(5))
    mask = ndi.binary_fill_holes(ndi.binary_opening(mask, morphology.disk(3)))
    labels, _ = ndi.label(mask)
    return image, _largest(labels, min_area=2000, keep=20)


def cell():
    from skimage import data, filters

    image = data.cell()
    smooth = filters.gaussian(image, 2, preserve_range=True)
    mask = ndi.binary_fill_holes(smooth > filters.threshold_otsu(smooth) * 1.15)
    labels, _ = ndi.label(mask)
    return image, _largest(labels, min_area=500, keep=1)


def hubble():
    from skimage import data

    image = data.hubble_deep_field()
    grey = image.mean(-1)
    labels, _ = ndi.label(ndi.binary_fill_holes(grey > 90))
    return image, _largest(labels, min_area=40, keep=25)


def _read_rgb(path: Path) -> np.ndarray:
    import rasterio

    with rasterio.open(path) as src:
        return np.moveaxis(src.read([1, 2, 3]), 0, -1)


def landsat_clouds():
    image = _read_rgb(REPO / "sample_data" / "landsat_rgb_epsg32618.tif")
    mask = (image.min(-1) > 170)
    mask = ndi.binary_fill_holes(ndi.binary_opening(mask, iterations=1))
    labels, _ = ndi.label(mask)
    return image, _largest(labels, min_area=60, keep=25)


def world_land():
    image = _read_rgb(REPO / "tests" / "data" / "rasterio" / "world.rgb.tif").astype(np.int32)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    water = (b > r + 25) & (b > g)
    land = ndi.binary_opening(~water, iterations=1)
    labels, _ = ndi.label(land)
    return image.astype(np.uint8), _largest(labels, min_area=150, keep=20)


REAL = {
    "coins": coins,
    "immunohistochemistry": immunohistochemistry,
    "cell": cell,
    "hubble_deep_field": hubble,
    "landsat_clouds": landsat_clouds,
    "world_land": world_land,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenes", type=int, default=100, help="held-out generated scenes")
    parser.add_argument("--scene-size", type=int, default=1024)
    parser.add_argument("--model", default="sam_tiny")
    parser.add_argument("--checkpoint", default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--zoom-limit", type=int, default=None,
                        help="also score prompts as the raster predictor decodes them with "
                             "this zoom limit in input px (box_zoom, point_zoom, clicks_zoom; "
                             "default: the model's own, sam_model.prompt_extent_limit; 0: off)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", default=None, help="comma-separated subset of: scenes, "
                        + ", ".join(REAL))
    parser.add_argument("--out", default=str(HERE / "results" / "eval_sam_tiny.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(REPO))

    import sam_model
    from sam_model.train.evaluate import evaluate_pairs, evaluate_scenes

    model = sam_model.build_sam(args.model, args.checkpoint, device=args.device)
    zoom = (sam_model.prompt_extent_limit(args.model) if args.zoom_limit is None
            else args.zoom_limit) or None
    zoom_clicks = sam_model.zooms_clicks(args.model)
    wanted = set(args.only.split(",")) if args.only else {"scenes", *REAL}
    results: dict[str, object] = {"model": args.model, "checkpoint": args.checkpoint,
                                  "device": args.device, "threads": args.threads,
                                  "zoom_limit": zoom, "zoom_clicks": bool(zoom and zoom_clicks)}
    t0 = time.perf_counter()
    for name, make in REAL.items():
        if name not in wanted:
            continue
        image, labels = make()
        report = evaluate_pairs(model, [(image, labels)], names=[name], zoom_limit=zoom,
                                zoom_clicks=zoom_clicks)
        report["image_size"] = list(labels.shape)
        results[name] = report
        print(name, json.dumps(report), flush=True)
    kinds = [results[name] for name in REAL if name in results]
    if kinds:  # the targets average over kinds of object, one image per kind
        results["real_mean_over_kinds"] = {
            key: round(float(np.mean([k[key] for k in kinds])), 4)
            for key in ("point_top", "point_best", "box", "clicks", "box_zoom", "point_zoom",
                        "clicks_zoom") if all(key in k for k in kinds)}
        results["real_min_over_kinds"] = {
            key: round(float(min(k[key] for k in kinds)), 4)
            for key in ("point_top", "box", "box_zoom") if all(key in k for k in kinds)}
        print("real images, mean over kinds", json.dumps(results["real_mean_over_kinds"]),
              flush=True)
    if "scenes" in wanted and args.scenes:
        report = evaluate_scenes(model, args.scenes, size=args.scene_size, zoom_limit=zoom,
                                 zoom_clicks=zoom_clicks)
        results["held_out_scenes"] = report
        print("held_out_scenes", json.dumps(report), flush=True)
    results["wall_s"] = round(time.perf_counter() - t0, 1)
    results["load_average"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

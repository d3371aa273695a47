"""``python -m napari_sam.demo --out DIR`` (``make demo``): the main job, end to end, offline.

Runs automatic segmentation with the embedded default model
(``sam_model.DEFAULT_MODEL``) on the bundled
Landsat scene (``sample_data/landsat_rgb_epsg32618.tif``, EPSG:32618) and
writes into ``DIR/landsat_rgb_epsg32618/``:

- ``labels.tif``   uint32 labels, the scene's size, transform and CRS;
- ``objects.gpkg`` polygons (layer ``objects``) in EPSG:32618;
- ``objects.csv``  the object table;
- ``overlay.png``  the objects tinted and outlined on the scene.

An earlier demo output in DIR is replaced. No network is used: the model's
weights ship inside the package.

The mask filters default to the thresholds suited to that model
(``sam_model.automatic_thresholds``: the SAM paper's 0.88 / 0.95, except for
the embedded ``sam_lite0`` and ``sam_tiny``, whose predicted-IoU heads score
lower); pass
``--pred-iou-thresh``/``--stability-score-thresh`` to change them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from napari_sam.core.io.overlay import overlay_png
from sam_model import DEFAULT_MODEL, automatic_thresholds

_THRESHOLDS = automatic_thresholds(DEFAULT_MODEL)
DEMO_PRED_IOU = _THRESHOLDS["pred_iou_thresh"]
DEMO_STABILITY = _THRESHOLDS["stability_score_thresh"]


def run_demo(out: str | os.PathLike, *, model=None, points_per_side: int = 32,
             pred_iou_thresh: float = DEMO_PRED_IOU,
             stability_score_thresh: float = DEMO_STABILITY, quiet: bool = False) -> dict:
    """Segment the bundled Landsat scene into ``out``; return the written paths.

    ``model``: a built ``Sam`` (default: ``sam_model.DEFAULT_MODEL`` with its
    shipped weights; a missing weights file is an error, never random weights).
    """
    from napari_sam._sample_data import LANDSAT, sample_path
    from napari_sam.core import progress
    from napari_sam.core.automatic.run import segment_file
    from napari_sam.core.automatic.settings import SegmentConfig
    from napari_sam.core.io.raster_open import open_raster

    if model is None:
        from napari_sam.core.models import load_model

        model = load_model(DEFAULT_MODEL, device="auto")
    scene = sample_path(LANDSAT)
    config = SegmentConfig(points_per_side=points_per_side, pred_iou_thresh=pred_iou_thresh,
                           stability_score_thresh=stability_score_thresh, min_region_area=25,
                           min_area=25)
    gen = segment_file(scene, out, model, config=config, overwrite=True)
    summary = progress.run(gen) if quiet else progress.run_with_bar(gen)
    folder = summary.outputs.folder
    png = overlay_png(open_raster(scene), summary.outputs.objects, folder / "overlay.png")
    return {"summary": summary, "labels": summary.outputs.labels,
            "objects": summary.outputs.objects, "table": summary.outputs.table, "overlay": png}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m napari_sam.demo",
        description="Automatic segmentation of the bundled Landsat scene with the embedded "
                    f"default model ({DEFAULT_MODEL}).")
    parser.add_argument("--out", default="demo_output", metavar="DIR",
                        help="output folder (default demo_output)")
    parser.add_argument("--points-per-side", type=int, default=32, metavar="N",
                        help="prompt points per tile side (default 32)")
    parser.add_argument("--pred-iou-thresh", type=float, default=DEMO_PRED_IOU, metavar="T",
                        help=f"keep masks whose predicted IoU exceeds T (default {DEMO_PRED_IOU})")
    parser.add_argument("--stability-score-thresh", type=float, default=DEMO_STABILITY,
                        metavar="T",
                        help=f"keep masks whose stability is at least T (default {DEMO_STABILITY})")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    from napari_sam.errors import InputError

    start = time.perf_counter()
    try:
        paths = run_demo(args.out, points_per_side=args.points_per_side,
                         pred_iou_thresh=args.pred_iou_thresh,
                         stability_score_thresh=args.stability_score_thresh, quiet=args.quiet)
    except InputError as exc:
        print(f"napari-sam demo: error: {exc}", file=sys.stderr)
        return 2
    s = paths["summary"]
    print(f"Segmented {s.input.name}: {s.n_objects} objects in "
          f"{time.perf_counter() - start:.1f} s (model {DEFAULT_MODEL}, {s.n_tiles} tile(s))")
    print(f"  labels   {paths['labels']}")
    print(f"  polygons {paths['objects']}  (layer 'objects', EPSG:32618)")
    print(f"  table    {paths['table']}")
    print(f"  overlay  {paths['overlay']}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

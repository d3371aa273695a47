"""``napari-sam evaluate DATA``: score a model on image/label pairs with simulated prompts.

Reports the mean IoU over all labelled objects for one click at the object's
centre (the top-scored candidate, and the best of three), the object's box,
and 5 simulated corrective clicks. DATA is read as by ``napari-sam train``;
``--scenes N`` scores held-out generated scenes instead.
"""

from __future__ import annotations

import argparse
import json
import sys

from napari_sam.cli.common import add_model_options, load_model_from_args
from napari_sam.errors import InputError


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "evaluate", help="mIoU of a model for point, box and 5-click prompts on labelled images",
        description=__doc__.split("\n\n", 1)[1].strip())
    parser.add_argument("data", nargs="?", default=None, metavar="DATA",
                        help="folder of image/label pairs, or a zarr store with image and labels")
    parser.add_argument("--scenes", type=int, default=None, metavar="N",
                        help="score N held-out generated scenes instead of DATA")
    parser.add_argument("--scene-size", type=int, default=1024, metavar="PX")
    add_model_options(parser)
    parser.add_argument("--clicks", type=int, default=5, help="clicks of the interactive run")
    parser.add_argument("--min-area", type=int, default=16,
                        help="objects smaller than this (px) are skipped")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the report here")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from napari_sam.cli.train import read_pairs
    from napari_sam.core.io.atomic import atomic_path, check_writable
    from sam_model.train.evaluate import evaluate_pairs, evaluate_scenes

    if (args.scenes is None) == (args.data is None):
        raise InputError("give either DATA or --scenes N")
    if args.clicks < 1:
        raise InputError(f"--clicks {args.clicks}: must be at least 1")
    if args.json:
        check_writable(args.json, args.overwrite)
    model = load_model_from_args(args)
    if args.scenes is not None:
        report = evaluate_scenes(model, args.scenes, size=args.scene_size, clicks=args.clicks)
    else:
        pairs = read_pairs(args.data)
        report = evaluate_pairs(model, pairs, clicks=args.clicks, min_area=args.min_area)
        report["data"] = str(args.data)
    if not report["objects"]:
        raise InputError(f"{args.data}: no labelled objects of at least {args.min_area} px")
    report["model"] = model.model_name or args.model
    if args.json:
        with atomic_path(args.json, args.overwrite) as tmp:
            tmp.write_text(json.dumps(report, indent=1) + "\n")
    print(f"{report['objects']} objects in {report['images']} images: "
          f"point {report['point_top']:.3f} (best of 3: {report['point_best']:.3f}), "
          f"box {report['box']:.3f}, {args.clicks} clicks {report['clicks']:.3f}", file=sys.stdout)
    return 0

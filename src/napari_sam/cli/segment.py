"""``napari-sam segment INPUT [INPUT ...] --out DIR``: automatic segmentation of whole rasters.

For each INPUT writes ``DIR/<stem>/labels.tif`` (``labels.zarr`` for zarr
input), ``objects.gpkg`` and ``objects.csv``; prints one summary line per
input. Outputs appear complete or not at all; existing ones are kept unless
--overwrite. Bad input or usage: exit 2 and one line on stderr.
"""

from __future__ import annotations

import argparse

from napari_sam.cli.common import (
    add_model_options,
    add_tiling_options,
    fraction,
    non_negative_int,
    positive_int,
    tiling_from_args,
)
from napari_sam.core.automatic.settings import SegmentConfig


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """The automatic generator's options: SegmentConfig's fields (reference names), with
    its defaults."""
    d = SegmentConfig()
    group = parser.add_argument_group("automatic generation")
    group.add_argument("--points-per-side", type=positive_int, default=d.points_per_side,
                       metavar="N", help="prompt points per tile side (default %(default)s)")
    group.add_argument("--points-per-batch", type=positive_int, default=d.points_per_batch,
                       metavar="N", help="points per decoder call (default %(default)s)")
    group.add_argument("--pred-iou-thresh", type=fraction, default=None, metavar="T",
                       help=f"keep masks whose predicted IoU exceeds T (default: the model's; "
                            f"{d.pred_iou_thresh} for the official models, lower for sam_tiny, "
                            f"whose IoU head scores lower)")
    group.add_argument("--stability-score-thresh", type=fraction, default=None, metavar="T",
                       help=f"keep masks whose stability score is at least T (default: the "
                            f"model's; {d.stability_score_thresh} for the official models)")
    group.add_argument("--box-nms-thresh", type=fraction, default=d.box_nms_thresh, metavar="T",
                       help="box IoU above which masks are duplicates (default %(default)s)")
    group.add_argument("--edge-margin", type=float, default=d.edge_margin, metavar="PX",
                       help="masks whose box comes within PX pixels of a border shared with "
                            "a neighbour tile are left to that tile (default: 20 px per 1024 "
                            "px of tile; negative turns the edge filter off)")
    group.add_argument("--no-stitch", action="store_true",
                       help="do not join the masks of an object cut by tile borders into one "
                            "object; masks cut by a border shared with a neighbour tile are "
                            "dropped, which loses objects larger than about half the overlap "
                            "that straddle a seam (the behaviour before seam stitching)")
    group.add_argument("--min-region-area", type=non_negative_int, default=d.min_region_area,
                       metavar="PX", help="fill holes and remove islands smaller than PX "
                                          "pixels (default %(default)s)")
    group.add_argument("--min-area", type=non_negative_int, default=d.min_area, metavar="PX",
                       help="drop objects smaller than PX pixels (default %(default)s)")
    group.add_argument("--max-area", type=positive_int, default=d.max_area, metavar="PX",
                       help="drop objects larger than PX pixels (default: no limit)")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "segment", help="automatic segmentation of whole rasters",
        description="Automatic segmentation of whole rasters (GeoTIFF/COG, TIFF, zarr, "
                    "OME-Zarr), tile by tile: one id per object across tiles. Writes "
                    "DIR/<stem>/labels.tif (labels.zarr for zarr input), objects.gpkg and "
                    "objects.csv. Where masks overlap, the higher predicted IoU wins the pixel.")
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="rasters to segment")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_model_options(parser)
    add_tiling_options(parser)
    parser.add_argument("--embeddings", metavar="STORE.zarr", default=None,
                        help="embedding store to use (made by `napari-sam embed`, completed "
                             "when tiles are missing); default: embed into a temporary store")
    add_generation_options(parser)
    scale_out = parser.add_mutually_exclusive_group()
    scale_out.add_argument("--scheduler", metavar="ADDRESS", default=None,
                           help="decode tiles on this running dask.distributed scheduler")
    scale_out.add_argument("--workers", type=positive_int, default=None, metavar="N",
                           help="start N local dask workers to decode tiles")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing DIR/<stem> folders")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def generation_options(args: argparse.Namespace) -> dict:
    """SegmentConfig fields from the parsed options (thresholds left out when not given)."""
    options = {
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh,
        "box_nms_thresh": args.box_nms_thresh,
        "edge_margin": args.edge_margin,
        "min_region_area": args.min_region_area,
        "min_area": args.min_area,
        "max_area": args.max_area,
        "stitch_seams": not args.no_stitch,
    }
    for key in ("pred_iou_thresh", "stability_score_thresh"):
        if options[key] is None:  # the model's own default, chosen once it is loaded
            del options[key]
    return options


def run(args: argparse.Namespace) -> int:
    from napari_sam.cli.common import load_model_from_args
    from napari_sam.core.automatic import run as pipeline
    from napari_sam.errors import InputError

    options = generation_options(args)
    try:
        SegmentConfig(**options)  # bad combinations fail before the model loads
    except ValueError as exc:
        raise InputError(f"segment: {exc}") from exc
    pipeline.check_inputs(args.inputs, args.out, embeddings=args.embeddings,
                          overwrite=args.overwrite)
    model = load_model_from_args(args)
    pipeline.segment(args.inputs, args.out, model=model, batch_size=args.batch_size,
                     embeddings=args.embeddings, scheduler=args.scheduler, workers=args.workers,
                     overwrite=args.overwrite, progress=not args.quiet,
                     report=lambda summary: print(summary.line(), flush=True),
                     **tiling_from_args(args), **options)
    return 0

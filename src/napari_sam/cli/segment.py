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


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """The automatic generator's options (reference names and defaults)."""
    group = parser.add_argument_group("automatic generation")
    group.add_argument("--points-per-side", type=positive_int, default=32, metavar="N",
                       help="prompt points per tile side (default 32)")
    group.add_argument("--points-per-batch", type=positive_int, default=64, metavar="N",
                       help="points per decoder call (default 64)")
    group.add_argument("--pred-iou-thresh", type=fraction, default=None, metavar="T",
                       help="keep masks whose predicted IoU exceeds T (default 0.88; 0.3 for "
                            "sam_tiny, whose IoU head scores lower)")
    group.add_argument("--stability-score-thresh", type=fraction, default=None, metavar="T",
                       help="keep masks whose stability score is at least T (default 0.95; "
                            "0.5 for sam_tiny)")
    group.add_argument("--box-nms-thresh", type=fraction, default=0.7, metavar="T",
                       help="box IoU above which masks are duplicates (default 0.7)")
    group.add_argument("--edge-margin", type=float, default=None, metavar="PX",
                       help="masks whose box comes within PX pixels of a border shared with "
                            "a neighbour tile are left to that tile (default: 20 px per 1024 "
                            "px of tile; negative turns the edge filter off)")
    group.add_argument("--no-stitch", action="store_true",
                       help="do not join the masks of an object cut by tile borders into one "
                            "object; masks cut by a border shared with a neighbour tile are "
                            "dropped, which loses objects larger than about half the overlap "
                            "that straddle a seam (the behaviour before seam stitching)")
    group.add_argument("--min-region-area", type=non_negative_int, default=0, metavar="PX",
                       help="fill holes and remove islands smaller than PX pixels (default 0)")
    group.add_argument("--min-area", type=non_negative_int, default=0, metavar="PX",
                       help="drop objects smaller than PX pixels (default 0)")
    group.add_argument("--max-area", type=positive_int, default=None, metavar="PX",
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
    from napari_sam.core.automatic.decode import SegmentConfig
    from napari_sam.core.automatic.distributed import dask_executor
    from napari_sam.core.progress import run_with_bar
    from napari_sam.errors import InputError

    options = generation_options(args)
    try:
        SegmentConfig(**options)  # bad combinations fail before the model loads
    except ValueError as exc:
        raise InputError(f"segment: {exc}") from exc
    pipeline.check_inputs(args.inputs, args.out, embeddings=args.embeddings,
                          overwrite=args.overwrite)
    model = load_model_from_args(args)
    config = pipeline.config_for_model(getattr(model, "model_name", None), options)
    tiling = tiling_from_args(args)
    use_dask = args.scheduler is not None or args.workers is not None
    context = (dask_executor(scheduler=args.scheduler, workers=args.workers) if use_dask
               else _no_executor())
    with context as executor:
        for src in args.inputs:
            gen = pipeline.segment_file(
                src, args.out, model, embeddings=args.embeddings, batch_size=args.batch_size,
                config=config, executor=executor, overwrite=args.overwrite,
                model_name=getattr(model, "model_name", None), **tiling)
            summary = run_with_bar(gen, disable=True if args.quiet else None)
            print(summary.line(), flush=True)
    return 0


def _no_executor():
    import contextlib

    return contextlib.nullcontext(None)

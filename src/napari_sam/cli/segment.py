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
from napari_sam.core.automatic.settings import (
    POINT_MODES,
    REFINE_MODES,
    SegmentConfig,
    parse_scales,
)


def add_generation_options(parser: argparse.ArgumentParser) -> None:
    """The automatic generator's options: SegmentConfig's fields (reference names), with
    its defaults."""
    d = SegmentConfig()
    group = parser.add_argument_group("automatic generation")
    group.add_argument("--points-per-side", type=positive_int, default=d.points_per_side,
                       metavar="N", help="prompt points per tile side (default %(default)s)")
    group.add_argument("--points", choices=POINT_MODES, default=d.points,
                       help="coarse: decode the point grid coarse-to-fine, a sparse grid first "
                            "and then finer points only where no accepted mask lies and the "
                            "image has an edge nearby that is not an accepted mask's outline, "
                            "the finest level's points moved onto the strongest blob of their "
                            "grid cell (default; about a third of the decoder calls of the full "
                            "grid on the README's benchmark); full: every point of the grid, as the SAM "
                            "paper's generator (recorded in objects.gpkg's metadata)")
    group.add_argument("--point-levels", type=positive_int, default=d.point_levels, metavar="N",
                       help="coarse-to-fine levels, each doubling the density up to "
                            "--points-per-side (default 3: 1/4, 1/2, full)")
    group.add_argument("--cover-iou", type=float, default=d.cover_iou, metavar="T",
                       help="coarse points: at full resolution the finest level's points "
                            "under an accepted mask are still decoded when every such mask "
                            "has a predicted IoU under T (default %(default)s; 0: never)")
    group.add_argument("--scales", type=_scales, default=d.scales, metavar="1,2,4",
                       help="also segment the raster downscaled by these factors (a pyramid "
                            "level when the file has one) and merge the objects across "
                            "scales: the whole object found downscaled wins over its "
                            "full-resolution fragments, small objects keep full resolution; "
                            "each scale gets the same points per tile side and its masks are "
                            "upsampled smoothly (default 1,2,4; 1 for one scale)")
    group.add_argument("--refine", choices=REFINE_MODES, default=d.refine,
                       help="decode each mask that passes the filters once more "
                            "from its point and its own mask (one mask-to-mask step, SAM 2's "
                            "use_m2m), filters applied to the refined mask: coarse: the "
                            "downscaled passes only (large objects; about a quarter more decoder "
                            "calls on the README's benchmark); all: every pass (about 3x the "
                            "calls); none: no pass (default %(default)s); recorded in "
                            "objects.gpkg's metadata")
    group.add_argument("--points-per-batch", type=positive_int, default=d.points_per_batch,
                       metavar="N",
                       help="points per decoder call (default 16 on a CPU, measured fastest "
                            "there; 64 on a GPU)")
    group.add_argument("--pred-iou-thresh", type=fraction, default=None, metavar="T",
                       help=f"keep masks whose predicted IoU exceeds T (default: the model's; "
                            f"{d.pred_iou_thresh} for the official models, lower for the embedded "
                            f"sam_lite0 and sam_tiny, whose IoU heads score lower)")
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
    group.add_argument("--min-area", type=non_negative_int, default=d.min_area,
                       metavar="PX", help=f"drop objects smaller than PX pixels (default "
                                          f"{d.min_area}: the decoder's specks; 0 keeps all)")
    group.add_argument("--max-area", type=positive_int, default=d.max_area, metavar="PX",
                       help="drop objects larger than PX pixels (default: no limit but "
                            "--max-area-fraction)")
    group.add_argument("--max-area-fraction", type=fraction, default=d.max_area_fraction,
                       metavar="F", help=f"drop objects covering more than F of the raster "
                                         f"(default {d.max_area_fraction}: background "
                                         f"such as sea or sky; 1 keeps them)")


def _scales(text: str) -> tuple[int, ...]:
    """argparse type: increasing positive factors starting at 1, comma-separated."""
    try:
        return parse_scales(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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
    parser.add_argument("--join-planes", action="store_true",
                        help="stacks (OME-Zarr with a z or t axis, segmented plane by plane "
                             "into DIR/<stem>/labels.zarr): objects overlapping in consecutive "
                             "planes get one id (3D objects, or tracks through t); default: "
                             "one id per object and plane")
    parser.add_argument("--overlay", action="store_true",
                        help="also write DIR/<stem>/overlay.png: the raster (read downscaled "
                             "to at most 2048 px on its longer side) with each object tinted "
                             "and outlined, for a quick look (rasters, not stacks)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing DIR/<stem> folders")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def generation_options(args: argparse.Namespace) -> dict:
    """SegmentConfig fields from the parsed options (thresholds left out when not given)."""
    options = {
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "points": args.points,
        "point_levels": args.point_levels,
        "cover_iou": args.cover_iou,
        "scales": args.scales,
        "refine": args.refine,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh,
        "box_nms_thresh": args.box_nms_thresh,
        "edge_margin": args.edge_margin,
        "min_region_area": args.min_region_area,
        "min_area": args.min_area,
        "max_area": args.max_area,
        "max_area_fraction": args.max_area_fraction,
        "stitch_seams": not args.no_stitch,
    }
    for key in ("pred_iou_thresh", "stability_score_thresh"):
        if options[key] is None:  # the model's own default, chosen once it is loaded
            del options[key]
    return options


def run(args: argparse.Namespace) -> int:
    from napari_sam.cli.common import load_model_from_args
    from napari_sam.core.automatic import run as pipeline
    from napari_sam.core.automatic.stack_file import segment_stack_file, stack_axes_of
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
    stacks = [src for src in args.inputs if stack_axes_of(src) is not None]
    rasters = [src for src in args.inputs if src not in stacks]
    tiling = tiling_from_args(args)
    for src in stacks:  # z/t: plane by plane into OME-Zarr labels
        gen = segment_stack_file(
            src, args.out, model, join=args.join_planes, overwrite=args.overwrite,
            config=pipeline.config_for_model(model.model_name, options),
            tile_size=tiling.get("tile_size"), overlap=tiling.get("overlap"))
        print(run_with_bar(gen, disable=True if args.quiet else None).line(), flush=True)
    if rasters:
        pipeline.segment(rasters, args.out, model=model, batch_size=args.batch_size,
                         embeddings=args.embeddings, scheduler=args.scheduler,
                         workers=args.workers, overwrite=args.overwrite, progress=not args.quiet,
                         report=lambda summary: _report(summary, overlay=args.overlay,
                                                        bands=args.bands),
                         **tiling, **options)
    return 0


def _report(summary, *, overlay: bool, bands=None) -> None:
    """Print a raster's summary line; with ``overlay``, draw its overlay.png first (showing
    ``bands``, those segmented)."""
    if overlay and summary.outputs is not None and summary.input is not None:
        from napari_sam.core.io.overlay import overlay_png
        from napari_sam.core.io.raster_open import open_raster

        overlay_png(open_raster(summary.input), summary.outputs.objects,
                    summary.outputs.folder / "overlay.png", bands=bands)
    print(summary.line(), flush=True)

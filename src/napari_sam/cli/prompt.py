"""``napari-sam prompt INPUT --prompts FILE --out DIR``: one mask per prompted object.

FILE holds points and/or boxes (GeoPackage, GeoJSON or CSV; map coordinates
when INPUT has a CRS, else pixels; a boolean ``positive`` column for points;
an ``object`` column groups features into one object). Writes
DIR/<stem>/labels.tif (labels.zarr for zarr input), objects.gpkg and
objects.csv, as ``segment`` does.
"""

from __future__ import annotations

import argparse

from napari_sam.cli.common import add_model_options, add_tiling_options, tiling_from_args
from napari_sam.errors import InputError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "prompt", help="segment the objects given by points and boxes in a file",
        description="Segment the objects prompted by points and/or boxes in FILE (GeoPackage, "
                    "GeoJSON or CSV with x,y or xmin,ymin,xmax,ymax columns; map coordinates "
                    "when INPUT has a CRS, else pixels). Points carry a boolean 'positive' "
                    "column (default true); features sharing an 'object' value form one "
                    "object, others are one object each. Label ids follow the objects' order "
                    "in FILE; where masks overlap the higher predicted IoU wins the pixel.")
    parser.add_argument("input", metavar="INPUT", help="raster to segment")
    parser.add_argument("--prompts", required=True, metavar="FILE", help="points and boxes")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_model_options(parser)
    add_tiling_options(parser)
    parser.add_argument("--embeddings", metavar="STORE.zarr", default=None,
                        help="embedding store made by `napari-sam embed` for INPUT (tiles are "
                             "read from it and missing ones added); default: embed as needed")
    parser.add_argument("--zoom-limit", type=int, default=None, metavar="PX",
                        help="decode prompts larger than PX model-input pixels on a window "
                             "downscaled by 2, 4, ..., and clicks also downscaled by 2, keeping "
                             "that mask for a large object (default: the model's own limit, "
                             "192 for sam_tiny, none for the official models; 0: never)")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR/<stem>")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from napari_sam.cli.common import load_model_from_args
    from napari_sam.core.automatic.run import check_inputs
    from napari_sam.core.progress import run_with_bar
    from napari_sam.core.prompt.run import prompt_file

    if args.zoom_limit is not None and args.zoom_limit < 0:
        raise InputError(f"--zoom-limit {args.zoom_limit}: give 0 (never zoom out) or a "
                         "positive number of pixels")
    check_inputs([args.input], args.out, overwrite=args.overwrite)
    model = load_model_from_args(args)
    gen = prompt_file(args.input, args.prompts, args.out, model, embeddings=args.embeddings,
                      overwrite=args.overwrite, model_name=model.model_name,
                      zoom_limit="auto" if args.zoom_limit is None else (args.zoom_limit or None),
                      **tiling_from_args(args))
    summary = run_with_bar(gen, disable=True if args.quiet else None)
    print(summary.line(), flush=True)
    return 0

"""``napari-sam prompt INPUT --prompts FILE --out DIR``: one mask per prompted object.

FILE holds points and/or boxes (GeoPackage, GeoJSON or CSV; map coordinates
when INPUT has a CRS, else pixels; a boolean ``positive`` column for points;
an ``object`` column groups features into one object). Writes
DIR/<stem>/labels.tif (labels.zarr for zarr input), objects.gpkg and
objects.csv, as ``segment`` does.

With ``--propagate z|t`` INPUT is a stack (OME-Zarr or zarr with a z or t
axis): the objects are prompted on ``--plane`` (or each on its file's
``plane`` column) and followed through that axis, all together with SAM 2's
memory for a SAM 2.1 model, one by one plane to plane otherwise; writes
DIR/<stem>/labels.zarr (OME-Zarr labels of the stack's shape) and
objects.csv (one row per object and plane). See
:mod:`napari_sam.core.prompt.propagate_file`.
"""

from __future__ import annotations

import argparse

from napari_sam.cli.common import (
    add_model_options,
    add_tiling_options,
    positive_int,
    tiling_from_args,
)
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
                             "downscaled by 2, 4, ..., and (sam_tiny) clicks also downscaled by "
                             "2, keeping that mask for a large object (default: the model's own "
                             "limit, 384 for sam_lite0, 192 for sam_tiny, none for the official "
                             "models; 0: never)")
    follow = parser.add_argument_group("stacks (volumes, time series)")
    follow.add_argument("--propagate", metavar="AXIS", default=None,
                        help="follow the objects through this axis of a stack (z or t; "
                             "OME-Zarr/zarr INPUT): SAM 2.1 models track all objects with "
                             "their memory, other models follow each object plane to plane")
    follow.add_argument("--plane", metavar="I[,J]", default=None,
                        help="with --propagate: the plane the prompts are on, one index per "
                             "stack axis (e.g. 12, or 3,12 for t=3, z=12; default 0); a "
                             "'plane' column in FILE overrides the index along AXIS per "
                             "object")
    follow.add_argument("--max-planes", type=positive_int, default=None, metavar="N",
                        help="with --propagate: follow at most N planes each way from an "
                             "object's prompted plane (SAM 2.1: from the earliest prompted "
                             "plane, as all objects share the passes; default: the whole "
                             "axis)")
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
    if args.propagate is None and (args.plane is not None or args.max_planes is not None):
        raise InputError("--plane and --max-planes go with --propagate z|t")
    check_inputs([args.input], args.out, overwrite=args.overwrite)
    if args.propagate is not None:
        return _propagate(args)
    model = load_model_from_args(args)
    gen = prompt_file(args.input, args.prompts, args.out, model, embeddings=args.embeddings,
                      overwrite=args.overwrite, model_name=model.model_name,
                      zoom_limit="auto" if args.zoom_limit is None else (args.zoom_limit or None),
                      **tiling_from_args(args))
    summary = run_with_bar(gen, disable=True if args.quiet else None)
    print(summary.line(), flush=True)
    return 0


def _propagate(args: argparse.Namespace) -> int:
    from napari_sam.cli.common import load_model_from_args
    from napari_sam.core.io.nd import stack_axes_of
    from napari_sam.core.progress import run_with_bar
    from napari_sam.core.prompt.propagate import PropagationSettings
    from napari_sam.core.prompt.propagate_file import propagate_stack_file

    if args.embeddings is not None:
        raise InputError("--embeddings is for 2D rasters; --propagate embeds each plane as "
                         "it goes")
    if stack_axes_of(args.input) is None:  # before loading a model
        raise InputError(f"{args.input}: --propagate needs a stack (an OME-Zarr or zarr store "
                         f"with a z or t axis)")
    model = load_model_from_args(args)
    tiling = tiling_from_args(args)
    gen = propagate_stack_file(args.input, args.prompts, args.out, model,
                               axis=args.propagate.lower(), plane_index=args.plane,
                               settings=PropagationSettings(max_planes=args.max_planes),
                               overwrite=args.overwrite, model_name=model.model_name,
                               **tiling)
    summary = run_with_bar(gen, disable=True if args.quiet else None)
    print(summary.line(), flush=True)
    return 0

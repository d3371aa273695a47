"""``napari-sam embed INPUT --out STORE.zarr``: embed every tile into a zarr store.

Resumes an interrupted store; refuses a store made with other settings unless
--overwrite. Exit 2 with one line on stderr for bad input (no store is left
behind when the input itself is unreadable).
"""

from __future__ import annotations

from napari_sam.cli.common import add_model_options, add_tiling_options, tiling_from_args


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed", help="embed every tile of a raster into a zarr store (resumable)",
        description="Embed every tile of INPUT (GeoTIFF/COG, TIFF, zarr or OME-Zarr) into a "
                    "zarr embedding store. An interrupted run resumes where it stopped; a store "
                    "made with other settings is refused unless --overwrite.")
    parser.add_argument("input", metavar="INPUT", help="raster to embed")
    parser.add_argument("--out", required=True, metavar="STORE.zarr",
                        help="embedding store to create or resume")
    add_model_options(parser)
    add_tiling_options(parser)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing store made with other settings")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from napari_sam.cli.common import load_model_from_args
    from napari_sam.core import progress
    from napari_sam.core.io.raster_open import open_raster
    from napari_sam.core.tiling.embed import embed_raster

    raster = open_raster(args.input)
    raster.signature()  # reads a few sampled windows: a damaged file fails before the model loads
    model = load_model_from_args(args)
    gen = embed_raster(raster, args.out, model, batch_size=args.batch_size, device=None,
                       overwrite=args.overwrite, **tiling_from_args(args))
    store = progress.run_with_bar(gen, disable=True if args.quiet else None)
    c = store.counts()
    print(f"{store.path}: {c['total']} tiles ({c['done']} embedded, {c['empty']} empty) "
          f"of {raster.height}x{raster.width} px, model {store.settings.model_name}")
    return 0

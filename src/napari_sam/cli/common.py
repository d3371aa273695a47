"""Options shared by subcommands, and model loading from them.

    add_model_options(parser)   --model, --checkpoint, --device, --batch-size
    add_tiling_options(parser)  --tile, --overlap, --scale, --bands
    load_model_from_args(args)  -> sam_model.Sam (eval, on the chosen device,
                                   ``model_name`` set)
    tiling_from_args(args)      -> dict(tile_size=, overlap=, scale=, bands=)
"""

from __future__ import annotations

import argparse

from napari_sam.core.device import DEVICE_CHOICES


def parse_bands(text: str) -> list[int]:
    """``"3,2,1"`` -> [3, 2, 1] (1-based band numbers)."""
    try:
        bands = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bands {text!r}: give band numbers like 1,2,3") from None
    if not bands or any(b < 1 for b in bands):
        raise argparse.ArgumentTypeError(f"--bands {text!r}: band numbers start at 1")
    return bands


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value} is negative")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def fraction(text: str) -> float:
    """argparse type: a number between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is not between 0 and 1")
    return value


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """--model, --checkpoint, --device, --batch-size."""
    group = parser.add_argument_group("model")
    group.add_argument("--model", metavar="NAME", default=None,
                       help="model name (default: sam_model.DEFAULT_MODEL, an embedded model; see "
                            "`napari-sam models list`)")
    group.add_argument("--checkpoint", metavar="PATH", default=None,
                       help="an official SAM / MobileSAM weights file; the architecture is "
                            "recognised from the file unless --model is given")
    group.add_argument("--device", choices=DEVICE_CHOICES, default="auto",
                       help="where to run the model (default auto: cuda, then mps, then cpu)")
    group.add_argument("--batch-size", type=positive_int, default=None, metavar="N",
                       help="tiles per encoder call (default 1 on a CPU, 4 on a GPU)")


def add_tiling_options(parser: argparse.ArgumentParser) -> None:
    """--tile, --overlap, --scale, --bands."""
    group = parser.add_argument_group("tiling")
    group.add_argument("--tile", type=positive_int, default=None, metavar="PX",
                       help="tile side in raster pixels (default: the model's input size)")
    group.add_argument("--overlap", type=non_negative_int, default=None, metavar="PX",
                       help="overlap between neighbouring tiles in pixels (default: tile/8)")
    group.add_argument("--scale", type=positive_int, default=None, metavar="N",
                       help="downscale factor for objects larger than a tile (a pyramid level "
                            "is used when the file has one; default 1)")
    group.add_argument("--bands", type=parse_bands, default=None, metavar="B,B,B",
                       help="1-based bands to use as RGB (default: the red/green/blue bands "
                            "when the file labels them, else the first three, else the single "
                            "band repeated)")


def load_model_from_args(args: argparse.Namespace):
    """Build the model named by --model/--checkpoint on --device (InputError when impossible)."""
    from napari_sam.core.models import load_model

    return load_model(getattr(args, "model", None), getattr(args, "checkpoint", None),
                      device=getattr(args, "device", "auto"))


def tiling_from_args(args: argparse.Namespace) -> dict:
    """Keyword arguments for the core engine from the tiling options."""
    return {"tile_size": getattr(args, "tile", None), "overlap": getattr(args, "overlap", None),
            "scale": getattr(args, "scale", None), "bands": getattr(args, "bands", None)}

"""The ``napari-sam`` command line: thin shells over ``napari_sam.core``.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``;
the parser stores the function to call in ``args.func``. Exit status: 0 done,
2 bad usage or bad input (one line on stderr, no traceback), 1 anything else.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_sam.errors import InputError

# Subcommand modules, in the order ``--help`` lists them.
SUBCOMMANDS = ["models", "embed", "segment", "prompt", "vectorize", "train", "evaluate"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-sam",
        description="Segment Anything for rasters of any size.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in SUBCOMMANDS:
        importlib.import_module(f"napari_sam.cli.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except InputError as exc:
        print(f"napari-sam: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("napari-sam: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""``napari-sam models``: list, download and verify checkpoints.

    napari-sam models list [--cache-dir DIR]
    napari-sam models download NAME [--cache-dir DIR] [--force] [--no-progress]
    napari-sam models verify NAME_OR_PATH [--cache-dir DIR]

A thin shell over :mod:`sam_model.weights`: every ``WeightsError`` (unknown
name, offline, damaged file) becomes an ``InputError``, i.e. exit status 2
and one line on stderr.
"""

from __future__ import annotations

import argparse
import sys

from napari_sam.errors import InputError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "models", help="list, download and verify model checkpoints",
        description="List, download and verify SAM / MobileSAM checkpoints. The cache is "
                    "$NAPARI_SAM_CACHE, else the platform cache folder (e.g. ~/.cache/napari-sam).")
    sub = parser.add_subparsers(dest="models_command", metavar="ACTION")
    sub.required = True

    p_list = sub.add_parser("list", help="show the known checkpoints and which are present")
    _cache_option(p_list)
    p_list.set_defaults(func=run_list)

    p_dl = sub.add_parser("download", help="download a checkpoint into the cache (resumable)")
    p_dl.add_argument("name", metavar="NAME", help="model name (see `napari-sam models list`)")
    _cache_option(p_dl)
    p_dl.add_argument("--force", action="store_true", help="download again even if present")
    p_dl.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_dl.set_defaults(func=run_download)

    p_ver = sub.add_parser("verify", help="check a checkpoint's size, sha256 and key layout")
    p_ver.add_argument("target", metavar="NAME_OR_PATH",
                       help="a model name (its cached file) or the path of a checkpoint file")
    _cache_option(p_ver)
    p_ver.set_defaults(func=run_verify)


def _cache_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cache-dir", metavar="DIR", default=None,
                        help="weights folder (default: $NAPARI_SAM_CACHE or the platform cache)")


def _size_text(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.1f} MB"


def run_list(args: argparse.Namespace) -> int:
    from sam_model import DEFAULT_MODEL, weights

    rows = [("NAME", "FILE", "SIZE", "CACHED", "PATH")]
    for entry in weights.list_weights():
        path = weights.target_path(entry.name, args.cache_dir)
        present = weights.cached_path(entry.name, args.cache_dir) is not None
        if entry.packaged is not None:
            status = "packaged" if present else "missing"
            size = path.stat().st_size if present else None
        else:
            status = "yes" if present else ("partial" if path.with_name(path.name + ".part").exists()
                                            else "no")
            size = entry.size
        rows.append((entry.name, entry.filename, _size_text(size), status, str(path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(w) for cell, w in zip(row[:-1], widths)]
        print("  ".join([*cells, row[-1]]).rstrip())
    print(f"\ndefault: {DEFAULT_MODEL} (used when no --model or --checkpoint is given)")
    return 0


def run_download(args: argparse.Namespace) -> int:
    from sam_model import weights

    try:
        path = weights.download(args.name, args.cache_dir, force=args.force,
                                progress=not args.no_progress)
    except weights.WeightsError as exc:
        raise InputError(str(exc)) from exc
    print(path)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from sam_model import weights

    try:
        report = weights.verify(args.target, args.cache_dir)
    except weights.WeightsError as exc:
        raise InputError(str(exc)) from exc
    for line in report.lines():
        print(line)
    if not report.ok:
        # the report went to stdout; the one-line reason goes to stderr via InputError
        sys.stdout.flush()
        raise InputError(f"{report.path}: " + "; ".join(report.problems))
    return 0

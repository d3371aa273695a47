"""Checks on output paths made before any work, so that a run writes all or nothing.

An export with two outputs (labels and polygons) must not write the first and
then fail on the second: :func:`check_outputs` looks at every path first (an
existing file without ``overwrite``, a folder that is a file or cannot be
written, an extension the format does not take) and names the output, the
path and the problem.
"""

from __future__ import annotations

import os
from pathlib import Path

from napari_sam.errors import InputError, OutputExistsError


def check_output_path(path: str | os.PathLike, *, what: str, overwrite: bool) -> Path:
    """Refuse ``path`` (named ``what`` in the message) when it cannot be written.

    The nearest existing ancestor of its folder must be a writable folder
    (folders still missing would be made there); an existing ``path`` needs
    ``overwrite``. Nothing is created here.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{what} {path}: already exists (turn on overwrite to "
                                f"replace it)")
    if path.is_dir() and path.suffix.lower() != ".zarr":
        raise InputError(f"{what} {path}: is a folder, not a file name")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(f"{what} {path}: cannot be made, {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise InputError(f"{what} {path}: no permission to write in {ancestor}")
    return path


def check_outputs(labels_path: str, vectors_path: str, *, vector_format: str | None,
                  overwrite: bool) -> None:
    """Check the labels file and the polygons file of one export ("" skips one).

    The message of a refusal ends with "nothing was written".
    """
    from napari_sam.core.io.labels import labels_format
    from napari_sam.core.io.vectors import resolve_format

    try:
        if labels_path:
            check_output_path(labels_path, what="labels file", overwrite=overwrite)
            labels_format(labels_path)
        if vectors_path:
            check_output_path(vectors_path, what="polygons file", overwrite=overwrite)
            resolve_format(vectors_path, vector_format)
    except (InputError, OutputExistsError) as exc:
        raise type(exc)(f"{exc}; nothing was written") from exc

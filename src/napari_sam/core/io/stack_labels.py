"""Labels of a stack (z, t, ... then y, x) as an OME-Zarr label image.

``labels.zarr``: a zarr v3 group whose array ``0`` is uint32 with one chunk
per plane and 512 px block, and whose attributes say ``ome.multiscales``
(the axes by name: the stack axes, then y and x) and ``ome.image-label``, so
napari (this plugin's reader) and OME tools open it as labels. Written plane
by plane: a stack is never held in memory as one array.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from napari_sam.core.io.atomic import atomic_path

_AXIS_TYPES = {"t": "time", "c": "channel"}


def create_stack_labels(path: str | os.PathLike, shape: tuple[int, ...], axes: str, *,
                        block: int = 512, attributes: dict | None = None) -> Any:
    """Make the OME-Zarr label group at ``path``; its (empty) array to write planes into.

    ``axes``: one letter per axis of ``shape``, ending in ``yx``.
    """
    import zarr

    if len(axes) != len(shape) or not axes.endswith("yx"):
        raise ValueError(f"axes {axes!r} must name every axis of {shape} and end in 'yx'")
    group = zarr.open_group(str(path), mode="w", zarr_format=3)
    height, width = shape[-2:]
    array = group.create_array("0", shape=tuple(shape), dtype="uint32", fill_value=0,
                               chunks=(1,) * (len(shape) - 2) + (min(block, height),
                                                                  min(block, width)),
                               dimension_names=tuple(axes))
    group.attrs.update({"ome": {"version": "0.5", "multiscales": [{
        "name": "labels",
        "axes": [{"name": a, "type": _AXIS_TYPES.get(a, "space")} for a in axes],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0] * len(axes)}]}]}], "image-label": {}},
        "napari_sam": {"kind": "labels", **(attributes or {})}})
    return array


def write_stack_labels(path: str | os.PathLike, labels: Any, axes: str, *,
                       overwrite: bool = False) -> Path:
    """Write ``labels`` (numpy, dask or a SparseStack, shape ``stack... + (h, w)``)
    plane by plane into an OME-Zarr label image at ``path`` (atomically)."""
    shape = tuple(int(n) for n in labels.shape)
    with atomic_path(path, overwrite) as tmp:
        array = create_stack_labels(tmp, shape, axes)
        for index in np.ndindex(*shape[:-2]):
            plane = np.asarray(labels[index])
            if plane.any():
                array[index] = plane.astype(np.uint32, copy=False)
    return Path(path)

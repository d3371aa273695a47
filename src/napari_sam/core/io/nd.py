"""Rasters with more axes than (y, x): z stacks, time series, channels.

SAM segments 2D images, so an nD raster is handled one plane at a time. An
:class:`NdAxes` names every axis of an array (one letter each: ``y`` and
``x``, ``c`` for channels, ``z``, ``t``, or ``q`` for any other axis) and
says which plane a position picks. :func:`plane` cuts one plane out of the
array without reading the rest (numpy views, dask and zarr slices stay lazy):
a ``(y, x)`` array, or ``(y, x, c)`` when there is a channel axis, which core
then reads as bands.

Axis names come, in order of preference, from the caller (the user's choice
in the widget, ``--axes`` on the command line), from metadata (napari axis
labels, OME-Zarr ``axes``, zarr ``dimension_names``), else from the number of
dimensions: ``zyx``, ``tzyx``, ``tczyx``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_sam.errors import InputError

_NAMES = {"z": "z", "t": "t", "time": "t", "c": "c", "channel": "c", "channels": "c",
          "band": "c", "bands": "c", "y": "y", "x": "x", "depth": "z", "plane": "z",
          "slice": "z", "frame": "t", "frames": "t", "row": "y", "col": "x", "rows": "y",
          "cols": "x"}


@dataclass(frozen=True, kw_only=True)
class NdAxes:
    """Names of an array's axes (``axes``, one letter per axis) and its ``shape``.

    ``y`` and ``x`` are required; ``c`` (at most one) is the channel axis.
    The other axes are the *stack* axes, in array order: a plane is chosen
    by one integer per stack axis.
    """

    axes: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes", self.axes.lower())
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if len(self.axes) != len(self.shape):
            raise InputError(f"axes {self.axes!r} do not match an array of shape {self.shape}")
        for letter in "yx":
            if self.axes.count(letter) != 1:
                raise InputError(f"axes {self.axes!r} need exactly one {letter!r}")
        if self.axes.count("c") > 1:
            raise InputError(f"axes {self.axes!r}: at most one channel axis 'c'")

    @property
    def stack_axes(self) -> tuple[int, ...]:
        """Positions of the axes that choose a plane (all but y, x and c)."""
        return tuple(i for i, a in enumerate(self.axes) if a not in "yxc")

    @property
    def stack_shape(self) -> tuple[int, ...]:
        """Sizes of the stack axes (``()`` for a single plane)."""
        return tuple(self.shape[i] for i in self.stack_axes)

    @property
    def stack_names(self) -> str:
        return "".join(self.axes[i] for i in self.stack_axes)

    @property
    def plane_shape(self) -> tuple[int, int]:
        """``(height, width)`` of one plane."""
        return self.shape[self.axes.index("y")], self.shape[self.axes.index("x")]

    @property
    def channels(self) -> int:
        return self.shape[self.axes.index("c")] if "c" in self.axes else 1

    @property
    def labels_shape(self) -> tuple[int, ...]:
        """Shape of labels for this array: the stack axes then (y, x)."""
        return self.stack_shape + self.plane_shape

    def is_stack(self) -> bool:
        return bool(self.stack_axes)

    def key(self, index: Sequence[int]) -> tuple[Any, ...]:
        """The array index of plane ``index`` (one integer per stack axis)."""
        index = tuple(int(i) for i in index)
        if len(index) != len(self.stack_axes):
            raise InputError(f"a plane of axes {self.axes!r} needs {len(self.stack_axes)} "
                             f"indices, got {index}")
        out: list[Any] = [slice(None)] * len(self.axes)
        for position, value in zip(self.stack_axes, index):
            size = self.shape[position]
            if not 0 <= value < size:
                raise InputError(f"plane index {value} outside 0..{size - 1} on axis "
                                 f"{self.axes[position]!r}")
            out[position] = value
        return tuple(out)


def plane(array: Any, axes: NdAxes, index: Sequence[int]) -> Any:
    """Plane ``index`` of ``array`` as ``(y, x)`` or ``(y, x, c)``, lazily where it can be."""
    import numpy as np

    cut = array[axes.key(index)]
    kept = "".join(a for a in axes.axes if a in "yxc")
    order = [kept.index(a) for a in "yxc" if a in kept]
    if order == list(range(len(order))):
        return cut
    transpose = getattr(cut, "transpose", None)
    return transpose(order) if transpose is not None else np.transpose(cut, order)


def guess_axes(ndim: int, *, names: Sequence[Any] | None = None, rgb: bool = False) -> str:
    """Axis letters for an ``ndim``-d array (``rgb``: the last axis holds colours).

    ``names``: napari axis labels, OME-Zarr axis names or zarr dimension names;
    they are used when they name y and x (unknown names become ``q``, or ``z``
    for the first unnamed axis of a 3-d array).
    """
    if names is not None and len(names) == ndim:
        letters = "".join(_NAMES.get(str(n).lower(), "q") for n in names)
        if letters.count("y") == 1 and letters.count("x") == 1 and letters.count("c") <= 1:
            return letters
    if rgb:
        return guess_axes(ndim - 1) + "c"
    if ndim == 2:
        return "yx"
    if ndim < 2:
        raise InputError(f"a {ndim}-d array is not an image")
    return {3: "zyx", 4: "tzyx", 5: "tczyx"}.get(ndim, "q" * (ndim - 5) + "tczyx")


def ome_axes(path: Any) -> str | None:
    """The axis letters of an OME-Zarr image's ``multiscales`` metadata (None without)."""
    import zarr

    try:
        node = zarr.open(store=str(path), mode="r")
    except Exception:  # noqa: BLE001 - not a zarr store: no OME axes
        return None
    attrs = dict(node.attrs.asdict()) if hasattr(node.attrs, "asdict") else dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        return None
    axes = multiscales[0].get("axes")
    if not axes:
        return None
    names = [a["name"] if isinstance(a, dict) else a for a in axes]
    return guess_axes(len(names), names=names)


def level0_array(path: Path):
    """The full-resolution zarr array of a zarr array or OME-Zarr image at ``path``."""
    import zarr

    node = zarr.open(store=str(path), mode="r")
    if isinstance(node, zarr.Array):
        return node
    attrs = dict(node.attrs.asdict()) if hasattr(node.attrs, "asdict") else dict(node.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        raise InputError(f"{path}: a zarr group without OME multiscales metadata")
    return node[multiscales[0]["datasets"][0]["path"]]


def stack_axes_of(source) -> NdAxes | None:
    """The axes of a stack input (None for a 2D raster or anything but zarr)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source)
    if not path.is_dir():
        return None
    axes = ome_axes(path)
    try:
        array = level0_array(path)
    except Exception:  # noqa: BLE001 - not a readable zarr image: not a stack
        return None
    if axes is None:
        names = getattr(getattr(array, "metadata", None), "dimension_names", None)
        if not names or not any(str(n).lower() in ("z", "t", "time") for n in names):
            return None
        axes = guess_axes(array.ndim, names=names)
    found = NdAxes(axes=axes, shape=tuple(array.shape))
    return found if found.is_stack() else None

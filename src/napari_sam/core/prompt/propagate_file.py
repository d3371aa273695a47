"""``napari-sam prompt STACK --propagate z|t``: prompted objects followed through a stack.

The objects of a prompt file (points and boxes, see
:mod:`napari_sam.core.io.prompt_file`; pixels of a plane) are prompted on one
plane of an OME-Zarr (or zarr) stack, ``plane`` (all stack axes' indices), or
each on the plane its file's ``plane`` column gives along the axis followed;
then followed along that axis (``z`` or ``t``) by
:func:`~napari_sam.core.prompt.propagate_objects.propagate_objects`: with a
SAM 2 model all together with SAM 2's memory, with another model one by one
plane to plane. Planes are read one at a time, each with its own
normalisation, as the napari widget does.

Writes ``DIR/<stem>/`` when everything is done, atomically (an interrupted
run leaves nothing; an existing folder is refused unless ``overwrite``):

- ``labels.zarr``: an OME-Zarr label image of the stack's shape (the stack
  axes then y, x), uint32, one id per object on every plane it reached (where
  two objects claim a pixel the smaller one wins);
- ``objects.csv``: one row per object and plane: ``id``, ``plane`` (the stack
  index as text, ``"12"`` or ``"3,12"``), ``prompted`` (the object's prompt
  plane), ``area`` (pixels) and the box ``x0, y0, x1, y1`` (end exclusive).
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from napari_sam.core.automatic.stack_file import StackSummary
from napari_sam.core.io.atomic import atomic_path, check_writable
from napari_sam.core.io.nd import NdAxes, level0_array, plane, stack_axes_of
from napari_sam.core.io.prompt_file import read_prompts
from napari_sam.core.io.raster_open import open_raster
from napari_sam.core.io.stack_labels import create_stack_labels
from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.prompt.predictor import RasterPredictor
from napari_sam.core.prompt.propagate import PropagationSettings
from napari_sam.core.prompt.propagate_objects import (
    PlanePrompt,
    Tracks,
    paint_plane,
    propagate_objects,
)
from napari_sam.errors import InputError

PLANE_PREDICTORS = 4  # planes whose predictors (and embeddings) are kept


def parse_plane(text: str | Sequence[int] | None, axes: NdAxes, axis: str, source) -> tuple:
    """The start plane from ``"12"`` or ``"3,12"`` (one index per stack axis); a single
    number is the index along ``axis`` when the stack has one stack axis."""
    names = axes.stack_names
    if text is None:
        return tuple(0 for _ in names)
    try:
        values = tuple(int(v) for v in (text.split(",") if isinstance(text, str) else text))
    except ValueError:
        raise InputError(f"--plane {text!r}: give plane numbers like 12 or 3,12") from None
    if len(values) != len(names):
        raise InputError(f"{source}: --plane {text!r} needs {len(names)} number(s), one per "
                         f"stack axis {', '.join(names)}")
    for value, name, n in zip(values, names, axes.stack_shape):
        if not 0 <= value < n:
            raise InputError(f"{source}: --plane {text!r}: {name} index {value} outside "
                             f"0..{n - 1}")
    return values


def stack_axis(axes: NdAxes, axis: str | None, source) -> int:
    """Which entry of a plane index ``axis`` (``z``, ``t``) moves."""
    names = axes.stack_names
    if axis is None:
        if len(names) != 1:
            raise InputError(f"{source}: stack axes {names!r}; say which to follow "
                             f"(--propagate {' or '.join(names)})")
        return 0
    if axis not in names:
        raise InputError(f"{source}: --propagate {axis}: the stack has no {axis!r} axis "
                         f"(its axes: {axes.axes})")
    return names.index(axis)


def propagate_stack_file(source, prompts: str | os.PathLike, out_dir, model, *,
                         axis: str | None = None, plane_index: str | Sequence[int] | None = None,
                         settings: PropagationSettings | None = None,
                         tile_size: int | None = None, overlap: int | None = None,
                         scale: int | None = None, bands: Sequence[int] | None = None,
                         overwrite: bool = False, model_name: str | None = None
                         ) -> ProgressGen[StackSummary]:
    """Follow the objects prompted in ``prompts`` through the stack ``source`` into
    ``out_dir/<stem>/`` (see the module docstring). ``tile_size``, ``overlap``,
    ``scale``, ``bands``: each plane's tiling and bands, as for ``prompt``."""
    from napari_sam.core.io.outputs import input_stem

    start = time.perf_counter()
    path = Path(source)
    axes = stack_axes_of(path)
    if axes is None:
        raise InputError(f"{path}: --propagate needs a stack (an OME-Zarr or zarr store with a "
                         f"z or t axis)")
    moving = stack_axis(axes, axis, path)
    base = parse_plane(plane_index, axes, axes.stack_names[moving], path)
    folder = check_writable(Path(out_dir) / input_stem(path), overwrite)
    array = level0_array(path)
    predictors: OrderedDict = OrderedDict()

    def predictor_for(index) -> RasterPredictor:
        index = tuple(int(i) for i in index)
        if index not in predictors:
            predictors[index] = RasterPredictor(
                model=model, raster=open_raster(plane(array, axes, index)), tile_size=tile_size,
                overlap=overlap, scale=scale, bands=bands, model_name=model_name)
            while len(predictors) > PLANE_PREDICTORS:
                predictors.popitem(last=False)
        return predictors[index]

    size = axes.stack_shape[moving]
    objects = read_prompts(prompts, predictor_for(base).raster)
    plane_prompts = []
    for obj in objects:
        index = list(base)
        if obj.plane is not None:
            if obj.plane >= size:
                raise InputError(f"{prompts}: {obj.key} is on plane {obj.plane}; the stack has "
                                 f"{size} along {axes.stack_names[moving]!r}")
            index[moving] = obj.plane
        plane_prompts.append(PlanePrompt(id=obj.id, plane=tuple(index), points=obj.points,
                                         labels=obj.labels, box=obj.box))
    tracks = yield from propagate_objects(predictor_for, plane_prompts, axis=moving, size=size,
                                          settings=settings)
    yield Progress("write", 0, 1, str(folder))
    planes = _write(folder, tracks, axes, {p.id: p.plane for p in plane_prompts},
                    axes.stack_names[moving], overwrite)
    yield Progress("write", 1, 1, str(folder))
    return StackSummary(input=path, folder=folder,
                        n_objects=sum(bool(t) for t in tracks.values()), n_planes=planes,
                        seconds=time.perf_counter() - start)


def _write(folder: Path, tracks: Tracks, axes: NdAxes, prompted: dict, axis: str,
           overwrite: bool) -> int:
    """labels.zarr and objects.csv into ``folder`` atomically; the number of planes written."""
    import pandas as pd

    by_plane: dict[tuple, list] = {}
    rows = []
    for obj, found in sorted(tracks.items()):
        for index, placed in sorted(found.items()):
            by_plane.setdefault(tuple(index), []).append((obj, placed))
            window, mask = placed
            rows.append({"id": obj, "plane": ",".join(map(str, index)),
                         "prompted": ",".join(map(str, prompted[obj])),
                         "area": int(mask.sum()), "x0": window.x0, "y0": window.y0,
                         "x1": window.x0 + window.width, "y1": window.y0 + window.height})
    table = pd.DataFrame(rows, columns=["id", "plane", "prompted", "area", "x0", "y0", "x1",
                                        "y1"])
    with atomic_path(folder, overwrite) as tmp:
        tmp.mkdir(parents=True)
        labels = create_stack_labels(tmp / "labels.zarr", axes.labels_shape,
                                     axes.stack_names + "yx",
                                     attributes={"propagated": axis})
        for index in sorted(by_plane):
            labels[index] = paint_plane(axes.plane_shape, by_plane[index])
        table.to_csv(tmp / "objects.csv", index=False)
    return len(by_plane)


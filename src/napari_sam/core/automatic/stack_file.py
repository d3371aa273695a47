"""``napari-sam segment`` on a stack file: OME-Zarr with z/t axes -> OME-Zarr labels.

:func:`stack_axes_of` tells whether an input is a stack (an OME-Zarr image
whose axes include z or t, or a zarr array whose ``dimension_names`` do);
:func:`segment_stack_file` segments every plane (see
:mod:`napari_sam.core.automatic.stack`) and writes ``DIR/<stem>/``
atomically:

- ``labels.zarr``: an OME-Zarr label image (``ome.multiscales`` with the
  stack axes then y, x; ``ome.image-label``), uint32, one chunk per plane
  and 512 px block; ids unique over the stack, and one id per 3D object
  (or track) with ``join``;
- ``objects.csv``: one row per object and plane (``id``, ``plane`` and the
  2D table's columns).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from napari_sam.core.automatic.settings import SegmentConfig
from napari_sam.core.automatic.stack import object_table, segment_planes
from napari_sam.core.io.atomic import atomic_path, check_writable
from napari_sam.core.io.nd import level0_array, stack_axes_of
from napari_sam.core.io.stack_labels import create_stack_labels
from napari_sam.core.progress import ProgressGen
from napari_sam.errors import InputError


@dataclass(frozen=True)
class StackSummary:
    """One stack input's run."""

    input: Path
    folder: Path
    n_objects: int
    n_planes: int
    seconds: float

    def line(self) -> str:
        return (f"{self.input}: {self.n_objects} objects on {self.n_planes} planes in "
                f"{self.seconds:.1f} s -> {self.folder}")


def segment_stack_file(source, out_dir, model, *, config: SegmentConfig | None = None,
                       join: bool = False, min_overlap: float = 0.5,
                       tile_size: int | None = None, overlap: int | None = None,
                       overwrite: bool = False, model_name: str | None = None,
                       folder_name: str | None = None) -> ProgressGen[StackSummary]:
    """Segment every plane of the stack ``source`` into ``out_dir/<stem>/``."""
    from napari_sam.core.io.outputs import input_stem

    start = time.perf_counter()
    path = Path(source)
    axes = stack_axes_of(path)
    if axes is None:
        raise InputError(f"{path}: not a stack (no z or t axis in its zarr metadata)")
    array = level0_array(path)
    folder = check_writable(Path(out_dir) / (folder_name or input_stem(path)), overwrite)
    config = config or SegmentConfig()
    names = axes.stack_names + "yx"
    with atomic_path(folder, overwrite) as tmp:
        tmp.mkdir(parents=True)
        labels = create_stack_labels(tmp / "labels.zarr", axes.labels_shape, names,
                                     attributes={"joined": bool(join)})

        def write(index, plane_labels):
            labels[tuple(index)] = plane_labels

        objects = yield from segment_planes(array, axes, model, config, write=write, join=join,
                                            min_overlap=min_overlap, tile_size=tile_size,
                                            overlap=overlap, model_name=model_name)
        object_table(objects).to_csv(tmp / "objects.csv", index=False)
    n_planes = 1
    for n in axes.stack_shape:
        n_planes *= n
    return StackSummary(input=path, folder=folder,
                        n_objects=len({o.record.id for o in objects}), n_planes=n_planes,
                        seconds=time.perf_counter() - start)

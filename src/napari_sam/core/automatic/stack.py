"""Automatic segmentation of a stack (z, t), plane by plane, on the tiled engine.

Each plane is embedded (into a temporary store, removed after the plane) and
segmented like a 2D raster; its objects get ids that no other plane uses.
With ``join`` the objects of consecutive planes that overlap are one object
(one 3D id, or one track through t): an object takes the id of the previous
plane's object that covers the largest part of it when that part is at
least ``min_overlap`` of its area (each previous object is taken at most
once, by the object overlapping it most).

Only one plane of labels (and the previous one, for joining) is in memory at
a time: :func:`segment_planes` hands each finished plane to a ``write``
callback (a zarr array on disk, an in-memory stack), so memory stays flat
with the number of planes. The object table gets a ``plane`` column (the
plane's stack index, as text such as ``"3"`` or ``"2,7"``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from napari_sam.core.automatic.decode import segment_tiles, store_embeddings
from napari_sam.core.automatic.object_table import ObjectRecord
from napari_sam.core.automatic.settings import SegmentConfig
from napari_sam.core.io.nd import NdAxes, plane
from napari_sam.core.progress import Progress, ProgressGen

Plane = tuple[int, ...]


@dataclass(frozen=True, kw_only=True)
class StackObject:
    """An object record on one plane (its id is the stack-wide, maybe joined, id)."""

    plane: Plane
    record: ObjectRecord


def plane_indices(axes: NdAxes) -> list[Plane]:
    """Every plane of ``axes``' stack, in array order."""
    return [tuple(int(i) for i in index) for index in np.ndindex(*axes.stack_shape)]


def join_plane(previous: np.ndarray | None, current: np.ndarray, *,
               min_overlap: float = 0.5) -> dict[int, int]:
    """``{current id: previous id}`` for objects of ``current`` continuing ``previous``.

    Both are (h, w) integer labels (0 background).
    """
    if previous is None:
        return {}
    both = (previous > 0) & (current > 0)
    if not both.any():
        return {}
    pairs, counts = np.unique(np.stack([current[both], previous[both]]), axis=1,
                              return_counts=True)
    ids, areas = np.unique(current[current > 0], return_counts=True)
    area_of = dict(zip(ids.tolist(), areas.tolist()))
    best: dict[int, tuple[int, int]] = {}  # current -> (previous, overlap)
    for (cur, prev), count in zip(pairs.T.tolist(), counts.tolist()):
        if count >= min_overlap * area_of[cur] and count > best.get(cur, (0, 0))[1]:
            best[cur] = (prev, count)
    taken: dict[int, tuple[int, int]] = {}  # previous -> (current, overlap)
    for cur, (prev, count) in best.items():
        if count > taken.get(prev, (0, 0))[1]:
            taken[prev] = (cur, count)
    return {cur: prev for prev, (cur, _) in taken.items()}


def segment_plane(raster, model, config: SegmentConfig, *, tile_size: int | None = None,
                  overlap: int | None = None, model_name: str | None = None
                  ) -> ProgressGen[tuple[np.ndarray, list[ObjectRecord]]]:
    """``(labels (h, w) uint32, objects)`` of one 2D raster (ids from 1)."""
    from napari_sam.core.tiling.embed import embed_raster

    scratch = Path(tempfile.mkdtemp(prefix="napari-sam-plane-"))
    try:
        store = yield from embed_raster(raster, scratch / "embeddings.zarr", model,
                                        tile_size=tile_size, overlap=overlap, device=None,
                                        model_name=model_name)
        labels = np.zeros((raster.height, raster.width), dtype=np.uint32)

        def sink(y0: int, x0: int, window: np.ndarray) -> None:
            labels[y0:y0 + window.shape[0], x0:x0 + window.shape[1]] = window

        result = yield from segment_tiles(raster, store.grid, store_embeddings(store), model,
                                          config=config, sink=sink)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return labels, result.objects


def segment_planes(array, axes: NdAxes, model, config: SegmentConfig, *,
                   write: Callable[[Plane, np.ndarray], None],
                   planes: Sequence[Plane] | None = None, join: bool = False,
                   min_overlap: float = 0.5, tile_size: int | None = None,
                   overlap: int | None = None, model_name: str | None = None,
                   open_plane: Callable[[object], object] | None = None
                   ) -> ProgressGen[list[StackObject]]:
    """Segment ``planes`` (default all) of ``array``; ``write(plane, labels)`` each one.

    ``open_plane``: turns a plane array into the raster to segment (default
    :func:`~napari_sam.core.io.raster.open_raster`; callers pass one that
    keeps a georeference). Yields Progress ("planes", done, total) between
    planes and the tile stages inside each; returns every plane's objects.
    """
    from napari_sam.core.io.raster_open import open_raster

    open_plane = open_plane or open_raster
    planes = list(planes) if planes is not None else plane_indices(axes)
    objects: list[StackObject] = []
    next_id = 1
    previous: np.ndarray | None = None
    previous_index: Plane | None = None
    for done, index in enumerate(planes):
        yield Progress("planes", done, len(planes), f"plane {','.join(map(str, index))}")
        raster = open_plane(plane(array, axes, index))
        raster = raster.select_bands(raster.default_bands())
        labels, records = yield from segment_plane(raster, model, config, tile_size=tile_size,
                                                   overlap=overlap, model_name=model_name)
        consecutive = previous_index is not None and _consecutive(previous_index, index)
        mapping = join_plane(previous if consecutive else None, labels,
                             min_overlap=min_overlap) if join else {}
        lut = np.zeros(int(labels.max()) + 1, dtype=np.uint32)
        for record in records:
            new_id = mapping.get(record.id)
            if new_id is None:
                new_id, next_id = next_id, next_id + 1
            lut[record.id] = new_id
            objects.append(StackObject(plane=index, record=replace(record, id=int(new_id))))
        labels = lut[labels]
        write(index, labels)
        previous, previous_index = labels, index
    yield Progress("planes", len(planes), len(planes),
                   f"{len({o.record.id for o in objects})} objects")
    return objects


def _consecutive(a: Plane, b: Plane) -> bool:
    """Whether plane ``b`` follows ``a`` along the last stack axis (others equal)."""
    return a[:-1] == b[:-1] and b[-1] == a[-1] + 1


def object_table(objects: Sequence[StackObject]):
    """A pandas table of the objects: the 2D columns plus ``plane``."""
    import pandas as pd

    from napari_sam.core.automatic.object_table import to_dataframe

    table = to_dataframe([o.record for o in objects])
    table.insert(1, "plane", [",".join(map(str, o.plane)) for o in objects])
    return pd.DataFrame(table)

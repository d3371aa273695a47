"""Image layers with extra axes (z, t, channels): the plane the viewer shows.

The interactive widget prompts the plane of an nD image layer that the
viewer shows: :func:`image_axes` names the layer's axes (napari axis labels
or the reader's metadata, else ``zyx``/``tzyx``/...), :func:`shown_plane`
reads the stack index from the viewer's dims, and :func:`plane_source`
cuts that plane out of the layer's data lazily for core. No Qt here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sam._widgets import layers as L
from napari_sam.core.io.nd import NdAxes, guess_axes, plane

Plane = tuple[int, ...]


def image_axes(image: Any) -> NdAxes:
    """The axes of ``image``'s full-resolution data (``c`` last for RGB layers)."""
    data = L.level0(image)
    meta = (image.metadata or {}).get(L.GEO_KEY) or {}
    names = meta.get("axes")
    if names is None:
        labels = tuple(getattr(image, "axis_labels", ()) or ())
        if labels and not all(str(a).lstrip("-").isdigit() for a in labels):
            names = list(labels) + (["c"] if getattr(image, "rgb", False) else [])
    return NdAxes(axes=guess_axes(data.ndim, names=names, rgb=bool(getattr(image, "rgb",
                                                                            False))),
                  shape=tuple(data.shape))


def is_stack(image: Any) -> bool:
    return image is not None and image_axes(image).is_stack()


def shown_plane(viewer: Any, image: Any) -> Plane:
    """The stack index of ``image`` at the viewer's current position (``()`` for 2D)."""
    axes = image_axes(image)
    if not axes.is_stack():
        return ()
    point = np.asarray(image.world_to_data(viewer.dims.point), dtype=float)
    layer_axes = [i for i, a in enumerate(axes.axes) if not (a == "c" and image.rgb)]
    index = []
    for position in axes.stack_axes:
        value = point[layer_axes.index(position)]
        index.append(int(np.clip(np.round(value), 0, axes.shape[position] - 1)))
    return tuple(index)


def plane_source(image: Any, index: Plane) -> Any:
    """What core opens for plane ``index`` of ``image``: a lazy (y, x[, c]) array."""
    return plane(L.level0(image), image_axes(image), index)


PLANE_MODES = ("shown plane", "every plane", "every plane, joined (3D / tracks)")


def automatic_planes_gen(image: Any, planes: list[Plane], model: Any, config: Any, *,
                         join: bool = False):
    """Automatic segmentation of ``planes`` of the stack ``image``; a progress generator.

    Returns an :class:`~napari_sam._widgets.engine.AutomaticResult` whose labels
    have the stack's shape (numpy up to 4096 x 4096 px in all, else a
    :class:`~napari_sam.core.io.sparse_stack.SparseStack`) and whose table has
    a ``plane`` column; ``join``: one id for objects overlapping in consecutive
    planes. ``config``: the widget's AutomaticConfig.
    """
    from napari_sam._widgets.engine import AutomaticResult
    from napari_sam._widgets.session import SPARSE_ABOVE
    from napari_sam.core.automatic.stack import object_table, segment_planes
    from napari_sam.core.io.sparse_stack import SparseStack

    axes = image_axes(image)
    shape = axes.labels_shape
    labels = (np.zeros(shape, dtype=np.uint32) if int(np.prod(shape)) <= SPARSE_ABOVE
              else SparseStack(shape))

    def write(index: Plane, plane_labels: np.ndarray) -> None:
        labels[tuple(index)] = plane_labels

    tiling = config.tiling.core_kwargs()
    objects = yield from segment_planes(
        L.level0(image), axes, model, config.segment, write=write,
        planes=planes, join=join, tile_size=tiling["tile_size"], overlap=tiling["overlap"],
        model_name=getattr(model, "model_name", None))
    return AutomaticResult(labels=labels, table=object_table(objects),
                           georeference={"transform": None, "crs": None},
                           n_tiles=len(planes))


def plane_engine(source: Any, plane: Plane, model: Any, config: Any) -> Any:
    """The prompt engine of one plane of a stack; with a store folder chosen, its
    embeddings also go to that plane's store in it (``core.tiling.plane_store``)."""
    from napari_sam._widgets.engine import open_prompt_engine
    from napari_sam._widgets.state import InteractiveConfig

    if not config.store:
        return open_prompt_engine(source, model, config)
    from napari_sam.core.tiling.plane_store import open_plane_store

    tiling = config.tiling.core_kwargs()
    store = open_plane_store(config.store, plane, source, model,
                             model_name=getattr(model, "model_name", None), **tiling)
    return open_prompt_engine(source, model, InteractiveConfig(
        model=config.model, tiling=config.tiling, store=str(store.path),
        multimask=config.multimask))

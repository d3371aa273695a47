"""Follow one object from plane to plane with SAM 2.1's memory (volumes and time series).

When the model is a SAM 2 model, :func:`~napari_sam.core.prompt.propagate.propagate`
hands over to :func:`propagate_sam2`: the object's mask on the start plane
becomes a mask prompt of ``sam_model.sam2_video.Sam2VideoPropagator``, which
tracks it forward (increasing plane index along the stack axis) and then
backward, each plane conditioned on the memories of the planes before it.

The frames are one square window of every plane (the same window on every
plane): centred on the start mask, ``max(S, 3 x the mask's longer side)``
pixels (``S``: the model's input size, 1024 for the official models), clipped
to the plane; it is read and stretched to RGB by the plane's own predictor
(its bands and normalisation, as for a click on that plane) when the driver
asks for it, so planes are read lazily, one at a time. An object that leaves
the window is lost there.

A side stops where SAM 2 says the object is absent (object score <= 0), where
its mask is empty, or after ``settings.max_planes`` planes. Returns
``{plane index: (Window, mask)}`` like the SAM 1 propagation (the start
plane keeps the given mask); progress one event per plane.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.tiling.window import Window
from sam_model.sam2_model import Sam2
from sam_model.sam2_video import Sam2VideoPropagator

Plane = tuple[int, ...]
Placed = tuple[Window, np.ndarray]


def is_sam2(model) -> bool:
    """Whether ``model`` is a SAM 2 model (it has the memory path)."""
    return isinstance(model, Sam2)


def frame_window(first: Placed, plane_shape: tuple[int, int], side: int) -> Window:
    """The square window of ``side`` px (``max(side, 3 x longer side)``) centred on the
    placed mask ``first``, clipped to a plane of ``plane_shape`` (h, w)."""
    window, mask = first
    rows, cols = np.nonzero(mask)
    cy = window.y0 + (rows.min() + rows.max() + 1) / 2
    cx = window.x0 + (cols.min() + cols.max() + 1) / 2
    side = max(int(side), 3 * int(max(np.ptp(rows), np.ptp(cols)) + 1))
    h, w = plane_shape

    def start(centre: float, length: int) -> tuple[int, int]:
        if length <= side:
            return 0, length
        s = int(round(centre - side / 2))
        return min(max(0, s), length - side), side

    y0, hh = start(cy, h)
    x0, ww = start(cx, w)
    return Window(y0, x0, hh, ww)


def plane_frame(predictor, window: Window) -> np.ndarray:
    """``window`` of a plane read and stretched to RGB uint8 by its ``RasterPredictor``."""
    data, valid = predictor.raster.read_masked(window)
    rgb, _ = predictor.plan.normalizer.apply(data, valid)
    return rgb


def cropped(window: Window, mask: np.ndarray) -> Placed | None:
    """A mask in ``window`` cut to its bounding box (None when empty)."""
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return None
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    return (Window(window.y0 + int(y0), window.x0 + int(x0), int(y1 - y0), int(x1 - x0)),
            mask[y0:y1, x0:x1])


def propagate_sam2(predictor_for: Callable[[Plane], object], start: Plane, first: Placed, *,
                   axis: int, size: int, max_planes: int | None = None
                   ) -> ProgressGen[dict[Plane, Placed]]:
    """Follow ``first`` (on plane ``start``) along stack axis ``axis`` (``size`` planes)
    with SAM 2's memory; see the module docstring."""
    start = tuple(start)
    predictor = predictor_for(start)
    model = predictor.model
    plane_shape = (predictor.raster.height, predictor.raster.width)
    window = frame_window(first, plane_shape, model.img_size)

    def index_of(position: int) -> Plane:
        return tuple(position if i == axis else v for i, v in enumerate(start))

    def frame(position: int) -> np.ndarray:
        return plane_frame(predictor_for(index_of(position)), window)

    prompt = np.zeros(window.shape, bool)
    (fw, fm) = first
    prompt[fw.y0 - window.y0:fw.y1 - window.y0, fw.x0 - window.x0:fw.x1 - window.x0] |= fm
    found: dict[Plane, Placed] = {start: first}
    limit = max_planes or size
    total = min(size, 2 * limit + 1)
    yield Progress("propagate", 1, total, f"plane {start[axis]} (SAM 2 memory)")
    driver = Sam2VideoPropagator(model, frame=frame, num_frames=size)
    driver.add_prompt(start[axis], mask=prompt)
    for reverse in (False, True):
        passing = driver.propagate(reverse=reverse, max_frames=limit)
        try:
            for out in passing:
                placed = cropped(window, out.mask) if out.present else None
                if placed is None:
                    break
                found[index_of(out.index)] = placed
                yield Progress("propagate", len(found), total,
                               f"plane {out.index}: {int(placed[1].sum())} px, object score "
                               f"{out.object_score:.1f}")
        finally:
            passing.close()
    yield Progress("propagate", total, total, f"{len(found)} plane(s)")
    return found

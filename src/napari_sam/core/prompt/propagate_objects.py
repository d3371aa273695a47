"""Several prompted objects followed through a stack axis (z or t), with any model.

:func:`propagate_objects` takes :class:`PlanePrompt` s (points, a box or a mask
of one object on one plane each; objects may be prompted on different planes)
and returns every object's masks on the planes it reached,
``{object id: {plane index: (Window, mask)}}``:

- with a SAM 2 model, all objects at once with SAM 2's memory
  (:func:`~napari_sam.core.prompt.propagate_sam2.propagate_sam2_objects`: the
  official video predictor's semantics, each object its own memory);
- with a SAM 1 model (SAM, MobileSAM, the embedded models), one object after
  the other: the object is decoded on its plane by that plane's predictor
  (best candidate), then followed plane by plane with
  :func:`~napari_sam.core.prompt.propagate.propagate` and its stopping rules
  (``settings``). An object whose prompt gives no mask gets no plane.

:func:`paint_plane` turns one plane's masks into labels (the smaller object
wins a pixel two objects claim, so an object inside another stays visible).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.prompt.propagate import PropagationSettings, propagate
from napari_sam.core.prompt.propagate_sam2 import (
    Placed,
    Plane,
    PlanePrompt,
    Tracks,
    is_sam2,
    propagate_sam2_objects,
)

__all__ = ["PlanePrompt", "Tracks", "paint_plane", "propagate_objects"]


def propagate_objects(predictor_for: Callable[[Plane], object], prompts: Sequence[PlanePrompt],
                      *, axis: int, size: int, settings: PropagationSettings | None = None
                      ) -> ProgressGen[Tracks]:
    """Follow every prompted object along stack axis ``axis`` (``size`` planes); planes
    are decoded by ``predictor_for(index)`` (a ``RasterPredictor`` of that plane)."""
    if not prompts:
        raise ValueError("propagate_objects: no prompts")
    if len({p.id for p in prompts}) != len(prompts):
        raise ValueError("propagate_objects: one prompt per object id")
    settings = settings or PropagationSettings()
    if is_sam2(getattr(predictor_for(tuple(prompts[0].plane)), "model", None)):
        return (yield from propagate_sam2_objects(predictor_for, prompts, axis=axis, size=size,
                                                  max_planes=settings.max_planes))
    tracks: Tracks = {}
    for n, p in enumerate(prompts, start=1):
        yield Progress("objects", n - 1, len(prompts), f"object {p.id}")
        first, score = _decode(predictor_for(tuple(p.plane)), p)
        if first is None:
            tracks[p.id] = {}
            continue
        tracks[p.id] = yield from propagate(predictor_for, tuple(p.plane), first, axis=axis,
                                            size=size, settings=settings, first_score=score)
    yield Progress("objects", len(prompts), len(prompts),
                   f"{sum(bool(t) for t in tracks.values())} of {len(prompts)} object(s) found")
    return tracks


def _decode(predictor, p: PlanePrompt) -> tuple[Placed | None, float | None]:
    """The object's mask on its own plane (a mask prompt as given) and its score."""
    if p.mask is not None:
        return (p.mask if p.mask[1].any() else None), None
    result = predictor.predict(p.points, p.labels, p.box, coords="pixel")
    if result.best_index is None:
        return None, None
    placed = result.cropped()
    if not placed[1].any():
        return None, None
    return placed, result.best_score


def paint_plane(shape: tuple[int, int], masks: Sequence[tuple[int, Placed]]) -> np.ndarray:
    """``(h, w)`` uint32 labels of ``(id, placed mask)`` pairs on one plane; where masks
    overlap the smaller one wins (ties: the lower id)."""
    labels = np.zeros(shape, np.uint32)
    order = sorted(masks, key=lambda item: (-int(item[1][1].sum()), -item[0]))
    for obj, (window, mask) in order:  # largest first, so smaller ones paint over
        view = labels[window.y0:window.y0 + window.height, window.x0:window.x0 + window.width]
        view[mask[:view.shape[0], :view.shape[1]]] = obj
    return labels

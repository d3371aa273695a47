"""Follow objects from plane to plane with SAM 2.1's memory (volumes and time series).

When the model is a SAM 2 model, :func:`~napari_sam.core.prompt.propagate.propagate`
hands over to :func:`propagate_sam2`: the object's mask on the start plane
becomes a mask prompt of ``sam_model.sam2_objects.Sam2ObjectsPropagator``,
which tracks it forward (increasing plane index along the stack axis) and then
backward, each plane conditioned on the memories of the planes before it.
:func:`propagate_sam2_objects` does the same for several objects at once
(:class:`PlanePrompt`: points, a box or a mask on a plane each, planes may
differ), with the official video predictor's semantics: each object its own
memory, every plane through the image encoder once for all objects, passes
from the earliest prompted plane.

The frames are one square window of every plane (the same window on every
plane): centred on the prompts (the start mask; for several objects the box
around all their prompts), ``max(S, 3 x the prompts' longer side)`` pixels
(``S``: the model's input size, 1024 for the official models), clipped to the
plane; it is read and stretched to RGB by the plane's own predictor (its bands
and normalisation, as for a click on that plane) when the driver asks for it,
so planes are read lazily, one at a time. An object that leaves the window is
lost there.

An object's side (the planes beyond its own prompted plane in a pass's
direction) stops where SAM 2 says the object is absent (object score <= 0),
where its mask is empty, or after ``max_planes`` planes from the earliest
prompted plane; a pass ends early once every object's side has stopped. An
object keeps the planes joined to its prompted plane by planes where it was
found; where a plane is visited by both passes (the earliest prompted one) the
later output counts, as in the official predictor. Returns ``{object id: {plane index: (Window, mask)}}``
(a mask prompt's plane keeps the given mask); progress one event per plane.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.tiling.window import Window
from sam_model.sam2_model import Sam2
from sam_model.sam2_objects import Sam2ObjectsPropagator

Plane = tuple[int, ...]
Placed = tuple[Window, np.ndarray]
Tracks = dict[int, dict[Plane, Placed]]


@dataclass(frozen=True)
class PlanePrompt:
    """One object's prompt on one plane, in that plane's pixels: ``points`` Nx2 XY with
    ``labels`` (1/0), ``box`` XYXY, or ``mask`` (a placed mask, alone)."""

    id: int
    plane: Plane
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask: Placed | None = None

    def extent(self) -> tuple[float, float, float, float]:
        """``(y0, x0, y1, x1)`` around the prompt (pixels, end exclusive)."""
        if self.mask is not None:
            window, mask = self.mask
            rows, cols = np.nonzero(mask)
            return (window.y0 + rows.min(), window.x0 + cols.min(),
                    window.y0 + rows.max() + 1, window.x0 + cols.max() + 1)
        xy = np.zeros((0, 2))
        if self.points is not None:
            xy = np.concatenate([xy, np.asarray(self.points, float).reshape(-1, 2)])
        if self.box is not None:
            xy = np.concatenate([xy, np.asarray(self.box, float).reshape(2, 2)])
        if not len(xy):
            raise ValueError(f"object {self.id}: give points, a box or a mask")
        (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
        return y0, x0, y1 + 1, x1 + 1


def is_sam2(model) -> bool:
    """Whether ``model`` is a SAM 2 model (it has the memory path)."""
    return isinstance(model, Sam2)


def window_around(extent: tuple[float, float, float, float], plane_shape: tuple[int, int],
                  side: int) -> Window:
    """The square window of ``max(side, 3 x the extent's longer side)`` px centred on
    ``extent`` (y0, x0, y1, x1), clipped to a plane of ``plane_shape`` (h, w)."""
    y0, x0, y1, x1 = extent
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    side = max(int(side), 3 * int(np.ceil(max(y1 - y0, x1 - x0))))
    h, w = plane_shape

    def start(centre: float, length: int) -> tuple[int, int]:
        if length <= side:
            return 0, length
        s = int(round(centre - side / 2))
        return min(max(0, s), length - side), side

    wy, hh = start(cy, h)
    wx, ww = start(cx, w)
    return Window(wy, wx, hh, ww)


def frame_window(first: Placed, plane_shape: tuple[int, int], side: int) -> Window:
    """The square window of ``side`` px (``max(side, 3 x longer side)``) centred on the
    placed mask ``first``, clipped to a plane of ``plane_shape`` (h, w)."""
    return window_around(PlanePrompt(id=0, plane=(), mask=first).extent(), plane_shape, side)


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
    prompt = PlanePrompt(id=1, plane=tuple(start), mask=first)
    tracks = yield from propagate_sam2_objects(predictor_for, [prompt], axis=axis, size=size,
                                               max_planes=max_planes)
    return tracks[1]


def propagate_sam2_objects(predictor_for: Callable[[Plane], object],
                           prompts: Sequence[PlanePrompt], *, axis: int, size: int,
                           max_planes: int | None = None) -> ProgressGen[Tracks]:
    """Follow every prompted object along stack axis ``axis`` (``size`` planes) with SAM 2's
    memory, all at once; see the module docstring. Prompts whose planes differ off
    ``axis`` (another t for a z propagation) run as separate groups."""
    groups: dict[Plane, list[PlanePrompt]] = {}
    for p in prompts:
        groups.setdefault(tuple(v for i, v in enumerate(p.plane) if i != axis), []).append(p)
    tracks: Tracks = {}
    for group in groups.values():
        tracks.update((yield from _propagate_group(predictor_for, group, axis=axis, size=size,
                                                   max_planes=max_planes)))
    return tracks


def _propagate_group(predictor_for, prompts: Sequence[PlanePrompt], *, axis: int, size: int,
                     max_planes: int | None) -> ProgressGen[Tracks]:
    base = tuple(prompts[0].plane)
    predictor = predictor_for(base)
    model = predictor.model
    extents = np.array([p.extent() for p in prompts])
    extent = (*extents[:, :2].min(axis=0), *extents[:, 2:].max(axis=0))
    window = window_around(extent, (predictor.raster.height, predictor.raster.width),
                           model.img_size)

    def index_of(position: int) -> Plane:
        return tuple(position if i == axis else v for i, v in enumerate(base))

    def frame(position: int) -> np.ndarray:
        return plane_frame(predictor_for(index_of(position)), window)

    driver = Sam2ObjectsPropagator(model, frame=frame, num_frames=size)
    found: dict[int, dict[int, Placed]] = {}
    starts = {}
    for p in prompts:
        starts[p.id] = p.plane[axis]
        out = driver.add_prompt(p.plane[axis], p.id, **_in_window(p, window))
        first = p.mask if p.mask is not None else (
            cropped(window, out.mask) if out.present else None)
        found[p.id] = {} if first is None else {p.plane[axis]: first}
    origin = driver.origin
    limit = max_planes or size
    # planes that cost a step: the origin once per pass when an object is tracked there
    revisit = 2 if any(t != origin for t in starts.values()) else 0
    total = 1 + min(size - 1 - origin, limit) + min(origin, limit) + revisit
    done = 1
    yield Progress("propagate", done, total, f"{len(prompts)} object(s) (SAM 2 memory)")
    for reverse in (False, True):
        step = -1 if reverse else 1
        ended = {i: not found[i] for i in found}  # an object lost on its prompted plane
        passing = driver.propagate(reverse=reverse, max_frames=limit)
        try:
            for frame_out in passing:
                position = frame_out.index
                tracked = [o for o in frame_out.objects if starts[o] != position]
                for obj in tracked:
                    out = frame_out.objects[obj]
                    beyond = (position - starts[obj]) * step > 0
                    if beyond and ended[obj]:
                        continue
                    placed = cropped(window, out.mask) if out.present else None
                    if placed is None:
                        found[obj].pop(position, None)
                        ended[obj] = ended[obj] or beyond
                    else:
                        found[obj][position] = placed
                if tracked:
                    done += 1
                    yield Progress("propagate", min(done, total), total,
                                   _describe(position, found))
                if all(ended.values()):
                    break
        finally:
            passing.close()
    yield Progress("propagate", total, total,
                   f"{sum(len(_joined(f, starts[o])) for o, f in found.items())} plane(s)")
    return {obj: {index_of(t): placed for t, placed in sorted(_joined(f, starts[obj]).items())}
            for obj, f in found.items()}


def _in_window(p: PlanePrompt, window: Window) -> dict:
    """The driver's prompt arguments for ``p`` in ``window``'s pixels."""
    if p.mask is not None:
        fw, fm = p.mask
        mask = np.zeros(window.shape, bool)
        mask[fw.y0 - window.y0:fw.y1 - window.y0, fw.x0 - window.x0:fw.x1 - window.x0] |= fm
        return {"mask": mask}
    offset = np.array([window.x0, window.y0], float)
    args: dict = {}
    if p.points is not None:
        args["points"] = np.asarray(p.points, float).reshape(-1, 2) - offset
        args["labels"] = np.asarray(p.labels).reshape(-1)
    if p.box is not None:
        args["box"] = (np.asarray(p.box, float).reshape(2, 2) - offset).reshape(4)
    return args


def _joined(found: dict[int, Placed], start: int) -> dict[int, Placed]:
    """The planes joined to ``start`` by consecutive planes in ``found``."""
    if start not in found:
        return {}
    lo = hi = start
    while lo - 1 in found:
        lo -= 1
    while hi + 1 in found:
        hi += 1
    return {t: found[t] for t in range(lo, hi + 1)}


def _describe(position: int, found: dict[int, dict[int, Placed]]) -> str:
    here = [(obj, f[position]) for obj, f in found.items() if position in f]
    if len(found) == 1:
        return (f"plane {position}: {int(here[0][1][1].sum())} px" if here
                else f"plane {position}: object absent")
    return f"plane {position}: {len(here)} of {len(found)} objects"

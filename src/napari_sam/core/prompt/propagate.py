"""Follow one object from plane to plane: through z (a volume) or t (tracking).

Given the object's mask on a start plane, :func:`propagate` prompts the next
plane with what the previous plane gave, in four ways: the box around the
mask, the mask itself as a mask prompt and a positive click at its most
interior pixel together; the box and the click; the box alone; the click alone
(its three multimask candidates): four decoder calls per plane. Each
candidate keeps only its parts that touch the previous mask (an object is
connected from plane to plane; a model that also paints a bright neighbour
loses it here), and the candidate most like the previous mask (IoU) is kept,
the predicted IoU breaking ties. One prompt alone is fragile: a model may
echo the mask prompt after the object has ended, or spill a box's mask onto
a neighbour. It walks both ways along one stack axis and stops on a side
where the object ends: an empty mask, a predicted IoU below ``min_score``,
an area that changes by more than ``max_area_change`` times from one plane to the next,
a predicted IoU that drops by more than ``max_score_drop`` from the previous
plane's, an area that grows more than ``max_growth`` times or shrinks more
than ``max_shrink`` times from one plane to the next (at its end an object
vanishes, and SAM answers with whatever lies around), or a mask that no
longer overlaps the previous one (``min_overlap``).

It is a generator of :class:`~napari_sam.core.progress.Progress` events (one
per plane) that returns ``{plane index: (Window, mask)}``, start plane
included; closing it (Cancel) stops it before the next plane. Planes are
decoded by the predictor ``predictor_for(index)`` gives (a
:class:`~napari_sam.core.prompt.predictor.RasterPredictor` of that plane), so
embeddings are computed on demand and cached by the caller.

With a SAM 2 model (the planes' predictors hold a ``Sam2``) the object is
followed by SAM 2's memory instead (:mod:`~napari_sam.core.prompt.propagate_sam2`):
each plane conditioned on the planes before it, a side stopping where the
object is absent or its mask empty (the other rules above are SAM 1's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from napari_sam.core.progress import Progress, ProgressGen
from napari_sam.core.prompt.propagate_sam2 import is_sam2, propagate_sam2
from napari_sam.core.tiling.window import Window, mask_box

Plane = tuple[int, ...]
Placed = tuple[Window, np.ndarray]  # a mask (h, w bool) and where it lies in the plane


@dataclass(frozen=True, kw_only=True)
class PropagationSettings:
    """When to stop following an object (see the module docstring)."""

    min_score: float = 0.5
    max_score_drop: float = 0.15
    max_growth: float = 2.0
    max_shrink: float = 5.0
    min_overlap: float = 0.2
    max_planes: int | None = None

    def __post_init__(self) -> None:
        if self.max_growth < 1 or self.max_shrink < 1:
            raise ValueError("max_growth and max_shrink must be at least 1")
        if not 0 <= self.min_overlap <= 1:
            raise ValueError("min_overlap must be within 0..1")


def interior_point(mask: np.ndarray) -> tuple[int, int]:
    """``(row, col)`` of the pixel of ``mask`` farthest from its outline."""
    from scipy.ndimage import distance_transform_edt

    distance = distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    row, col = np.unravel_index(int(np.argmax(distance)), mask.shape)
    return int(row), int(col)


def _shared(a: Placed, b: Placed) -> int:
    """Pixels two placed masks share."""
    (wa, ma), (wb, mb) = a, b
    common = wa.intersection(wb)
    if common is None:
        return 0
    return int((ma[common.relative_to(wa).slices] & mb[common.relative_to(wb).slices]).sum())


def overlap(a: Placed, b: Placed) -> float:
    """Intersection of two placed masks over the smaller one's area (0 when either is empty)."""
    smaller = min(int(a[1].sum()), int(b[1].sum()))
    return _shared(a, b) / smaller if smaller else 0.0


def placed_iou(a: Placed, b: Placed) -> float:
    """Intersection over union of two placed masks (0 when both are empty)."""
    both = _shared(a, b)
    union = int(a[1].sum()) + int(b[1].sum()) - both
    return both / union if union else 0.0


def touching(placed: Placed, previous: Placed) -> Placed:
    """``placed`` cut to its connected parts that overlap ``previous`` (may be empty)."""
    from scipy.ndimage import label

    (w, m), (pw, pm) = placed, previous
    seen = np.zeros(m.shape, bool)
    common = w.intersection(pw)
    if common is not None:
        seen[common.relative_to(w).slices] = pm[common.relative_to(pw).slices]
    parts, _ = label(m)
    keep = np.unique(parts[seen & m])
    kept = np.isin(parts, keep[keep > 0])
    box = mask_box(kept)
    if box is None:
        return Window(w.y0, w.x0, 0, 0), np.zeros((0, 0), bool)
    return Window.from_box(box, y0=w.y0, x0=w.x0), kept[box[1]:box[3], box[0]:box[2]]


def _candidates(result) -> list[tuple[Placed, float]]:
    return [(result.cropped(k), float(result.scores[k])) for k in range(len(result.scores))]


def step(predictor, previous: Placed) -> tuple[Placed, float]:
    """The object on ``predictor``'s plane, prompted from ``previous``; (mask, score)."""
    window, mask = previous
    rows, cols = np.nonzero(mask)
    box = np.array([cols.min(), rows.min(), cols.max(), rows.max()], dtype=float)
    box += [window.x0, window.y0, window.x0, window.y0]
    row, col = interior_point(mask)
    point = np.array([[col + window.x0, row + window.y0]], dtype=float)
    positive = np.array([1])
    found = []
    for prompt in ((point, positive, box, previous), (point, positive, box, None),
                   (None, None, box, None)):
        result = predictor.predict(*prompt, coords="pixel", multimask=False)
        found.append((result.cropped(), result.best_score))
    found += _candidates(predictor.predict(point, positive, None, None, coords="pixel",
                                           multimask=True))
    found = [(touching(placed, previous), score) for placed, score in found]
    found = [(placed, score) for placed, score in found if placed[1].any()]
    if not found:
        return (Window(window.y0, window.x0, 0, 0), np.zeros((0, 0), bool)), 0.0
    return max(found, key=lambda c: (round(placed_iou(c[0], previous), 3), c[1]))


def ends_here(settings: PropagationSettings, placed: Placed, score: float,
              previous: Placed, previous_score: float | None) -> bool:
    """Whether ``placed`` (decoded from ``previous``) means the object has ended."""
    area, before = int(placed[1].sum()), int(previous[1].sum())
    return (area == 0 or score < settings.min_score
            or (previous_score is not None and score < previous_score - settings.max_score_drop)
            or area > settings.max_growth * before or before > settings.max_shrink * area
            or overlap(placed, previous) < settings.min_overlap)


def propagate(predictor_for: Callable[[Plane], object], start: Plane, first: Placed, *,
              axis: int, size: int, settings: PropagationSettings | None = None,
              first_score: float | None = None) -> ProgressGen[dict[Plane, Placed]]:
    """Follow the object ``first`` (on plane ``start``) along stack axis ``axis``.

    ``axis``: which entry of the plane index moves; ``size``: the number of
    planes along it; ``first_score``: the start mask's predicted IoU, if known.
    Returns the object's mask on every plane it reached.
    """
    settings = settings or PropagationSettings()
    if not first[1].any():
        raise ValueError("propagate: the start mask is empty")
    if is_sam2(getattr(predictor_for(tuple(start)), "model", None)):
        return (yield from propagate_sam2(predictor_for, start, first, axis=axis, size=size,
                                          max_planes=settings.max_planes))
    found: dict[Plane, Placed] = {tuple(start): first}
    limit = settings.max_planes or size
    total = min(size, 2 * limit + 1)
    yield Progress("propagate", 1, total, f"plane {start[axis]}")
    for direction in (1, -1):
        previous, previous_score = first, first_score
        position = start[axis] + direction
        while 0 <= position < size and abs(position - start[axis]) <= limit:
            index = tuple(position if i == axis else v for i, v in enumerate(start))
            placed, score = step(predictor_for(index), previous)
            if ends_here(settings, placed, score, previous, previous_score):
                break
            found[index] = placed
            yield Progress("propagate", len(found), total,
                           f"plane {position}: {int(placed[1].sum())} px, IoU {score:.2f}")
            previous, previous_score, position = placed, score, position + direction
    yield Progress("propagate", total, total, f"{len(found)} plane(s)")
    return found

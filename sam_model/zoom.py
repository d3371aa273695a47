"""Zoom-out for prompts larger than a model segments well at full scale.

A model's limit is ``prompt_extent_limit`` in the model table
(``sam_model.model_table``): the largest prompt (box side, or the span of a
prompt's points, in model-input pixels) it segments well. sam_tiny was trained
on crops whose objects stayed under about 250 px: a box larger than that gives
an almost empty mask at full scale, while the same box on the image downscaled
by 2 or 4 works (its model card, "Zoom-out for large prompts"). Prompts beyond
the limit are decoded on a downscaled image (:func:`zoom_for_extent`).
"""

from __future__ import annotations

import math


def zoom_for_extent(extent: float, limit: int | None) -> int:
    """Power-of-two downscale factor that brings a prompt of ``extent`` px within ``limit``.

    1 when there is no limit or the prompt fits; otherwise the smallest ``2**k``
    with ``extent / 2**k <= limit``.
    """
    if not limit or extent <= limit:
        return 1
    return 2 ** math.ceil(math.log2(extent / limit))


# A single click gives no object size. With a limit, a click is also decoded
# zoomed out by POINT_ZOOM, and the zoomed result replaces the full-scale one
# when its best candidate is scored higher and spans at least half the limit
# (smaller objects are segmented better at full scale). Chosen on validation
# scenes (seeds 100..129) in the fourth sitting; the model card reports it on
# the held-out scenes as ``point_zoom``.
POINT_ZOOM = 2


def prefer_zoomed_click(full_score: float, zoomed_score: float, zoomed_extent: float,
                        limit: int | None) -> bool:
    """Whether a click's zoomed-out result (best candidate's predicted IoU
    ``zoomed_score``, longest side ``zoomed_extent`` in full-scale model-input px)
    replaces the full-scale one (best predicted IoU ``full_score``)."""
    return bool(limit) and zoomed_extent >= limit / 2 and zoomed_score > full_score

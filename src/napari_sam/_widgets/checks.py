"""Checks on a prompt before it is decoded (no Qt, no napari)."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sam._widgets.state import Candidates, PromptSet
from napari_sam.core.tiling.window import Window


def no_candidates() -> Candidates:
    """An empty candidate set (the widget then says why there is none)."""
    return Candidates(masks=np.zeros((0, 1, 1), dtype=bool), scores=np.zeros(0), offset=(0, 0))


def on_nodata(engine: Any, prompts: PromptSet) -> str:
    """Why no candidate is wanted: a positive click on a nodata pixel ("" when none is).

    SAM would otherwise answer such a click with some object elsewhere in the
    tile (water far away for a click in a scene's empty corner).
    """
    raster = engine.raster
    for (x, y), label in zip(prompts.points_xy, prompts.labels):
        row, col = int(round(y)), int(round(x))
        if not label or not (0 <= row < raster.height and 0 <= col < raster.width):
            continue
        _, valid = raster.read_masked(Window(row, col, 1, 1))
        if not valid.any():
            return f"the click at row {row}, column {col} is on nodata (no image there)"
    return ""

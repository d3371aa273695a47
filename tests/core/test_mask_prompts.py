"""Mask prompts in RasterPredictor, by value: refining with a previous result's own
low-res logits, a (window, mask) pair, and a polygon prompt.

With :class:`value_model.ValueModel` a mask prompt selects the flat rectangle
it covers most (it takes precedence over points), a point the rectangle under
it: so each answer is a known rectangle, and a mask prompt that is dropped,
misplaced or given in the wrong frame gives another one, or nothing.
"""

from __future__ import annotations

import numpy as np
import pytest
from value_model import ValueModel

from napari_sam._widgets.engine import polygon_mask
from napari_sam.core.prompt.predictor import RasterPredictor

H, W = 200, 260
# (y0, x0, h, w); A and B share the tile that starts at (112, 112), C lies on another
RECTS = {"A": (120, 120, 20, 16), "B": (148, 140, 20, 28), "C": (60, 180, 32, 40)}


def _scene() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    img = np.zeros((H, W, 3), np.uint8)
    truth = {}
    for k, (name, (y0, x0, h, w)) in enumerate(RECTS.items(), start=1):
        img[y0:y0 + h, x0:x0 + w] = 60 * k
        truth[name] = np.zeros((H, W), bool)
        truth[name][y0:y0 + h, x0:x0 + w] = True
    return img, truth


def _global(result) -> np.ndarray:
    """The best mask of a RasterMask on the whole raster."""
    out = np.zeros((H, W), bool)
    win = result.window
    out[win.y0:win.y0 + win.height, win.x0:win.x0 + win.width] = result.best_mask
    return out


@pytest.fixture
def predictor():
    img, truth = _scene()
    return RasterPredictor(model=ValueModel(img_size=64), raster=img, zoom_limit=None), truth


def test_refining_with_own_logits_follows_the_previous_result(predictor):
    rp, truth = predictor
    first = rp.predict([[128, 130]])  # a click in A
    assert first.context.tile is not None and first.context.window.y0 > 0
    np.testing.assert_array_equal(_global(first), truth["A"])
    on_b = [[154, 158]]
    np.testing.assert_array_equal(_global(rp.predict(on_b)), truth["B"])
    # the same click with A's own low-res logits as the mask prompt: the logits
    # go back on A's tile and select A again (without them: B)
    refined = rp.predict(on_b, mask_input=first)
    assert refined.context == first.context
    np.testing.assert_array_equal(_global(refined), truth["A"])
    # the mask as a (window, mask) pair in raster pixels: same object
    by_pair = rp.predict(mask_input=(first.window, first.best_mask))
    np.testing.assert_array_equal(_global(by_pair), truth["A"])


@pytest.mark.parametrize("name, polygon", [
    ("B", [[142, 150], [166, 150], [154, 166]]),  # a triangle inside B
    ("C", [[185, 65], [215, 62], [216, 88], [190, 86]]),  # inside C, another tile
    ("B", [[130, 136], [166, 136], [166, 166], [130, 166]]),  # over B and a bit of A
])
def test_a_polygon_prompt_gives_the_polygons_object(predictor, name, polygon):
    rp, truth = predictor
    result = rp.predict(mask_input=polygon_mask(np.array(polygon, float), H, W))
    assert result.best_score > 0.9
    np.testing.assert_array_equal(_global(result), truth[name])

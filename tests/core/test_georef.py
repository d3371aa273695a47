"""One affine helper, one map <-> pixel rule, one bounding box of a mask."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine

from napari_sam.core.io.georef import (
    apply_affine,
    as_affine,
    box_to_pixel,
    map_to_pixel,
    pixel_to_map,
)
from napari_sam.core.tiling.window import Window, mask_box
from napari_sam.errors import InputError

T = Affine(30.0, 0.0, 101985.0, 0.0, -30.0, 2826915.0)


def test_as_affine_accepts_affines_sequences_and_none():
    assert as_affine(None) == Affine.identity()
    assert as_affine(T) == T
    assert as_affine(list(T)) == T  # nine numbers: the first six
    assert as_affine(("30", 0, 101985, 0, -30, 2826915)) == T
    with pytest.raises(InputError, match="scene.tif: a transform needs 6 numbers"):
        as_affine((1, 2, 3), "scene.tif")


def test_pixel_centres_are_integers_and_round_trip():
    # pixel (row 0, col 0) centre is half a pixel from the corner
    np.testing.assert_allclose(pixel_to_map([[0, 0]], T), [[101985.0 + 15, 2826915.0 - 15]])
    px = np.array([[0.0, 0.0], [12.25, 7.5], [-3.0, 100.0]])
    np.testing.assert_allclose(map_to_pixel(pixel_to_map(px, T), T), px)
    np.testing.assert_allclose(apply_affine(T, [[1, 2]]), [T * (1, 2)])
    box = box_to_pixel([101985.0, 2826915.0 - 300, 101985.0 + 600, 2826915.0], T)
    np.testing.assert_allclose(box, [-0.5, -0.5, 19.5, 9.5])  # corners of 20 x 10 pixels


def test_mask_box_and_window_from_box():
    mask = np.zeros((6, 8), bool)
    assert mask_box(mask) is None
    mask[2:4, 3:7] = True
    assert mask_box(mask) == (3, 2, 7, 4)  # XYXY, end-exclusive
    assert Window.from_box(mask_box(mask), y0=10, x0=20) == Window(12, 23, 2, 4)

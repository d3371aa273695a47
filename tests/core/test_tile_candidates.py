"""A tile's decoder masks become candidates: cut to valid pixels, and cleanup never gives
nodata back to a mask."""

from __future__ import annotations

import numpy as np

from napari_sam.core.automatic.candidates import TileFilter, tile_candidates
from napari_sam.core.automatic.point_grid import AxisWindows


def test_filling_small_holes_does_not_fill_nodata():
    windows = AxisWindows(starts=(0,), sizes=(64,), extent=64)
    mask = np.zeros((64, 64), bool)
    mask[10:50, 10:50] = True  # the decoder's mask: a square over a nodata hole
    valid = np.ones((64, 64), bool)
    valid[25:29, 25:29] = False  # 16 px of nodata inside it
    mask[40:42, 40:42] = False  # and a 4 px hole of the mask's own
    found = tile_candidates([mask], np.zeros((1, 2), np.int64), np.array([0.9]), np.array([0.9]),
                            np.array([[30.0, 30.0]]), tile=(0, 0), rows=windows, cols=windows,
                            valid=valid, settings=TileFilter(min_region_area=20))
    assert len(found) == 1
    c = found[0]
    full = np.zeros((64, 64), bool)
    full[c.y0:c.y0 + c.mask.shape[0], c.x0:c.x0 + c.mask.shape[1]] = c.mask
    assert not full[~valid].any()  # the nodata hole stays out
    assert full[40:42, 40:42].all()  # the mask's own small hole is filled
    assert full.sum() == 40 * 40 - 16

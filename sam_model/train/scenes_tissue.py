"""Scenes of large regions made of many small parts: glands in tissue, land on a map.

A DAB-stained gland is a large region whose inside is hundreds of small
brown cells; around it lie blue cells of the same size. A continent on a
satellite mosaic is a large region of fields and forest next to the sea's
own texture. Neither is told from its surroundings by a flat colour or by
one edge: the object is where the *kind* of parts changes. The other
painters draw large objects as one texture and small objects as leaves, so
a click inside such a region learned to take one part (a cell) or nothing.

:func:`paint_part_regions` fills a canvas of :mod:`.scenes` with a ground of
small parts (spots of one palette, sometimes with dark nuclei) and paints
1-6 regions on it, each filled with parts of another palette, density or
size, sometimes with a rim of darker parts (an epithelium) and a hole (a
lumen) that stays ground. Each region is one object; the parts are not
objects and the ground is not an object.

numpy and scipy only.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .scenes import _Canvas, smooth_noise
from .scenes_natural import _leaf_pixels, _paint_leaf, fractal_noise, natural_colour

REGION_KINDS = ("cloud", "blob", "ellipse")
REGION_WEIGHTS = np.array([0.45, 0.4, 0.15])


def _palette(rng: np.random.Generator, base: np.ndarray, n: int, spread: float) -> np.ndarray:
    """n colours around ``base`` (nx3 float32)."""
    return np.clip(base[None, :] + rng.normal(0, spread, (n, 3)), 0, 255).astype(np.float32)


def part_layer(rng: np.random.Generator, shape: tuple[int, int], ground: np.ndarray,
               palette: np.ndarray, cell: float, fill: float, nuclei: bool) -> np.ndarray:
    """HxWx3 float32: ``ground`` with a slow texture, and spots (the parts) about
    ``cell`` px across covering about ``fill`` of it, each spot one colour of
    ``palette`` with a little jitter; ``nuclei``: a darker core in the spots."""
    img = np.empty((*shape, 3), np.float32)
    img[:] = ground + fractal_noise(rng, shape)[..., None] * rng.uniform(2, 12)
    field = smooth_noise(rng, shape, cell)
    threshold = float(np.quantile(field, 1.0 - fill)) if field.size else 0.0
    spots = field > threshold
    lab, n = ndi.label(spots)
    if n:
        colours = palette[rng.integers(len(palette), size=n + 1)]
        colours = colours + rng.normal(0, 8, (n + 1, 3)).astype(np.float32)
        img[spots] = colours[lab[spots]]
        if nuclei:
            core = field > threshold + rng.uniform(0.3, 0.7)
            img[core] *= rng.uniform(0.35, 0.7)
    return img


def _region_parts(rng: np.random.Generator, ground: np.ndarray, ground_palette: np.ndarray,
                  cell: float, fill: float):
    """The look of a region's parts against the ground's: another palette, or the same
    colours at another size and density (told apart by texture alone)."""
    mode = rng.choice(["colour", "density", "both"], p=[0.5, 0.2, 0.3])
    if mode == "density":
        return ground, ground_palette, cell * rng.uniform(1.6, 2.5), min(0.85, fill + 0.3)
    inner_ground = natural_colour(rng)
    palette = _palette(rng, natural_colour(rng), int(rng.integers(1, 4)), rng.uniform(5, 25))
    if mode == "both":
        cell = cell * rng.uniform(0.6, 1.8)
        fill = float(np.clip(fill + rng.uniform(-0.2, 0.3), 0.2, 0.85))
    return inner_ground, palette, cell, fill


def paint_part_regions(rng: np.random.Generator, canvas: _Canvas, outer: int,
                       large: bool = False) -> None:
    """Paint a scene of regions made of small parts on ``canvas`` (its ``shape`` is
    a window of an ``outer`` side frame: sizes are fractions of the frame). Each
    region is one object; ``large``: regions a third to most of the frame across
    (else a tenth to a half)."""
    shape = canvas.shape
    cell = max(2.0, rng.uniform(0.004, 0.02) * outer)  # 4-20 px parts in a 1024 frame
    fill = float(rng.uniform(0.3, 0.7))
    ground = natural_colour(rng)
    ground_palette = _palette(rng, natural_colour(rng), int(rng.integers(1, 4)),
                              rng.uniform(5, 25))
    canvas.image[:] = part_layer(rng, shape, ground, ground_palette, cell, fill,
                                 nuclei=rng.random() < 0.4)
    lo, hi = (0.3, 0.8) if large else (0.1, 0.5)
    kind_p = REGION_WEIGHTS / REGION_WEIGHTS.sum()
    for _ in range(int(rng.integers(1, 7))):
        size = rng.uniform(lo, hi) * outer
        cy, cx = rng.uniform(0.05, 0.95, 2) * np.array(shape)
        kind = REGION_KINDS[rng.choice(len(REGION_KINDS), p=kind_p)]
        rr, cc = _leaf_pixels(rng, kind, shape, cy, cx, size)
        if len(rr) < 16:
            continue
        r0, c0 = int(rr.min()), int(cc.min())
        box = (int(rr.max()) - r0 + 1, int(cc.max()) - c0 + 1)
        mask = np.zeros(box, bool)
        mask[rr - r0, cc - c0] = True
        g, pal, c, f = _region_parts(rng, ground, ground_palette, cell, fill)
        layer = part_layer(rng, box, g, pal, c, f, nuclei=rng.random() < 0.4)
        if rng.random() < 0.4:  # a rim of darker, denser parts (an epithelium)
            width = max(1, int(round(rng.uniform(1.0, 3.0) * c)))
            rim = mask & ~ndi.binary_erosion(mask, iterations=width)
            layer[rim] = layer[rim] * rng.uniform(0.4, 0.8) + rng.normal(0, 6, 3)
        if rng.random() < 0.3:  # a lumen: a hole of ground colour, not part of the object
            inner = ndi.binary_erosion(mask, iterations=max(2, int(min(box) * 0.25)))
            mask &= ~inner
            canvas.image[r0:r0 + box[0], c0:c0 + box[1]][inner] = ground + rng.normal(0, 4, 3)
            canvas.labels[r0:r0 + box[0], c0:c0 + box[1]][inner] = 0
        yy, xx = np.nonzero(mask)
        if len(yy) < 16:
            continue
        _paint_leaf(canvas, yy + r0, xx + c0, layer[yy, xx])

"""Procedural scenes with instance masks, for training and evaluating SAM models.

:func:`make_scene` draws one square scene from a seed: a textured or parcelled
background and many objects of different kinds (smooth blobs, clusters of
touching cells, rotated rectangles and L-shaped buildings with two-tone roofs,
thin curved lines, rings and blobs with holes, cells with a nucleus, star
polygons), in colour or grey, with a wide range of sizes and contrasts, then
blur, noise and an optional zoom (a scene drawn small and upscaled, as a small
image looks once it is resized to the model's 1024 frame).

Ground truth is a label image (the visible part of every painted piece) plus a
list of objects, each a tuple of label ids: a piece alone is an object, and so
is a whole made of several pieces (a cell and its nucleus, the two halves of a
roof). The same seed always gives the same scene.

numpy, scipy and scikit-image only; a 384x384 scene takes a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import draw

# Object kinds and how often each is drawn.
KINDS = ("blob", "ellipse", "cells", "building", "line", "ring", "nucleus", "star", "rect")
KIND_WEIGHTS = np.array([3.0, 2.0, 2.0, 2.5, 1.5, 1.2, 1.5, 1.0, 1.5])


@dataclass(frozen=True)
class Scene:
    """One generated scene.

    image: HxWx3 uint8 RGB. labels: HxW int32, 0 = background, every other
    value one visible piece. objects: tuples of label ids; an object's mask is
    ``np.isin(labels, ids)``. valid: (h, w) of the part that holds the scene,
    anchored top-left (the rest is padding in the model's mean colour).
    """

    image: np.ndarray
    labels: np.ndarray
    objects: tuple[tuple[int, ...], ...]
    valid: tuple[int, int]

    def mask(self, index: int) -> np.ndarray:
        """HxW bool mask of object ``index``."""
        ids = self.objects[index]
        if len(ids) == 1:
            return self.labels == ids[0]
        return np.isin(self.labels, ids)


PIXEL_MEAN = (123.675, 116.28, 103.53)


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> np.ndarray:
    """HxW float32 smooth random field, roughly N(0, 1), varying over ``cell`` pixels."""
    h, w = shape
    gh, gw = max(2, int(np.ceil(h / cell)) + 2), max(2, int(np.ceil(w / cell)) + 2)
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    yy = np.linspace(0.5, gh - 1.5, h, dtype=np.float32)
    xx = np.linspace(0.5, gw - 1.5, w, dtype=np.float32)
    return _bilinear(grid, yy, xx)


def _bilinear(grid: np.ndarray, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    y0 = np.floor(yy).astype(np.int64)
    x0 = np.floor(xx).astype(np.int64)
    y1 = np.minimum(y0 + 1, grid.shape[0] - 1)
    x1 = np.minimum(x0 + 1, grid.shape[1] - 1)
    fy = (yy - y0)[:, None]
    fx = (xx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x1] * fx
    bottom = grid[y1][:, x0] * (1 - fx) + grid[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """HxW float32 texture around 0 (mix of scales, sometimes stripes)."""
    h, w = shape
    tex = np.zeros(shape, np.float32)
    for cell in (rng.uniform(2, 6), rng.uniform(8, 30), rng.uniform(40, 160)):
        tex += rng.uniform(0.0, 1.0) * smooth_noise(rng, shape, cell)
    if rng.random() < 0.15:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 30)
        tex += rng.uniform(0.5, 1.5) * np.sin(
            (np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period)
    return tex


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3).astype(np.float32)


def _contrasting(rng: np.random.Generator, ref: np.ndarray) -> np.ndarray:
    """A colour that differs from ``ref`` by a random, sometimes small, amount."""
    for _ in range(20):
        colour = _random_colour(rng) if rng.random() < 0.6 else np.clip(
            ref + rng.normal(0, 60, 3), 0, 255).astype(np.float32)
        if np.abs(colour - ref).max() > rng.uniform(20, 45):
            return colour
    return np.clip(255 - ref, 0, 255).astype(np.float32)


# ---------------------------------------------------------------- shapes
# Each shape function returns (rr, cc) pixel lists of its pieces (a list, one
# entry per piece, painted in order) and a list of objects as tuples of piece
# indices (pieces that form a whole).

def _polygon_pixels(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int]):
    return draw.polygon(ys, xs, shape=shape)


def _radial_shape(rng, cy, cx, radius, irregular, n=64):
    theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = np.ones(n)
    for k in range(1, 5):
        r += irregular / k * rng.uniform(-1, 1) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = np.clip(r, 0.3, None) * radius
    aspect = rng.uniform(0.5, 1.0)
    rot = rng.uniform(0, np.pi)
    y = r * np.sin(theta) * aspect
    x = r * np.cos(theta)
    ys = cy + y * np.cos(rot) + x * np.sin(rot)
    xs = cx - y * np.sin(rot) + x * np.cos(rot)
    return ys, xs


def _shape_blob(rng, shape, cy, cx, size):
    ys, xs = _radial_shape(rng, cy, cx, size / 2, rng.uniform(0.05, 0.4))
    return [_polygon_pixels(ys, xs, shape)], [(0,)]


def _shape_ellipse(rng, shape, cy, cx, size):
    a = size / 2
    b = a * rng.uniform(0.3, 1.0)
    return [draw.ellipse(cy, cx, a, b, shape=shape, rotation=rng.uniform(0, np.pi))], [(0,)]


def _shape_star(rng, shape, cy, cx, size):
    n = int(rng.integers(3, 9))
    theta = np.sort(rng.uniform(0, 2 * np.pi, 2 * n))
    r = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.3, 0.8)) * size / 2
    ys, xs = cy + r * np.sin(theta), cx + r * np.cos(theta)
    return [_polygon_pixels(ys, xs, shape)], [(0,)]


def _rotated_rect(cy, cx, h, w, rot):
    corners = np.array([[-h, -w], [-h, w], [h, w], [h, -w]], np.float64) / 2
    c, s = np.cos(rot), np.sin(rot)
    ys = cy + corners[:, 0] * c + corners[:, 1] * s
    xs = cx - corners[:, 0] * s + corners[:, 1] * c
    return ys, xs


def _shape_rect(rng, shape, cy, cx, size):
    h = size * rng.uniform(0.3, 1.0)
    ys, xs = _rotated_rect(cy, cx, h, size, rng.uniform(0, np.pi))
    return [_polygon_pixels(ys, xs, shape)], [(0,)]


def _shape_building(rng, shape, cy, cx, size):
    """A rectangle or L-shape; sometimes a roof in two halves (two pieces, one whole)."""
    rot = rng.uniform(0, np.pi) if rng.random() < 0.6 else rng.choice([0, np.pi / 2])
    h = size * rng.uniform(0.35, 0.9)
    c, s = np.cos(rot), np.sin(rot)
    if rng.random() < 0.5:  # two roof halves split along the long axis
        off = h / 4
        pieces = []
        for sign in (-1, 1):
            ys, xs = _rotated_rect(cy + sign * off * c, cx - sign * off * s, h / 2, size, rot)
            pieces.append(_polygon_pixels(ys, xs, shape))
        return pieces, [(0, 1), (0,), (1,)]
    if rng.random() < 0.5:  # L-shape from two overlapping rectangles, one piece
        ys1, xs1 = _rotated_rect(cy, cx, h, size, rot)
        dy, dx = size * 0.3, h * 0.6
        ys2, xs2 = _rotated_rect(cy + dy * c + dx * s, cx - dy * s + dx * c, size * 0.4,
                                 h * 0.8, rot)
        rr1, cc1 = _polygon_pixels(ys1, xs1, shape)
        rr2, cc2 = _polygon_pixels(ys2, xs2, shape)
        return [(np.concatenate([rr1, rr2]), np.concatenate([cc1, cc2]))], [(0,)]
    ys, xs = _rotated_rect(cy, cx, h, size, rot)
    return [_polygon_pixels(ys, xs, shape)], [(0,)]


def _shape_line(rng, shape, cy, cx, size):
    """A thin curved band (road, river, filament): a quadratic Bezier with width."""
    length = size * rng.uniform(1.0, 3.0)
    angle = rng.uniform(0, np.pi)
    p0 = np.array([cy - np.sin(angle) * length / 2, cx - np.cos(angle) * length / 2])
    p2 = np.array([cy + np.sin(angle) * length / 2, cx + np.cos(angle) * length / 2])
    p1 = (p0 + p2) / 2 + rng.normal(0, length / 4, 2)
    t = np.linspace(0, 1, max(8, int(length)))[:, None]
    curve = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t ** 2 * p2
    width = rng.uniform(1.5, max(2.0, min(10.0, size / 6)))
    mask = np.zeros(shape, bool)
    rr = np.clip(np.round(curve[:, 0]).astype(int), 0, shape[0] - 1)
    cc = np.clip(np.round(curve[:, 1]).astype(int), 0, shape[1] - 1)
    mask[rr, cc] = True
    r0, r1 = max(0, rr.min() - 12), min(shape[0], rr.max() + 13)
    c0, c1 = max(0, cc.min() - 12), min(shape[1], cc.max() + 13)
    sub = ndi.distance_transform_edt(~mask[r0:r1, c0:c1]) <= width / 2
    ry, rx = np.nonzero(sub)
    return [(ry + r0, rx + c0)], [(0,)]


def _shape_ring(rng, shape, cy, cx, size):
    """A blob with one or more holes (the background shows through)."""
    outer = _shape_blob(rng, shape, cy, cx, size)[0][0]
    mask = np.zeros(shape, bool)
    mask[outer] = True
    for _ in range(int(rng.integers(1, 3))):
        hs = size * rng.uniform(0.2, 0.5)
        hy, hx = cy + rng.uniform(-0.15, 0.15) * size, cx + rng.uniform(-0.15, 0.15) * size
        mask[draw.ellipse(hy, hx, hs / 2, hs / 2 * rng.uniform(0.5, 1), shape=shape,
                          rotation=rng.uniform(0, np.pi))] = False
    return [np.nonzero(mask)], [(0,)]


def _shape_nucleus(rng, shape, cy, cx, size):
    """A cell with a nucleus: the cell body and the nucleus are pieces of one whole."""
    body = _shape_blob(rng, shape, cy, cx, size)[0][0]
    ns = size * rng.uniform(0.25, 0.5)
    nuc = draw.ellipse(cy + rng.uniform(-0.1, 0.1) * size, cx + rng.uniform(-0.1, 0.1) * size,
                       ns / 2, ns / 2 * rng.uniform(0.6, 1), shape=shape,
                       rotation=rng.uniform(0, np.pi))
    return [body, nuc], [(0, 1), (1,)]


def _shape_cells(rng, shape, cy, cx, size):
    """A cluster of touching cells: a blob cut into Voronoi cells."""
    region = _shape_blob(rng, shape, cy, cx, size * rng.uniform(1.5, 3.0))[0][0]
    if len(region[0]) < 20:
        return [region], [(0,)]
    n = int(np.clip(len(region[0]) / max(size, 4) ** 2 * rng.uniform(0.6, 1.2), 2, 30))
    pick = rng.choice(len(region[0]), n, replace=False)
    seeds = np.stack([region[0][pick], region[1][pick]], 1).astype(np.float32)
    pts = np.stack(region, 1).astype(np.float32)
    d = ((pts[:, None, :] - seeds[None, :, :]) ** 2).sum(-1)
    owner = d.argmin(1)
    pieces = [(region[0][owner == i], region[1][owner == i]) for i in range(n)]
    pieces = [p for p in pieces if len(p[0])]
    return pieces, [(i,) for i in range(len(pieces))]


SHAPES = {
    "blob": _shape_blob, "ellipse": _shape_ellipse, "cells": _shape_cells,
    "building": _shape_building, "line": _shape_line, "ring": _shape_ring,
    "nucleus": _shape_nucleus, "star": _shape_star, "rect": _shape_rect,
}


# ---------------------------------------------------------------- painting

class _Canvas:
    def __init__(self, rng, shape):
        self.rng = rng
        self.shape = shape
        self.image = np.zeros((*shape, 3), np.float32)
        self.labels = np.zeros(shape, np.int32)
        self.objects: list[tuple[int, ...]] = []
        self.areas: dict[int, int] = {}
        self.next_id = 1

    def fill(self, rr, cc, colour, texture_amp, shade=None):
        tex = self.rng.standard_normal(len(rr)).astype(np.float32) * texture_amp[0]
        if texture_amp[1] > 0:  # a texture field over the piece's bounding box only
            r0, c0 = rr.min(), cc.min()
            field = _texture(self.rng, (int(rr.max() - r0 + 1), int(cc.max() - c0 + 1)))
            tex = tex + field[rr - r0, cc - c0] * texture_amp[1]
        vals = colour[None, :] * (1 + tex[:, None] * 0.15) + tex[:, None] * 12
        if shade is not None:
            vals = vals + shade[rr, cc, None]
        self.image[rr, cc] = vals

    def paint(self, pieces, wholes, colours, texture_amp, edge=None):
        ids = []
        for (rr, cc), colour in zip(pieces, colours):
            if len(rr) == 0:
                ids.append(None)
                continue
            self.fill(rr, cc, colour, texture_amp)
            pid = self.next_id
            self.next_id += 1
            self.labels[rr, cc] = pid
            self.areas[pid] = len(rr)
            ids.append(pid)
        if edge is not None:
            self._draw_edges([i for i in ids if i is not None], edge)
        for whole in wholes:
            members = tuple(ids[i] for i in whole if ids[i] is not None)
            if members:
                self.objects.append(members)

    def _draw_edges(self, ids, colour):
        """Darken or lighten the boundary between touching pieces (cell walls)."""
        if len(ids) < 2:
            return
        lab = self.labels
        mine = np.isin(lab, ids)
        boundary = np.zeros_like(mine)
        boundary[:-1] |= (lab[:-1] != lab[1:]) & mine[:-1] & mine[1:]
        boundary[:, :-1] |= (lab[:, :-1] != lab[:, 1:]) & mine[:, :-1] & mine[:, 1:]
        self.image[boundary] = colour


def _paint_background(rng, canvas: _Canvas, size: int) -> np.ndarray:
    """Fill the canvas; return the mean background colour. Sometimes parcels (objects)."""
    shape = canvas.shape
    base = _random_colour(rng)
    style = rng.choice(["texture", "parcels", "flat"], p=[0.55, 0.3, 0.15])
    if style == "parcels":
        n = int(rng.integers(3, 25))
        seeds = rng.uniform(0, 1, (n, 2)) * np.array(shape)
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
        owner = np.zeros(shape, np.int64)
        best = np.full(shape, np.inf, np.float32)
        for i, (sy, sx) in enumerate(seeds):
            d = (yy - sy) ** 2 + (xx - sx) ** 2
            closer = d < best
            owner[closer] = i
            best[closer] = d[closer]
        pieces, colours = [], []
        for i in range(n):
            rr, cc = np.nonzero(owner == i)
            pieces.append((rr, cc))
            colours.append(np.clip(base + rng.normal(0, 45, 3), 0, 255).astype(np.float32))
        canvas.paint(pieces, [(i,) for i in range(n)], colours,
                     (rng.uniform(0, 0.3), rng.uniform(0, 1.2)),
                     edge=_contrasting(rng, base) if rng.random() < 0.3 else None)
        return base
    amp = rng.uniform(0.2, 2.0) if style == "texture" else 0.0
    tex = _texture(rng, shape) * amp
    grad = 0.0
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32) / size
        grad = (rng.uniform(-60, 60) * yy + rng.uniform(-60, 60) * xx)[..., None]
    canvas.image[:] = base * (1 + tex[..., None] * 0.15) + tex[..., None] * 12 + grad
    return base


def make_scene(seed: int | np.random.Generator, size: int = 384, *,
               pad_prob: float = 0.1, frame: int | None = None,
               dead_leaves_prob: float = 0.0, large_prob: float = 0.0,
               photos=None, photo_prob: float = 0.0,
               photo_regions_prob: float = 0.0, small_prob: float = 0.0,
               parts_prob: float = 0.0) -> Scene:
    """Draw one ``size`` x ``size`` scene; see the module docstring.

    ``dead_leaves_prob``: share of scenes drawn as dead-leaves scenes
    (:func:`.scenes_natural.paint_dead_leaves`) instead of objects on a
    background; at 0 (the default) the random stream is the one of the
    earlier versions, so held-out scenes do not change.

    ``frame``: the scene is a ``size`` window of a ``frame`` x ``frame``
    image (default: the scene is the whole image). Object sizes are
    fractions of the frame, so a small window of a large frame holds a few
    big objects, often cut by its border, as a training crop of a large
    image does.

    ``large_prob``: share of scenes whose objects (or leaves) are large, a
    third to most of the frame across, as a whole gland, lake or cloud bank
    fills a photograph (at 0 the random stream is unchanged).

    ``photos`` / ``photo_prob``: photographs (HxWx3 float32) whose patches
    fill that share of a dead-leaves scene's background and leaves (see
    :mod:`.photo_textures`; at 0 the random stream is unchanged).
    ``photo_regions_prob``: share of scenes that are a window of one of
    ``photos`` whose objects are its regions by a graph segmentation
    (:func:`.photo_textures.paint_photo_regions`; pseudo-labels: they teach
    the model the edges of real images, not what an object is).
    ``small_prob``: share of the other scenes (not large) that are dead-leaves
    scenes of many small leaves, some with soft edges (small clouds on land,
    cells in tissue; at 0 the random stream is unchanged).
    ``parts_prob``: share of the scenes not small that are regions made of
    many small parts (:func:`.scenes_tissue.paint_part_regions`: glands of
    cells, land of fields; at 0 the random stream is unchanged).
    """
    rng = np.random.default_rng(seed)
    zoom = int(rng.choice([1, 1, 1, 2, 2, 3, 4]))
    inner = -(-size // zoom)
    outer = inner if frame is None else max(inner, -(-int(frame) // zoom))
    shape = (inner, inner)
    canvas = _Canvas(rng, shape)
    large = large_prob > 0 and rng.random() < large_prob
    small = not large and small_prob > 0 and rng.random() < small_prob
    parts = not small and parts_prob > 0 and rng.random() < parts_prob
    if photos and photo_regions_prob > 0 and rng.random() < photo_regions_prob:
        from .photo_textures import paint_photo_regions

        paint_photo_regions(rng, canvas, photos)
    elif parts:
        from .scenes_tissue import paint_part_regions

        paint_part_regions(rng, canvas, outer, large=large)
    elif small or (dead_leaves_prob > 0 and rng.random() < dead_leaves_prob):
        from .scenes_natural import paint_dead_leaves  # lazy: it imports this module

        paint_dead_leaves(rng, canvas, outer, large=large, photos=photos,
                          photo_prob=photo_prob, small=small)
    else:
        _paint_objects(rng, canvas, inner, outer, large=large)
    return _finish(rng, canvas, size, inner, zoom, pad_prob)


def _paint_objects(rng, canvas: _Canvas, inner: int, outer: int, large: bool = False) -> None:
    """The classic scene: a background, then objects of :data:`KINDS`
    (``large``: typical objects a third to most of the frame across)."""
    shape = canvas.shape
    bg = _paint_background(rng, canvas, inner)

    # typical object size as a fraction of the frame
    scale = rng.uniform(0.3, 0.8) if large else rng.uniform(0.02, 0.35)
    typical = max(4.0, scale * outer)
    density = rng.uniform(0.15, 0.9)
    n_obj = int(np.clip(density * (inner / typical) ** 2 * (1.5 if outer > inner else 1.0),
                        1, 60))
    if large:
        n_obj = int(rng.integers(2, 7))
    kind_p = KIND_WEIGHTS * rng.uniform(0.2, 1.0, len(KINDS))
    kind_p /= kind_p.sum()
    if rng.random() < 0.5:  # scenes dominated by one kind
        kind_p = 0.2 * kind_p
        kind_p[rng.integers(len(KINDS))] += 0.8
    palette = [_contrasting(rng, bg) for _ in range(int(rng.integers(1, 5)))]
    for _ in range(n_obj):
        kind = KINDS[rng.choice(len(KINDS), p=kind_p)]
        obj_size = float(np.clip(typical * rng.lognormal(0, 0.4), 3, outer * 0.9))
        cy, cx = rng.uniform(*((0.15, 0.85) if large else (-0.1, 1.1)), 2) * inner
        pieces, wholes = SHAPES[kind](rng, shape, cy, cx, obj_size)
        base = palette[rng.integers(len(palette))] if rng.random() < 0.7 else _contrasting(rng, bg)
        colours = [base] + [_contrasting(rng, base) for _ in pieces[1:]]
        if kind == "cells":
            colours = [np.clip(base + rng.normal(0, 12, 3), 0, 255).astype(np.float32)
                       for _ in pieces]
        edge = _contrasting(rng, base) if kind == "cells" and rng.random() < 0.8 else None
        canvas.paint(pieces, wholes, colours, (rng.uniform(0, 0.4), rng.uniform(0, 0.8)),
                     edge=edge)


def _finish(rng, canvas: _Canvas, size: int, inner: int, zoom: int, pad_prob: float) -> Scene:
    """Grey, gamma, blur, noise, zoom and padding of a painted canvas."""
    image = canvas.image
    if rng.random() < 0.3:  # grey
        image = np.repeat(image.mean(-1, keepdims=True), 3, -1)
    if rng.random() < 0.3:  # inverted contrast curve
        gamma = rng.uniform(0.5, 2.0)
        image = 255 * (np.clip(image, 0, 255) / 255) ** gamma
    sigma = rng.choice([0, 0, 0.6, 1.0, 1.5, 2.5]) / zoom
    if sigma > 0:
        image = ndi.gaussian_filter(image, (sigma, sigma, 0))
    noise = rng.choice([0, 2, 5, 10, 20])
    if noise:
        image = image + rng.standard_normal(image.shape).astype(np.float32) * noise
    labels = canvas.labels
    if zoom > 1:
        yy = np.linspace(0, inner - 1, size, dtype=np.float32)
        image = np.stack([_bilinear(image[..., c], yy, yy) for c in range(3)], -1)
        idx = np.minimum((np.arange(size) + 0.5) / zoom, inner - 1).astype(np.int64)
        labels = labels[idx][:, idx]
    image = np.clip(image, 0, 255).astype(np.uint8)

    valid = (size, size)
    if rng.random() < pad_prob:
        vh, vw = (int(rng.integers(size // 3, size)) for _ in range(2))
        image[vh:] = np.array(PIXEL_MEAN, np.uint8)
        image[:, vw:] = np.array(PIXEL_MEAN, np.uint8)
        labels = labels.copy()
        labels[vh:] = 0
        labels[:, vw:] = 0
        valid = (vh, vw)
    objects = _keep_visible(labels, canvas.objects, canvas.areas, zoom)
    return Scene(image=image, labels=labels, objects=objects, valid=valid)


def _keep_visible(labels, objects, painted_areas, zoom, min_area=12):
    """Objects whose visible part is big enough and not mostly hidden."""
    counts = np.bincount(labels.ravel())
    kept = []
    for obj in objects:
        ids = [i for i in obj if i < len(counts) and counts[i] > 0]
        if len(ids) != len(obj):
            continue
        area = int(sum(counts[i] for i in ids))
        painted = sum(painted_areas[i] for i in ids) * zoom * zoom
        if area >= min_area and area >= 0.35 * painted:
            kept.append(tuple(ids))
    return tuple(kept)

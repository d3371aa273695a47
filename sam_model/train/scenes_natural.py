"""Scenes closer to real images: dead-leaves occlusion, texture-only objects, RandConv.

* :func:`paint_dead_leaves` fills a canvas of :mod:`.scenes` with a textured
  background and many overlapping "leaves" (blobs, ellipses, rotated
  rectangles, stars, clouds from thresholded fractal noise), painted back to
  front so that later leaves hide earlier ones, as in the dead-leaves model
  of natural images: leaf sizes follow a power law (many small, few large).
  Each leaf has a colour drawn from natural-image statistics (luminance
  varies much more than hue) and its own texture (fractal "clouds", oriented
  stripes like fields, granular "tissue" spots, fine grain); some leaves
  keep the colour of what lies under them and differ only by texture.
* ``small`` scenes (:func:`paint_dead_leaves`): dozens of leaves a few to a
  few tens of pixels across on a textured or photographic ground, some with
  soft edges (a blurred alpha, the object where it is at least one half), as
  small clouds lie on land or cells in tissue.
* :func:`random_convolution` (RandConv, Xu et al. 2021): the image filtered
  by a random convolution, rescaled to the image's own statistics and
  blended with it, so that colour and local texture change while shapes and
  ground truth stay.

numpy, scipy and torch (one small convolution) only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from .scenes import SHAPES, _Canvas, smooth_noise

LEAF_KINDS = ("blob", "ellipse", "rect", "star", "cloud")
LEAF_WEIGHTS = np.array([3.0, 2.0, 2.0, 0.7, 1.5])
TEXTURES = ("fractal", "stripes", "spots", "grain", "flat")


def natural_colour(rng: np.random.Generator, *, saturation: float | None = None) -> np.ndarray:
    """An RGB colour (0..255 float32): uniform luminance, small opponent-colour offsets."""
    lum = rng.uniform(15, 240)
    s = rng.uniform(4, 40) if saturation is None else saturation
    a, b = rng.normal(0, s, 2)  # red-green and yellow-blue axes
    rgb = np.array([lum + 0.6 * a + 0.3 * b, lum - 0.6 * a + 0.3 * b, lum - 0.7 * b])
    return np.clip(rgb, 0, 255).astype(np.float32)


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], *,
                  roughness: float | None = None) -> np.ndarray:
    """HxW float32, zero mean, unit std: octaves of smooth noise (clouds)."""
    h = rng.uniform(0.3, 1.0) if roughness is None else roughness
    out = np.zeros(shape, np.float32)
    cell = 2.0
    while cell < 2 * max(shape):
        out += cell ** h * smooth_noise(rng, shape, cell)
        cell *= 2
    return (out - out.mean()) / max(float(out.std()), 1e-6)


def texture_field(rng: np.random.Generator, shape: tuple[int, int], kind: str) -> np.ndarray:
    """HxW float32 texture of ``kind`` (see :data:`TEXTURES`), roughly unit std."""
    h, w = shape
    if kind == "fractal":
        return fractal_noise(rng, shape)
    if kind == "stripes":
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(3, 25)
        phase = (np.cos(angle) * xx + np.sin(angle) * yy) * 2 * np.pi / period
        wobble = 0.6 * smooth_noise(rng, shape, rng.uniform(10, 60))
        return (np.sin(phase + wobble) * 1.2).astype(np.float32)
    if kind == "spots":
        fine = smooth_noise(rng, shape, rng.uniform(2, 8))
        return np.where(fine > rng.uniform(0.3, 1.2), 2.0, -0.3).astype(np.float32)
    if kind == "grain":
        return rng.standard_normal(shape).astype(np.float32)
    return np.zeros(shape, np.float32)


def _cloud_pixels(rng, shape, cy, cx, size):
    """A cloud-like leaf: fractal noise above a threshold that falls off from the centre."""
    r = max(3.0, size / 2)
    y0, y1 = int(max(0, cy - 1.5 * r)), int(min(shape[0], cy + 1.5 * r + 1))
    x0, x1 = int(max(0, cx - 1.5 * r)), int(min(shape[1], cx + 1.5 * r + 1))
    if y1 <= y0 or x1 <= x0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    field = fractal_noise(rng, (y1 - y0, x1 - x0), roughness=rng.uniform(0.5, 1.0))
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    d2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / r ** 2
    inside = field * 0.6 + 1.0 - d2 > 0.3
    rr, cc = np.nonzero(inside)
    return rr + y0, cc + x0


def _leaf_pixels(rng, kind, shape, cy, cx, size):
    if kind == "cloud":
        return _cloud_pixels(rng, shape, cy, cx, size)
    pieces, _ = SHAPES[kind](rng, shape, cy, cx, size)
    rr = np.concatenate([p[0] for p in pieces]) if pieces else np.zeros(0, np.int64)
    cc = np.concatenate([p[1] for p in pieces]) if pieces else np.zeros(0, np.int64)
    return rr, cc


def _paint_leaf(canvas: _Canvas, rr, cc, values) -> None:
    pid = canvas.next_id
    canvas.next_id += 1
    canvas.image[rr, cc] = values
    canvas.labels[rr, cc] = pid
    canvas.areas[pid] = len(rr)
    canvas.objects.append((pid,))


def _paint_soft_leaf(rng, canvas: _Canvas, rr, cc, colour: np.ndarray) -> None:
    """A leaf of flat ``colour`` (plus grain) with a soft edge: its mask blurred by a
    sigma of 0.7-2.5 px is the blending weight, the object is where that weight is at
    least one half (the painted object and its label agree)."""
    sigma = float(rng.uniform(0.7, 2.5))
    pad = int(np.ceil(3 * sigma))
    h, w = canvas.shape
    y0, x0 = max(0, int(rr.min()) - pad), max(0, int(cc.min()) - pad)
    y1, x1 = min(h, int(rr.max()) + pad + 1), min(w, int(cc.max()) + pad + 1)
    hard = np.zeros((y1 - y0, x1 - x0), np.float32)
    hard[rr - y0, cc - x0] = 1.0
    alpha = ndi.gaussian_filter(hard, sigma)
    inside = alpha >= 0.5
    if inside.sum() < 4:
        return
    region = canvas.image[y0:y1, x0:x1]
    grain = rng.standard_normal(alpha.shape).astype(np.float32)[..., None] * rng.uniform(0, 8)
    blended = alpha[..., None] * (colour + grain) + (1 - alpha[..., None]) * region
    region[~inside] = blended[~inside]  # the soft halo, outside the object
    yy, xx = np.nonzero(inside)
    _paint_leaf(canvas, yy + y0, xx + x0, blended[inside])


def paint_dead_leaves(rng: np.random.Generator, canvas: _Canvas, outer: int,
                      large: bool = False, photos=None, photo_prob: float = 0.0,
                      small: bool = False) -> None:
    """Paint a dead-leaves scene on ``canvas`` (its ``shape`` is a window of an ``outer``
    side frame: leaf sizes are fractions of the frame). Every leaf is one object;
    the background is not an object. ``large``: a few leaves, the largest up to
    most of the frame across. ``small``: 30-150 leaves 6-60 px across in a 1024 frame
    (a few pixels of the canvas at least), half of them with soft edges, none told
    apart by texture alone. ``photos`` (HxWx3 float32 list) and ``photo_prob``: that
    share of the background and the leaves is a patch of a photograph
    (:func:`.photo_textures.photo_patch`) instead of a procedural texture."""
    use_photos = bool(photos) and photo_prob > 0

    def photo(box) -> np.ndarray | None:  # consumes rng only when photos are in use
        if use_photos and rng.random() < photo_prob:
            from .photo_textures import photo_patch

            return photo_patch(rng, photos, box)
        return None

    shape = canvas.shape
    bg = natural_colour(rng)
    tex = texture_field(rng, shape, str(rng.choice(TEXTURES, p=[0.4, 0.15, 0.1, 0.15, 0.2])))
    backdrop = photo(shape)
    canvas.image[:] = (bg + tex[..., None] * rng.uniform(3, 25) if backdrop is None
                       else bg + backdrop)
    if rng.random() < 0.5:  # slow illumination change
        canvas.image += (smooth_noise(rng, shape, shape[0] / 2) * rng.uniform(5, 25))[..., None]
    if large:
        rmin = max(3.0, rng.uniform(0.05, 0.15) * outer)
        rmax = max(rmin * 1.5, rng.uniform(0.3, 0.45) * outer)
        count = int(rng.integers(3, 14))
    elif small:
        rmin = max(3.0, rng.uniform(0.003, 0.008) * outer)
        rmax = max(rmin * 2, rng.uniform(0.015, 0.03) * outer)
        count = int(rng.integers(30, 150))
    else:
        rmin = max(3.0, rng.uniform(0.01, 0.04) * outer)
        rmax = max(rmin * 1.5, rng.uniform(0.2, 0.6) * outer)
        count = int(rng.integers(8, 70))
    kind_p = LEAF_WEIGHTS * rng.uniform(0.2, 1.0, len(LEAF_KINDS))
    kind_p /= kind_p.sum()
    texture_only = rng.uniform(0, 0.5)  # share of leaves told apart by texture alone
    if small:
        texture_only = 0.0  # a few pixels of texture do not make an object
    palette = [natural_colour(rng) for _ in range(int(rng.integers(2, 6)))]
    for _ in range(count):
        u = rng.random()  # radius with density ~ r^-3 between rmin and rmax
        r = (rmin ** -2 - u * (rmin ** -2 - rmax ** -2)) ** -0.5
        cy, cx = rng.uniform(-0.1, 1.1, 2) * np.array(shape)
        kind = LEAF_KINDS[rng.choice(len(LEAF_KINDS), p=kind_p)]
        rr, cc = _leaf_pixels(rng, kind, shape, cy, cx, 2 * r)
        if len(rr) < 4:
            continue
        if small and rng.random() < 0.5:
            _paint_soft_leaf(rng, canvas, rr, cc, palette[rng.integers(len(palette))]
                             if rng.random() < 0.5 else natural_colour(rng))
            continue
        r0, c0 = rr.min(), cc.min()
        box = (int(rr.max() - r0 + 1), int(cc.max() - c0 + 1))
        kind_tex = str(rng.choice(TEXTURES))
        field = texture_field(rng, box, kind_tex)[rr - r0, cc - c0]
        patch = photo(box)
        if patch is not None:
            # the photo patch replaces the texture: a colour offset per pixel
            patch = patch[rr - r0, cc - c0]
            colour = (canvas.image[rr, cc].mean(0) if rng.random() < texture_only
                      else natural_colour(rng))
            _paint_leaf(canvas, rr, cc, colour[None, :] + patch)
            continue
        if rng.random() < texture_only and kind_tex != "flat":
            colour = canvas.image[rr, cc].mean(0)  # the colour under the leaf: texture only
            amp = rng.uniform(12, 35)
        else:
            colour = palette[rng.integers(len(palette))] if rng.random() < 0.5 \
                else natural_colour(rng)
            amp = rng.uniform(0, 20)
        shade = 0.0
        if rng.random() < 0.4:  # shading across the leaf (a rounded body lit from one side)
            ang = rng.uniform(0, 2 * np.pi)
            shade = ((np.cos(ang) * (cc - cx) + np.sin(ang) * (rr - cy)) / max(r, 1.0)
                     * rng.uniform(5, 30))[:, None]
        _paint_leaf(canvas, rr, cc, colour[None, :] + field[:, None] * amp + shade)


def random_convolution(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """RandConv: HxWx3 uint8 -> HxWx3 uint8, filtered by a random kxk 3->3 convolution
    (k in 1, 3, 5, 7), rescaled to the image's per-channel mean and std and blended
    with the original by a random weight."""
    k = int(rng.choice([1, 3, 5, 7]))
    weight = rng.normal(0, 1.0 / np.sqrt(3 * k * k), (3, 3, k, k)).astype(np.float32)
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    y = F.conv2d(F.pad(x, [k // 2] * 4, mode="reflect"), torch.from_numpy(weight))
    mean, std = x.mean((2, 3), keepdim=True), x.std((2, 3), keepdim=True)
    y = (y - y.mean((2, 3), keepdim=True)) / y.std((2, 3), keepdim=True).clamp(min=1e-3)
    y = y * std.clamp(min=10.0) + mean
    alpha = float(rng.uniform(0.3, 1.0))
    out = alpha * y + (1 - alpha) * x
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()

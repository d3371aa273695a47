"""Photographic textures for generated scenes.

Procedural textures (fractal noise, stripes, spots) teach the model edges that
real images rarely have. Here the background and the leaves of a dead-leaves
scene (:func:`.scenes_natural.paint_dead_leaves`) can instead be filled with
patches cut from photographs: a random photo, scale (1/2 to 2x), flip,
transpose and colour change (grey, channel order, contrast), shifted to the
leaf's colour. The ground truth stays exact (the leaf's shape), while what lies
inside and around an object looks like the inside of real things: fur, bark,
gravel, skin, sky, brick, text.

:func:`load_photos` reads a folder of images, or ``"skimage"``: the
photographs that scikit-image ships, less those the evaluation scores
(``coins``, ``immunohistochemistry``, ``cell``, ``hubble_deep_field``; see
``benchmarks/eval_sam_tiny.py``) and the synthetic ones (chessboards, logo,
phantom, horse silhouette, colour wheel).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

SKIMAGE_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "grass", "gravel",
                  "moon", "stereo_motorcycle", "retina", "rocket", "microaneurysms", "clock",
                  "text", "page")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def _as_rgb_float(image: np.ndarray, name: str) -> np.ndarray:
    from .data import as_rgb_uint8

    rgb = as_rgb_uint8(np.asarray(image), name=name).astype(np.float32)
    if min(rgb.shape[:2]) < 32:
        raise ValueError(f"{name}: {rgb.shape[1]}x{rgb.shape[0]} px is too small for a "
                         "texture (at least 32 px a side)")
    return rgb


def load_photos(spec: str | os.PathLike) -> list[np.ndarray]:
    """HxWx3 float32 photographs from a folder of images, or ``"skimage"``.

    Raises FileNotFoundError / ValueError naming the folder or file when it
    holds no usable image.
    """
    if str(spec) == "skimage":
        from skimage import data

        photos = []
        for name in SKIMAGE_PHOTOS:
            image = getattr(data, name)()
            if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
                image = image[0]
            photos.append(_as_rgb_float(image, f"skimage.data.{name}"))
        return photos
    from skimage import io as skio

    folder = Path(spec)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder of texture images")
    photos = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            image = skio.imread(path)
        except Exception as exc:
            raise ValueError(f"{path}: cannot read it as an image: {exc}") from exc
        photos.append(_as_rgb_float(image, str(path)))
    if not photos:
        raise ValueError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in it")
    return photos


def photo_patch(rng: np.random.Generator, photos: list[np.ndarray],
                shape: tuple[int, int]) -> np.ndarray:
    """An HxWx3 float32 patch of a random photo: zero mean per channel, contrast
    drawn between 0.4x and 1.3x the photo's, colour order and greyness random."""
    h, w = int(shape[0]), int(shape[1])
    photo = photos[int(rng.integers(len(photos)))]
    transpose = bool(rng.random() < 0.5)
    if transpose:
        photo = photo.transpose(1, 0, 2)
    scale = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    need_h = max(2, min(photo.shape[0], int(np.ceil(h / scale))))
    need_w = max(2, min(photo.shape[1], int(np.ceil(w / scale))))
    y0 = int(rng.integers(0, photo.shape[0] - need_h + 1))
    x0 = int(rng.integers(0, photo.shape[1] - need_w + 1))
    crop = photo[y0:y0 + need_h, x0:x0 + need_w]
    if rng.random() < 0.5:
        crop = crop[::-1]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None]
    patch = F.interpolate(t, (h, w), mode="bilinear", align_corners=False)[0]
    patch = patch.permute(1, 2, 0).numpy()
    roll = rng.random()
    if roll < 0.25:
        patch = np.repeat(patch.mean(-1, keepdims=True), 3, -1)
    elif roll < 0.6:
        patch = patch[..., rng.permutation(3)]
    patch = patch - patch.mean((0, 1), keepdims=True)
    return (patch * rng.uniform(0.4, 1.3)).astype(np.float32)


SEGMENT_SIDE = 384
"""Photo regions are segmented at most this many px a side (the training loss sees 256)."""


def photo_crop(rng: np.random.Generator, photos: list[np.ndarray],
               shape: tuple[int, int]) -> np.ndarray:
    """An HxWx3 float32 (0..255) window of a random photo at a random scale (1/2 to 2x),
    flipped, transposed and its colour channels reordered at random."""
    patch = photo_patch(rng, photos, shape)  # zero mean: add a mean colour back
    return np.clip(patch + rng.uniform(60, 190, 3).astype(np.float32), 0, 255)


def paint_photo_regions(rng: np.random.Generator, canvas, photos: list[np.ndarray], *,
                        max_share: float = 0.6, min_thickness: float = 3.0) -> None:
    """Fill ``canvas`` (:class:`.scenes._Canvas`) with a window of a photo whose objects
    are its regions: Felzenszwalb's graph segmentation at a random granularity
    (``scale`` log-uniform 50-2000), computed at most :data:`SEGMENT_SIDE` px a side.
    Regions over ``max_share`` of the window stay unlabelled (background), and so
    do slivers along edges: regions whose deepest pixel lies less than
    ``min_thickness`` segmentation px from their border."""
    from scipy import ndimage as ndi
    from skimage.segmentation import felzenszwalb

    h, w = canvas.shape
    image = photo_crop(rng, photos, (h, w))
    factor = max(1.0, max(h, w) / SEGMENT_SIDE)
    sh, sw = max(2, int(round(h / factor))), max(2, int(round(w / factor)))
    small = image
    if (sh, sw) != (h, w):
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        small = F.interpolate(t, (sh, sw), mode="bilinear", align_corners=False,
                              antialias=True)[0].permute(1, 2, 0).numpy()
    k = float(np.exp(rng.uniform(np.log(50), np.log(2000))))
    seg = felzenszwalb(small / 255.0, scale=k, sigma=float(rng.uniform(0.5, 1.0)),
                       min_size=max(8, int(sh * sw * rng.uniform(0.0005, 0.004))))
    inner = np.ones(seg.shape, bool)  # False on region borders
    inner[:-1] &= seg[:-1] == seg[1:]
    inner[1:] &= seg[1:] == seg[:-1]
    inner[:, :-1] &= seg[:, :-1] == seg[:, 1:]
    inner[:, 1:] &= seg[:, 1:] == seg[:, :-1]
    depth = ndi.maximum(ndi.distance_transform_edt(inner), seg, np.arange(seg.max() + 1))
    rows = np.minimum(((np.arange(h) + 0.5) * sh / h).astype(np.int64), sh - 1)
    cols = np.minimum(((np.arange(w) + 0.5) * sw / w).astype(np.int64), sw - 1)
    seg = seg[rows][:, cols]
    counts = np.bincount(seg.ravel())
    canvas.image[:] = image
    keep = (counts > 0) & (counts <= max_share * h * w) & (np.asarray(depth) >= min_thickness)
    regions = np.flatnonzero(keep)
    pids = canvas.next_id + np.arange(len(regions))
    lut = np.zeros(len(counts), canvas.labels.dtype)  # region -> object id, 0: background
    lut[regions] = pids
    canvas.labels[:] = lut[seg]
    for region, pid in zip(regions.tolist(), pids.tolist()):
        canvas.areas[pid] = int(counts[region])
        canvas.objects.append((pid,))
    canvas.next_id += len(regions)

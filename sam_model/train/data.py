"""Training batches: generated scenes or a user's image/label pairs.

Every batch is a dict of tensors in one format, whatever its source:

* ``image``: BxSxSx3 uint8 RGB crops (S a multiple of 16);
* ``masks``: BxKxSxS bool, K target objects per crop;
* ``valid``: BxK bool (False for padding objects of crops with fewer than K);
* ``offset``: 2 long, (y, x) of the crops' top-left corner in the model's
  input frame (multiples of 16, the same for the whole batch).

A crop at ``offset`` is exactly what the encoder sees of a full input there,
up to the encoder's padding at the crop's border: the training loop slices the
positional encoding at the offset and shifts prompts into the input frame.

Batches are a pure function of ``(seed, batch index)``, so a run resumed at
step ``n`` sees the same data as an uninterrupted one. :class:`BatchStream` is
an ``IterableDataset`` that splits batch indices between DataLoader workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .scenes import PIXEL_MEAN, make_scene
from .scenes_natural import random_convolution

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass(frozen=True)
class BatchPlan:
    """Shapes of training batches.

    crop_sizes / crop_weights: side S of the crops and how often each is used;
    pixels_per_batch: crops per batch = max(1, pixels_per_batch // S**2);
    objects: K, target objects per crop; img_size: the model's input side;
    window_prob: how often a generated crop is a window of a larger image
    (side log-uniform between S and ``img_size``), so that objects come in
    every size the model meets in its input frame, up to the whole frame;
    dead_leaves_prob: share of dead-leaves scenes; randconv_prob: share of
    generated crops given a random-convolution texture change (see
    :mod:`.scenes_natural`); large_prob: share of scenes of large objects;
    photos: where photographic textures come from (a folder of images or
    ``"skimage"``, see :mod:`.photo_textures`; None: procedural textures only);
    photo_prob: share of a dead-leaves scene's background and leaves filled
    with a patch of a photo; photo_regions_prob: share of scenes that are a
    window of a photo with its graph-segmentation regions as objects;
    small_prob: share of the scenes not large that are many small leaves;
    parts_prob: share of the scenes not small that are regions made of many
    small parts (see :mod:`.scenes_tissue`).
    """

    crop_sizes: tuple[int, ...] = (256, 384, 512)
    crop_weights: tuple[float, ...] = (0.3, 0.45, 0.25)
    pixels_per_batch: int = 8 * 384 * 384
    objects: int = 12
    img_size: int = 1024
    window_prob: float = 0.0
    dead_leaves_prob: float = 0.0
    randconv_prob: float = 0.0
    large_prob: float = 0.0
    photos: str | None = None
    photo_prob: float = 0.0
    photo_regions_prob: float = 0.0
    small_prob: float = 0.0
    parts_prob: float = 0.0

    @property
    def uses_photos(self) -> bool:
        """Whether generated scenes need the photographs ``photos`` names."""
        return self.photo_prob > 0 or self.photo_regions_prob > 0

    def frame(self, rng: np.random.Generator, size: int) -> int | None:
        """The side of the image a generated crop is a window of (None: the crop itself)."""
        if self.window_prob <= 0 or rng.random() >= self.window_prob:
            return None
        return int(np.exp(rng.uniform(np.log(size), np.log(max(size, self.img_size)))))

    def shape(self, rng: np.random.Generator) -> tuple[int, int]:
        """(crop side S, crops per batch) drawn for one batch."""
        p = np.asarray(self.crop_weights, float)
        size = int(self.crop_sizes[rng.choice(len(self.crop_sizes), p=p / p.sum())])
        return size, max(1, self.pixels_per_batch // (size * size))

    def offset(self, rng: np.random.Generator, size: int) -> tuple[int, int]:
        """A random top-left corner (multiples of 16) keeping the crop inside the frame."""
        cells = (self.img_size - size) // 16
        return tuple(int(v) * 16 for v in rng.integers(0, cells + 1, 2))


def _pick_objects(masks: list[np.ndarray], k: int, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """K masks (with repeats when fewer) and their validity."""
    size = masks[0].shape if masks else None
    if not masks:
        raise ValueError("no objects")
    idx = rng.permutation(len(masks))[:k]
    if len(idx) < k:
        idx = np.concatenate([idx, rng.choice(len(masks), k - len(idx))])
    out = np.stack([masks[i] for i in idx]).reshape(k, *size)
    return out, np.ones(k, bool)


def scene_batch(seed: int, index: int, plan: BatchPlan,
                photos: Sequence[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """Batch ``index`` of the generated-scene stream with base ``seed`` (``photos``:
    the textures ``plan.photos`` names, loaded by :func:`.photo_textures.load_photos`)."""
    if plan.uses_photos and not photos:
        raise ValueError("plan.photo_prob or photo_regions_prob > 0 needs the photos "
                         "plan.photos names")
    rng = np.random.default_rng([seed, index])
    size, count = plan.shape(rng)
    offset = plan.offset(rng, size)
    images, masks, valid = [], [], []
    attempt = 0
    while len(images) < count:
        scene_rng = np.random.default_rng([seed, index, len(images), attempt])
        scene = make_scene(scene_rng, size, frame=plan.frame(scene_rng, size),
                           dead_leaves_prob=plan.dead_leaves_prob,
                           large_prob=plan.large_prob, photos=photos,
                           photo_prob=plan.photo_prob,
                           photo_regions_prob=plan.photo_regions_prob,
                           small_prob=plan.small_prob, parts_prob=plan.parts_prob)
        attempt += 1
        objs = [scene.mask(i) for i in range(len(scene.objects))]
        if not objs:
            continue
        m, v = _pick_objects(objs, plan.objects, rng)
        image = scene.image
        if plan.randconv_prob > 0 and scene_rng.random() < plan.randconv_prob:
            image = random_convolution(scene_rng, image)
        images.append(image)
        masks.append(m)
        valid.append(v)
    return _collate(images, masks, valid, offset)


def _collate(images, masks, valid, offset) -> dict[str, torch.Tensor]:
    return {
        "image": torch.from_numpy(np.stack(images)),
        "masks": torch.from_numpy(np.stack(masks)),
        "valid": torch.from_numpy(np.stack(valid)),
        "offset": torch.tensor(offset, dtype=torch.long),
    }


# ------------------------------------------------------------ user pairs

def resize_longest(image: np.ndarray, labels: np.ndarray, target: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Resize so the longest side is ``target``.

    image HxWx3 uint8 (torch's antialiased bilinear, rounded: within a grey
    level or two of ``SamPredictor.set_image``'s Pillow bilinear; the
    evaluation figures were made with this one), labels HxW int (nearest).
    """
    h, w = labels.shape
    scale = target / max(h, w)
    nh, nw = int(h * scale + 0.5), int(w * scale + 0.5)
    if (nh, nw) == (h, w):
        return image, labels
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    t = torch.nn.functional.interpolate(t, (nh, nw), mode="bilinear", align_corners=False,
                                        antialias=True)
    img = t[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    rows = np.minimum(((np.arange(nh) + 0.5) * h / nh).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(nw) + 0.5) * w / nw).astype(np.int64), w - 1)
    return img, labels[rows][:, cols]


def pair_batch(pairs: Sequence[tuple[np.ndarray, np.ndarray]], seed: int, index: int,
               plan: BatchPlan, *, min_area: int = 16) -> dict[str, torch.Tensor]:
    """Batch ``index`` of random crops from (image HxWx3 uint8, labels HxW int) pairs.

    The pairs must already be resized so their longest side is
    ``plan.img_size`` (the predictor's geometry, see :func:`prepare_pairs`).
    All crops of a batch are cut at one place of the input frame, chosen so
    that a random image has an object there (the positional encoding is
    sliced at that place); what lies outside the image is the
    model's mean colour, as the model pads its input. Objects are the label
    ids (0 = background) with at least ``min_area`` pixels inside the crop.
    """
    rng = np.random.default_rng([seed, index])
    size, count = plan.shape(rng)
    images, labs = [], []
    offset = plan.offset(rng, size)
    for attempt in range(count * 40):
        if len(images) == count:
            break
        if not images and attempt % 3 == 0:  # aim the batch at an object of a random image
            offset = _offset_near_object(pairs, size, plan, rng)
        image, labels = pairs[int(rng.integers(len(pairs)))]
        y0, x0 = offset
        crop_img = np.empty((size, size, 3), np.uint8)
        crop_img[:] = np.array(PIXEL_MEAN, np.uint8)
        crop_lab = np.zeros((size, size), labels.dtype)
        sub = labels[y0:y0 + size, x0:x0 + size]
        crop_img[:sub.shape[0], :sub.shape[1]] = image[y0:y0 + size, x0:x0 + size]
        crop_lab[:sub.shape[0], :sub.shape[1]] = sub
        ids, counts = np.unique(crop_lab, return_counts=True)
        ids = [int(i) for i, c in zip(ids, counts) if i != 0 and c >= min_area]
        if ids:
            images.append(crop_img)
            labs.append((crop_lab, ids))
    if not images:
        raise ValueError(f"found no labelled object of at least {min_area} px in "
                         f"{count * 40} random {size}px crops")
    while len(images) < count:  # few images have objects here: reuse crops
        i = int(rng.integers(len(images)))
        images.append(images[i])
        labs.append(labs[i])
    masks, valid = [], []
    for crop_lab, ids in labs:
        m, v = _pick_objects([crop_lab == i for i in ids], plan.objects, rng)
        masks.append(m)
        valid.append(v)
    return _collate(images, masks, valid, offset)


def _offset_near_object(pairs, size: int, plan: BatchPlan, rng: np.random.Generator
                        ) -> tuple[int, int]:
    """A grid-aligned crop corner whose crop holds a labelled pixel of a random pair."""
    labels = pairs[int(rng.integers(len(pairs)))][1]
    flat = np.flatnonzero(labels)
    if flat.size == 0:
        return plan.offset(rng, size)
    y, x = np.unravel_index(int(flat[rng.integers(flat.size)]), labels.shape)
    top = plan.img_size - size
    return tuple(int(np.clip(v - rng.integers(0, size - 15), 0, top)) // 16 * 16 for v in (y, x))


def prepare_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray]], img_size: int
                  ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Check and resize (image, labels) pairs once, before training."""
    out = []
    for i, (image, labels) in enumerate(pairs):
        image = as_rgb_uint8(np.asarray(image), name=f"pair {i}")
        labels = np.asarray(labels)
        if labels.ndim != 2 or labels.shape != image.shape[:2]:
            raise ValueError(f"pair {i}: labels {labels.shape} do not match image "
                             f"{image.shape[:2]}")
        if not np.issubdtype(labels.dtype, np.integer):
            if np.issubdtype(labels.dtype, np.floating) and np.all(np.mod(labels, 1) == 0):
                labels = labels.astype(np.int64)
            else:
                raise ValueError(f"pair {i}: labels must be integers, not {labels.dtype}")
        out.append(resize_longest(image, labels.astype(np.int64), img_size))
    return out


def as_rgb_uint8(image: np.ndarray, *, name: str = "image") -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 (uint8, uint16 or float) -> HxWx3 uint8.

    Grey is repeated to RGB, alpha dropped; other dtypes are stretched between
    their 0.5 and 99.5 percentiles.
    """
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"{name}: expected HxW or HxWxC (C = 1, 3 or 4), got {image.shape}")
    image = image[..., :3]
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, -1)
    if image.dtype != np.uint8:
        f = image.astype(np.float32)
        lo, hi = np.nanpercentile(f, [0.5, 99.5])
        image = np.clip((f - lo) / max(hi - lo, 1e-6) * 255, 0, 255)
        image = np.nan_to_num(image).astype(np.uint8)
    return np.ascontiguousarray(image)


def read_folder(folder: str | os.PathLike) -> list[tuple[np.ndarray, np.ndarray]]:
    """(image, labels) pairs from a folder.

    Layout: ``images/NAME.ext`` with ``labels/NAME.ext``, or ``NAME.ext`` beside
    ``NAME_labels.ext`` (``.png``, ``.tif`` ...). Raises FileNotFoundError /
    ValueError naming the file when something does not fit.
    """
    from skimage import io as skio

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder")
    found: list[tuple[Path, Path]] = []
    if (folder / "images").is_dir() and (folder / "labels").is_dir():
        labels = {p.stem: p for p in (folder / "labels").iterdir()
                  if p.suffix.lower() in IMAGE_SUFFIXES}
        for p in sorted((folder / "images").iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES:
                if p.stem not in labels:
                    raise ValueError(f"{p}: no label image labels/{p.stem}.* for it")
                found.append((p, labels[p.stem]))
    else:
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in IMAGE_SUFFIXES and not p.stem.endswith("_labels"):
                partners = [q for q in folder.glob(f"{p.stem}_labels.*")
                            if q.suffix.lower() in IMAGE_SUFFIXES]
                if partners:
                    found.append((p, partners[0]))
    if not found:
        raise ValueError(f"{folder}: no image/label pairs (expected images/ and labels/ "
                         "subfolders, or NAME.png with NAME_labels.png)")
    pairs = []
    for img_path, lab_path in found:
        try:
            image, labels = skio.imread(img_path), skio.imread(lab_path)
        except Exception as exc:
            raise ValueError(f"{img_path}: cannot read image or labels: {exc}") from exc
        if labels.ndim == 3:
            raise ValueError(f"{lab_path}: label image must have one channel")
        if labels.shape != image.shape[:2]:
            raise ValueError(f"{lab_path}: size {labels.shape} differs from image "
                             f"{image.shape[:2]}")
        pairs.append((image, labels))
    return pairs


# ------------------------------------------------------------ streams

class BatchStream(IterableDataset):
    """Batches ``start, start + 1, ...`` (up to ``stop``) of a source, split among workers.

    ``pairs`` None: generated scenes; otherwise crops of the prepared pairs.
    Each worker makes every ``num_workers``-th batch, and the DataLoader reads
    them round-robin, so the order is the same as with no workers.
    """

    def __init__(self, *, seed: int, plan: BatchPlan, start: int = 0, stop: int | None = None,
                 pairs: Sequence[tuple[np.ndarray, np.ndarray]] | None = None) -> None:
        super().__init__()
        self.seed, self.plan, self.start, self.stop, self.pairs = seed, plan, start, stop, pairs
        self._photos: list[np.ndarray] | None = None

    def batch(self, index: int) -> dict[str, torch.Tensor]:
        if self.pairs is None:
            if self.plan.uses_photos and self._photos is None:
                from .photo_textures import load_photos

                self._photos = load_photos(self.plan.photos or "skimage")
            return scene_batch(self.seed, index, self.plan, self._photos)
        return pair_batch(self.pairs, self.seed, index, self.plan)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        wid, nw = (0, 1) if info is None else (info.id, info.num_workers)
        if info is not None:
            torch.set_num_threads(1)
        index = self.start + wid
        while self.stop is None or index < self.stop:
            yield self.batch(index)
            index += nw


def batch_loader(stream: BatchStream, *, workers: int = 0) -> DataLoader:
    """A DataLoader over ``stream`` (batches are already collated)."""
    return DataLoader(stream, batch_size=None, num_workers=workers,
                      pin_memory=torch.cuda.is_available(),
                      persistent_workers=False, prefetch_factor=4 if workers else None)

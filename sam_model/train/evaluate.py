"""Score a SAM model with simulated prompts: mean IoU per prompt type.

For every object of every image the model is prompted as a user would, with
the inference geometry of the predictor (image resized so its longest side is
the model's input size, padded, embedded once; masks upscaled back to the
original size):

* ``point_top``: one positive click at the object's centre (the pixel
  farthest from its boundary), multimask output, the candidate with the
  highest *predicted* IoU;
* ``point_best``: the same click, the best of the three candidates (oracle);
* ``box``: the object's tight box, single-mask output;
* ``clicks``: interactive segmentation, ``clicks`` clicks in all: the first
  as ``point_top``, each next at the centre of the largest error region
  (positive in a missed area, negative in a false one) with the previous
  low-res logits as mask prompt; ``clicks_curve`` gives the mIoU after each;
* ``box_zoom`` (with ``zoom_limit``): the box as the raster predictor of
  ``napari_sam.core`` decodes it: a box longer than ``zoom_limit`` input
  pixels is decoded on the image downscaled by the power of two that brings
  it within the limit (``sam_model.zoom_for_extent``);
* ``point_zoom`` and ``clicks_zoom`` (with ``zoom_limit`` and ``zoom_clicks``,
  the model's ``sam_model.zooms_clicks``): the centre click
  as the raster predictor decodes it: also on the image downscaled by
  ``sam_model.POINT_ZOOM``, keeping that result when
  ``sam_model.prefer_zoomed_click`` says so, and the next clicks at the zoom
  that won.

Held-out generated scenes use seeds that the training stream never uses.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .data import as_rgb_uint8, resize_longest
from .interact import centre_click, object_centre
from .scenes import make_scene

EVAL_SEED_KEY = 0x5EED_E7A1  # held-out scenes: default_rng([EVAL_SEED_KEY, i])


@dataclass(frozen=True)
class EvalImage:
    """One evaluation image: HxWx3 uint8 RGB and its objects as KxHxW bool masks."""

    image: np.ndarray
    masks: np.ndarray
    name: str = ""


def masks_from_labels(labels: np.ndarray, *, min_area: int = 16) -> np.ndarray:
    """KxHxW bool masks of the label ids (0 = background) with at least ``min_area`` px."""
    ids, counts = np.unique(labels, return_counts=True)
    keep = [i for i, c in zip(ids, counts) if i != 0 and c >= min_area]
    if not keep:
        return np.zeros((0, *labels.shape), bool)
    return np.stack([labels == i for i in keep])


def held_out_scenes(count: int, *, size: int = 1024, max_objects: int = 10,
                    min_area: int = 64) -> list[EvalImage]:
    """``count`` generated scenes from the held-out seeds, up to ``max_objects`` objects each."""
    out = []
    for i in range(count):
        rng = np.random.default_rng([EVAL_SEED_KEY, i])
        scene = make_scene(rng, size)
        masks = [scene.mask(j) for j in range(len(scene.objects))]
        masks = [m for m in masks if m.sum() >= min_area]
        if not masks:
            continue
        pick = rng.permutation(len(masks))[:max_objects]
        out.append(EvalImage(scene.image, np.stack([masks[j] for j in sorted(pick)]),
                             name=f"scene{i}"))
    return out


def _iou(pred: np.ndarray, gt: np.ndarray) -> float:
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def _error_click(pred: np.ndarray, gt: np.ndarray):
    """:func:`centre_click` restricted to the error's bounding box (same result, faster)."""
    err = pred ^ gt
    if not err.any():
        return None
    rows, cols = np.nonzero(np.any(err, 1))[0], np.nonzero(np.any(err, 0))[0]
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    hit = centre_click(pred[y0:y1, x0:x1], gt[y0:y1, x0:x1])
    (x, y), label = hit
    return (x + x0, y + y0), label


def _box(mask: np.ndarray) -> list[float]:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return [float(cols[0]), float(rows[0]), float(cols[-1]), float(rows[-1])]


class _Prompter:
    """Decode prompts on one embedded image (the predictor's geometry)."""

    def __init__(self, model: nn.Module, image: np.ndarray):
        self.model = model
        self.original = image.shape[:2]
        resized, _ = resize_longest(image, np.zeros(image.shape[:2], np.int64), model.img_size)
        self.input_size = resized.shape[:2]
        self.scale = np.array([self.input_size[1] / self.original[1],
                               self.input_size[0] / self.original[0]], np.float32)
        self._x = torch.from_numpy(resized).permute(2, 0, 1)[None].float().to(model.device)
        self.embedding = model.encode_images(self._x)
        self.pe = model.prompt_encoder.get_dense_pe()
        self._zoomed: dict[int, tuple[torch.Tensor, tuple[int, int]]] = {1: (
            self.embedding, self.input_size)}

    def _at_zoom(self, k: int) -> tuple[torch.Tensor, tuple[int, int]]:
        """Embedding and input size of the image downscaled by ``k`` (kept)."""
        if k not in self._zoomed:
            h, w = self.input_size
            size = (max(1, round(h / k)), max(1, round(w / k)))
            x = torch.nn.functional.interpolate(self._x, size=size, mode="bilinear",
                                                antialias=True, align_corners=False)
            self._zoomed[k] = (self.model.encode_images(x), size)
        return self._zoomed[k]

    def decode_boxes_at(self, boxes: np.ndarray, k: int) -> np.ndarray:
        """Nx4 boxes (original px) decoded on the image downscaled by ``k`` -> NxHxW bool."""
        return self.decode(None, None, boxes, None, False, k=k)[0][:, 0]

    def decode_boxes_zoomed(self, boxes: np.ndarray, limit: int) -> np.ndarray:
        """Nx4 boxes (original px), each decoded at the zoom its extent needs -> NxHxW bool."""
        from sam_model.zoom import zoom_for_extent

        boxes = np.asarray(boxes, np.float32)
        scaled = boxes * np.tile(self.scale, 2)  # input px
        side = np.maximum(scaled[:, 2] - scaled[:, 0], scaled[:, 3] - scaled[:, 1]) + 1
        zooms = np.array([zoom_for_extent(float(v), limit) for v in side])
        out = np.zeros((len(boxes), *self.original), bool)
        for k in np.unique(zooms):
            sel = np.flatnonzero(zooms == k)
            out[sel] = self.decode_boxes_at(boxes[sel], int(k))
        return out

    def decode(self, points, labels, boxes, mask_input, multimask, k: int = 1):
        """points Nxkx2 / labels Nxk / boxes Nx4 in original px (or None); mask_input
        Nx1x256x256 logits in the frame of zoom ``k`` -> (masks NxMxHxW bool, iou NxM,
        low-res logits NxMx256x256), decoded on the image downscaled by ``k``."""
        dev = self.model.device
        emb, size = self._at_zoom(int(k))
        factor = np.array([size[1] / self.input_size[1], size[0] / self.input_size[0]],
                          np.float32)

        def to_input(xy):  # original px -> px of the (downscaled) model input
            return (np.asarray(xy, np.float32) * self.scale + 0.5) * factor - 0.5

        pts = None
        if points is not None:
            p = torch.as_tensor(to_input(points), device=dev)
            pts = (p, torch.as_tensor(np.asarray(labels), device=dev))
        bx = None
        if boxes is not None:
            b = to_input(np.asarray(boxes, np.float32).reshape(-1, 2, 2)).reshape(-1, 4)
            bx = torch.as_tensor(b, device=dev)
        sparse, dense = self.model.prompt_encoder(pts, bx, mask_input)
        low, iou = self.model.mask_decoder(emb, self.pe, sparse, dense, multimask)
        up = self.model.postprocess_masks(low, size, self.original)
        return (up > self.model.mask_threshold).cpu().numpy(), iou.float().cpu().numpy(), low


def _longest_side(mask: np.ndarray) -> int:
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return int(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1) if len(rows) else 0


def _click_curve(prompter: _Prompter, gts, pts, labs, pred, prev, clicks: int,
                 k: int = 1) -> list[list[float]]:
    """IoU of each object after 1..``clicks`` clicks: the first click's masks ``pred``
    and logits ``prev``, then a click at the centre of the largest error each time,
    decoded at zoom ``k``."""
    n = len(gts)
    curve = [[_iou(pred[i], gts[i]) for i in range(n)]]
    for _ in range(1, clicks):
        new_pts = np.zeros((n, 1, 2), np.float32)
        new_labs = np.full((n, 1), -1, np.int64)
        for i in range(n):
            hit = _error_click(pred[i], gts[i])
            if hit is not None:
                new_pts[i, 0], new_labs[i, 0] = hit
        pts = np.concatenate([pts, new_pts], 1)
        labs = np.concatenate([labs, new_labs], 1)
        cm, _, prev = prompter.decode(pts, labs, None, prev, False, k=k)
        pred = cm[:, 0]
        curve.append([_iou(pred[i], gts[i]) for i in range(n)])
    return curve


def _score_zoomed_click(prompter: _Prompter, gts, pts, labs, masks, iou, curve, out, *,
                        clicks: int, limit: int, frame: float) -> None:
    """``point_zoom`` and ``clicks_zoom``: the centre click ``pts``/``labs`` as the
    raster predictor decodes it with a zoom limit (``sam_model.prefer_zoomed_click``),
    then the clicks on whichever zoom won; ``masks``/``iou``/``curve``: the
    full-scale ones."""
    from sam_model.zoom import POINT_ZOOM, prefer_zoomed_click

    n = len(gts)
    zm, ziou, zlow = prompter.decode(pts, labs, None, None, True, k=POINT_ZOOM)
    top, ztop = iou.argmax(1), ziou.argmax(1)
    won = np.array([prefer_zoomed_click(float(iou[i, top[i]]), float(ziou[i, ztop[i]]),
                                        _longest_side(zm[i, ztop[i]]) * frame, limit)
                    for i in range(n)], bool)
    point = [_iou(zm[i, ztop[i]] if won[i] else masks[i, top[i]], gts[i]) for i in range(n)]
    final = [curve[-1][i] for i in range(n)]
    sel = np.flatnonzero(won)
    if len(sel):
        pred = np.stack([zm[i, ztop[i]] for i in sel])
        prev = zlow[torch.as_tensor(sel), torch.as_tensor(ztop[sel])][:, None]
        zcurve = _click_curve(prompter, [gts[i] for i in sel], pts[sel], labs[sel], pred,
                              prev, clicks, k=POINT_ZOOM)
        for j, i in enumerate(sel):
            final[i] = zcurve[-1][j]
    out.setdefault("point_zoom", []).extend(point)
    out.setdefault("clicks_zoom", []).extend(final)


@torch.no_grad()
def score_image(model: nn.Module, sample: EvalImage, *, clicks: int = 5, chunk: int = 16,
                zoom_limit: int | None = None, zoom_clicks: bool = True
                ) -> dict[str, list[float]]:
    """Per-object IoUs of ``sample`` for each prompt type (see the module docstring)."""
    image = as_rgb_uint8(sample.image)
    prompter = _Prompter(model, image)
    out: dict[str, list[float]] = {"point_top": [], "point_best": [], "box": []}
    frame = model.img_size / max(image.shape[:2])  # objects' size as the model sees them
    out["extent"] = [float(_longest_side(m)) * frame for m in sample.masks]
    curve: list[list[float]] = [[] for _ in range(clicks)]  # IoU after each click
    for start in range(0, len(sample.masks), chunk):
        gts = sample.masks[start:start + chunk]
        n = len(gts)
        centres = np.array([object_centre(m) for m in gts], np.float32)[:, None]
        pts, labs = centres, np.ones((n, 1), np.int64)
        masks, iou, low = prompter.decode(pts, labs, None, None, True)
        top = iou.argmax(1)
        ious = np.array([[_iou(masks[i, j], gts[i]) for j in range(masks.shape[1])]
                         for i in range(n)])
        out["point_top"] += [float(ious[i, top[i]]) for i in range(n)]
        out["point_best"] += [float(v) for v in ious.max(1)]
        bmasks, _, _ = prompter.decode(None, None, np.array([_box(m) for m in gts]), None, False)
        out["box"] += [_iou(bmasks[i, 0], gts[i]) for i in range(n)]
        if zoom_limit:
            zmasks = prompter.decode_boxes_zoomed(np.array([_box(m) for m in gts]), zoom_limit)
            out.setdefault("box_zoom", []).extend(_iou(zmasks[i], gts[i]) for i in range(n))
        pred = np.stack([masks[i, top[i]] for i in range(n)])
        prev = low[torch.arange(n), torch.as_tensor(top, device=low.device)][:, None]
        part = _click_curve(prompter, gts, pts, labs, pred, prev, clicks)
        for c in range(clicks):
            curve[c] += part[c]
        if zoom_limit and zoom_clicks:
            _score_zoomed_click(prompter, gts, pts, labs, masks, iou, part, out,
                                clicks=clicks, limit=zoom_limit, frame=frame)
    out["clicks"] = curve[-1]
    for c in range(clicks):
        out[f"click{c + 1}"] = curve[c]
    return out


def evaluate(model: nn.Module, samples: Iterable[EvalImage], *, clicks: int = 5,
             zoom_limit: int | None = None, zoom_clicks: bool = True) -> dict[str, object]:
    """mIoU per prompt type over all objects of ``samples``, with counts and timing."""
    model.eval()
    keys = ["point_top", "point_best", "box", "clicks"] + [f"click{c + 1}" for c in range(clicks)]
    per: dict[str, list[float]] = {k: [] for k in keys}
    images = 0
    t0 = time.perf_counter()
    for sample in samples:
        if len(sample.masks) == 0:
            continue
        images += 1
        for key, values in score_image(model, sample, clicks=clicks, zoom_limit=zoom_limit,
                                       zoom_clicks=zoom_clicks).items():
            per.setdefault(key, []).extend(values)
    report: dict[str, object] = {"images": images, "objects": len(per["box"])}
    for key, values in per.items():
        report[key] = round(float(np.mean(values)), 4) if values else math.nan
    report["clicks_curve"] = [report.pop(f"click{c + 1}") for c in range(clicks)]
    report.pop("extent", None)
    report["by_extent"] = _by_extent(per)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    return report


EXTENT_BINS = (0, 64, 128, 256, 512, 100000)


def _by_extent(per: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """mIoU per prompt type for objects grouped by their longest side in the model's
    1024 input frame (px)."""
    extent = np.asarray(per.get("extent", []))
    out = {}
    for lo, hi in zip(EXTENT_BINS[:-1], EXTENT_BINS[1:]):
        sel = (extent >= lo) & (extent < hi)
        if not sel.any():
            continue
        name = f"{lo}-{hi}" if hi < EXTENT_BINS[-1] else f">={lo}"
        out[name] = {"objects": int(sel.sum())}
        out[name].update({k: round(float(np.mean(np.asarray(per[k])[sel])), 4)
                          for k in ("point_top", "point_best", "box", "clicks", "box_zoom",
                                    "point_zoom", "clicks_zoom")
                          if k in per})
    return out


def evaluate_scenes(model: nn.Module, count: int = 100, *, size: int = 1024, clicks: int = 5,
                    zoom_limit: int | None = None, zoom_clicks: bool = True
                    ) -> dict[str, object]:
    """:func:`evaluate` on ``count`` held-out generated scenes."""
    report = evaluate(model, held_out_scenes(count, size=size), clicks=clicks,
                      zoom_limit=zoom_limit, zoom_clicks=zoom_clicks)
    report["data"] = f"{count} held-out generated scenes, {size}x{size}, <=10 objects each"
    return report


def evaluate_pairs(model: nn.Module, pairs: Sequence[tuple[np.ndarray, np.ndarray]], *,
                   clicks: int = 5, min_area: int = 16, names: Sequence[str] | None = None,
                   zoom_limit: int | None = None, zoom_clicks: bool = True) -> dict[str, object]:
    """:func:`evaluate` on (image, labels HxW int) pairs; objects are the label ids."""
    samples = (EvalImage(as_rgb_uint8(np.asarray(img)), masks_from_labels(
        np.asarray(lab), min_area=min_area), name=(names[i] if names else str(i)))
        for i, (img, lab) in enumerate(pairs))
    return evaluate(model, samples, clicks=clicks, zoom_limit=zoom_limit,
                    zoom_clicks=zoom_clicks)


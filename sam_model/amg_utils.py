"""Geometry helpers for automatic mask generation: point grids, crop boxes,
mask boxes, stability scores and box non-maximum suppression.

Everything here is plain torch/numpy and works on batches. Conventions:

* boxes are ``XYXY`` with *inclusive* maximum coordinates, as produced by
  :func:`masks_to_boxes` (a one-pixel mask at (y, x) has box ``[x, y, x, y]``);
  an empty mask has box ``[0, 0, 0, 0]``. This matches the official generator.
* point grids are ``(N, 2)`` float64 arrays of ``XY`` fractions in ``[0, 1]``.
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch

__all__ = [
    "point_grid",
    "layer_point_grids",
    "crop_boxes_for_layers",
    "masks_to_boxes",
    "stability_score",
    "box_near_crop_edge",
    "box_iou_matrix",
    "nms",
    "xyxy_to_xywh",
]


def point_grid(n_per_side: int) -> np.ndarray:
    """An ``n_per_side**2 x 2`` grid of XY fractions, cell centres of an even grid.

    Row-major order: x varies fastest.
    """
    if n_per_side < 1:
        raise ValueError(f"points per side must be at least 1, got {n_per_side}")
    half_step = 1.0 / (2 * n_per_side)
    axis = np.linspace(half_step, 1.0 - half_step, n_per_side)
    xs, ys = np.meshgrid(axis, axis, indexing="xy")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer (layer 0 is the whole image).

    Layer ``i`` has ``int(n_per_side / downscale**i)`` points per side.
    """
    return [point_grid(int(n_per_side / (downscale**i))) for i in range(n_layers + 1)]


def crop_boxes_for_layers(
    image_hw: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY, exclusive max, ints) and their layer index.

    Layer 0 is the whole image; layer ``i >= 1`` tiles the image with
    ``2**i x 2**i`` overlapping crops whose overlap is ``overlap_ratio`` of the
    short side scaled by ``2 / 2**i``. Crops of a layer are listed x-major
    (all crops of the first column of x offsets first), as the official code does.
    """
    im_h, im_w = image_hw
    boxes: list[list[int]] = [[0, 0, im_w, im_h]]
    layers: list[int] = [0]
    short_side = min(im_h, im_w)
    for layer in range(1, n_layers + 1):
        n_side = 2**layer
        overlap = int(overlap_ratio * short_side * (2 / n_side))
        crop_w = int(math.ceil((overlap * (n_side - 1) + im_w) / n_side))
        crop_h = int(math.ceil((overlap * (n_side - 1) + im_h) / n_side))
        x0s = [int((crop_w - overlap) * i) for i in range(n_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_side)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
            layers.append(layer)
    return boxes, layers


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of boolean masks.

    masks: ``(..., H, W)`` bool. Returns ``(..., 4)`` int64 XYXY with inclusive
    max coordinates; ``[0, 0, 0, 0]`` for an empty mask.
    """
    lead = masks.shape[:-2]
    h, w = masks.shape[-2:]
    if masks.numel() == 0:
        return torch.zeros(*lead, 4, dtype=torch.int64, device=masks.device)
    flat = masks.reshape(-1, h, w)
    rows = flat.any(dim=-1)  # (B, H)
    cols = flat.any(dim=-2)  # (B, W)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    top = torch.where(rows, ar_h, h).amin(dim=-1)
    bottom = torch.where(rows, ar_h, -1).amax(dim=-1)
    left = torch.where(cols, ar_w, w).amin(dim=-1)
    right = torch.where(cols, ar_w, -1).amax(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1)
    empty = ~rows.any(dim=-1)
    boxes[empty] = 0
    return boxes.reshape(*lead, 4)


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold + offset`` and ``threshold - offset``.

    logits: ``(B, H, W)`` float. Returns ``(B,)`` float32. The high-threshold mask
    lies inside the low-threshold one, so the IoU is a ratio of pixel counts
    (NaN when both are empty, as in the official code).
    """
    inner = (logits > (threshold + offset)).flatten(1).sum(dim=1, dtype=torch.int64)
    outer = (logits > (threshold - offset)).flatten(1).sum(dim=1, dtype=torch.int64)
    return inner.to(torch.float32) / outer.to(torch.float32)


def box_near_crop_edge(
    boxes: torch.Tensor, crop_box: list[int], image_box: list[int], atol: float = 20.0
) -> torch.Tensor:
    """Which boxes touch an edge of the crop that is not also an edge of the image.

    boxes: ``(B, 4)`` XYXY in the crop's frame; crop_box and image_box: XYXY in
    the image frame. Returns ``(B,)`` bool.
    """
    x0, y0 = crop_box[0], crop_box[1]
    shift = torch.tensor([x0, y0, x0, y0], dtype=torch.float32, device=boxes.device)
    boxes = boxes.to(torch.float32) + shift
    crop_t = torch.as_tensor(crop_box, dtype=torch.float32, device=boxes.device)
    image_t = torch.as_tensor(image_box, dtype=torch.float32, device=boxes.device)
    near_crop = (boxes - crop_t).abs() <= atol
    near_image = (boxes - image_t).abs() <= atol
    return (near_crop & ~near_image).any(dim=1)


def box_iou_matrix(boxes: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of ``(N, 4)`` XYXY boxes with area ``(x1-x0)*(y1-y0)``.

    Degenerate pairs (zero union) give NaN, which never exceeds a threshold,
    as in torchvision's NMS.
    """
    b = boxes.to(torch.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area[:, None] + area[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression.

    boxes: ``(N, 4)`` XYXY; scores: ``(N,)``. Visits boxes by decreasing score
    (ties by index) and drops every later box whose IoU with a kept one is
    greater than ``iou_threshold``. Returns the kept indices (int64) in visiting
    order, i.e. by decreasing score, like ``torchvision.ops.nms``.
    """
    n = boxes.shape[0]
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou_matrix(boxes[order])
    over = (iou > iou_threshold).cpu().numpy()
    # Only later boxes can be suppressed by earlier ones.
    over = np.triu(over, k=1)
    suppressed = np.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.as_tensor(keep, dtype=torch.int64, device=order.device)]


def xyxy_to_xywh(box) -> list:
    """``[x0, y0, x1, y1]`` to ``[x0, y0, x1 - x0, y1 - y0]`` (a new list)."""
    x0, y0, x1, y1 = (v.item() if hasattr(v, "item") else v for v in box)
    return [x0, y0, x1 - x0, y1 - y0]

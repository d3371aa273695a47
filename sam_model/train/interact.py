"""Simulated user interaction: first prompts and corrective clicks.

Training (torch, batched, on the training device):

* :func:`random_points_in` -- a uniformly random pixel inside each mask;
* :func:`noisy_boxes` -- the mask's box with noise of 10% of its side, at
  most ``max_shift`` pixels per coordinate (as in the SAM paper);
* :func:`error_clicks` -- the next click from the error region of the
  previous prediction: positive in a missed area, negative in a false one,
  away from the region's edge when it is thick enough.

Evaluation (numpy, deterministic): :func:`centre_click` puts a click at the
point of the largest error region that lies farthest from its boundary, the
usual protocol for interactive segmentation benchmarks.

Points are ``(x, y)`` pixel coordinates (column, row) of the mask's frame;
labels are 1 (positive), 0 (negative) or -1 (no point: a padding token).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi


def _argmax_xy(scores: torch.Tensor) -> torch.Tensor:
    """NxHxW scores -> Nx2 float (x, y) of each maximum."""
    w = scores.shape[-1]
    flat = scores.flatten(1).argmax(1)
    return torch.stack([flat % w, torch.div(flat, w, rounding_mode="floor")], 1).float()


def random_points_in(masks: torch.Tensor, generator: torch.Generator | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """A uniformly random pixel of each mask.

    masks: NxHxW bool. Returns (points Nx2 float XY, found N bool); where a
    mask is empty the point is (0, 0) and found is False.
    """
    noise = torch.rand(masks.shape, generator=generator, device=masks.device)
    scores = torch.where(masks, noise + 1.0, torch.zeros_like(noise))
    return _argmax_xy(scores), masks.flatten(1).any(1)


def erode(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Binary erosion of NxHxW bool masks by a (2r+1)^2 square."""
    if radius <= 0:
        return masks
    x = masks.float().unsqueeze(1)
    eroded = -F.max_pool2d(-x, 2 * radius + 1, stride=1, padding=radius)
    return eroded.squeeze(1) > 0.5


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight XYXY boxes (pixel indices, inclusive) of NxHxW bool masks; zeros for empty masks."""
    n, h, w = masks.shape
    rows = masks.any(2)
    cols = masks.any(1)
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    big = max(h, w) + 1
    y0 = torch.where(rows, ar_h, big).amin(1)
    y1 = torch.where(rows, ar_h, -1).amax(1)
    x0 = torch.where(cols, ar_w, big).amin(1)
    x1 = torch.where(cols, ar_w, -1).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1).float()
    return torch.where(masks.flatten(1).any(1, keepdim=True), boxes, torch.zeros_like(boxes))


def noisy_boxes(masks: torch.Tensor, generator: torch.Generator | None = None, *,
                noise: float = 0.1, max_shift: float = 20.0) -> torch.Tensor:
    """Boxes of NxHxW masks, each coordinate moved by N(0, noise * side), clipped to
    ``max_shift`` pixels and to the frame. Returns Nx4 float XYXY."""
    boxes = mask_boxes(masks)
    h, w = masks.shape[-2:]
    side = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1).repeat(1, 2)
    jitter = torch.randn(boxes.shape, generator=generator, device=masks.device)
    shift = (jitter * noise * (side + 1)).clamp(-max_shift, max_shift)
    out = boxes + shift
    x0 = torch.minimum(out[:, 0], out[:, 2]).clamp(0, w - 1)
    x1 = torch.maximum(out[:, 0], out[:, 2]).clamp(0, w - 1)
    y0 = torch.minimum(out[:, 1], out[:, 3]).clamp(0, h - 1)
    y1 = torch.maximum(out[:, 1], out[:, 3]).clamp(0, h - 1)
    return torch.stack([x0, y0, x1, y1], 1)


def error_clicks(pred: torch.Tensor, target: torch.Tensor,
                 generator: torch.Generator | None = None, *, margin: int = 2
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The next corrective click for each prompt.

    pred, target: NxHxW bool. A pixel is drawn uniformly from the error region
    (pred xor target), from its part at least ``margin`` pixels inside when
    that part is not empty. Label 1 where the pixel was missed (in target),
    0 where it was wrongly included. Where there is no error the label is -1
    (a padding point that the prompt encoder ignores). Returns (Nx2 XY, N long).
    """
    error = pred ^ target
    inner = erode(error, margin)
    use_inner = inner.flatten(1).any(1)
    region = torch.where(use_inner[:, None, None], inner, error)
    points, found = random_points_in(region, generator)
    xi = points[:, 0].long()
    yi = points[:, 1].long()
    positive = target[torch.arange(len(target), device=target.device), yi, xi]
    labels = torch.where(found, positive.long(), torch.full_like(xi, -1))
    return points, labels


def centre_click(pred: np.ndarray, target: np.ndarray) -> tuple[tuple[float, float], int] | None:
    """Deterministic corrective click for evaluation.

    pred, target: HxW bool. Returns ((x, y), label) at the point farthest from
    the boundary of the error region (missed or false) whose interior is
    largest, label 1 for a missed region and 0 for a false one; None when
    the prediction is exact.
    """
    best = None
    for region, label in ((target & ~pred, 1), (pred & ~target, 0)):
        if not region.any():
            continue
        dist = ndi.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]
        y, x = np.unravel_index(int(dist.argmax()), dist.shape)
        if best is None or dist[y, x] > best[0]:
            best = (dist[y, x], (float(x), float(y)), label)
    if best is None:
        return None
    return best[1], best[2]


def object_centre(mask: np.ndarray) -> tuple[float, float]:
    """(x, y) of the pixel of an HxW bool mask farthest from its boundary."""
    return centre_click(np.zeros_like(mask), mask)[0]

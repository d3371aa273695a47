"""Pure-torch stand-ins for the parts of torchvision and timm that the reference
packages (``segment_anything``, ``mobile_sam``, ``sam2``) import.

torchvision and timm are not installed in this project (a torchvision wheel
does not import beside the CPU torch build used here). ``install()`` puts small
fake modules into ``sys.modules`` so the reference packages import, and only
where the real package is absent:

* ``torchvision.ops.boxes.batched_nms`` / ``box_area`` (and ``torchvision.ops.nms``):
  greedy NMS with the usual IoU > threshold suppression, highest score first.
* ``torchvision.transforms.functional.to_pil_image`` / ``resize``, as the real
  functions behave on what the reference packages pass them: an HxWx3 (or
  HxW) uint8 array becomes a PIL image, and ``resize`` of a PIL image to
  ``(h, w)`` is Pillow's ``Image.resize((w, h), BILINEAR)`` (torchvision's
  default interpolation; Pillow always antialiases). Tensors are refused: the
  reference's ``apply_image`` never passes one. Nothing here uses our code.
* ``torchvision.transforms.ToTensor`` / ``Resize`` / ``Normalize`` (``sam2``'s
  image transforms, which it scripts with ``torch.jit.script``): what
  torchvision does for numpy arrays and float tensors. ``ToTensor`` makes an
  HxWxC array CxHxW, divided by 255 when it is uint8; ``Resize((h, w))`` is
  ``interpolate(bilinear, align_corners=False, antialias=True)`` on a batch of
  one (torchvision's default for tensors, no rounding for floats);
  ``Normalize`` subtracts the mean and divides by the std per channel.
* ``timm.models.layers.DropPath`` / ``to_2tuple`` / ``trunc_normal_`` and
  ``timm.models.registry.register_model``.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn


# -- torchvision.ops ---------------------------------------------------------
def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Areas of Nx4 XYXY boxes."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """NxM IoU matrix of XYXY boxes."""
    lt = torch.max(a[:, None, :2], b[None, :, :2])
    rb = torch.min(a[:, None, 2:], b[None, :, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (box_area(a)[:, None] + box_area(b)[None, :] - inter)


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy NMS, in decreasing score order."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    iou = box_iou(boxes[order].float(), boxes[order].float())
    n = order.numel()
    suppressed = torch.zeros(n, dtype=torch.bool)
    keep = []
    over = (iou > iou_threshold).cpu()
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= over[i]
    return order[torch.tensor(keep, dtype=torch.int64, device=order.device)]


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS within each category ``idxs``; kept indices in decreasing score order."""
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


# -- torchvision.transforms.functional ----------------------------------------
def to_pil_image(pic, mode=None):
    """An HxW, HxWx1 or HxWx3 uint8 numpy array as a PIL image ('L' or 'RGB')."""
    arr = np.asarray(pic)
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3
                                                          and arr.shape[2] not in (1, 3)):
        raise TypeError(f"to_pil_image shim: HxW(x1|x3) uint8 only, got {arr.dtype} {arr.shape}")
    if mode is not None:
        raise TypeError(f"to_pil_image shim: the mode is taken from the array, not {mode!r}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return Image.fromarray(np.ascontiguousarray(arr))


def resize(img, size, interpolation=None, max_size=None, antialias=True):
    """A PIL image resized to ``size`` = (h, w) with Pillow's bilinear filter."""
    if not isinstance(img, Image.Image):
        raise TypeError(f"resize shim: PIL images only, got {type(img).__name__}")
    if interpolation not in (None, "bilinear") and str(interpolation).lower().find("bilinear") < 0:
        raise TypeError(f"resize shim: bilinear interpolation only, got {interpolation!r}")
    if isinstance(size, int) or len(size) != 2 or max_size is not None:
        raise TypeError(f"resize shim: an explicit (h, w) size only, got {size!r}")
    return img.resize((int(size[1]), int(size[0])), Image.Resampling.BILINEAR)


class ToTensor:
    """HxWxC (or HxW) numpy array -> CxHxW tensor; uint8 is divided by 255."""

    def __call__(self, pic) -> torch.Tensor:
        arr = np.asarray(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        img = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).contiguous()
        if img.dtype == torch.uint8:
            return img.to(torch.get_default_dtype()).div(255)
        return img


class Resize(nn.Module):
    """Resize CxHxW or BxCxHxW float tensors to ``size`` (h, w): antialiased bilinear."""

    def __init__(self, size) -> None:
        super().__init__()
        self.size = [int(v) for v in size]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        squeeze = img.dim() == 3
        x = img.unsqueeze(0) if squeeze else img
        x = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False,
                          antialias=True)
        return x.squeeze(0) if squeeze else x


class Normalize(nn.Module):
    """(x - mean) / std per channel of a (B)xCxHxW float tensor."""

    def __init__(self, mean, std) -> None:
        super().__init__()
        self.mean = [float(v) for v in mean]
        self.std = [float(v) for v in std]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=img.dtype, device=img.device).view(-1, 1, 1)
        return (img - mean) / std


# -- timm ------------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth: identity in eval mode (and with probability 0)."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.drop_prob or not self.training:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep if self.scale_by_keep else x * mask


def to_2tuple(x):
    if isinstance(x, (tuple, list)):
        return tuple(x)
    return (x, x)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0):
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=a, b=b)


def register_model(fn):
    return fn


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    mod.__reference_shim__ = True
    return mod


def install() -> None:
    """Register the fake modules where the real packages are missing (idempotent)."""
    if importlib.util.find_spec("torchvision") is None and "torchvision" not in sys.modules:
        boxes = _module("torchvision.ops.boxes", batched_nms=batched_nms, box_area=box_area,
                        nms=nms, box_iou=box_iou)
        ops = _module("torchvision.ops", boxes=boxes, batched_nms=batched_nms, nms=nms,
                      box_area=box_area, box_iou=box_iou)
        functional = _module("torchvision.transforms.functional", resize=resize,
                             to_pil_image=to_pil_image)
        transforms = _module("torchvision.transforms", functional=functional,
                             ToTensor=ToTensor, Resize=Resize, Normalize=Normalize)
        tv = _module("torchvision", ops=ops, transforms=transforms)
        sys.modules.update({
            "torchvision": tv, "torchvision.ops": ops, "torchvision.ops.boxes": boxes,
            "torchvision.transforms": transforms,
            "torchvision.transforms.functional": functional,
        })
    if importlib.util.find_spec("timm") is None and "timm" not in sys.modules:
        layers = _module("timm.models.layers", DropPath=DropPath, to_2tuple=to_2tuple,
                         trunc_normal_=trunc_normal_)
        registry = _module("timm.models.registry", register_model=register_model)
        models = _module("timm.models", layers=layers, registry=registry)
        timm = _module("timm", models=models)
        sys.modules.update({
            "timm": timm, "timm.models": models, "timm.models.layers": layers,
            "timm.models.registry": registry,
        })

"""Losses of the SAM paper: 20:1 focal and dice on masks, MSE on predicted IoU.

All functions take mask logits ``NxMxHxW`` (M candidate masks per prompt) and
ground truth ``NxHxW`` (bool or 0/1 float) at the same resolution, and return
per-candidate values ``NxM`` so that the caller can pick the best candidate
of an ambiguous prompt before averaging.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, target: torch.Tensor, *, alpha: float = 0.25,
               gamma: float = 2.0) -> torch.Tensor:
    """Sigmoid focal loss averaged over pixels: NxMxHxW, NxHxW -> NxM."""
    t = target.to(logits.dtype).unsqueeze(1).expand_as(logits)
    ce = F.binary_cross_entropy_with_logits(logits, t, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    return loss.flatten(2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, *, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss on sigmoid probabilities: NxMxHxW, NxHxW -> NxM."""
    p = torch.sigmoid(logits).flatten(2)
    t = target.to(p.dtype).flatten(1).unsqueeze(1)
    inter = (p * t).sum(-1)
    return 1 - (2 * inter + eps) / (p.sum(-1) + t.sum(-1) + eps)


def mask_iou(logits: torch.Tensor, target: torch.Tensor, *, threshold: float = 0.0
             ) -> torch.Tensor:
    """IoU of the thresholded masks with the target: NxMxHxW, NxHxW -> NxM (1 when both empty)."""
    pred = (logits > threshold).flatten(2)
    t = target.bool().flatten(1).unsqueeze(1)
    inter = (pred & t).sum(-1).float()
    union = (pred | t).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


@dataclass(frozen=True)
class LossWeights:
    """Relative weights: mask loss = focal * ``focal`` + dice * ``dice``; plus ``iou`` * MSE
    of the predicted IoU; plus ``rank`` * the ranking loss of the predicted IoU (see
    :func:`iou_rank_loss`; 0, the default, leaves it out)."""

    focal: float = 20.0
    dice: float = 1.0
    iou: float = 1.0
    rank: float = 0.0


RANK_TEMPERATURE = 0.05
"""Softmax temperature of :func:`iou_rank_loss`: predicted IoUs 0.05 apart weigh e times apart."""


def iou_rank_loss(iou_pred: torch.Tensor, true_iou: torch.Tensor) -> torch.Tensor:
    """N: cross-entropy of the softmax of the predicted IoUs (NxM, M > 1) against the
    candidate whose true IoU is highest: what the top-scored candidate is chosen by,
    which the MSE of each prediction only reaches indirectly. 0 where M is 1."""
    if iou_pred.shape[1] < 2:
        return iou_pred.new_zeros(iou_pred.shape[0])
    best = true_iou.argmax(1)
    return torch.nn.functional.cross_entropy(iou_pred.float() / RANK_TEMPERATURE, best,
                                             reduction="none")


@dataclass(frozen=True)
class LossParts:
    """Scalars of one loss evaluation (``total`` carries the gradient)."""

    total: torch.Tensor
    focal: torch.Tensor
    dice: torch.Tensor
    iou_mse: torch.Tensor
    iou: torch.Tensor  # mean true IoU of the chosen candidates, no gradient


def sam_loss(logits: torch.Tensor, iou_pred: torch.Tensor, target: torch.Tensor, *,
             weights: LossWeights = LossWeights(), valid: torch.Tensor | None = None
             ) -> LossParts:
    """Loss for one round of prompts.

    logits: NxMxHxW mask logits (M = 1, or 3 for an ambiguous prompt);
    iou_pred: NxM predicted IoU; target: NxHxW ground truth; valid: optional
    N bool, prompts to count. Only the candidate with the lowest mask loss
    is trained on the mask; the IoU head is trained on every candidate
    against its true IoU (no gradient through the true IoU).
    """
    focal = focal_loss(logits, target)
    dice = dice_loss(logits, target)
    per_candidate = weights.focal * focal + weights.dice * dice
    best = per_candidate.argmin(1, keepdim=True)
    with torch.no_grad():
        true_iou = mask_iou(logits, target)
    iou_mse = ((iou_pred.float() - true_iou) ** 2).mean(1)
    mask_loss = per_candidate.gather(1, best).squeeze(1)
    total = mask_loss + weights.iou * iou_mse
    if weights.rank:
        total = total + weights.rank * iou_rank_loss(iou_pred, true_iou)
    chosen_iou = true_iou.gather(1, best).squeeze(1)
    parts = (total, focal.gather(1, best).squeeze(1), dice.gather(1, best).squeeze(1), iou_mse,
             chosen_iou)
    if valid is None:
        reduced = [p.mean() for p in parts]
    else:
        w = valid.to(total.dtype)
        n = w.sum().clamp(min=1)
        reduced = [(p * w).sum() / n for p in parts]
    return LossParts(total=reduced[0], focal=reduced[1].detach(), dice=reduced[2].detach(),
                     iou_mse=reduced[3].detach(), iou=reduced[4].detach())

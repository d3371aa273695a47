"""The SAM losses on cases whose values are known."""

from __future__ import annotations

import math

import torch

from sam_model.train.losses import (
    LossWeights,
    dice_loss,
    focal_loss,
    iou_rank_loss,
    mask_iou,
    sam_loss,
)

BIG = 30.0


def _target():
    t = torch.zeros(1, 8, 8, dtype=torch.bool)
    t[0, 2:6, 2:6] = True
    return t


def test_perfect_logits_give_zero_loss_and_full_iou():
    t = _target()
    logits = torch.where(t, BIG, -BIG).float()[:, None]
    assert focal_loss(logits, t).item() < 1e-8
    assert dice_loss(logits, t).item() < 1e-6
    assert mask_iou(logits, t).item() == 1.0


def test_focal_loss_matches_formula_at_zero_logits():
    t = _target()
    logits = torch.zeros(1, 1, 8, 8)
    # p = 0.5 everywhere: ce = ln 2, (1 - p_t)^2 = 1/4; alpha 0.25 on the 16 positives, 0.75 else
    expected = math.log(2) * 0.25 * (16 * 0.25 + 48 * 0.75) / 64
    assert abs(focal_loss(logits, t).item() - expected) < 1e-6


def test_dice_of_disjoint_masks_is_one_and_iou_zero():
    t = _target()
    logits = torch.where(t, -BIG, BIG).float()[:, None]
    assert abs(dice_loss(logits, t, eps=0.0).item() - 1.0) < 1e-6
    assert mask_iou(logits, t).item() == 0.0


def test_half_overlap_iou():
    t = _target()
    pred = torch.zeros(1, 1, 8, 8)
    pred[..., 2:6, 4:8] = 1  # 8 of 16 inside, 8 outside
    assert abs(mask_iou(pred, t).item() - 8 / 24) < 1e-6


def test_only_the_best_candidate_gets_the_mask_loss():
    t = _target()
    good = torch.where(t, BIG, -BIG).float()
    bad = -good
    logits = torch.stack([bad, good, bad], 1).requires_grad_(True)  # 1x3x8x8
    iou_pred = torch.tensor([[0.0, 1.0, 0.0]], requires_grad=True)
    parts = sam_loss(logits, iou_pred, t)
    assert parts.iou.item() == 1.0  # the chosen candidate is the good one
    assert parts.total.item() < 1e-5  # its mask loss ~0 and the IoU predictions are exact
    iou_pred2 = torch.tensor([[0.5, 0.5, 0.5]], requires_grad=True)
    parts2 = sam_loss(logits, iou_pred2, t)
    # MSE over the three candidates against true IoUs (0, 1, 0)
    assert abs(parts2.iou_mse.item() - 0.25) < 1e-6
    parts2.total.backward()
    # no mask gradient reaches the bad candidates
    assert logits.grad[:, 0].abs().max() == 0 and logits.grad[:, 2].abs().max() == 0


def test_weights_are_20_to_1_and_valid_masks_prompts():
    w = LossWeights()
    assert (w.focal, w.dice) == (20.0, 1.0)
    t = torch.cat([_target(), _target()])
    logits = torch.zeros(2, 1, 8, 8)
    logits[1] = torch.where(t[1], BIG, -BIG)
    iou = torch.zeros(2, 1)
    only_first = sam_loss(logits, iou, t, valid=torch.tensor([True, False]))
    first = sam_loss(logits[:1], iou[:1], t[:1])
    assert abs(only_first.total.item() - first.total.item()) < 1e-6
    expected = 20 * focal_loss(logits[:1], t[:1]) + dice_loss(logits[:1], t[:1])
    assert abs(first.total.item() - (expected.item() + first.iou_mse.item())) < 1e-6


def test_the_ranking_loss_points_the_top_score_at_the_best_candidate():
    """Its gradient raises the predicted IoU of the candidate whose true IoU is highest and
    lowers the others', even where the MSE is already small; it vanishes once that
    candidate is scored clearly highest; one candidate: nothing to rank."""
    true = torch.tensor([[0.60, 0.90, 0.85]])
    wrong = torch.tensor([[0.60, 0.86, 0.89]], requires_grad=True)  # MSE ~0.001, top-1 wrong
    loss = iou_rank_loss(wrong, true)
    loss.sum().backward()
    assert wrong.grad[0, 1] < 0 < wrong.grad[0, 2]  # descent raises 1, lowers 2
    right = torch.tensor([[0.2, 0.9, 0.4]])
    assert float(iou_rank_loss(right, true)) < 1e-3 < float(loss)
    assert float(iou_rank_loss(torch.tensor([[0.3]]), torch.tensor([[0.9]]))) == 0.0
    # in sam_loss: weight 0 (the default) leaves the total as it was
    t = _target()
    logits = torch.stack([torch.where(t, BIG, -BIG).float()] * 3, 1)
    iou_pred = torch.tensor([[0.2, 0.9, 0.4]])
    plain = sam_loss(logits, iou_pred, t).total
    ranked = sam_loss(logits, iou_pred, t, weights=LossWeights(rank=2.0)).total
    expected = 2.0 * iou_rank_loss(iou_pred, mask_iou(logits, t))
    assert abs(float(ranked - plain) - float(expected)) < 1e-6

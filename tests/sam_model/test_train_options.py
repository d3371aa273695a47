"""Training options for fine-tuning on a CPU: reduced-resolution losses, the
encoder's learning rate, frozen BatchNorm statistics."""

from __future__ import annotations

import pytest
import torch
from sam_helpers import drain, untrained_sam_tiny
from torch import nn

from sam_model.train.data import BatchPlan, scene_batch
from sam_model.train.loop import TrainConfig, interactive_loss, reduce_targets, train

PLAN = BatchPlan(crop_sizes=(128,), crop_weights=(1.0,), pixels_per_batch=2 * 128 * 128,
                 objects=3, img_size=256)


pytestmark = pytest.mark.usefixtures("one_thread")




def test_reduce_targets_keeps_pixels_that_are_mostly_inside():
    gt = torch.zeros(3, 8, 8, dtype=torch.bool)
    gt[0, 0:4, 0:4] = True  # one whole 4x4 block
    gt[1, 0:2, 0:3] = True  # 6 of a block's 16 pixels: less than half
    gt[2, 4:8, 4:6] = True  # exactly half of a block
    valid = torch.ones(3, dtype=torch.bool)
    small, ok, factor = reduce_targets(gt, valid, 2)
    assert factor == 4 and small.shape == (3, 2, 2)
    assert small[0].tolist() == [[True, False], [False, False]]
    assert ok.tolist() == [True, False, True]  # the object that vanished is not scored
    assert small[2].tolist() == [[False, False], [False, True]]
    same, ok2, one = reduce_targets(gt, valid, 8)
    assert one == 1 and same is gt and ok2 is valid
    # the factor divides the side: 96 px with at most 40 -> factor 3, 32 px
    assert reduce_targets(torch.zeros(1, 96, 96, dtype=torch.bool), valid[:1], 40)[2] == 3


def _recorded_prompts(model):
    """Wrap the prompt encoder so that every call's points and boxes are kept."""
    seen = []
    forward = model.prompt_encoder.forward

    def spy(points, boxes, masks):
        seen.append((None if points is None else points[0].clone(),
                     None if boxes is None else boxes.clone()))
        return forward(points, boxes, masks)

    model.prompt_encoder.forward = spy
    return seen


@pytest.mark.parametrize("point_first", [True, False])
def test_prompts_at_reduced_resolution_land_on_their_objects(point_first):
    """Clicks drawn on the reduced ground truth are mapped back to crop pixels inside the
    object (first point) and the box encloses the object up to a reduced pixel."""
    model = untrained_sam_tiny().eval()
    batch = scene_batch(5, 2, PLAN)
    oy, ox = batch["offset"].tolist()
    gt = batch["masks"].flatten(0, 1)
    seen = _recorded_prompts(model)
    with torch.no_grad():
        _, stats = interactive_loss(model, batch, rounds=2, generator=torch.Generator(),
                                    point_first=point_first, use_mask_input=True,
                                    loss_size=32)
    assert len(seen) == 2 and 0 <= stats["iou_last"] <= 1
    points, boxes = seen[0]
    if point_first:
        xy = (points[:, 0] - torch.tensor([ox, oy])).round().long()
        assert xy.min() >= 0 and xy.max() < 128
        inside = gt[torch.arange(len(gt)), xy[:, 1], xy[:, 0]]
        assert inside.float().mean() >= 0.8  # block centres of mostly-inside blocks
    else:
        assert points is None
        rows, cols = gt.any(2), gt.any(1)
        for box, r, c in zip(boxes - torch.tensor([ox, oy, ox, oy]), rows, cols):
            ys, xs = torch.nonzero(r)[:, 0], torch.nonzero(c)[:, 0]
            tight = torch.tensor([xs.min(), ys.min(), xs.max(), ys.max()]).float()
            # 10% box noise (at most 20 px) on top of the 4-px reduction
            side = (tight[2:] - tight[:2]).repeat(2) + 1
            assert ((box - tight).abs() <= 4 + 0.5 * side).all()
    # a later round's click is in crop pixels too
    later, _ = seen[1]
    assert later[:, -1].sub(torch.tensor([ox, oy])).abs().max() < 128


def test_encoder_learning_rate_scale_and_frozen_batchnorm(tmp_path):
    config = TrainConfig(steps=2, rounds=1, warmup=1, lr=1e-3, encoder_lr_scale=0.25,
                         bn_eval=True, loss_size=64, plan=PLAN, seed=1, log_every=1)
    model = untrained_sam_tiny()
    bns = [m for m in model.image_encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [m.running_mean.clone() for m in bns]
    weights = [m.weight.detach().clone() for m in bns]
    drain(train(model, config=config, run_dir=tmp_path / "run"))
    assert all(torch.equal(b, m.running_mean) for b, m in zip(before, bns))
    assert any(not torch.equal(w, m.weight) for w, m in zip(weights, bns))  # affine trains
    groups = torch.load(tmp_path / "run" / "last.pt", weights_only=True)["optimizer"]
    lrs = sorted(g["lr"] for g in groups["param_groups"])
    assert lrs[0] == pytest.approx(0.25 * lrs[1])

    plain = untrained_sam_tiny()
    bns = [m for m in plain.image_encoder.modules() if isinstance(m, nn.BatchNorm2d)]
    drain(train(plain, config=TrainConfig(steps=1, rounds=1, warmup=1, plan=PLAN, seed=1),
                run_dir=tmp_path / "plain"))
    assert any(not torch.equal(b, m.running_mean) for b, m in zip(before, bns))


def test_one_group_keeps_the_model_parameter_order():
    """Without an encoder scale the optimizer has the single group that older run folders
    were saved with, in the model's order (their optimizer state resumes by position)."""
    from sam_model.train.loop import _param_groups

    model = untrained_sam_tiny()
    groups = _param_groups(model, TrainConfig())
    assert len(groups) == 1
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in model.parameters()]
    frozen = _param_groups(model, TrainConfig(freeze_encoder=True, encoder_lr_scale=0.5))
    names = {id(p): n for n, p in model.named_parameters()}
    assert len(frozen) == 1
    assert not any(names[id(p)].startswith("image_encoder.") for p in frozen[0]["params"])


def test_trunk_learning_rate_scale_gives_the_trunk_its_own_group():
    """``trunk_lr_scale``: sam_lite0's pretrained trunk trains at that share of the encoder's
    rate, the neck at the encoder's, the decoder at the full rate."""
    from sam_model.sam_lite0 import build_sam_lite0
    from sam_model.train.loop import _param_groups

    model = build_sam_lite0(pretrained=False, img_size=256)
    names = {id(p): n for n, p in model.named_parameters()}
    groups = _param_groups(model, TrainConfig(trunk_lr_scale=0.1, bn_eval=True))
    assert [g["lr_scale"] for g in groups] == [1.0, 1.0, pytest.approx(0.1)]
    assert all(not names[id(p)].startswith("image_encoder.") for p in groups[0]["params"])
    assert all(names[id(p)].startswith("image_encoder.")
               and not names[id(p)].startswith("image_encoder.trunk.")
               for p in groups[1]["params"])
    assert all(names[id(p)].startswith("image_encoder.trunk.") for p in groups[2]["params"])
    assert sum(len(g["params"]) for g in groups) == len(names)
    both = _param_groups(model, TrainConfig(trunk_lr_scale=0.1, encoder_lr_scale=0.5))
    assert [g["lr_scale"] for g in both] == [1.0, 0.5, pytest.approx(0.05)]
    # a frozen trunk has nothing to scale: one group, as runs without the option had
    frozen = _param_groups(model, TrainConfig(trunk_lr_scale=0.1, freeze_trunk=True))
    assert [g["lr_scale"] for g in frozen] == [1.0]

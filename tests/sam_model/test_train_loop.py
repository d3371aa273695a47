"""The training loop: learning on a tiny problem, checkpoints, resume, export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sam_helpers import drain, untrained_sam_tiny

from sam_model.sam_tiny import build_sam_tiny
from sam_model.train.data import BatchPlan, pair_batch, prepare_pairs, scene_batch
from sam_model.train.loop import (
    TrainConfig,
    export_weights,
    interactive_loss,
    lr_at,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")


PLAN = BatchPlan(crop_sizes=(64,), crop_weights=(1.0,), pixels_per_batch=2 * 64 * 64,
                 objects=3, img_size=256)



def test_a_few_steps_reduce_the_loss():
    model = untrained_sam_tiny().train()
    batch = scene_batch(3, 0, PLAN)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(12):
        gen = torch.Generator().manual_seed(0)  # the same prompts every step
        loss, stats = interactive_loss(model, batch, rounds=2, generator=gen, point_first=False,
                                       use_mask_input=True)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(stats["loss"])
    assert losses[-1] < 0.8 * losses[0], losses


def test_crop_geometry_matches_the_frame():
    """A batch's crops sit at a grid offset; prompts and positional encoding follow it."""
    model = untrained_sam_tiny().eval()
    batch = scene_batch(5, 1, PLAN)
    oy, ox = batch["offset"].tolist()
    assert oy % 16 == 0 and ox % 16 == 0 and max(oy, ox) + 64 <= 256
    with torch.no_grad():
        loss, stats = interactive_loss(model, batch, rounds=3, generator=torch.Generator(),
                                       point_first=True, use_mask_input=True)
    assert np.isfinite(stats["loss"]) and 0 <= stats["iou_last"] <= 1


def test_checkpoint_and_resume_give_the_same_state(tmp_path):
    config = TrainConfig(steps=4, rounds=2, warmup=2, checkpoint_every=2, log_every=1,
                         plan=PLAN, seed=7)
    straight = untrained_sam_tiny()
    result = drain(train(straight, config=config, run_dir=tmp_path / "a"))
    assert result.finished and result.step == 4

    interrupted = untrained_sam_tiny()
    first = drain(train(interrupted, config=config, run_dir=tmp_path / "b", max_seconds=0))
    assert first.step == 1 and not first.finished
    resumed = untrained_sam_tiny(seed=99)  # another init: all must come from the checkpoint
    second = drain(train(resumed, config=config, run_dir=tmp_path / "b"))
    assert second.finished and second.step == 4
    a, b = straight.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3, 4]

    other = TrainConfig(steps=4, rounds=3, warmup=2, plan=PLAN, seed=7)
    with pytest.raises(ValueError, match="another training config"):
        drain(train(untrained_sam_tiny(), config=other, run_dir=tmp_path / "b"))


def test_learning_rate_schedule():
    config = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1)
    assert lr_at(0, config) == pytest.approx(0.1)
    assert lr_at(9, config) == pytest.approx(1.0)
    assert lr_at(55, config) == pytest.approx(0.55)
    assert lr_at(100, config) == pytest.approx(0.1)
    timed = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.1, time_budget_s=60)
    assert lr_at(20, timed, wall_s=60) == pytest.approx(0.1)


def test_export_writes_half_weights_that_load_back(tmp_path):
    model = untrained_sam_tiny()
    path = tmp_path / "w.pt"
    digest = export_weights(model, path)
    assert len(digest) == 64
    stored = torch.load(path, weights_only=True)
    assert all(v.dtype in (torch.float16, torch.int64) for v in stored.values())
    loaded = build_sam_tiny(checkpoint=path, img_size=256)
    key = "mask_decoder.iou_token.weight"
    torch.testing.assert_close(loaded.state_dict()[key], model.state_dict()[key],
                               atol=1e-3, rtol=1e-3)


def test_pairs_become_batches_of_the_same_format():
    rng = np.random.default_rng(0)
    labels = np.zeros((100, 80), np.int32)
    labels[10:40, 10:30] = 1
    labels[50:90, 40:70] = 2
    image = rng.integers(0, 255, (100, 80, 3), dtype=np.uint8)
    pairs = prepare_pairs([(image, labels)], 256)
    assert pairs[0][1].shape == (256, 205)  # longest side to the model's input size
    batch = pair_batch(pairs, 0, 0, PLAN)
    assert batch["image"].shape == (2, 64, 64, 3) and batch["masks"].shape == (2, 3, 64, 64)
    assert batch["masks"].flatten(2).any(2).all()


def test_command_line_starts_a_new_run_from_given_weights(tmp_path, capsys):
    from sam_model.train.__main__ import main

    start = build_sam_tiny(pretrained=False)
    with torch.no_grad():
        start.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(0.25)
    init = tmp_path / "init.pt"
    export_weights(start, init)
    run = tmp_path / "run"
    args = ["--out", str(run), "--init", str(init), "--steps", "1", "--rounds", "1",
            "--objects", "1", "--crop-sizes", "64", "--pixels-per-batch", str(64 * 64),
            "--window-prob", "1", "--warmup", "1", "--lr", "1e-9", "--device", "cpu",
            "--small-prob", "0.25", "--parts-prob", "0.2", "--export", str(run / "out.pt")]
    assert main(args) == 0
    assert "starting from the weights" in capsys.readouterr().out
    trained = torch.load(run / "out.pt", weights_only=True)
    bias = trained["mask_decoder.iou_prediction_head.layers.2.bias"].float()
    assert torch.allclose(bias, torch.full_like(bias, 0.25), atol=1e-3)
    saved = torch.load(run / "last.pt", weights_only=True)["config"]
    assert saved["plan"]["window_prob"] == 1.0 and saved["warmup"] == 1
    assert saved["plan"]["small_prob"] == 0.25 and saved["plan"]["parts_prob"] == 0.2


def test_only_the_trainable_prefixes_change(tmp_path):
    """``trainable``: the IoU head alone is fitted; every other weight and every running
    statistic keeps its value; the option survives a checkpoint."""
    model = untrained_sam_tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    head = "mask_decoder.iou_prediction_head."
    config = TrainConfig(steps=2, rounds=2, warmup=1, lr=1e-2, checkpoint_every=2, log_every=1,
                         plan=PLAN, seed=3, trainable=(head,))
    drain(train(model, config=config, run_dir=tmp_path, model_name="sam_tiny"))
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(head) for k in changed), changed
    saved = torch.load(tmp_path / "last.pt", weights_only=False)["config"]
    assert TrainConfig.from_dict(saved).trainable == (head,)
    with pytest.raises(ValueError, match="no parameter"):
        drain(train(untrained_sam_tiny(), config=TrainConfig(**{**config.__dict__,
                                                                "trainable": ("nothing.",)}),
                    run_dir=tmp_path / "other", model_name="sam_tiny"))

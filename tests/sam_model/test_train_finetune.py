"""Fine-tuning the shipped sam_tiny on a few labelled images helps on images of that kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from sam_model.sam_tiny import build_sam_tiny
from sam_model.train.data import BatchPlan
from sam_model.train.evaluate import evaluate_pairs
from sam_model.train.loop import TrainConfig, train

pytestmark = pytest.mark.usefixtures("one_thread")


def tissue(seed: int, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Grey touching cells (Voronoi) of similar brightness, dark walls, noise; labels per cell."""
    rng = np.random.default_rng(seed)
    seeds = rng.uniform(0, size, (14, 2))
    yy, xx = np.mgrid[0:size, 0:size]
    labels = ((yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2).argmin(-1)
    labels = labels + 1
    wall = np.zeros(labels.shape, bool)
    wall[:-1] |= labels[:-1] != labels[1:]
    wall[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    wall = ndi.binary_dilation(wall)
    image = 120 + rng.normal(0, 6, 15)[labels] + rng.normal(0, 12, labels.shape)
    image[wall] = 60
    labels[wall] = 0
    image = np.clip(image, 0, 255).astype(np.uint8)
    return np.repeat(image[..., None], 3, -1), labels


def test_fine_tuning_raises_miou_on_held_out_images(tmp_path):
    """Decoder-only fine-tuning, 20 steps on 4 images; scored on 2 other images.

    The model runs at a 256 px input (the shipped weights work at any input
    size: the encoder is convolutional) so that the test stays small.
    """
    train_pairs = [tissue(i) for i in range(4)]
    test_pairs = [tissue(100 + i) for i in range(2)]
    model = build_sam_tiny(img_size=256)
    before = evaluate_pairs(model, test_pairs, clicks=1)
    config = TrainConfig(
        steps=20, lr=3e-4, warmup=3, rounds=3, freeze_encoder=True, checkpoint_every=100,
        log_every=5, plan=BatchPlan(crop_sizes=(128,), crop_weights=(1.0,),
                                    pixels_per_batch=3 * 128 * 128, objects=6, img_size=256))
    encoder_before = {k: v.clone() for k, v in model.image_encoder.state_dict().items()}
    gen = train(model, config=config, run_dir=tmp_path / "run", pairs=train_pairs)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            assert stop.value.finished
            break
    after = evaluate_pairs(model, test_pairs, clicks=1)
    assert after["point_top"] > before["point_top"] + 0.05, (before, after)
    assert after["box"] > before["box"], (before, after)
    # the encoder was frozen: weights and batch-norm statistics unchanged
    assert all(torch.equal(v, encoder_before[k])
               for k, v in model.image_encoder.state_dict().items())

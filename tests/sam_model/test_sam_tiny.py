"""sam_tiny: the embedded model's encoder, builder and shipped weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam_model import MODELS
from sam_model.sam_tiny import TinyConvEncoder, TinyEncoderConfig, build_sam_tiny

SHIPPED_WEIGHTS = MODELS["sam_tiny"].packaged


def test_encoder_is_fully_convolutional():
    enc = TinyConvEncoder(config=TinyEncoderConfig(img_size=256)).eval()
    with torch.no_grad():
        assert enc(torch.randn(2, 3, 256, 256)).shape == (2, 128, 16, 16)
        assert enc(torch.randn(1, 3, 96, 160)).shape == (1, 128, 6, 10)
    with pytest.raises(ValueError, match="multiples of 16"):
        enc(torch.randn(1, 3, 100, 96))


def test_sam_tiny_is_a_normal_sam_at_1024():
    model = build_sam_tiny(pretrained=False)
    assert model.image_encoder.img_size == 1024
    assert model.prompt_encoder.image_embedding_size == (64, 64)
    assert model.prompt_encoder.embed_dim == 128
    assert model.mask_decoder.transformer_dim == 128


def test_build_sam_loads_the_shipped_weights_offline(monkeypatch):
    import socket

    import sam_model

    def no_network(*args, **kwargs):
        raise AssertionError("sam_tiny must load without network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert SHIPPED_WEIGHTS.is_file()
    assert SHIPPED_WEIGHTS.stat().st_size <= 16_000_000
    model = sam_model.build_sam("sam_tiny")
    stored = torch.load(SHIPPED_WEIGHTS, map_location="cpu", weights_only=True)
    state = model.state_dict()
    assert set(stored) == set(state)
    key = "mask_decoder.iou_token.weight"
    assert state[key].dtype == torch.float32
    torch.testing.assert_close(state[key], stored[key].float())
    random = build_sam_tiny(pretrained=False)
    assert not torch.equal(random.state_dict()[key], state[key])


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    from sam_model.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="not found"):
        build_sam_tiny(checkpoint=tmp_path / "nope.pt")


def test_shipped_model_segments_coins():
    """The predictor with the shipped weights finds coins from one click (a real image;
    reference by the classical watershed on the Sobel elevation map)."""
    from scipy import ndimage as ndi
    from skimage import data, filters, segmentation

    from sam_model import SamPredictor
    from sam_model.train.interact import object_centre

    image = data.coins()
    markers = np.zeros(image.shape, np.int32)
    markers[image < 30] = 1
    markers[image > 150] = 2
    coins = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(image), markers) == 2)
    labels, n = ndi.label(coins)
    predictor = SamPredictor(build_sam_tiny())
    predictor.set_image(image)
    ious = []
    for i in (1, n // 2, n):  # three coins of the 24
        gt = labels == i
        x, y = object_centre(gt)
        masks, scores, _ = predictor.predict(point_coords=np.array([[x, y]]),
                                             point_labels=np.array([1]), multimask_output=True)
        best = masks[int(np.argmax(scores))]
        ious.append((best & gt).sum() / (best | gt).sum())
    assert np.mean(ious) > 0.8, ious

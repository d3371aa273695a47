"""The CPU inference kernels of SAM 2: oneDNN products, the Hiera trunk by bands of
windows, the neck's channels-last projection and the cached position embedding,
each against the plain torch computation (the path taken with gradients on)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from sam_helpers import perturb_
from torch import nn

from sam_model import hiera, onednn
from sam_model.sam2_configs import tiny_sam2_test_config
from sam_model.sam2_model import build_sam2_from_config

needs_onednn = pytest.mark.skipif(not onednn._ONEDNN, reason="torch built without oneDNN")


@pytest.fixture(scope="module")
def tiny2():
    torch.manual_seed(0)
    return perturb_(build_sam2_from_config(tiny_sam2_test_config()), seed=1, scale=0.05)


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@needs_onednn
def test_onednn_attention_matches_sdpa_over_several_query_blocks(monkeypatch):
    # 16 x 37 scores per block: 16 queries, so 50 queries make 4 blocks (the last of 2)
    monkeypatch.setattr(onednn, "SCORE_BLOCK", 16 * 37)
    q, k, v = _randn(2, 3, 50, 8, seed=1), _randn(2, 3, 37, 8, seed=2), _randn(2, 3, 37, 8, seed=3)
    with torch.no_grad():
        assert onednn.usable(q)
        out = onednn.attention(q, k, v)
        torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v),
                                   atol=1e-5, rtol=1e-5)
        # keys and values given as strided views (heads split from a token-major tensor)
        kv = _randn(2, 37, 3, 8, seed=4)
        torch.testing.assert_close(onednn.attention(q, kv.transpose(1, 2), kv.transpose(1, 2)),
                                   F.scaled_dot_product_attention(q, kv.transpose(1, 2),
                                                                  kv.transpose(1, 2)),
                                   atol=1e-5, rtol=1e-5)


@needs_onednn
def test_onednn_linear_and_its_activations_match_torch():
    torch.manual_seed(0)
    layer = nn.Linear(24, 40)
    x = _randn(3, 7, 24)
    with torch.no_grad():
        for activation, reference in ((None, lambda y: y), ("gelu", F.gelu), ("relu", F.relu)):
            torch.testing.assert_close(onednn.linear(x, layer, activation=activation),
                                       reference(layer(x)), atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="unknown activation 'tanh'"):
            onednn.linear(x, layer, activation="tanh")
    # with gradients on, the plain torch call runs and the gradient flows
    x.requires_grad_(True)
    assert not onednn.usable(x)
    onednn.linear(x, layer, activation="gelu").sum().backward()
    assert x.grad is not None and layer.weight.grad is not None


@pytest.mark.parametrize("band_tokens, long_attention", [
    (1, 10 ** 9),  # one row of windows per band, attention by SDPA
    (hiera.BAND_TOKENS, 1),  # whole maps per band, every attention by query blocks
])
def test_banded_trunk_and_neck_match_the_plain_path(tiny2, monkeypatch, band_tokens,
                                                    long_attention):
    """160 px: stage grids 40, 20, 10 (6-token windows padded to 12) and 5 (pooled padded
    windows); a batch of two."""
    monkeypatch.setattr(hiera, "BAND_TOKENS", band_tokens)
    monkeypatch.setattr(hiera, "LONG_ATTENTION", long_attention)
    calls = []
    banded = hiera.MultiScaleBlock.forward_banded

    def spy(self, x, *, inplace):
        calls.append(inplace)
        return banded(self, x, inplace=inplace)

    monkeypatch.setattr(hiera.MultiScaleBlock, "forward_banded", spy)
    encoder = tiny2.image_encoder
    x = _randn(2, 3, 160, 160, seed=5)
    original = x.clone()
    with torch.no_grad():
        fast = encoder(x)
    assert len(calls) == len(encoder.trunk.blocks) and any(calls)
    assert torch.equal(x, original)
    plain = [f.detach() for f in encoder(x)]  # gradients on: the plain path
    assert len(calls) == len(encoder.trunk.blocks)
    assert [f.shape for f in fast] == [f.shape for f in plain]
    for a, b in zip(fast, plain):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


def test_position_embedding_is_cached_per_grid_size(tiny2):
    trunk = tiny2.image_encoder.trunk
    with torch.no_grad():
        small = trunk.position_embedding(32, 32)
        assert trunk.position_embedding(32, 32) is small  # cached
        tall = trunk.position_embedding(48, 32)
    assert small.shape == (1, 32, 32, 16) and tall.shape == (1, 48, 32, 16)
    # gradients on: computed afresh, not cached
    torch.testing.assert_close(tall, trunk.position_embedding(48, 32).detach())
    torch.testing.assert_close(small, trunk.position_embedding(32, 32).detach())


def test_the_plain_path_serves_autograd_autocast_and_other_dtypes():
    x = torch.zeros(2, 3)
    assert not onednn.eager_cpu_inference(x)  # gradients on
    with torch.no_grad():
        assert onednn.eager_cpu_inference(x)
        assert not onednn.eager_cpu_inference(x.double())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert not onednn.eager_cpu_inference(x)

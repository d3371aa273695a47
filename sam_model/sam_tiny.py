"""``sam_tiny``: the project's own small SAM, light enough for a CPU.

A normal :class:`~sam_model.sam.Sam` (1024 input, a 64x64 embedding grid, the
same prompt encoder and mask decoder classes as the official models) with two
changes that make it cheap:

* :class:`TinyConvEncoder`, a small fully convolutional image encoder: a
  strided stem down to 1/16 resolution built from depthwise-separable and
  inverted-residual blocks, then blocks with large (7x7) depthwise kernels,
  some dilated, so that one cell of the 64x64 grid sees most of the image, and
  a SAM-like neck (1x1 conv, LayerNorm2d, 3x3 conv, LayerNorm2d).
* a 128-channel embedding, prompt encoder and mask decoder (the official
  models use 256), which makes every decoder call about four times cheaper.

Because the encoder is fully convolutional it also runs on inputs smaller
than 1024 (any multiple of 16), which the training code uses to train on
crops placed at the top-left of the 1024 frame.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from .build import build_sam_from_config
from .configs import MaskDecoderConfig, SamConfig
from .registry import build_sam
from .sam import Sam


@dataclass(frozen=True)
class TinyEncoderConfig:
    """Shape of :class:`TinyConvEncoder`.

    ``widths``: channels at 1/2, 1/4, 1/8 and 1/16 resolution.
    ``mid_blocks``: inverted-residual blocks at 1/8 resolution.
    ``dilations``: one large-kernel block at 1/16 resolution per entry.
    """

    kind: str = "sam_model.sam_tiny:build_tiny_encoder"
    img_size: int = 1024
    widths: tuple[int, int, int, int] = (24, 32, 64, 128)
    mid_blocks: int = 2
    mid_expand: int = 2
    dilations: tuple[int, ...] = (1, 2, 1, 4, 1, 8)
    kernel_size: int = 7
    deep_expand: int = 3
    out_chans: int = 128

    @property
    def embedding_size(self) -> int:
        """Side of the embedding grid (img_size / 16)."""
        return self.img_size // 16


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a BxCxHxW tensor."""

    def __init__(self, num_channels: int, *, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


class ConvNormAct(nn.Sequential):
    """Conv2d (no bias), BatchNorm2d, optional GELU; 'same' padding for odd kernels."""

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        *,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        dilation: int = 1,
        act: bool = True,
    ) -> None:
        padding = dilation * (kernel_size - 1) // 2
        layers: list[nn.Module] = [
            nn.Conv2d(in_chans, out_chans, kernel_size, stride=stride, padding=padding,
                      dilation=dilation, groups=groups, bias=False),
            nn.BatchNorm2d(out_chans),
        ]
        if act:
            layers.append(nn.GELU())
        super().__init__(*layers)


class Downsample(nn.Sequential):
    """Halve the resolution: depthwise 3x3 stride 2, then pointwise to ``out_chans``."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__(
            ConvNormAct(in_chans, in_chans, kernel_size=3, stride=2, groups=in_chans),
            ConvNormAct(in_chans, out_chans, kernel_size=1),
        )


class InvertedResidual(nn.Module):
    """MobileNetV2-style block: 1x1 expand, depthwise kxk, 1x1 project, residual."""

    def __init__(self, chans: int, *, expand: int, kernel_size: int = 3,
                 dilation: int = 1) -> None:
        super().__init__()
        hidden = chans * expand
        self.body = nn.Sequential(
            ConvNormAct(chans, hidden, kernel_size=1),
            ConvNormAct(hidden, hidden, kernel_size=kernel_size, groups=hidden,
                        dilation=dilation),
            ConvNormAct(hidden, chans, kernel_size=1, act=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class LargeKernelBlock(nn.Module):
    """ConvNeXt-style block: depthwise kxk (dilated), 1x1 expand, GELU, 1x1 project.

    The residual branch ends in a learnable per-channel scale (initialised
    small) so a deep stack starts close to the identity.
    """

    def __init__(self, chans: int, *, expand: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.spatial = ConvNormAct(chans, chans, kernel_size=kernel_size, groups=chans,
                                   dilation=dilation, act=False)
        self.mix = nn.Sequential(
            nn.Conv2d(chans, chans * expand, 1),
            nn.GELU(),
            nn.Conv2d(chans * expand, chans, 1),
        )
        self.gamma = nn.Parameter(torch.full((chans, 1, 1), 0.1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.mix(self.spatial(x))


class TinyConvEncoder(nn.Module):
    """Fully convolutional image encoder: Bx3xHxW -> Bx``out_chans``x(H/16)x(W/16).

    H and W must be multiples of 16. The input is normalised and padded by
    ``Sam.preprocess`` (1024x1024 for inference); training may pass smaller
    crops. ``img_size`` is the square input size the model is used at.
    """

    #: the training code may feed crops smaller than ``img_size``
    accepts_crops = True

    def __init__(self, *, config: TinyEncoderConfig = TinyEncoderConfig()) -> None:
        super().__init__()
        self.config = config
        self.img_size = config.img_size
        w1, w2, w3, w4 = config.widths
        self.stem = nn.Sequential(
            ConvNormAct(3, w1, kernel_size=3, stride=2),
            ConvNormAct(w1, w1, kernel_size=3, groups=w1),
            ConvNormAct(w1, w1, kernel_size=1),
        )
        self.stage2 = nn.Sequential(
            Downsample(w1, w2),
            ConvNormAct(w2, w2, kernel_size=3, groups=w2),
            ConvNormAct(w2, w2, kernel_size=1),
        )
        self.stage3 = nn.Sequential(
            Downsample(w2, w3),
            *[InvertedResidual(w3, expand=config.mid_expand) for _ in range(config.mid_blocks)],
        )
        self.stage4 = nn.Sequential(
            Downsample(w3, w4),
            *[LargeKernelBlock(w4, expand=config.deep_expand, kernel_size=config.kernel_size,
                               dilation=d) for d in config.dilations],
        )
        self.neck = nn.Sequential(
            nn.Conv2d(w4, config.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW normalised image -> BxCx(H/16)x(W/16) embedding."""
        if x.shape[-2] % 16 or x.shape[-1] % 16:
            raise ValueError(f"TinyConvEncoder needs sides that are multiples of 16, got "
                             f"{tuple(x.shape[-2:])}")
        x = self.stem(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        return self.neck(x)


def build_tiny_encoder(config: TinyEncoderConfig) -> TinyConvEncoder:
    """Encoder builder for the registry (dispatched on ``config.kind``)."""
    return TinyConvEncoder(config=config)


# sam_tiny's 128-channel decoder; sam_lite0 has the same one (its training starts from
# sam_tiny's decoder weights, so the two must stay equal)
TINY_DECODER = MaskDecoderConfig(depth=2, num_heads=4, mlp_dim=512, iou_head_hidden_dim=128)


def sam_tiny_config(img_size: int = 1024) -> SamConfig:
    """The ``SamConfig`` of sam_tiny: the tiny encoder and a 128-channel decoder."""
    return SamConfig(
        encoder=TinyEncoderConfig(img_size=img_size),
        prompt_embed_dim=128,
        mask_in_chans=16,
        decoder=TINY_DECODER,
    )


def sam_tiny_network(architecture: str = "sam_tiny", img_size: int | None = None) -> Sam:
    """A randomly initialised sam_tiny network (the model table's builder for it)."""
    return build_sam_from_config(sam_tiny_config(img_size or 1024))


def build_sam_tiny(
    *,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = True,
    img_size: int = 1024,
) -> Sam:
    """Build sam_tiny in eval mode: ``build_sam("sam_tiny", ...)``.

    With ``checkpoint`` that file is loaded strictly; without it and with
    ``pretrained`` the weights shipped in the package (the model table's
    ``packaged`` file; no network); ``pretrained=False`` gives random weights.
    Weights stored as float16 are cast back to float32 on loading.
    """
    return build_sam("sam_tiny", checkpoint, pretrained=pretrained, img_size=img_size)

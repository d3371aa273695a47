"""SAM 2's image encoder: the Hiera trunk and its feature-pyramid neck.

State-dict keys: ``trunk.*`` (see ``hiera.Hiera``) and ``neck.convs.N.conv.*``
(``convs.0`` takes the lowest-resolution stage), as in the official
checkpoints under ``image_encoder.``.

The neck projects every stage to ``d_model`` channels with a 1x1 conv; levels
listed in ``fpn_top_down_levels`` also add the next coarser level, upsampled
2x (nearest). The ``scalp`` coarsest levels are computed (they feed the top-down
path) but not returned.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from . import onednn
from .hiera import Hiera
from .sam2_position import sine_position_encoding


class FpnNeck(nn.Module):
    """Stage outputs (highest resolution first) -> ``d_model``-channel maps, same order."""

    def __init__(self, *, d_model: int, backbone_channel_list: list[int],
                 fpn_top_down_levels: tuple[int, ...] = (2, 3)) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        self.convs = nn.ModuleList()
        for dim in backbone_channel_list:
            block = nn.Sequential()
            block.add_module("conv", nn.Conv2d(dim, d_model, kernel_size=1))
            self.convs.append(block)
        self.fpn_top_down_levels = tuple(fpn_top_down_levels)

    def forward(self, xs: list[Tensor]) -> list[Tensor]:
        n = len(self.convs) - 1
        if len(xs) != n + 1:
            raise ValueError(f"the neck takes {n + 1} feature maps, got {len(xs)}")
        out: list[Tensor | None] = [None] * (n + 1)
        prev = None
        for i in range(n, -1, -1):  # coarse to fine
            lateral = self._lateral(n - i, xs[i])
            if prev is not None and i in self.fpn_top_down_levels:
                lateral = lateral + F.interpolate(prev.float(), scale_factor=2.0, mode="nearest")
            out[i] = prev = lateral
        return out

    def _lateral(self, j: int, x: Tensor) -> Tensor:
        """``convs[j]`` of BxCxHxW ``x``; a map stored channels last (the trunk's) is projected
        as tokens by the oneDNN product and returned channels last (same values)."""
        conv = self.convs[j].conv
        tokens = x.permute(0, 2, 3, 1)
        if not (onednn.usable(x) and tokens.is_contiguous()):
            return self.convs[j](x)
        weight = conv.weight.view(conv.out_channels, conv.in_channels)  # 1x1 kernel
        return onednn.linear_weights(tokens, weight, conv.bias).permute(0, 3, 1, 2)


class Sam2ImageEncoder(nn.Module):
    """Trunk + neck: Bx3xSxS normalised images -> ``len(channels) - scalp`` feature maps.

    ``img_size`` (S) is kept for the predictors; ``forward`` returns the maps
    finest first (strides 4, 8, 16 for the official models: the last is the
    image embedding, the first two feed the mask decoder's high-resolution path).
    """

    def __init__(self, *, trunk: Hiera, neck: FpnNeck, scalp: int = 1, img_size: int = 1024
                 ) -> None:
        super().__init__()
        if list(trunk.channel_list) != list(neck.backbone_channel_list):
            raise ValueError(f"trunk channels {trunk.channel_list} do not match the neck's "
                             f"{neck.backbone_channel_list}")
        self.trunk = trunk
        self.neck = neck
        self.scalp = scalp
        self.img_size = img_size

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = self.neck(self.trunk(x))
        return feats[: len(feats) - self.scalp] if self.scalp else feats

    def position_encodings(self, feats: list[Tensor]) -> list[Tensor]:
        """Sine encodings (1xCxhxw) of the maps ``forward`` returned (used by the memory path)."""
        return [sine_position_encoding(*f.shape[-2:], self.neck.d_model, device=f.device)
                .to(f.dtype)[None] for f in feats]

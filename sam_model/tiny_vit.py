"""TinyViT image encoder of MobileSAM (``vit_t``), weight-compatible with ``mobile_sam.pt``.

Input: Bx3xSxS normalised, padded images. Output: Bx``out_chans``x(S/16)x(S/16).

Stages: a convolutional stem (stride 4), one stage of inverted-residual
convolutions (``MBConv``), then windowed-attention stages; patch merging
between stages halves the grid, except into the last stage (stride 1), so the
output stride is 16. The unused classification head (``norm_head``, ``head``)
is kept so the official state dict loads strictly.

Speed: convolution + batch norm pairs are fused at inference, feature maps stay
channels-last (no transposes around the depthwise convolutions), attention
goes through ``F.scaled_dot_product_attention`` with the learned offset biases
as an additive mask, and only real tokens are projected (window padding tokens
get the projection of a normalised zero vector, as in the reference).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LayerNorm2d


class Conv2dBN(nn.Module):
    """A bias-free convolution ``c`` followed by batch norm ``bn``; fused in eval mode.

    Works on NCHW tensors (contiguous or channels-last).
    """

    def __init__(
        self,
        in_chans: int,
        out_chans: int,
        ks: int = 1,
        stride: int = 1,
        pad: int = 0,
        groups: int = 1,
        bn_weight_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.c = nn.Conv2d(in_chans, out_chans, ks, stride, pad, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_chans)
        nn.init.constant_(self.bn.weight, bn_weight_init)
        nn.init.constant_(self.bn.bias, 0.0)

    def fused(self) -> tuple[Tensor, Tensor]:
        """Weight and bias of the single convolution equal to conv + eval batch norm."""
        bn = self.bn
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        weight = self.c.weight * scale.view(-1, 1, 1, 1)
        bias = bn.bias - bn.running_mean * scale
        return weight, bias

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            return self.bn(self.c(x))
        weight, bias = self.fused()
        c = self.c
        if c.kernel_size == (1, 1) and c.stride == (1, 1) and c.groups == 1:
            # a pointwise convolution is a matrix product over channels-last pixels
            y = F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias)
            return y.permute(0, 3, 1, 2)
        return F.conv2d(x, weight, bias, c.stride, c.padding, c.dilation, c.groups)


class PatchEmbed(nn.Module):
    """Stem: two stride-2 3x3 convolutions, Bx3xSxS -> BxCx(S/4)x(S/4)."""

    def __init__(self, *, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            Conv2dBN(in_chans, embed_dim // 2, 3, 2, 1),
            nn.GELU(),
            Conv2dBN(embed_dim // 2, embed_dim, 3, 2, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.seq(x)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, 3x3 depthwise, 1x1 project, residual, GELU (NCHW)."""

    def __init__(self, *, in_chans: int, out_chans: int, expand_ratio: float) -> None:
        super().__init__()
        hidden = int(in_chans * expand_ratio)
        self.conv1 = Conv2dBN(in_chans, hidden, ks=1)
        self.act1 = nn.GELU()
        self.conv2 = Conv2dBN(hidden, hidden, ks=3, stride=1, pad=1, groups=hidden)
        self.act2 = nn.GELU()
        self.conv3 = Conv2dBN(hidden, out_chans, ks=1, bn_weight_init=0.0)
        self.act3 = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        y = _gelu(self.act1, self.conv1(x))
        y = _gelu(self.act2, self.conv2(y))
        return self.act3(self.conv3(y) + x)


def _gelu(act: nn.Module, x: Tensor) -> Tensor:
    """Apply ``act`` (a GELU); in place on fresh activations when no gradient is needed
    (the large stage-0 maps then cost one buffer instead of two)."""
    if isinstance(act, nn.GELU) and not (torch.is_grad_enabled() and x.requires_grad):
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    return act(x)


class PatchMerging(nn.Module):
    """1x1 conv, 3x3 depthwise conv (stride 2 or 1), 1x1 conv: NCHW -> BxH'xW'xC' (channels last)."""

    def __init__(self, *, dim: int, out_dim: int, stride: int) -> None:
        super().__init__()
        self.act = nn.GELU()
        self.conv1 = Conv2dBN(dim, out_dim, 1, 1, 0)
        self.conv2 = Conv2dBN(out_dim, out_dim, 3, stride, 1, groups=out_dim)
        self.conv3 = Conv2dBN(out_dim, out_dim, 1, 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3(self.act(self.conv2(self.act(self.conv1(x)))))
        return x.permute(0, 2, 3, 1)


class ConvLayer(nn.Module):
    """A stage of ``MBConv`` blocks, optionally followed by patch merging."""

    def __init__(
        self, *, dim: int, depth: int, expand_ratio: float, downsample: nn.Module | None
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            MBConv(in_chans=dim, out_chans=dim, expand_ratio=expand_ratio) for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """x: BxCxHxW -> BxCxHxW, or BxH'xW'xC' after merging."""
        for blk in self.blocks:
            x = blk(x)
        return x if self.downsample is None else self.downsample(x)


class Attention(nn.Module):
    """Window self-attention with a learned bias per (|dy|, |dx|) offset and head.

    The LayerNorm ``norm`` is part of the attention; ``qkv`` packs, per head,
    key_dim query, key_dim key and d value channels.
    """

    def __init__(self, *, dim: int, key_dim: int, num_heads: int, resolution: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.d = key_dim  # value width per head (attention ratio 1)
        self.dh = self.d * num_heads
        self.norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, self.dh + 2 * key_dim * num_heads)
        self.proj = nn.Linear(self.dh, dim)
        points = list(itertools.product(range(resolution), range(resolution)))
        offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                off = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                idxs.append(offsets.setdefault(off, len(offsets)))
        self.attention_biases = nn.Parameter(torch.zeros(num_heads, len(offsets)))
        n = len(points)
        self.register_buffer(
            "attention_bias_idxs", torch.tensor(idxs, dtype=torch.long).view(n, n), persistent=False
        )

    def attend(self, qkv: Tensor) -> Tensor:
        """qkv: NxTx(packed) projections of N windows of T tokens -> NxTx``dh``."""
        n, t, _ = qkv.shape
        kd = self.key_dim
        q, k, v = (
            qkv.view(n, t, self.num_heads, -1).permute(0, 2, 1, 3).split([kd, kd, self.d], dim=3)
        )
        # a 4-D mask keeps SDPA on its fused path (a 3-D one falls back to the slow one)
        bias = self.attention_biases[:, self.attention_bias_idxs].to(q.dtype).unsqueeze(0)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return out.transpose(1, 2).reshape(n, t, self.dh)


class Mlp(nn.Module):
    """LayerNorm, fc1, GELU, fc2."""

    def __init__(self, *, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.act = nn.GELU()

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class TinyViTBlock(nn.Module):
    """Window attention, depthwise local convolution, MLP (BxHxWxC, channels last)."""

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"num_heads ({num_heads}) must divide dim ({dim})")
        self.window_size = window_size
        self.attn = Attention(
            dim=dim, key_dim=dim // num_heads, num_heads=num_heads, resolution=window_size
        )
        self.mlp = Mlp(dim=dim, hidden=int(dim * mlp_ratio))
        self.local_conv = Conv2dBN(
            dim, dim, ks=local_conv_size, stride=1, pad=local_conv_size // 2, groups=dim
        )

    def _attention(self, x: Tensor) -> Tensor:
        b, h, w, c = x.shape
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        attn = self.attn
        qkv = attn.qkv(attn.norm(x))
        width = qkv.shape[-1]
        if hp != h or wp != w:
            # padding tokens are zeros before the norm: LayerNorm(0) = norm.bias
            fill = attn.qkv(attn.norm.bias.to(qkv.dtype))
            padded = fill.expand(b, hp, wp, width).clone()
            padded[:, :h, :w] = qkv
            qkv = padded
        nh, nw = hp // ws, wp // ws
        windows = (
            qkv.view(b, nh, ws, nw, ws, width).transpose(2, 3).reshape(b * nh * nw, ws * ws, width)
        )
        out = attn.attend(windows)
        out = out.view(b, nh, nw, ws, ws, -1).transpose(2, 3).reshape(b, hp, wp, -1)
        if hp != h or wp != w:
            out = out[:, :h, :w]
        return attn.proj(out)

    def forward(self, x: Tensor) -> Tensor:
        """x: BxHxWxC -> BxHxWxC."""
        x = x + self._attention(x)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class BasicLayer(nn.Module):
    """A stage of ``TinyViTBlock``s, optionally followed by patch merging."""

    def __init__(
        self,
        *,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        downsample: nn.Module | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(
                dim=dim,
                num_heads=num_heads,
                window_size=window_size,
                mlp_ratio=mlp_ratio,
                local_conv_size=local_conv_size,
            )
            for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """x: BxHxWxC -> BxH'xW'xC'."""
        for blk in self.blocks:
            x = blk(x)
        if self.downsample is not None:
            x = self.downsample(x.permute(0, 3, 1, 2))
        return x


class TinyViT(nn.Module):
    """MobileSAM's TinyViT encoder with SAM's neck.

    Args:
        img_size: S, side of the square (padded) input.
        in_chans: input channels.
        embed_dims, depths, num_heads, window_sizes: per stage (stage 0 is
            convolutional; its heads and window are unused).
        mlp_ratio: MLP width ratio of the attention stages.
        mbconv_expand_ratio: expansion of the convolutional stage.
        local_conv_size: kernel of the depthwise convolution in attention blocks.
        out_chans: channels of the output embedding (256).
        num_classes: width of the unused classification head (1000 in mobile_sam.pt).
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: tuple[int, ...] = (64, 128, 160, 320),
        depths: tuple[int, ...] = (2, 2, 6, 2),
        num_heads: tuple[int, ...] = (2, 4, 5, 10),
        window_sizes: tuple[int, ...] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.img_size = img_size
        n = len(depths)
        self.patch_embed = PatchEmbed(in_chans=in_chans, embed_dim=embed_dims[0])
        layers = []
        for i in range(n):
            downsample = None
            if i < n - 1:
                downsample = PatchMerging(
                    dim=embed_dims[i], out_dim=embed_dims[i + 1], stride=1 if i + 1 == n - 1 else 2
                )
            if i == 0:
                layers.append(
                    ConvLayer(
                        dim=embed_dims[0],
                        depth=depths[0],
                        expand_ratio=mbconv_expand_ratio,
                        downsample=downsample,
                    )
                )
            else:
                layers.append(
                    BasicLayer(
                        dim=embed_dims[i],
                        depth=depths[i],
                        num_heads=num_heads[i],
                        window_size=window_sizes[i],
                        mlp_ratio=mlp_ratio,
                        local_conv_size=local_conv_size,
                        downsample=downsample,
                    )
                )
        self.layers = nn.ModuleList(layers)
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: Bx3xSxS (normalised, padded) -> Bx out_chans x S/16 x S/16."""
        x = self.patch_embed(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            x = layer(x)
        # x: B x h x w x C (channels last) after the attention stages
        return self.neck(x.permute(0, 3, 1, 2)).contiguous()


def build_tiny_vit_encoder(config) -> TinyViT:
    """Encoder from a ``configs.TinyViTConfig``."""
    return TinyViT(
        img_size=config.img_size,
        in_chans=config.in_chans,
        embed_dims=tuple(config.embed_dims),
        depths=tuple(config.depths),
        num_heads=tuple(config.num_heads),
        window_sizes=tuple(config.window_sizes),
        mlp_ratio=config.mlp_ratio,
        mbconv_expand_ratio=config.mbconv_expand_ratio,
        local_conv_size=config.local_conv_size,
        out_chans=config.out_chans,
    )

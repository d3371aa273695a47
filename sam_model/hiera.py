"""Hiera trunk of SAM 2 (hierarchical ViT with pooled queries), weight-compatible
with the official SAM 2.1 checkpoints (``image_encoder.trunk.*``).

Input: Bx3xSxS normalised images. Output: one feature map per stage, highest
resolution first: Bx(C*2^i)x(S/4/2^i)x(S/4/2^i) for i = 0..3 (C = ``embed_dim``).

A stage change happens in the first block of the next stage: its queries are
max-pooled 2x2 (inside each window), its width doubles and its residual branch
is projected and pooled the same way. A block attends within windows whose
size lags one block behind the stage (the first block of a stage still uses
the previous stage's window, halved by the pooling); listed blocks attend
globally. Windows are cut from the grid padded with zeros after the first
norm, so padding tokens take part in the attention as the projection of zero
(no masking), exactly as in the official model.

Without autograd on the CPU, blocks run by horizontal bands of windows
(:meth:`MultiScaleBlock.forward_banded`): the same operations on about
``BAND_TOKENS`` tokens at a time, so the temporaries (normed tokens, q/k/v,
MLP hidden layer) stay small enough to be reused by the allocator and cached,
instead of large fresh buffers whose first touch costs page faults; the
residual sums are written in place into the block's input where the shape
allows. Results equal the plain path up to float32 rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import onednn
from .common import MLP

BAND_TOKENS = 2048  # tokens per band of the inference path (a few MB of temporaries)
LONG_ATTENTION = 1024  # from this many tokens per window, attention runs by query blocks


def window_partition(x: Tensor, window: int) -> tuple[Tensor, tuple[int, int]]:
    """BxHxWxC -> (B*nw)xWSxWSxC windows, zero-padded bottom/right; returns the padded (Hp, Wp)."""
    b, h, w, c = x.shape
    ph, pw = (-h) % window, (-w) % window
    if ph or pw:
        x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.view(b, hp // window, window, wp // window, window, c).transpose(2, 3)
    return x.reshape(-1, window, window, c), (hp, wp)


def window_unpartition(windows: Tensor, window: int, padded: tuple[int, int],
                       size: tuple[int, int]) -> Tensor:
    """Inverse of :func:`window_partition`: (B*nw)xWSxWSxC -> BxHxWxC (padding cropped)."""
    hp, wp = padded
    h, w = size
    c = windows.shape[-1]
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, c).transpose(2, 3)
    x = x.reshape(b, hp, wp, c)
    if hp > h or wp > w:
        x = x[:, :h, :w]
    return x


def _pool(x: Tensor, stride: tuple[int, int]) -> Tensor:
    """2D max-pool of a BxHxWxC map (channels last), kernel = stride, floor mode."""
    return F.max_pool2d(x.permute(0, 3, 1, 2), kernel_size=stride, stride=stride).permute(
        0, 2, 3, 1
    )


class PatchEmbed(nn.Module):
    """Overlapping 7x7 stride-4 patches: Bx3xSxS -> Bx(S/4)x(S/4)xC (channels last)."""

    def __init__(self, *, in_chans: int = 3, embed_dim: int = 96) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


class MultiScaleAttention(nn.Module):
    """Self-attention of a grid (windows) whose queries may be max-pooled.

    ``qkv`` maps ``dim`` to 3 x ``dim_out`` (split into heads); ``proj`` maps
    ``dim_out`` to itself. Input BxHxWxdim; output BxH'xW'xdim_out (H' = H / stride).
    """

    def __init__(self, *, dim: int, dim_out: int, num_heads: int,
                 q_stride: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.dim_out = dim_out
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, 3 * dim_out)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        heads = self.num_heads
        qkv = onednn.linear(x, self.qkv).view(b, h * w, 3, heads, self.dim_out // heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B x heads x HW x d
        if self.q_stride is not None:
            grid = q.transpose(1, 2).reshape(b, h, w, self.dim_out)
            grid = _pool(grid, self.q_stride)
            h, w = grid.shape[1:3]
            q = grid.reshape(b, h * w, heads, -1).transpose(1, 2)
        if k.shape[-2] >= LONG_ATTENTION:
            out = onednn.attention(q, k, v)
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(1, 2).reshape(b, h, w, self.dim_out)
        return onednn.linear(out, self.proj)


class MultiScaleBlock(nn.Module):
    """Norm, (windowed) attention with optional query pooling, residual; norm, GELU MLP, residual."""

    def __init__(self, *, dim: int, dim_out: int, num_heads: int, mlp_ratio: float = 4.0,
                 q_stride: tuple[int, int] | None = None, window_size: int = 0) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim=dim, dim_out=dim_out, num_heads=num_heads,
                                        q_stride=q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, 2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)

    def forward(self, x: Tensor) -> Tensor:
        """x: BxHxWxdim -> BxH'xW'xdim_out."""
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            shortcut = self.proj(x)
            if self.q_stride is not None:
                shortcut = _pool(shortcut, self.q_stride)
        window = self.window_size
        if window > 0:
            x, _ = window_partition(x, window)
        x = self.attn(x)
        if window > 0:
            if self.q_stride is not None:
                window //= self.q_stride[0]
            h, w = shortcut.shape[1:3]
            padded = (h + (-h) % window, w + (-w) % window)
            x = window_unpartition(x, window, padded, (h, w))
        x = shortcut + x
        return x + self._mlp(self.norm2(x))

    def _mlp(self, x: Tensor) -> Tensor:
        return onednn.mlp2(x, self.mlp.layers[0], self.mlp.layers[1], "gelu")

    def forward_banded(self, x: Tensor, *, inplace: bool) -> Tensor:
        """Inference form of :meth:`forward` (no autograd), computed by bands of windows.

        x: BxHxWxdim -> BxH'xW'xdim_out, as :meth:`forward`. Windowed blocks take
        whole rows of windows at a time (about ``BAND_TOKENS`` tokens): norm,
        attention, residual and MLP of a band are done before the next band is
        read. Global blocks attend over the whole grid and run their MLP by
        bands. With ``inplace`` the output of a block that keeps the shape is
        written into ``x`` (the caller must not need ``x`` afterwards).
        """
        pooling = self.q_stride is not None
        if pooling and (self.dim == self.dim_out or self.window_size == 0
                        or self.q_stride[0] != self.q_stride[1]
                        or self.window_size % self.q_stride[0]):
            return self.forward(x)  # layouts the official models never use
        if self.window_size == 0:
            if self.dim != self.dim_out:
                return self.forward(x)
            att = self.attn(self.norm1(x))
            out = x.add_(att) if inplace else x + att
            del att
            self._mlp_by_bands(out)
            return out
        ws, s = self.window_size, (self.q_stride[0] if pooling else 1)
        b, h, w, _ = x.shape
        if self.dim == self.dim_out and inplace:
            out = x
        else:
            out = x.new_empty(b, h // s, w // s, self.dim_out)
        pad_w = (-w) % ws
        rows = ws * max(1, BAND_TOKENS // (ws * (w + pad_w)))
        for r0 in range(0, h, rows):
            band = x[:, r0:r0 + rows]
            hb = band.shape[1]
            t = self.norm1(band)
            shortcut = band if self.dim == self.dim_out else onednn.linear(t, self.proj)
            if pooling:
                shortcut = _pool(shortcut, self.q_stride)
            windows, padded = window_partition(F.pad(t, (0, 0, 0, pad_w, 0, (-hb) % ws)), ws)
            del t
            att = window_unpartition(self.attn(windows), ws // s, (padded[0] // s, padded[1] // s),
                                     tuple(shortcut.shape[1:3]))
            dest = out[:, r0 // s:r0 // s + shortcut.shape[1]]
            if out is x:
                dest.add_(att)
            else:
                torch.add(shortcut, att, out=dest)
            del att, shortcut
            dest.add_(self._mlp(self.norm2(dest)))
        return out

    def _mlp_by_bands(self, x: Tensor) -> None:
        """x += mlp(norm2(x)) in place, a band of rows at a time."""
        rows = max(1, BAND_TOKENS // x.shape[2])
        for r0 in range(0, x.shape[1], rows):
            band = x[:, r0:r0 + rows]
            band.add_(self._mlp(self.norm2(band)))


class Hiera(nn.Module):
    """The trunk; see the module docstring.

    Args:
        embed_dim: width of the first stage (doubles at each stage change).
        num_heads: heads of the first stage (doubles at each stage change).
        stages: blocks per stage.
        global_att_blocks: indices of blocks with global attention.
        window_spec: window size per stage for the other blocks.
        window_pos_embed_bkg_spatial_size: grid of the background position
            embedding (bicubically resized to the token grid).
        q_pool: number of stage changes that pool the queries.
        q_stride: pooling stride at a stage change.
        mlp_ratio: MLP width over block width.
    """

    def __init__(self, *, embed_dim: int = 96, num_heads: int = 1,
                 stages: tuple[int, ...] = (2, 3, 16, 3),
                 global_att_blocks: tuple[int, ...] = (12, 16, 20),
                 window_spec: tuple[int, ...] = (8, 4, 14, 7),
                 window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14),
                 q_pool: int = 3, q_stride: tuple[int, int] = (2, 2),
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if len(stages) != len(window_spec):
            raise ValueError(f"{len(stages)} stages but {len(window_spec)} window sizes")
        self.stage_ends = [sum(stages[: i + 1]) - 1 for i in range(len(stages))]
        if not 0 <= q_pool < len(stages):
            raise ValueError(f"q_pool must be in 0..{len(stages) - 1}, got {q_pool}")
        pool_blocks = {end + 1 for end in self.stage_ends[:-1][:q_pool]}
        self.window_spec = tuple(window_spec)
        self.patch_embed = PatchEmbed(embed_dim=embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_dim, *window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(
            torch.zeros(1, embed_dim, window_spec[0], window_spec[0])
        )
        self.blocks = nn.ModuleList()
        dim, heads, stage = embed_dim, num_heads, 0
        for i in range(sum(stages)):
            window = 0 if i in global_att_blocks else window_spec[stage]  # lags a block
            dim_out = dim
            if i - 1 in self.stage_ends:
                dim_out, heads, stage = 2 * dim, 2 * heads, stage + 1
            self.blocks.append(MultiScaleBlock(
                dim=dim, dim_out=dim_out, num_heads=heads, mlp_ratio=mlp_ratio,
                q_stride=tuple(q_stride) if i in pool_blocks else None, window_size=window))
            dim = dim_out
        self.channel_list = [self.blocks[i].dim_out for i in reversed(self.stage_ends)]
        self._pos_cache: tuple | None = None

    def position_embedding(self, h: int, w: int) -> Tensor:
        """1xHxWxC: the background embedding resized to HxW plus the window one tiled.

        Cached while the parameters are unchanged (same storage and version)
        and gradients are off.
        """
        bkg, win = self.pos_embed, self.pos_embed_window
        key = (h, w, bkg.device, bkg.dtype, bkg.data_ptr(), bkg._version, win.data_ptr(),
               win._version)
        if self._pos_cache is not None and self._pos_cache[0] == key:
            return self._pos_cache[1]
        ws = win.shape[-1]
        if h % ws or w % ws:
            raise ValueError(f"a {h}x{w} token grid is not a multiple of the {ws}-token window "
                             f"of the position embedding (input side must be a multiple of "
                             f"{4 * ws} px)")
        pos = F.interpolate(bkg, size=(h, w), mode="bicubic")
        pos = (pos + win.tile(1, 1, h // ws, w // ws)).permute(0, 2, 3, 1).contiguous()
        if not (torch.is_grad_enabled() and bkg.requires_grad) and bkg.device.type != "meta":
            self._pos_cache = (key, pos)
        return pos

    def forward(self, x: Tensor) -> list[Tensor]:
        """Bx3xSxS -> the four stage outputs BxCixHixWi, highest resolution first."""
        x = self.patch_embed(x)
        # position first: the sum then takes its (contiguous channels-last) layout
        x = self.position_embedding(x.shape[1], x.shape[2]) + x
        # the banded path (MultiScaleBlock.forward_banded) serves eager float32 CPU inference;
        # the plain path serves autograd, autocast and compilation
        banded = onednn.eager_cpu_inference(x)
        outputs = []
        ends = set(self.stage_ends)
        owned = True  # x is a temporary of this call (not a returned stage output)
        for i, block in enumerate(self.blocks):
            x = block.forward_banded(x, inplace=owned) if banded else block(x)
            owned = i not in ends
            if not owned:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs

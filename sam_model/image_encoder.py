"""ViT image encoder of SAM (ViT-B/L/H), weight-compatible with the official checkpoints.

Input: Bx3xSxS normalised, padded images (S = ``img_size``, 1024 officially).
Output: Bx``out_chans``x(S/16)x(S/16) image embeddings.

Attention goes through ``F.scaled_dot_product_attention`` with the decomposed
relative positions passed as an additive bias. Windowed blocks project only
the real tokens (padding tokens of a window hold the projection bias, exactly
what projecting zeros gives), and global blocks build the bias a slab of query
rows at a time so memory stays bounded.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import LayerNorm2d, MLPBlock


def _compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    return bool(compiler is not None and compiler.is_compiling())


_GLOBAL_QUERY_CHUNK = 256  # queries per SDPA call in global attention (bounds the bias memory)


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: Bx3xSxS -> Bx(S/p)x(S/p)xC (channels last)."""

    def __init__(self, *, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(x).permute(0, 2, 3, 1)


def relative_position_table(size: int, rel_pos: Tensor) -> Tensor:
    """Per (query, key) offset embeddings along one axis: (size, size, d).

    ``rel_pos`` holds 2*L-1 rows for offsets -(L-1)..L-1; when it was trained
    for another length L it is linearly resampled to 2*size-1 rows first.
    """
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(
            rel_pos.t().unsqueeze(0), size=length, mode="linear"
        )[0].t()
    idx = torch.arange(size, device=rel_pos.device)
    offsets = idx[:, None] - idx[None, :] + (size - 1)
    return rel_pos[offsets]


class Attention(nn.Module):
    """Multi-head self-attention over a grid with decomposed relative positions.

    ``qkv`` projects C to 3C (q, k, v, each split into heads), ``proj`` maps back.
    ``rel_pos_h``/``rel_pos_w`` ((2*size-1) x head_dim) are the official
    relative-position tables for the grid size the block sees.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = use_rel_pos
        if use_rel_pos:
            if input_size is None:
                raise ValueError("input_size is needed for relative positions")
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * input_size[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * input_size[1] - 1, head_dim))

    def attend(self, qkv: Tensor, gh: int, gw: int, query_chunk: int | None = None) -> Tensor:
        """Attention over grids given their projected q|k|v.

        qkv: Nx(gh*gw)x3C (N grids: batch x windows). Returns Nx(gh*gw)xC
        (before ``proj``).
        """
        n, t, c3 = qkv.shape
        heads = self.num_heads
        d = c3 // (3 * heads)
        q, k, v = qkv.view(n, t, 3, heads, d).permute(2, 0, 3, 1, 4).unbind(0)  # N x h x T x d
        if not self.use_rel_pos:
            out = F.scaled_dot_product_attention(q, k, v)
            return out.transpose(1, 2).reshape(n, t, heads * d)
        rh = relative_position_table(gh, self.rel_pos_h).to(q.dtype)  # gh x gh x d
        rw = relative_position_table(gw, self.rel_pos_w).to(q.dtype)  # gw x gw x d
        rows_per_chunk = gh if query_chunk is None else max(1, min(gh, query_chunk // gw))
        chunk = rows_per_chunk * gw
        out = q.new_empty((n, heads, t, d)) if chunk < t else None
        # inference in eager mode reuses one bias buffer (fresh large buffers cost
        # page faults); autograd and compiled graphs allocate their own
        reuse = not _compiling() and not (torch.is_grad_enabled() and q.requires_grad)
        buffer = q.new_empty((n, heads, rows_per_chunk, gw, gh, gw)) if reuse else None
        for start in range(0, t, chunk):
            stop = min(t, start + chunk)
            rows = (stop - start) // gw
            r0 = start // gw
            qc = q[:, :, start:stop]
            q5 = qc.reshape(n, heads, rows, gw, d)
            # contiguous terms make the broadcast sum contiguous, so the bias
            # reshapes without another copy
            bias_h = torch.einsum("nhywd,ykd->nhywk", q5, rh[r0 : r0 + rows]).contiguous()
            bias_w = torch.einsum("nhywd,wkd->nhywk", q5, rw).contiguous()
            if buffer is None:
                bias = bias_h.unsqueeze(-1) + bias_w.unsqueeze(-2)
            else:
                bias = torch.add(bias_h.unsqueeze(-1), bias_w.unsqueeze(-2), out=buffer[:, :, :rows])
            bias = bias.view(n, heads, stop - start, t)
            res = F.scaled_dot_product_attention(qc, k, v, attn_mask=bias)
            if out is None:
                out = res
            else:
                out[:, :, start:stop] = res
        return out.transpose(1, 2).reshape(n, t, heads * d)

    def forward(self, x: Tensor) -> Tensor:
        """x: BxHxWxC -> BxHxWxC (attention over the whole grid)."""
        b, h, w, c = x.shape
        out = self.attend(self.qkv(x).reshape(b, h * w, 3 * c), h, w, _GLOBAL_QUERY_CHUNK)
        return self.proj(out).view(b, h, w, c)


class Block(nn.Module):
    """Pre-norm transformer block; attention within windows or over the whole grid.

    ``window_size`` 0 means global attention; otherwise the grid is padded to a
    multiple of the window and attention runs within each window.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        use_rel_pos: bool = False,
        window_size: int = 0,
        input_size: tuple[int, int] | None = None,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(
            dim=dim,
            num_heads=num_heads,
            qkv_bias=qkv_bias,
            use_rel_pos=use_rel_pos,
            input_size=input_size if window_size == 0 else (window_size, window_size),
        )
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio), nn.GELU)
        self.window_size = window_size

    def _windowed(self, xn: Tensor) -> Tensor:
        b, h, w, c = xn.shape
        ws = self.window_size
        hp, wp = -(-h // ws) * ws, -(-w // ws) * ws
        qkv = self.attn.qkv(xn)  # B x H x W x 3C, real tokens only
        if hp != h or wp != w:
            # padding tokens are zeros after norm1 in the official model: their
            # projection is the bias (or zero)
            bias = self.attn.qkv.bias
            fill = bias if bias is not None else qkv.new_zeros(3 * c)
            padded = fill.to(qkv.dtype).expand(b, hp, wp, 3 * c).clone()
            padded[:, :h, :w] = qkv
            qkv = padded
        nh, nw = hp // ws, wp // ws
        windows = (
            qkv.view(b, nh, ws, nw, ws, 3 * c)
            .permute(0, 1, 3, 2, 4, 5)
            .reshape(b * nh * nw, ws * ws, 3 * c)
        )
        out = self.attn.attend(windows, ws, ws)
        out = out.view(b, nh, nw, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        if hp != h or wp != w:
            out = out[:, :h, :w]
        return self.attn.proj(out)

    def forward(self, x: Tensor) -> Tensor:
        """x: BxHxWxC -> BxHxWxC."""
        xn = self.norm1(x)
        x = x + (self._windowed(xn) if self.window_size > 0 else self.attn(xn))
        return x + self.mlp(self.norm2(x))


class ImageEncoderViT(nn.Module):
    """SAM's ViT backbone plus its convolutional neck.

    Args:
        img_size: S, side of the square (padded) input.
        patch_size: patch side p; the embedding grid is S/p.
        in_chans: input channels (3).
        embed_dim, depth, num_heads, mlp_ratio: transformer size.
        out_chans: channels of the output embedding (256).
        qkv_bias: bias in the qkv projection.
        use_abs_pos: learned absolute position embedding (S/p x S/p x C).
        use_rel_pos: decomposed relative positions in attention.
        window_size: window side of the windowed blocks.
        global_attn_indexes: blocks that attend over the whole grid.
    """

    def __init__(
        self,
        *,
        img_size: int = 1024,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        out_chans: int = 256,
        qkv_bias: bool = True,
        use_abs_pos: bool = True,
        use_rel_pos: bool = True,
        window_size: int = 14,
        global_attn_indexes: tuple[int, ...] = (),
    ) -> None:
        super().__init__()
        self.img_size = img_size
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim)
        self.pos_embed = (
            nn.Parameter(torch.zeros(1, grid, grid, embed_dim)) if use_abs_pos else None
        )
        self.blocks = nn.ModuleList(
            Block(
                dim=embed_dim,
                num_heads=num_heads,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                use_rel_pos=use_rel_pos,
                window_size=0 if i in global_attn_indexes else window_size,
                input_size=(grid, grid),
            )
            for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: Bx3xSxS (normalised, padded) -> Bx out_chans x S/p x S/p."""
        x = self.patch_embed(x)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


def build_vit_encoder(config) -> ImageEncoderViT:
    """Encoder from a ``configs.ViTConfig``."""
    return ImageEncoderViT(
        img_size=config.img_size,
        patch_size=config.patch_size,
        in_chans=config.in_chans,
        embed_dim=config.embed_dim,
        depth=config.depth,
        num_heads=config.num_heads,
        mlp_ratio=config.mlp_ratio,
        out_chans=config.out_chans,
        qkv_bias=config.qkv_bias,
        use_abs_pos=config.use_abs_pos,
        use_rel_pos=config.use_rel_pos,
        window_size=config.window_size,
        global_attn_indexes=tuple(config.global_attn_indexes),
    )

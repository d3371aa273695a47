"""SAM 2's memory encoder and memory attention (``memory_encoder.*``, ``memory_attention.*``).

* :class:`MemoryEncoder`: a frame's stride-16 features and its predicted mask
  logits -> a ``mem_dim``-channel memory map (the mask, sigmoid-squashed, is
  downsampled 16x by four stride-2 convs, added to the projected features and
  fused by two ConvNeXt blocks) and its sine position encoding.
* :class:`MemoryAttention`: the current frame's tokens attend to themselves
  and then to the memories of other frames (and to object-pointer tokens),
  with rotary position encoding on the grid tokens.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from . import onednn
from .common import LayerNorm2d
from .sam2_position import apply_rotary, axial_rotary_frequencies, sine_position_encoding


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv, channel norm, 4x pointwise MLP (GELU), scaled residual."""

    def __init__(self, *, dim: int, kernel_size: int = 7, padding: int = 3) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        """BxCxHxW -> BxCxHxW."""
        y = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        y = self.gamma * onednn.mlp2(y, self.pwconv1, self.pwconv2, "gelu")
        return x + y.permute(0, 3, 1, 2)


class MaskDownSampler(nn.Module):
    """Bx1xHxW mask -> BxCx(H/16)x(W/16): four (3x3 stride-2 conv, norm, GELU), then 1x1 conv.

    Channels grow 4x per step (1, 4, 16, 64, 256); stored as ``encoder.0..12``.
    """

    def __init__(self, *, embed_dim: int = 256, steps: int = 4) -> None:
        super().__init__()
        self.encoder = nn.Sequential()
        cin = 1
        for _ in range(steps):
            cout = cin * 4
            self.encoder.append(nn.Conv2d(cin, cout, kernel_size=3, stride=2, padding=1))
            self.encoder.append(LayerNorm2d(cout))
            self.encoder.append(nn.GELU())
            cin = cout
        self.encoder.append(nn.Conv2d(cin, embed_dim, kernel_size=1))

    def forward(self, x: Tensor) -> Tensor:
        return self.encoder(x)


class Fuser(nn.Module):
    """A stack of ConvNeXt blocks (``layers.N``)."""

    def __init__(self, *, dim: int, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim=dim) for _ in range(num_layers))

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Features + mask logits -> memory (Bx``out_dim``xhxw) and its position encoding."""

    def __init__(self, *, in_dim: int = 256, out_dim: int = 64, fuser_layers: int = 2) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(embed_dim=in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(dim=in_dim, num_layers=fuser_layers)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        self.out_dim = out_dim

    def forward(self, pix_feat: Tensor, masks: Tensor, skip_mask_sigmoid: bool = False
                ) -> tuple[Tensor, Tensor]:
        """pix_feat BxCxhxw, masks Bx1x16hx16w logits (or probabilities with
        ``skip_mask_sigmoid``) -> (memory Bx out_dim xhxw, position 1x out_dim xhxw)."""
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        x = self.pix_feat_proj(pix_feat) + self.mask_downsampler(masks)
        x = self.out_proj(self.fuser(x))
        pos = sine_position_encoding(*x.shape[-2:], self.out_dim, device=x.device)
        return x, pos.to(x.dtype)[None]


class RoPEAttention(nn.Module):
    """Attention with axial rotary encoding of q and of the first keys.

    q: BxNqxC over a square grid of Nq tokens; k, v: BxNkx``kv_in_dim``. The
    first ``Nk - num_k_exclude_rope`` keys are whole copies of a grid of Nq
    tokens (one per memory frame) and get the same rotations as the queries;
    the last ``num_k_exclude_rope`` keys (object pointers) are not rotated.
    """

    def __init__(self, *, embedding_dim: int, num_heads: int = 1, kv_in_dim: int | None = None,
                 rope_theta: float = 10000.0) -> None:
        super().__init__()
        kv = kv_in_dim or embedding_dim
        self.num_heads = num_heads
        self.internal_dim = embedding_dim
        self.theta = rope_theta
        self.q_proj = nn.Linear(embedding_dim, embedding_dim)
        self.k_proj = nn.Linear(kv, embedding_dim)
        self.v_proj = nn.Linear(kv, embedding_dim)
        self.out_proj = nn.Linear(embedding_dim, embedding_dim)

    def _heads(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: Tensor, k: Tensor, v: Tensor, num_k_exclude_rope: int = 0) -> Tensor:
        q = self._heads(onednn.linear(q, self.q_proj))
        k = self._heads(onednn.linear(k, self.k_proj))
        v = self._heads(onednn.linear(v, self.v_proj))
        nq = q.shape[-2]
        side = math.isqrt(nq)
        if side * side != nq:
            raise ValueError(f"rotary attention needs a square grid of queries, got {nq} tokens")
        freqs = axial_rotary_frequencies(self.internal_dim // self.num_heads, side, side,
                                         self.theta)
        q = apply_rotary(q, freqs)
        n_rope = k.shape[-2] - num_k_exclude_rope
        if n_rope % nq:
            raise ValueError(f"{n_rope} rotated keys are not whole copies of the {nq}-token grid")
        if n_rope:
            rotated = apply_rotary(k[:, :, :n_rope], freqs, repeat=n_rope // nq)
            k = torch.cat([rotated, k[:, :, n_rope:]], dim=2) if num_k_exclude_rope else rotated
        out = onednn.attention(q, k, v)
        b, _, n, d = out.shape
        return onednn.linear(out.transpose(1, 2).reshape(b, n, self.num_heads * d), self.out_proj)


class MemoryAttentionLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to memories (keys + position), ReLU MLP."""

    def __init__(self, *, d_model: int = 256, dim_feedforward: int = 2048, num_heads: int = 1,
                 kv_in_dim: int = 64) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(embedding_dim=d_model, num_heads=num_heads)
        self.cross_attn_image = RoPEAttention(embedding_dim=d_model, num_heads=num_heads,
                                              kv_in_dim=kv_in_dim)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(self, tgt: Tensor, memory: Tensor, pos: Tensor, num_k_exclude_rope: int = 0
                ) -> Tensor:
        x = self.norm1(tgt)
        tgt = tgt + self.self_attn(x, x, x)
        x = self.norm2(tgt)
        tgt = tgt + self.cross_attn_image(x, memory + pos, memory,
                                          num_k_exclude_rope=num_k_exclude_rope)
        return tgt + onednn.mlp2(self.norm3(tgt), self.linear1, self.linear2, "relu")


class MemoryAttention(nn.Module):
    """``num_layers`` memory-attention layers and a final norm; batch first.

    ``forward(curr BxNxC, memory BxMx mem_dim, curr_pos BxNxC, memory_pos BxMx mem_dim,
    num_obj_ptr_tokens)`` -> BxNxC conditioned features (N a square grid).
    """

    def __init__(self, *, d_model: int = 256, num_layers: int = 4, dim_feedforward: int = 2048,
                 num_heads: int = 1, kv_in_dim: int = 64) -> None:
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model=d_model, dim_feedforward=dim_feedforward,
                                 num_heads=num_heads, kv_in_dim=kv_in_dim)
            for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, curr: Tensor, memory: Tensor, curr_pos: Tensor, memory_pos: Tensor,
                num_obj_ptr_tokens: int = 0) -> Tensor:
        x = curr + 0.1 * curr_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_k_exclude_rope=num_obj_ptr_tokens)
        return self.norm(x)

"""Two-way transformer of the mask decoder.

Prompt tokens (few, BxNxC) and image tokens (many, Bx(h*w)xC) attend to each
other in both directions. Parameter names follow the official checkpoints.

Speed: when one side of a cross-attention has only a few tokens (the usual
case: 5 output tokens plus a handful of prompt tokens against 4096 image
tokens), the projections of the many image tokens are folded into the few
tokens' side, which is exact in real arithmetic and saves more than half of
the work (see ``Attention``). Image tokens may have batch 1 while the prompt
tokens have batch B: they are broadcast, never copied per prompt.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLPBlock


class Attention(nn.Module):
    """Multi-head attention whose projections may narrow the width.

    ``q_proj``, ``k_proj`` and ``v_proj`` map C to C/downsample_rate (split
    across ``num_heads``); ``out_proj`` maps back to C.

    Inputs are q: BqxNqxC, k and v: BkxNkxC with Bq and Bk equal or one of them
    1 (broadcast). Output: BxNqxC.
    """

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError(
                f"num_heads ({num_heads}) must divide the internal width ({self.internal_dim})"
            )
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.v_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    # -- paths ---------------------------------------------------------------
    def forward(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Attend q (BqxNqxC) to k/v (BkxNkxC); returns BxNqxC."""
        nq, nk = q.shape[1], k.shape[1]
        if nq * self.num_heads < self.internal_dim and nq < nk:
            return self._few_queries(q, k, v)
        if nk * self.num_heads < self.internal_dim and nk < nq:
            return self._few_keys(q, k, v)
        return self._plain(q, k, v)

    def _split(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def _plain(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Textbook path: project, split heads, SDPA, merge, project out."""
        b = max(q.shape[0], k.shape[0])
        qh = self._split(self.q_proj(q))
        kh = self._split(self.k_proj(k))
        vh = self._split(self.v_proj(v))
        qh = qh.expand(b, -1, -1, -1)
        kh = kh.expand(b, -1, -1, -1)
        vh = vh.expand(b, -1, -1, -1)
        out = F.scaled_dot_product_attention(qh, kh, vh)
        out = out.transpose(1, 2).reshape(b, q.shape[1], self.internal_dim)
        return self.out_proj(out)

    def _few_queries(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Few queries, many keys: never project the keys or the values.

        score_h = (q Wq_h^T + bq_h) . (x Wk_h^T + bk_h) = ((q Wq_h^T + bq_h) Wk_h) . x + const
        (the constant per query row cancels in the softmax), and since each
        softmax row sums to one, sum_n p_n (x_n Wv_h^T + bv_h) = (sum_n p_n x_n) Wv_h^T + bv_h.
        """
        h, c = self.num_heads, self.embedding_dim
        d = self.internal_dim // h
        b, nq = max(q.shape[0], k.shape[0]), q.shape[1]
        qh = self._split(self.q_proj(q)) * (1.0 / math.sqrt(d))  # Bq x h x Nq x d
        wk = self.k_proj.weight.view(h, d, c)
        a = (qh @ wk).expand(b, -1, -1, -1).reshape(b, h * nq, c)  # B x hNq x C
        p = torch.softmax(_bmm_broadcast(a, k.transpose(1, 2)), dim=-1)  # B x hNq x Nk
        px = _bmm_broadcast(p, v).view(b, h, nq, c)  # B x h x Nq x C
        wv = self.v_proj.weight.view(h, d, c)
        out = px @ wv.transpose(1, 2) + self.v_proj.bias.view(h, 1, d)  # B x h x Nq x d
        out = out.transpose(1, 2).reshape(b, nq, self.internal_dim)
        return self.out_proj(out)

    def _few_keys(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """Many queries, few keys: never project the queries, nor the outputs.

        score_h(x, n) = x . (Wq_h^T k_h[n]) + bq_h . k_h[n], and the output
        sum_h P_h V_h Wo_h^T + bo = P (V_h Wo_h^T stacked over heads) + bo.
        """
        h, c = self.num_heads, self.embedding_dim
        d = self.internal_dim // h
        b, nk = max(q.shape[0], k.shape[0]), k.shape[1]
        scale = 1.0 / math.sqrt(d)
        kh = self._split(self.k_proj(k)) * scale  # Bk x h x Nk x d
        vh = self._split(self.v_proj(v))  # Bk x h x Nk x d
        wq = self.q_proj.weight.view(h, d, c)
        g = (kh @ wq).reshape(kh.shape[0], h * nk, c)  # Bk x hNk x C
        const = (kh @ self.q_proj.bias.view(h, d, 1)).reshape(kh.shape[0], h * nk, 1)
        # scores laid out keys-first (B x hNk x Nq): the softmax then runs over a
        # short middle axis, vectorised along the many queries
        s = _bmm_broadcast(g, q.transpose(1, 2)) + const
        nq = s.shape[2]
        p = torch.softmax(s.view(b, h, nk, nq), dim=2).view(b, h * nk, nq)
        wo = self.out_proj.weight.view(c, h, d).permute(1, 2, 0)  # h x d x C
        u = (vh @ wo).reshape(vh.shape[0], h * nk, c)  # Bk x hNk x C
        return _bmm_broadcast(p.transpose(1, 2), u) + self.out_proj.bias


def _bmm_broadcast(x: Tensor, y: Tensor) -> Tensor:
    """x: BxMxK @ y: BxKxN where either batch may be 1, without copying the shared side."""
    bx, by = x.shape[0], y.shape[0]
    if bx == by:
        return x @ y
    if bx == 1:  # one left matrix against many: stack the right ones side by side
        m, n = x.shape[1], y.shape[2]
        rhs = y.transpose(0, 1).reshape(y.shape[1], by * n)
        return (x[0] @ rhs).view(m, by, n).transpose(0, 1)
    # many left matrices against one right matrix: one tall product
    return (x.reshape(bx * x.shape[1], x.shape[2]) @ y[0]).view(bx, x.shape[1], y.shape[2])


class TwoWayAttentionBlock(nn.Module):
    """Self-attention of the tokens, token->image attention, token MLP,
    image->token attention; a LayerNorm after each (norm1..norm4)."""

    def __init__(
        self,
        *,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int = 2048,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
        skip_first_layer_pe: bool = False,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLPBlock(embedding_dim, mlp_dim, activation)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor
    ) -> tuple[Tensor, Tensor]:
        """queries BxNxC, keys (B or 1)x(h*w)xC -> (queries, keys)."""
        if self.skip_first_layer_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(queries + query_pe, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        keys = keys + self.cross_attn_image_to_token(k, queries + query_pe, queries)
        keys = self.norm4(keys)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks, then a last token->image attention.

    Args:
        depth: number of blocks.
        embedding_dim: C.
        num_heads: heads of every attention (must divide C / downsample rate).
        mlp_dim: hidden width of the token MLP.
        activation: activation class of the token MLP.
        attention_downsample_rate: cross-attention width divisor.
    """

    def __init__(
        self,
        *,
        depth: int,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        activation: type[nn.Module] = nn.ReLU,
        attention_downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth
        self.embedding_dim = embedding_dim
        self.num_heads = num_heads
        self.mlp_dim = mlp_dim
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(
                embedding_dim=embedding_dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                activation=activation,
                attention_downsample_rate=attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
            )
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(
            embedding_dim, num_heads, downsample_rate=attention_downsample_rate
        )
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: Tensor, image_pe: Tensor, point_embedding: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Run the transformer.

        Args:
            image_embedding: BixCxhxw (Bi is B or 1, broadcast over the prompts).
            image_pe: 1xCxhxw (or BixCxhxw) positional encoding.
            point_embedding: BxNxC prompt tokens.

        Returns:
            queries BxNxC and keys Bx(h*w)xC (keys keep batch 1 only if depth is 0).
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        attn = self.final_attn_token_to_image(queries + point_embedding, keys + key_pe, keys)
        queries = self.norm_final_attn(queries + attn)
        return queries, keys

"""Mask decoder: image embedding + prompt tokens -> mask logits and IoU scores.

The width (``transformer_dim``, 256 for the official models) is a parameter,
so narrower decoders (e.g. 128 channels) use the same class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP, LayerNorm2d


class MaskDecoder(nn.Module):
    """Predicts ``num_multimask_outputs + 1`` masks and their IoU per prompt.

    Mask 0 is the single-mask output; masks 1.. are the multimask outputs.

    Args:
        transformer_dim: C, width of image and prompt embeddings.
        transformer: a two-way transformer taking (image BxCxhxw, pe, tokens BxNxC).
        num_multimask_outputs: masks predicted for ambiguous prompts (3).
        activation: activation class of the upscaling network.
        iou_head_depth: layers of the IoU MLP.
        iou_head_hidden_dim: hidden width of the IoU MLP.
    """

    def __init__(
        self,
        *,
        transformer_dim: int,
        transformer: nn.Module,
        num_multimask_outputs: int = 3,
        activation: type[nn.Module] = nn.GELU,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
    ) -> None:
        super().__init__()
        self.transformer_dim = transformer_dim
        self.transformer = transformer
        self.num_multimask_outputs = num_multimask_outputs
        self.iou_token = nn.Embedding(1, transformer_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, transformer_dim)
        c4, c8 = transformer_dim // 4, transformer_dim // 8
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(transformer_dim, c4, kernel_size=2, stride=2),
            LayerNorm2d(c4),
            activation(),
            nn.ConvTranspose2d(c4, c8, kernel_size=2, stride=2),
            activation(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(transformer_dim, transformer_dim, c8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            transformer_dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth
        )

    def forward(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
        multimask_output: bool,
    ) -> tuple[Tensor, Tensor]:
        """Predict masks.

        Args:
            image_embeddings: 1xCxhxw (shared by all prompts) or BxCxhxw (one per prompt).
            image_pe: 1xCxhxw positional encoding of the embedding grid.
            sparse_prompt_embeddings: BxNxC point/box tokens.
            dense_prompt_embeddings: BxCxhxw (or 1xCxhxw) mask-prompt embedding.
            multimask_output: return the 3 multimask outputs instead of the single one.

        Returns:
            mask logits BxMx(4h)x(4w) and IoU predictions BxM (M = 3 or 1).
        """
        wanted = (
            list(range(1, self.num_mask_tokens)) if multimask_output else [0]
        )
        return self._decode(
            image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, wanted
        )

    def predict_masks(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse_prompt_embeddings: Tensor,
        dense_prompt_embeddings: Tensor,
    ) -> tuple[Tensor, Tensor]:
        """All ``num_mask_tokens`` masks BxKx(4h)x(4w) and IoU predictions BxK."""
        return self._decode(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            list(range(self.num_mask_tokens)),
        )

    def _decode(
        self,
        image_embeddings: Tensor,
        image_pe: Tensor,
        sparse: Tensor,
        dense: Tensor,
        wanted: list[int],
    ) -> tuple[Tensor, Tensor]:
        hs, keys, hw = self.run_transformer(image_embeddings, image_pe, sparse, dense)
        return self.masks_from_tokens(hs, keys, hw, wanted), self.iou_from_tokens(hs, wanted)

    # The decoder in three public steps, so that callers (the automatic mask
    # generator) can read the IoU head before paying for the mask upscaling.
    def run_transformer(
        self, image_embeddings: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor
    ) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """Two-way transformer over the output, prompt and image tokens.

        Args as :meth:`forward`. Returns output tokens BxTxC (IoU token first,
        then the mask tokens), image tokens Bx(h*w)xC (an expanded view when the
        image embedding is shared) and the grid size (h, w).
        """
        b = sparse.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        if dense.shape[0] > 1 and dense.stride(0) == 0:
            dense = dense[:1]  # the same "no mask" embedding for every prompt
        src = image_embeddings + dense  # 1 or B x C x h x w, never repeated per prompt
        h, w = src.shape[-2:]
        hs, keys = self.transformer(src, image_pe, tokens)
        if keys.shape[0] != b:
            keys = keys.expand(b, -1, -1)
        return hs, keys, (int(h), int(w))

    def iou_from_tokens(self, hs: Tensor, wanted: list[int]) -> Tensor:
        """IoU predictions BxM of the ``wanted`` mask outputs, from output tokens BxTxC."""
        return self.iou_prediction_head(hs[:, 0, :])[:, wanted]

    def masks_from_tokens(
        self, hs: Tensor, keys: Tensor, hw: tuple[int, int], wanted: list[int]
    ) -> Tensor:
        """Mask logits BxMx(4h)x(4w) of the ``wanted`` outputs (hs, keys as returned
        by :meth:`run_transformer`, possibly indexed to a subset of prompts)."""
        hyper = torch.stack(
            [self.output_hypernetworks_mlps[i](hs[:, 1 + i, :]) for i in wanted], dim=1
        )  # B x M x C/8
        return self._masks_from_tokens(keys, hw[0], hw[1], hyper)

    def _masks_from_tokens(self, keys: Tensor, h: int, w: int, hyper: Tensor) -> Tensor:
        """Upscale image tokens 4x and dot them with the hypernetwork outputs.

        A 2x2 stride-2 transposed convolution is one matrix product per pixel
        followed by a pixel shuffle; the shuffle of both convolutions is applied
        once, at the end, to the (few) mask channels only.

        keys: Bx(h*w)xC, hyper: BxMxC8 -> logits BxMx(4h)x(4w).
        """
        up1, norm, act1, up2, act2 = self.output_upscaling
        b, c = keys.shape[0], keys.shape[2]
        c4, c8 = up1.out_channels, up2.out_channels
        w1 = up1.weight.permute(0, 2, 3, 1).reshape(c, 4 * c4)
        y = torch.addmm(up1.bias.repeat(4), keys.reshape(b * h * w, c), w1)
        y = y.view(b * h * w * 4, c4)
        if isinstance(norm, LayerNorm2d):
            y = F.layer_norm(y, (c4,), norm.weight, norm.bias, norm.eps)
        else:  # pragma: no cover - only LayerNorm2d is built here
            raise TypeError("unexpected normalisation in output_upscaling")
        y = act1(y)
        w2 = up2.weight.permute(0, 2, 3, 1).reshape(c4, 4 * c8)
        z = act2(torch.addmm(up2.bias.repeat(4), y, w2).view(b, h * w * 16, c8))
        m = hyper.shape[1]
        logits = (z @ hyper.transpose(1, 2)).view(b, h, w, 2, 2, 2, 2, m)
        # rows: 4*i + 2*di + di2, columns: 4*j + 2*dj + dj2
        logits = logits.permute(0, 7, 1, 3, 5, 2, 4, 6)
        return logits.reshape(b, m, 4 * h, 4 * w)

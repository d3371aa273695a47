"""Prompt encoder: points, boxes and masks to the mask decoder's embeddings.

Coordinates are pixels of the model's input frame (the resized, unpadded
image), XY order. Sparse prompts become BxNxC token embeddings; a mask prompt
(or its absence) becomes a BxCxhxw dense embedding on the image-embedding grid.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d

# Point labels understood by the encoder.
LABEL_PAD = -1  # "not a point": padding added when no box is given
LABEL_NEGATIVE = 0
LABEL_POSITIVE = 1


class PositionEmbeddingRandom(nn.Module):
    """Fourier features of XY positions with a fixed random frequency matrix.

    The 2x(C/2) Gaussian matrix is a buffer (it is part of the checkpoint).
    A position normalised to [0, 1] is mapped to [-1, 1], projected, multiplied
    by 2*pi and encoded as ``[sin, cos]`` (C values).
    """

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer(
            "positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats))
        )

    def _encode(self, coords01: torch.Tensor) -> torch.Tensor:
        """coords01: ...x2 in [0, 1] (XY) -> ...xC."""
        matrix = self.positional_encoding_gaussian_matrix
        proj = (2.0 * coords01.to(matrix.dtype) - 1.0) @ matrix
        proj = (2.0 * math.pi) * proj
        return torch.cat([torch.sin(proj), torch.cos(proj)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Encoding of the centres of an h x w grid: CxHxW."""
        h, w = size
        matrix = self.positional_encoding_gaussian_matrix
        ys = (torch.arange(h, device=matrix.device, dtype=matrix.dtype) + 0.5) / h
        xs = (torch.arange(w, device=matrix.device, dtype=matrix.dtype) + 0.5) / w
        grid = torch.stack(
            [xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)], dim=-1
        )
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(
        self, coords_input: torch.Tensor, image_size: tuple[int, int]
    ) -> torch.Tensor:
        """Encode BxNx2 XY pixel positions of an image of ``image_size`` (H, W): BxNxC."""
        h, w = image_size
        size_xy = torch.tensor([w, h], dtype=torch.float32, device=coords_input.device)
        return self._encode(coords_input.to(torch.float32) / size_xy)


class PromptEncoder(nn.Module):
    """Embeds point, box and mask prompts for the mask decoder.

    Args:
        embed_dim: C, the width of prompt and image embeddings.
        image_embedding_size: (h, w) of the image embedding grid.
        input_image_size: (H, W) of the padded encoder input.
        mask_in_chans: hidden channels of the mask downscaling network.
        activation: activation class used in the mask downscaling network.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
        activation: type[nn.Module] = nn.GELU,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = tuple(input_image_size)
        self.image_embedding_size = tuple(image_embedding_size)
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: negative point, 1: positive point, 2: box top-left, 3: box bottom-right.
        self.num_point_embeddings = 4
        self.point_embeddings = nn.ModuleList(
            nn.Embedding(1, embed_dim) for _ in range(self.num_point_embeddings)
        )
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        quarter = mask_in_chans // 4
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, quarter, kernel_size=2, stride=2),
            LayerNorm2d(quarter),
            activation(),
            nn.Conv2d(quarter, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            activation(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe_cache: tuple | None = None

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image embedding grid: 1xCxhxw.

        Computed once and reused while the Gaussian matrix is unchanged (same
        storage, version, device and dtype); callers must not modify it in place.
        """
        matrix = self.pe_layer.positional_encoding_gaussian_matrix
        key = (matrix.device, matrix.dtype, matrix.data_ptr(), matrix._version,
               self.image_embedding_size)
        cached = self._dense_pe_cache
        if cached is None or cached[0] != key or torch.is_grad_enabled() and matrix.requires_grad:
            pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
            if matrix.device.type == "meta":
                return pe
            self._dense_pe_cache = cached = (key, pe)
        return cached[1]

    def _embed_points(
        self, points: torch.Tensor, labels: torch.Tensor, pad: bool
    ) -> torch.Tensor:
        """points BxNx2 (XY px), labels BxN -> BxN'xC (N' = N+1 when padded)."""
        points = points.to(torch.float32) + 0.5  # pixel centres
        labels = labels.to(points.device)
        if pad:
            b = points.shape[0]
            points = torch.cat([points, points.new_zeros((b, 1, 2))], dim=1)
            labels = torch.cat([labels, labels.new_full((b, 1), LABEL_PAD)], dim=1)
        emb = self.pe_layer.forward_with_coords(points, self.input_image_size)
        lab = labels.unsqueeze(-1)
        emb = torch.where(lab == LABEL_PAD, self.not_a_point_embed.weight, emb)
        emb = emb + (lab == LABEL_NEGATIVE) * self.point_embeddings[0].weight
        emb = emb + (lab == LABEL_POSITIVE) * self.point_embeddings[1].weight
        return emb

    def _embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """boxes Bx4 XYXY (px) -> Bx2xC (one token per corner)."""
        corners = (boxes.to(torch.float32) + 0.5).reshape(-1, 2, 2)
        emb = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        corner_types = torch.cat(
            [self.point_embeddings[2].weight, self.point_embeddings[3].weight], dim=0
        )
        return emb + corner_types

    def _embed_masks(self, masks: torch.Tensor) -> torch.Tensor:
        """masks Bx1x(4h)x(4w) logits -> BxCxhxw."""
        return self.mask_downscaling(masks)

    @staticmethod
    def _batch_size(points, boxes, masks) -> int:
        if points is not None:
            return points[0].shape[0]
        if boxes is not None:
            return boxes.shape[0]
        if masks is not None:
            return masks.shape[0]
        return 1

    def _device(self) -> torch.device:
        return self.point_embeddings[0].weight.device

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts.

        Args:
            points: (coords BxNx2 XY px, labels BxN) or None.
            boxes: Bx4 XYXY px or None.
            masks: Bx1x(4h)x(4w) mask logits or None.

        Returns:
            sparse BxNxC (points, then box corners) and dense BxCxhxw.
        """
        bs = self._batch_size(points, boxes, masks)
        parts = []
        if points is not None:
            coords, labels = points
            parts.append(self._embed_points(coords, labels, pad=boxes is None))
        if boxes is not None:
            parts.append(self._embed_boxes(boxes))
        if parts:
            sparse = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
        else:
            sparse = torch.empty((bs, 0, self.embed_dim), device=self._device())
        if masks is not None:
            dense = self._embed_masks(masks)
        else:
            h, w = self.image_embedding_size
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse, dense

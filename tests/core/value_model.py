"""A stand-in for ``sam_model.Sam`` whose correct answer is known: the oracle of
the tiled automatic-segmentation tests.

"Encoder": the embedding is the image's first channel averaged over 4x4
pixel cells (a ``(1, S/4, S/4)`` map for an ``S`` x ``S`` input). "Decoder": a
point prompt at input pixel (x, y) returns logits +10 on every cell whose
value equals that of the cell under the point and -10 elsewhere, given at the
full input resolution (so SAM's upsampling leaves them as they are and a
rectangle keeps its corners), with predicted IoU ``score_of(value)`` (0 on the background value
0, so background prompts are filtered out). On an image of flat rectangles
aligned to 4-pixel cells the mask of a point is therefore exactly the
rectangle it falls in, after the real upsampling, filters and NMS: whatever
the tiled engine returns can be compared with the rectangles drawn.

It has what ``SamPredictor``, ``decode_points`` and the embedding pipeline
read: ``image_encoder.img_size``, ``prompt_encoder.embed_dim`` /
``image_embedding_size`` / ``get_dense_pe``, ``mask_decoder``,
``mask_threshold``, ``pixel_mean``, ``device``, ``encode_images``.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from torch import nn

CELL = 4


class _Prompts(nn.Module):
    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.embed_dim = 1
        self.image_embedding_size = (img_size // CELL, img_size // CELL)

    def forward(self, points=None, boxes=None, masks=None):
        if points is None or boxes is not None or masks is not None:
            raise NotImplementedError("the value model answers single point prompts only")
        coords, _labels = points
        return coords.float(), None  # (B, N, 2) XY input pixels travel as the "sparse" prompt

    def get_dense_pe(self):
        return None


class _Decoder(nn.Module):
    def __init__(self, score_of: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.score_of = score_of

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                dense_prompt_embeddings, multimask_output):
        cells = image_embeddings[0, 0]  # (g, g)
        g_h, g_w = cells.shape
        xy = sparse_prompt_embeddings[:, 0, :]  # (B, 2): the first point of each prompt
        cx = torch.div(xy[:, 0], CELL, rounding_mode="floor").long()
        cy = torch.div(xy[:, 1], CELL, rounding_mode="floor").long()
        inside = (cx >= 0) & (cx < g_w) & (cy >= 0) & (cy < g_h)
        value = cells[cy.clamp(0, g_h - 1), cx.clamp(0, g_w - 1)]
        same = (cells[None] - value[:, None, None]).abs() < 0.5
        logits = torch.where(same, 10.0, -10.0)
        logits = logits.repeat_interleave(CELL, dim=1).repeat_interleave(CELL, dim=2)
        score = torch.where(inside & (value.abs() >= 0.5), self.score_of(value), 0.0)
        m = 3 if multimask_output else 1
        b = xy.shape[0]
        h, w = logits.shape[-2:]
        return logits[:, None].expand(b, m, h, w).contiguous(), score[:, None].expand(b, m)


class ValueModel(nn.Module):
    """The oracle model at input size ``img_size`` (a multiple of 4).

    ``score_of``: predicted IoU of a flat region from its (normalised) value,
    a tensor function; default 0.95 everywhere.
    """

    mask_threshold = 0.0
    image_format = "RGB"
    model_name = "value-oracle"

    def __init__(self, img_size: int = 64, score_of=None) -> None:
        super().__init__()
        self.image_encoder = SimpleNamespace(img_size=int(img_size))
        self.prompt_encoder = _Prompts(int(img_size))
        self.mask_decoder = _Decoder(score_of or (lambda v: torch.full_like(v, 0.95)))
        self.register_buffer("pixel_mean", torch.zeros(3))

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW float (H, W <= img_size) -> Bx1x(S/4)x(S/4): 4x4 means of channel 0."""
        s = self.img_size
        x = F.pad(images[:, :1].float(), (0, s - images.shape[-1], 0, s - images.shape[-2]))
        return F.avg_pool2d(x, CELL)

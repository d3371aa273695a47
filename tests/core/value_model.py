"""A stand-in for ``sam_model.Sam`` whose correct answer is known: the oracle of
the tiled automatic-segmentation tests.

"Encoder": the embedding is the image's first channel averaged over 4x4
pixel cells (a ``(1, S/4, S/4)`` map for an ``S`` x ``S`` input). "Decoder": a
prompt picks a value: a point prompt the value of the cell under its first
point, a mask prompt (which takes precedence) the most frequent
non-background value under its positive pixels. The answer is logits +10 on
every cell with that value and -10 elsewhere, at the full input resolution
(so SAM's upsampling leaves them as they are and a rectangle keeps its
corners; mask prompts and low-res logits are full-resolution too), with
predicted IoU ``score_of(value)`` (0 on the background value 0, so
background prompts are filtered out). On an image of flat rectangles
aligned to 4-pixel cells the mask of a point is therefore exactly the
rectangle it falls in, after the real upsampling, filters and NMS: whatever
the tiled engine returns can be compared with the rectangles drawn.

It has what ``SamPredictor``, ``decode_points`` and the embedding pipeline
read: ``image_encoder.img_size``, ``prompt_encoder.embed_dim`` /
``image_embedding_size`` / ``get_dense_pe``, ``mask_decoder``,
``mask_threshold``, ``pixel_mean``, ``device``, ``encode_images``,
``postprocess_masks`` and the prompt encoder's ``mask_input_size``.
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
        self.mask_input_size = (img_size, img_size)  # mask prompts at full input resolution

    def forward(self, points=None, boxes=None, masks=None):
        if boxes is not None:
            raise NotImplementedError("the value model takes points and masks, not boxes")
        if points is not None:
            sparse = points[0].float()  # (B, N, 2) XY input pixels travel as the prompt
        else:
            sparse = torch.zeros(masks.shape[0], 0, 2)
        return sparse, masks  # masks: (B, 1, S, S) logits or None

    def get_dense_pe(self):
        return None


def _mode(values: torch.Tensor) -> torch.Tensor:
    """The most frequent non-background value of a 1-D tensor (0 when there is none)."""
    values = values[values.abs() >= 0.5].round()
    if values.numel() == 0:
        return torch.zeros(())
    return torch.mode(values).values


class _Decoder(nn.Module):
    def __init__(self, score_of: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.score_of = score_of

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings,
                dense_prompt_embeddings, multimask_output):
        cells = image_embeddings[0, 0]  # (g, g)
        values = cells.repeat_interleave(CELL, dim=0).repeat_interleave(CELL, dim=1)  # (S, S)
        s_h, s_w = values.shape
        b = sparse_prompt_embeddings.shape[0]
        if dense_prompt_embeddings is not None:  # a mask prompt: the region it covers most
            value = torch.stack([_mode(values[m[0] > 0]) for m in dense_prompt_embeddings])
            known = torch.ones(b, dtype=torch.bool)
        else:  # the first point's region
            xy = sparse_prompt_embeddings[:, 0, :]
            x, y = xy[:, 0].floor().long(), xy[:, 1].floor().long()
            known = (x >= 0) & (x < s_w) & (y >= 0) & (y < s_h)
            value = values[y.clamp(0, s_h - 1), x.clamp(0, s_w - 1)]
        same = (values[None] - value[:, None, None]).abs() < 0.5
        logits = torch.where(same, 10.0, -10.0)
        score = torch.where(known & (value.abs() >= 0.5), self.score_of(value), 0.0)
        m = 3 if multimask_output else 1
        return logits[:, None].expand(b, m, s_h, s_w).contiguous(), score[:, None].expand(b, m)


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

    def postprocess_masks(self, masks: torch.Tensor, input_size, original_size) -> torch.Tensor:
        """(B, M, S, S) logits -> (B, M, H, W): padding cropped, resized to the original size."""
        h, w = int(input_size[0]), int(input_size[1])
        masks = masks[..., :h, :w]
        if (h, w) != tuple(int(v) for v in original_size):
            masks = F.interpolate(masks, tuple(int(v) for v in original_size), mode="bilinear",
                                  align_corners=False)
        return masks

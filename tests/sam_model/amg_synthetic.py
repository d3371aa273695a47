"""A deterministic, hand-written "SAM" whose masks are real objects.

Random weights give masks that are noise over the whole image, which makes a
poor test of automatic mask generation (every box is the image, NMS leaves one
mask). This model is a ``sam_model.Sam`` whose three parts are simple
functions instead of networks:

* the image encoder stores the image, average-pooled 4x, in the embedding
  (``Bx48x16x16`` for a 256 px input: pixel-unshuffled RGB at 64x64, the
  low-res mask size);
* the prompt encoder passes point coordinates through as tokens;
* the mask decoder colour-fills from the clicked pixel: logits are high where
  the colour is close to the clicked one and the pixel is near the click, with
  a different tolerance and reach for each of its 4 outputs; the predicted IoU
  is the share of confident pixels.

Both our generator and the reference one run on it unchanged, so their masks
can be compared on scenes with discs, touching objects, holes and noise.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sam_model import Sam

CHANNELS = 48  # 3 colours x 4 x 4 pixel-unshuffled
# Per output: colour tolerance, and reach as a share of the low-res side.
TOLERANCE = (0.5, 0.25, 0.5, 1.0)
REACH = (0.625, 0.125, 0.3125, 1.0)


class PoolEncoder(nn.Module):
    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_unshuffle(F.avg_pool2d(x, 4), 4)


class PassPromptEncoder(nn.Module):
    embed_dim = CHANNELS

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.image_embedding_size = (img_size // 16, img_size // 16)
        self.input_image_size = (img_size, img_size)

    def get_dense_pe(self) -> torch.Tensor:
        return torch.zeros(1, CHANNELS, *self.image_embedding_size)

    def forward(self, points=None, boxes=None, masks=None):
        coords, labels = points
        b, n = labels.shape
        sparse = torch.zeros(b, n, CHANNELS)
        sparse[..., :2] = coords.to(torch.float32)
        sparse[..., 2] = labels.to(torch.float32)
        dense = torch.zeros(1, CHANNELS, *self.image_embedding_size).expand(b, -1, -1, -1)
        return sparse, dense


class ColourFillDecoder(nn.Module):
    def forward(
        self,
        image_embeddings,
        image_pe,
        sparse_prompt_embeddings,
        dense_prompt_embeddings,
        multimask_output,
    ):
        image = F.pixel_shuffle(image_embeddings[:1], 4)[0]  # 3 x 4h x 4w
        side = image.shape[-1]
        xy = sparse_prompt_embeddings[:, 0, :2] / 4.0 - 0.5  # low-res pixel frame
        ix = xy[:, 0].round().clamp(0, side - 1).long()
        iy = xy[:, 1].round().clamp(0, side - 1).long()
        colour = image[:, iy, ix].T  # B x 3
        dist_c = (image[None] - colour[:, :, None, None]).norm(dim=1)  # B x 4h x 4w
        ys = torch.arange(side, dtype=torch.float32)
        dist_p = ((ys[None, :, None] - xy[:, 1, None, None]) ** 2
                  + (ys[None, None, :] - xy[:, 0, None, None]) ** 2).sqrt()
        tol = torch.tensor(TOLERANCE)[None, :, None, None]
        reach = side * torch.tensor(REACH)[None, :, None, None]
        logits = 12.0 * (tol - dist_c[:, None]) + 6.0 * (1.0 - dist_p[:, None] / reach)
        iou = (logits.abs() > 3.0).float().mean(dim=(2, 3))
        wanted = slice(1, None) if multimask_output else slice(0, 1)
        return logits[:, wanted], iou[:, wanted]


def synthetic_sam(img_size: int = 256) -> Sam:
    """The colour-fill model for square inputs of side ``img_size`` (a multiple of 16)."""
    return Sam(
        image_encoder=PoolEncoder(img_size),
        prompt_encoder=PassPromptEncoder(img_size),
        mask_decoder=ColourFillDecoder(),
    ).eval()


def disc_scene(height: int = 200, width: int = 300, n: int = 14, seed: int = 0) -> np.ndarray:
    """HWC uint8: noisy dark background with flat-coloured discs and rings."""
    rng = np.random.default_rng(seed)
    image = (rng.random((height, width, 3)) * 40).astype(np.uint8)
    yy, xx = np.mgrid[:height, :width]
    for k in range(n):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        r = rng.integers(8, max(9, min(height, width) // 5))
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        if k % 4 == 3:  # a ring: a disc with a hole
            inside &= (yy - cy) ** 2 + (xx - cx) ** 2 >= (r // 2) ** 2
        image[inside] = rng.integers(60, 256, 3)
    return image

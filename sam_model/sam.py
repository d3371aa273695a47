"""``Sam``: an image encoder, a prompt encoder and a mask decoder built elsewhere.

Attribute and method names are those of the reference ``Sam`` so that code
written for it (its predictor, its automatic mask generator) runs unchanged.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_PIXEL_MEAN = (123.675, 116.28, 103.53)
DEFAULT_PIXEL_STD = (58.395, 57.12, 57.375)


class Sam(nn.Module):
    """Segment Anything model.

    Args:
        image_encoder: module mapping Bx3xSxS normalised padded images to
            BxCxhxw embeddings; it must have an ``img_size`` attribute (S).
        prompt_encoder: a ``PromptEncoder``.
        mask_decoder: a ``MaskDecoder``.
        pixel_mean, pixel_std: per-channel RGB normalisation (0..255 scale).
        encoder_autocast: optional dtype (``torch.bfloat16``/``torch.float16``)
            under which ``encode`` runs the image encoder (autocast; weights
            stay float32). None (default) runs in float32.
        compile_encoder: compile the image encoder with ``torch.compile`` for
            ``encode`` (the state dict is unchanged).
        model_name: the model table's name of this model (``build_sam`` sets
            it); None for a network built from a bare config.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"

    def __init__(
        self,
        *,
        image_encoder: nn.Module,
        prompt_encoder: nn.Module,
        mask_decoder: nn.Module,
        pixel_mean: Sequence[float] = DEFAULT_PIXEL_MEAN,
        pixel_std: Sequence[float] = DEFAULT_PIXEL_STD,
        encoder_autocast: torch.dtype | None = None,
        compile_encoder: bool = False,
        model_name: str | None = None,
    ) -> None:
        super().__init__()
        self.model_name = model_name
        self.image_encoder = image_encoder
        self.prompt_encoder = prompt_encoder
        self.mask_decoder = mask_decoder
        self.register_buffer(
            "pixel_mean", torch.tensor(list(pixel_mean), dtype=torch.float32).view(-1, 1, 1), False
        )
        self.register_buffer(
            "pixel_std", torch.tensor(list(pixel_std), dtype=torch.float32).view(-1, 1, 1), False
        )
        self.encoder_autocast = encoder_autocast
        # kept out of the module tree so the state dict keeps the official keys
        self._compiled: dict[str, Any] = {}
        if compile_encoder:
            self._compiled["encoder"] = torch.compile(image_encoder)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        """Side of the square encoder input (1024 for the official models)."""
        return int(self.image_encoder.img_size)

    # -- image side ------------------------------------------------------------
    def preprocess(self, x: Tensor) -> Tensor:
        """Normalise and pad bottom/right: (B)x3xHxW 0..255 -> (B)x3xSxS."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def encode(self, x: Tensor) -> Tensor:
        """Embed preprocessed images: Bx3xSxS -> BxCxhxw float32.

        Uses the compiled encoder and the autocast dtype when they were asked for.
        """
        encoder = self._compiled.get("encoder", self.image_encoder)
        if self.encoder_autocast is None:
            ctx = contextlib.nullcontext()
        else:
            ctx = torch.autocast(device_type=x.device.type, dtype=self.encoder_autocast)
        with ctx:
            out = encoder(x)
        return out.float()

    def encode_images(self, images: Tensor) -> Tensor:
        """Embed raw images: Bx3xHxW float 0..255 (H, W <= S, not normalised, not
        padded) -> BxCxhxw float32, in one batched encoder call."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected Bx3xHxW images, got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h > self.img_size or w > self.img_size:
            raise ValueError(
                f"images of {h}x{w} px exceed the model input size {self.img_size}; resize first"
            )
        x = images.to(device=self.device, dtype=torch.float32)
        return self.encode(self.preprocess(x))

    # -- mask side -------------------------------------------------------------
    def postprocess_masks(
        self,
        masks: Tensor,
        input_size: tuple[int, ...],
        original_size: tuple[int, ...],
    ) -> Tensor:
        """Upscale decoder logits to the original image: BxCxhxw -> BxCxHxW.

        Bilinear to SxS, crop the padding away (to ``input_size``), then bilinear
        to ``original_size`` (skipped when the sizes agree: it is the identity).
        """
        s = self.img_size
        lead = masks.shape[:-2]
        # one plane per batch entry: the interpolation is per plane anyway, and
        # few-channel inputs take a much slower kernel on the CPU
        planes = masks.reshape(-1, 1, *masks.shape[-2:])
        planes = F.interpolate(planes, (s, s), mode="bilinear", align_corners=False)
        planes = planes[..., : input_size[0], : input_size[1]]
        original = tuple(int(v) for v in original_size)
        if tuple(planes.shape[-2:]) != original:
            planes = F.interpolate(planes, original, mode="bilinear", align_corners=False)
        return planes.reshape(*lead, *planes.shape[-2:])

    @torch.no_grad()
    def forward(
        self, batched_input: list[dict[str, Any]], multimask_output: bool
    ) -> list[dict[str, Tensor]]:
        """End-to-end prediction for a list of images with their prompts.

        Each record: 'image' 3xHxW float 0..255 already resized (long side S),
        'original_size' (H, W); optional 'point_coords' BxNx2 and
        'point_labels' BxN, 'boxes' Bx4 XYXY, 'mask_inputs' Bx1x(4h)x(4w), all
        in the resized frame. Returns per image: 'masks' BxCxHxW bool,
        'iou_predictions' BxC, 'low_res_logits' BxCx(4h)x(4w).
        """
        images = torch.stack([self.preprocess(r["image"]) for r in batched_input], dim=0)
        embeddings = self.encode(images)
        outputs = []
        for record, emb in zip(batched_input, embeddings):
            points = None
            if "point_coords" in record:
                points = (record["point_coords"], record["point_labels"])
            sparse, dense = self.prompt_encoder(
                points=points, boxes=record.get("boxes"), masks=record.get("mask_inputs")
            )
            low_res, iou = self.mask_decoder(
                image_embeddings=emb.unsqueeze(0),
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask_output,
            )
            masks = self.postprocess_masks(
                low_res, record["image"].shape[-2:], record["original_size"]
            )
            outputs.append(
                {
                    "masks": masks > self.mask_threshold,
                    "iou_predictions": iou,
                    "low_res_logits": low_res,
                }
            )
        return outputs

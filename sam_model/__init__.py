"""sam_model: Segment Anything (ViT-B/L/H, MobileSAM's TinyViT, sam_tiny, SAM 2.1's image
path) in plain torch.

Weight-compatible with the official checkpoints; imports torch and numpy only.

    model = build_sam("vit_b", "sam_vit_b_01ec64.pth")
    predictor = SamPredictor(model)
    predictor.set_image(image)              # HWC uint8 RGB
    masks, scores, logits = predictor.predict(point_coords=..., point_labels=...)
"""

from __future__ import annotations

import torch
from torch import Tensor

from .automatic_mask_generator import MaskBatch, SamAutomaticMaskGenerator, decode_points
from .build import build_sam_from_config
from .checkpoint import architecture_of, load_checkpoint
from .configs import SamConfig, tiny_test_config
from .errors import CheckpointError, ImageFormatError, SamModelError
from .model_table import (
    DEFAULT_MODEL,
    MODELS,
    ModelEntry,
    automatic_thresholds,
    list_models,
    prompt_extent_limit,
    zooms_clicks,
)
from .predictor import SamPredictor
from .registry import build_sam
from .sam import Sam
from .sam2_model import Sam2
from .sam2_predictor import Sam2Predictor
from .zoom import POINT_ZOOM, prefer_zoomed_click, zoom_for_extent


def encode_images(model: Sam, images: Tensor) -> Tensor:
    """Embed a batch: Bx3xHxW float 0..255 (H, W <= img_size, not normalised, not
    padded) -> BxCxhxw float32; normalising and padding happen inside. For a ``Sam2`` the
    embedding comes packed with its high-resolution maps (C = 4 x 256, see
    ``Sam2.pack_embedding``)."""
    with torch.no_grad():
        return model.encode_images(images)


__all__ = [
    "CheckpointError",
    "DEFAULT_MODEL",
    "ImageFormatError",
    "MODELS",
    "MaskBatch",
    "ModelEntry",
    "Sam",
    "Sam2",
    "Sam2Predictor",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamModelError",
    "SamPredictor",
    "architecture_of",
    "automatic_thresholds",
    "POINT_ZOOM",
    "prefer_zoomed_click",
    "prompt_extent_limit",
    "zoom_for_extent",
    "zooms_clicks",
    "build_sam",
    "build_sam_from_config",
    "decode_points",
    "encode_images",
    "list_models",
    "load_checkpoint",
    "tiny_test_config",
]

"""Building networks: image encoders keyed by kind, and a ``Sam`` from a ``SamConfig``.

``ENCODER_BUILDERS`` maps an encoder config's ``kind`` to a function
``(config) -> nn.Module`` (a callable, or ``"package.module:function"``
imported when first used). :func:`official_network` is the builder the model
table names for the official architectures (``sam_model.model_table``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from .configs import SamConfig, official_config
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .transformer import TwoWayTransformer

ENCODER_BUILDERS: dict[str, str | Callable[..., nn.Module]] = {
    "vit": "sam_model.image_encoder:build_vit_encoder",
    "tiny_vit": "sam_model.tiny_vit:build_tiny_vit_encoder",
}


def resolve(target: str | Callable) -> Callable:
    """A callable, or the function a ``"package.module:function"`` string names."""
    if callable(target):
        return target
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_image_encoder(config) -> nn.Module:
    """Build the encoder module described by ``config`` (dispatch on ``config.kind``)."""
    kind = config.kind
    target = ENCODER_BUILDERS.get(kind)
    if target is None and ":" in kind:
        target = kind
    if target is None:
        raise ValueError(f"unknown encoder kind {kind!r}; known: {', '.join(ENCODER_BUILDERS)}")
    return resolve(target)(config)


def build_sam_from_config(
    config: SamConfig,
    *,
    encoder_autocast: torch.dtype | None = None,
    compile_encoder: bool = False,
) -> Sam:
    """A randomly initialised ``Sam`` in eval mode from a ``SamConfig``."""
    emb = config.image_embedding_size
    dec = config.decoder
    model = Sam(
        image_encoder=build_image_encoder(config.encoder),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            transformer_dim=config.prompt_embed_dim,
            transformer=TwoWayTransformer(
                depth=dec.depth,
                embedding_dim=config.prompt_embed_dim,
                num_heads=dec.num_heads,
                mlp_dim=dec.mlp_dim,
                attention_downsample_rate=dec.attention_downsample_rate,
            ),
            num_multimask_outputs=dec.num_multimask_outputs,
            iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=config.pixel_mean,
        pixel_std=config.pixel_std,
        encoder_autocast=encoder_autocast,
        compile_encoder=compile_encoder,
    )
    return model.eval()


def official_network(architecture: str, img_size: int | None = None) -> Sam:
    """A randomly initialised official network ('vit_b', 'vit_l', 'vit_h', 'vit_t')."""
    return build_sam_from_config(official_config(architecture, img_size=img_size))

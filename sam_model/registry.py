"""Builders of SAM models keyed by name, and of image encoders keyed by kind.

``MODEL_BUILDERS`` maps a model name to a builder, given either as a callable
or lazily as ``"package.module:function"``. Every builder takes keyword
arguments ``checkpoint``, ``pretrained`` and ``img_size`` and returns a
``Sam``. ``ENCODER_BUILDERS`` maps an encoder config's ``kind`` to a function
``(config) -> nn.Module``.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from torch import nn

from .checkpoint import CheckpointError, load_checkpoint
from .configs import SamConfig, official_config
from .mask_decoder import MaskDecoder
from .prompt_encoder import PromptEncoder
from .sam import Sam
from .transformer import TwoWayTransformer

ENCODER_BUILDERS: dict[str, str | Callable[..., nn.Module]] = {
    "vit": "sam_model.image_encoder:build_vit_encoder",
    "tiny_vit": "sam_model.tiny_vit:build_tiny_vit_encoder",
}


def _resolve(target: str | Callable) -> Callable:
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
    return _resolve(target)(config)


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


def _pretrained_checkpoint(name: str) -> Path:
    """The cached official weights of ``name``, or a CheckpointError saying how to get them.

    The cache is the one of ``sam_model.weights`` (``cached_path``).
    """
    from . import weights

    path = weights.cached_path(name)
    if path is None:
        raise CheckpointError(
            f"no weights for {name!r} in the cache ({weights.target_path(name)}); "
            f"run `napari-sam models download {name}` or pass a checkpoint path"
        )
    return Path(path)


def build_official(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    *,
    pretrained: bool = True,
    img_size: int | None = None,
) -> Sam:
    """Build an official variant ('vit_b', 'vit_l', 'vit_h', 'vit_t').

    With ``checkpoint`` the file is loaded strictly; without it and with
    ``pretrained`` the cached official weights are loaded; otherwise the
    weights are random.
    """
    config = official_config(name, img_size=img_size)
    if checkpoint is None and pretrained:
        checkpoint = _pretrained_checkpoint(name)  # fail before building anything
    model = build_sam_from_config(config)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, model_name=name)
    return model


MODEL_BUILDERS: dict[str, str | Callable[..., Sam]] = {
    "vit_b": partial(build_official, "vit_b"),
    "vit_l": partial(build_official, "vit_l"),
    "vit_h": partial(build_official, "vit_h"),
    "vit_t": partial(build_official, "vit_t"),
    "sam_tiny": "sam_model.sam_tiny:build_sam_tiny",
    "sam_lite0": "sam_model.sam_lite0:build_sam_lite0",
}


#: The model every face of the product uses when none is named (CLI, widgets, demo).
DEFAULT_MODEL = "sam_tiny"


def list_models() -> list[str]:
    """Names accepted by ``build_sam``."""
    return list(MODEL_BUILDERS)


# Mask filter thresholds for automatic generation, per model. The official
# models use the SAM paper's (the reference generator's defaults). sam_tiny's
# IoU head predicts lower scores (at most about 0.5 on real scenes, see its
# model card), so the paper's thresholds would keep nothing at all.
_REFERENCE_THRESHOLDS = {"pred_iou_thresh": 0.88, "stability_score_thresh": 0.95}
_AUTOMATIC_THRESHOLDS: dict[str, dict[str, float]] = {
    "sam_tiny": {"pred_iou_thresh": 0.3, "stability_score_thresh": 0.5},
}


def automatic_thresholds(name: str | None) -> dict[str, float]:
    """``pred_iou_thresh`` and ``stability_score_thresh`` suited to model ``name``.

    Unknown names and checkpoints (``None``) get the reference's 0.88 / 0.95.
    """
    return dict(_AUTOMATIC_THRESHOLDS.get(name or "", _REFERENCE_THRESHOLDS))


# The largest prompt (box side, or the span of a prompt's points, in model-input
# pixels) a model segments well. sam_tiny was trained on crops whose objects
# stayed under about 250 px: a box larger than that gives an almost empty mask
# at full scale, while the same box on the image downscaled by 2 or 4 works
# (its model card, "Zoom-out for large prompts"). Prompts beyond the limit are
# decoded on a downscaled image (``zoom_for_extent``). The official models: no limit.
_PROMPT_EXTENT_LIMITS: dict[str, int] = {"sam_tiny": 192}


def prompt_extent_limit(name: str | None) -> int | None:
    """Largest prompt extent (model-input px) model ``name`` handles at full scale; None: any."""
    return _PROMPT_EXTENT_LIMITS.get(name or "")


def zoom_for_extent(extent: float, limit: int | None) -> int:
    """Power-of-two downscale factor that brings a prompt of ``extent`` px within ``limit``.

    1 when there is no limit or the prompt fits; otherwise the smallest ``2**k``
    with ``extent / 2**k <= limit``.
    """
    if not limit or extent <= limit:
        return 1
    return 2 ** math.ceil(math.log2(extent / limit))


# A single click gives no object size. With a limit, a click is also decoded
# zoomed out by POINT_ZOOM, and the zoomed result replaces the full-scale one
# when its best candidate is scored higher and spans at least half the limit
# (smaller objects are segmented better at full scale). Chosen on validation
# scenes (seeds 100..129) in the fourth sitting; the model card reports it on
# the held-out scenes as ``point_zoom``.
POINT_ZOOM = 2


def prefer_zoomed_click(full_score: float, zoomed_score: float, zoomed_extent: float,
                        limit: int | None) -> bool:
    """Whether a click's zoomed-out result (best candidate's predicted IoU
    ``zoomed_score``, longest side ``zoomed_extent`` in full-scale model-input px)
    replaces the full-scale one (best predicted IoU ``full_score``)."""
    return bool(limit) and zoomed_extent >= limit / 2 and zoomed_score > full_score


_HALF_DTYPES = (torch.bfloat16, torch.float16)


def build_sam(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    pretrained: bool = True,
    img_size: int | None = None,
    compile: bool = False,
) -> Sam:
    """Build a model by name, in eval mode.

    Args:
        name: one of ``list_models()``.
        checkpoint: a state-dict file to load strictly (official key names).
        device: where to put the model (default: CPU).
        dtype: None or ``torch.float32`` for exact float32; ``torch.bfloat16``
            or ``torch.float16`` run the image encoder under autocast (GPU
            speed-up; the prompt encoder and decoder stay float32).
        pretrained: without ``checkpoint``, load the default weights (the
            shipped ones for 'sam_tiny', the cached official ones otherwise);
            False gives random weights.
        img_size: input side for random-weight models (default: the model's).
        compile: compile the image encoder with ``torch.compile``.
    """
    try:
        builder = _resolve(MODEL_BUILDERS[name])
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODEL_BUILDERS)}") from None
    if dtype is not None and dtype != torch.float32 and dtype not in _HALF_DTYPES:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, not {dtype}")
    kwargs = {"checkpoint": checkpoint, "pretrained": pretrained}
    if img_size is not None:
        kwargs["img_size"] = img_size
    model = builder(**kwargs)
    if dtype in _HALF_DTYPES:
        model.encoder_autocast = dtype
    if compile:
        model._compiled["encoder"] = torch.compile(model.image_encoder)
    if device is not None:
        model = model.to(device)
    return model.eval()

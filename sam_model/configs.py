"""Frozen dataclass configurations of the SAM variants.

A ``SamConfig`` holds an encoder config (any frozen dataclass with ``kind``,
``img_size``, ``out_chans`` and ``embedding_size``), the prompt-encoder width
and a ``MaskDecoderConfig``. ``build.build_image_encoder`` turns an encoder
config into a module by its ``kind``: a name in ``build.ENCODER_BUILDERS``
or a ``"package.module:function"`` path, so an encoder defined in another
file plugs in without touching this one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from .sam import DEFAULT_PIXEL_MEAN, DEFAULT_PIXEL_STD


@dataclass(frozen=True)
class ViTConfig:
    """SAM's ViT encoder (``image_encoder.ImageEncoderViT``)."""

    kind: str = "vit"
    img_size: int = 1024
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    out_chans: int = 256
    qkv_bias: bool = True
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)

    @property
    def embedding_size(self) -> int:
        """Side of the embedding grid (img_size / patch_size)."""
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class TinyViTConfig:
    """MobileSAM's TinyViT encoder (``tiny_vit.TinyViT``); 16x downsampling."""

    kind: str = "tiny_vit"
    img_size: int = 1024
    in_chans: int = 3
    embed_dims: tuple[int, ...] = (64, 128, 160, 320)
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (2, 4, 5, 10)
    window_sizes: tuple[int, ...] = (7, 7, 14, 7)
    mlp_ratio: float = 4.0
    mbconv_expand_ratio: float = 4.0
    local_conv_size: int = 3
    out_chans: int = 256

    @property
    def embedding_size(self) -> int:
        return self.img_size // 16


@dataclass(frozen=True)
class MaskDecoderConfig:
    """Two-way transformer and heads of the mask decoder (width = prompt embed dim)."""

    depth: int = 2
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class SamConfig:
    """A whole model.

    ``encoder.out_chans`` must equal ``prompt_embed_dim`` (the decoder width).
    """

    encoder: Any = field(default_factory=ViTConfig)
    prompt_embed_dim: int = 256
    mask_in_chans: int = 16
    decoder: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    pixel_mean: tuple[float, float, float] = DEFAULT_PIXEL_MEAN
    pixel_std: tuple[float, float, float] = DEFAULT_PIXEL_STD

    def __post_init__(self) -> None:
        if self.encoder.out_chans != self.prompt_embed_dim:
            raise ValueError(
                f"encoder.out_chans ({self.encoder.out_chans}) must equal "
                f"prompt_embed_dim ({self.prompt_embed_dim})"
            )

    @property
    def img_size(self) -> int:
        return int(self.encoder.img_size)

    @property
    def image_embedding_size(self) -> int:
        return int(self.encoder.embedding_size)


VIT_B = SamConfig(encoder=ViTConfig())
VIT_L = SamConfig(
    encoder=ViTConfig(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23))
)
VIT_H = SamConfig(
    encoder=ViTConfig(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31))
)
VIT_T = SamConfig(encoder=TinyViTConfig())

OFFICIAL_CONFIGS: dict[str, SamConfig] = {
    "vit_b": VIT_B,
    "vit_l": VIT_L,
    "vit_h": VIT_H,
    "vit_t": VIT_T,
}


def official_config(name: str, *, img_size: int | None = None) -> SamConfig:
    """The configuration of an official model, optionally at another input size."""
    try:
        config = OFFICIAL_CONFIGS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; official models: {', '.join(OFFICIAL_CONFIGS)}"
        ) from None
    if img_size is not None and img_size != config.img_size:
        config = replace(config, encoder=replace(config.encoder, img_size=img_size))
    return config


def tiny_test_config(img_size: int = 256) -> SamConfig:
    """A very small random-weight ViT model for fast tests.

    A 16x16 embedding grid at ``img_size`` 256 (patch 16), 2 blocks (one
    windowed with padding, one global), 32 channels everywhere.
    """
    encoder = ViTConfig(
        img_size=img_size,
        embed_dim=32,
        depth=2,
        num_heads=2,
        out_chans=32,
        window_size=6,
        global_attn_indexes=(1,),
    )
    decoder = MaskDecoderConfig(
        depth=2, num_heads=2, mlp_dim=64, iou_head_hidden_dim=32
    )
    return SamConfig(encoder=encoder, prompt_embed_dim=32, mask_in_chans=8, decoder=decoder)

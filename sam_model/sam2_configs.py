"""Frozen dataclass configurations of SAM 2.1 (the four official sizes and a tiny test model).

The official values are those of the ``sam2.1_hiera_*.yaml`` files of the
reference package; every size shares the prompt encoder, mask decoder and
memory path (256 channels, 64-channel memories, 7 memory slots) and differs
only in the Hiera trunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class HieraConfig:
    """The Hiera trunk (``hiera.Hiera``)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    q_pool: int = 3

    @property
    def channel_list(self) -> tuple[int, ...]:
        """Stage widths, coarsest first (the neck's input order)."""
        n = len(self.stages)
        return tuple(self.embed_dim * 2 ** i for i in reversed(range(n)))


@dataclass(frozen=True)
class Sam2Config:
    """A whole SAM 2 model.

    ``img_size`` is the square input side (1024); the image embedding is
    ``d_model`` x img_size/16 x img_size/16. ``pixel_mean``/``pixel_std`` are
    on the 0..1 scale (ImageNet's), as the reference normalises.
    """

    trunk: HieraConfig = field(default_factory=HieraConfig)
    img_size: int = 1024
    d_model: int = 256
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1
    mask_in_chans: int = 16
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    iou_head_hidden_dim: int = 256
    mem_dim: int = 64
    num_maskmem: int = 7
    memory_layers: int = 4
    memory_ffn_dim: int = 2048
    memory_heads: int = 1
    fuser_layers: int = 2
    pixel_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    pixel_std: tuple[float, float, float] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.img_size % 32:
            raise ValueError(f"img_size must be a multiple of 32, got {self.img_size}")

    @property
    def image_embedding_size(self) -> int:
        return self.img_size // 16


SAM2_1_HIERA_TINY = Sam2Config(trunk=HieraConfig(
    embed_dim=96, num_heads=1, stages=(1, 2, 7, 2), global_att_blocks=(5, 7, 9),
    window_pos_embed_bkg_spatial_size=(7, 7)))
SAM2_1_HIERA_SMALL = Sam2Config(trunk=HieraConfig(
    embed_dim=96, num_heads=1, stages=(1, 2, 11, 2), global_att_blocks=(7, 10, 13),
    window_pos_embed_bkg_spatial_size=(7, 7)))
SAM2_1_HIERA_BASE_PLUS = Sam2Config(trunk=HieraConfig(embed_dim=112, num_heads=2))
SAM2_1_HIERA_LARGE = Sam2Config(trunk=HieraConfig(
    embed_dim=144, num_heads=2, stages=(2, 6, 36, 4), global_att_blocks=(23, 33, 43),
    window_pos_embed_bkg_spatial_size=(7, 7), window_spec=(8, 4, 16, 8)))

SAM2_CONFIGS: dict[str, Sam2Config] = {
    "sam2.1_hiera_tiny": SAM2_1_HIERA_TINY,
    "sam2.1_hiera_small": SAM2_1_HIERA_SMALL,
    "sam2.1_hiera_base_plus": SAM2_1_HIERA_BASE_PLUS,
    "sam2.1_hiera_large": SAM2_1_HIERA_LARGE,
}


def sam2_config(name: str, *, img_size: int | None = None) -> Sam2Config:
    """The configuration of an official SAM 2.1 model, optionally at another input size."""
    try:
        config = SAM2_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown SAM 2.1 model {name!r}; known: {', '.join(SAM2_CONFIGS)}"
                         ) from None
    return config if img_size is None else replace(config, img_size=img_size)


def tiny_sam2_test_config(img_size: int = 128) -> Sam2Config:
    """A very small random-weight SAM 2 for fast tests.

    16-channel first stage (4 stages of 1, 1, 3, 1 blocks, windows 4/2/6/2 and
    one global block, so padded windows, pooled windows and a pooled padded
    window all occur at 128 px), a
    32-channel decoder and memory path with 16-channel memories; at 128 px the
    embedding grid is 8x8.
    """
    trunk = HieraConfig(embed_dim=16, num_heads=1, stages=(1, 1, 3, 1), global_att_blocks=(3,),
                        window_spec=(4, 2, 6, 2), window_pos_embed_bkg_spatial_size=(4, 4))
    return Sam2Config(trunk=trunk, img_size=img_size, d_model=32, mask_in_chans=8,
                      decoder_heads=2, decoder_mlp_dim=64, iou_head_hidden_dim=32, mem_dim=16,
                      num_maskmem=3, memory_layers=2, memory_ffn_dim=64)

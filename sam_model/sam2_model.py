"""``Sam2``: the SAM 2.1 model (image path and the parameters of its memory path).

State-dict keys are the official checkpoints' (``image_encoder``,
``sam_prompt_encoder``, ``sam_mask_decoder``, ``memory_encoder``,
``memory_attention``, ``mask_downsample``, ``obj_ptr_proj``,
``obj_ptr_tpos_proj``, ``maskmem_tpos_enc``, ``no_mem_embed``,
``no_mem_pos_enc``, ``no_obj_ptr``, ``no_obj_embed_spatial``), so
``sam2.1_hiera_*.pt`` files load strictly.

Image embedding of a still image: the stride-16 neck output plus
``no_mem_embed`` (what the official image predictor uses), together with the
stride-4 and stride-8 maps projected by the decoder's ``conv_s0``/``conv_s1``.
For stores that keep one array per tile, :meth:`Sam2.pack_embedding` lays the
three maps out on the stride-16 grid (pixel unshuffle, exact) as one
Bx(4C)xhxw array: channels [0, C) the embedding, [C, 3C) the stride-4 map
(C/8 channels x 4x4 offsets), [3C, 4C) the stride-8 map (C/4 x 2x2).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .common import MLP
from .hiera import Hiera
from .sam2_configs import Sam2Config, sam2_config
from .sam2_decoder import Sam2MaskDecoder, Sam2PromptEncoder, sam2_two_way_transformer
from .sam2_memory import MemoryAttention, MemoryEncoder
from .sam2_neck import FpnNeck, Sam2ImageEncoder


class Sam2(nn.Module):
    """SAM 2.1 built from a ``Sam2Config`` (random weights; load a checkpoint after).

    Attributes shared with ``Sam`` so that code written for SAM 1 finds them:
    ``image_encoder`` (with ``img_size``), ``prompt_encoder`` and
    ``mask_decoder`` (aliases of ``sam_prompt_encoder``/``sam_mask_decoder``),
    ``pixel_mean``/``pixel_std`` (0..255 scale), ``mask_threshold``,
    ``image_format``, ``img_size``, ``device``, ``encode_images``.
    """

    mask_threshold: float = 0.0
    image_format: str = "RGB"
    family: str = "sam2"

    def __init__(self, *, config: Sam2Config) -> None:
        super().__init__()
        self.config = config
        t, c, m = config.trunk, config.d_model, config.mem_dim
        trunk = Hiera(embed_dim=t.embed_dim, num_heads=t.num_heads, stages=t.stages,
                      global_att_blocks=t.global_att_blocks, window_spec=t.window_spec,
                      window_pos_embed_bkg_spatial_size=t.window_pos_embed_bkg_spatial_size,
                      q_pool=t.q_pool)
        neck = FpnNeck(d_model=c, backbone_channel_list=list(t.channel_list),
                       fpn_top_down_levels=config.fpn_top_down_levels)
        self.image_encoder = Sam2ImageEncoder(trunk=trunk, neck=neck, scalp=config.scalp,
                                              img_size=config.img_size)
        emb = config.image_embedding_size
        self.sam_prompt_encoder = Sam2PromptEncoder(
            embed_dim=c, image_embedding_size=(emb, emb),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=config.mask_in_chans)
        self.sam_mask_decoder = Sam2MaskDecoder(
            transformer_dim=c,
            transformer=sam2_two_way_transformer(depth=config.decoder_depth, embedding_dim=c,
                                                 num_heads=config.decoder_heads,
                                                 mlp_dim=config.decoder_mlp_dim),
            iou_head_hidden_dim=config.iou_head_hidden_dim)
        self.memory_attention = MemoryAttention(d_model=c, num_layers=config.memory_layers,
                                                dim_feedforward=config.memory_ffn_dim,
                                                num_heads=config.memory_heads, kv_in_dim=m)
        self.memory_encoder = MemoryEncoder(in_dim=c, out_dim=m, fuser_layers=config.fuser_layers)
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(config.num_maskmem, 1, 1, m))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, m))
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        self.obj_ptr_proj = MLP(c, c, c, 3)
        self.obj_ptr_tpos_proj = nn.Linear(c, m)
        mean = torch.tensor(config.pixel_mean, dtype=torch.float32).view(-1, 1, 1)
        std = torch.tensor(config.pixel_std, dtype=torch.float32).view(-1, 1, 1)
        self.register_buffer("pixel_mean01", mean, False)
        self.register_buffer("pixel_std01", std, False)
        self.register_buffer("pixel_mean", mean * 255.0, False)
        self.register_buffer("pixel_std", std * 255.0, False)
        self.model_name: str | None = None  # the model table's name (build_sam sets it)
        self.encoder_autocast: torch.dtype | None = None
        self._compiled: dict[str, Any] = {}

    # -- SAM 1 names ------------------------------------------------------------
    @property
    def prompt_encoder(self) -> Sam2PromptEncoder:
        return self.sam_prompt_encoder

    @property
    def mask_decoder(self) -> Sam2MaskDecoder:
        return self.sam_mask_decoder

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    @property
    def img_size(self) -> int:
        return int(self.image_encoder.img_size)

    @property
    def embedding_channels(self) -> int:
        """Channels of a packed embedding (:meth:`pack_embedding`): 4 x d_model."""
        return 4 * self.config.d_model

    # -- image side -------------------------------------------------------------------
    def normalize(self, x01: Tensor) -> Tensor:
        """(B)x3xHxW RGB in 0..1 -> normalised (the reference's order of operations)."""
        return (x01 - self.pixel_mean01) / self.pixel_std01

    def preprocess(self, x: Tensor) -> Tensor:
        """(B)x3xHxW 0..255 (H, W <= S) -> normalised, zero-padded bottom/right to SxS."""
        x = self.normalize(x / 255.0)
        h, w = x.shape[-2:]
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def encode(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Normalised Bx3xSxS -> (embedding BxCxhxw, [stride-4 Bx(C/8)x4hx4w, stride-8 Bx(C/4)x2hx2w]).

        The embedding includes ``no_mem_embed``; the high-resolution maps are
        projected by the decoder's ``conv_s0``/``conv_s1``. Float32 outputs.
        """
        feats = self.backbone(x)
        return self.still_image_embedding(feats[-1]), self.project_high_res(feats[:-1])

    def backbone(self, x: Tensor) -> list[Tensor]:
        """Neck outputs (finest first, float32) of normalised Bx3xSxS images."""
        encoder = self._compiled.get("encoder", self.image_encoder)
        if self.encoder_autocast is None:
            ctx = contextlib.nullcontext()
        else:
            ctx = torch.autocast(device_type=x.device.type, dtype=self.encoder_autocast)
        with ctx:
            feats = encoder(x)
        return [f.float() for f in feats]

    def still_image_embedding(self, top: Tensor) -> Tensor:
        """Stride-16 neck output BxCxhxw -> the embedding of a frame without memory."""
        return top + self.no_mem_embed.view(1, -1, 1, 1)

    def project_high_res(self, maps: list[Tensor]) -> list[Tensor]:
        """Neck outputs at strides 4 and 8 -> the decoder's high-resolution inputs."""
        dec = self.sam_mask_decoder
        return [dec.conv_s0(maps[0]), dec.conv_s1(maps[1])]

    def encode_images(self, images: Tensor) -> Tensor:
        """Raw Bx3xHxW 0..255 (H, W <= S; padded inside) -> packed Bx(4C)xhxw embeddings."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected Bx3xHxW images, got shape {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h > self.img_size or w > self.img_size:
            raise ValueError(
                f"images of {h}x{w} px exceed the model input size {self.img_size}; resize first")
        embedding, high_res = self.encode(self.preprocess(images.to(self.device, torch.float32)))
        return self.pack_embedding(embedding, high_res)

    @staticmethod
    def pack_embedding(embedding: Tensor, high_res: list[Tensor]) -> Tensor:
        """(BxCxhxw, [Bx(C/8)x4hx4w, Bx(C/4)x2hx2w]) -> Bx4Cxhxw (see the module docstring)."""
        return torch.cat([embedding, F.pixel_unshuffle(high_res[0], 4),
                          F.pixel_unshuffle(high_res[1], 2)], dim=1)

    def unpack_embedding(self, packed: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Inverse of :meth:`pack_embedding` for this model's width."""
        c = self.config.d_model
        if packed.ndim != 4 or packed.shape[1] != 4 * c:
            raise ValueError(f"expected a packed embedding Bx{4 * c}xhxw, "
                             f"got {tuple(packed.shape)}")
        return packed[:, :c], [F.pixel_shuffle(packed[:, c:3 * c], 4),
                               F.pixel_shuffle(packed[:, 3 * c:], 2)]

    # -- mask side ----------------------------------------------------------------------
    def postprocess_masks(self, masks: Tensor, input_size: tuple[int, ...],
                          original_size: tuple[int, ...]) -> Tensor:
        """Low-res logits BxCx4hx4w -> BxCxHxW at ``original_size``.

        A whole-frame input (``input_size`` = SxS, the official square resize)
        is one bilinear resize to ``original_size``, as the reference does; a
        padded input (a tile smaller than S) is resized to SxS, cropped to
        ``input_size`` and resized to ``original_size`` when that differs.
        """
        s = self.img_size
        lead = masks.shape[:-2]
        planes = masks.reshape(-1, 1, *masks.shape[-2:])
        original = tuple(int(v) for v in original_size)
        if tuple(int(v) for v in input_size) == (s, s):
            planes = F.interpolate(planes, original, mode="bilinear", align_corners=False)
        else:
            planes = F.interpolate(planes, (s, s), mode="bilinear", align_corners=False)
            planes = planes[..., : input_size[0], : input_size[1]]
            if tuple(planes.shape[-2:]) != original:
                planes = F.interpolate(planes, original, mode="bilinear", align_corners=False)
        return planes.reshape(*lead, *planes.shape[-2:])


def build_sam2_from_config(config: Sam2Config) -> Sam2:
    """A randomly initialised ``Sam2`` in eval mode."""
    return Sam2(config=config).eval()


def sam2_network(architecture: str, img_size: int | None = None) -> Sam2:
    """The model table's builder: a random-weight SAM 2.1 of an official size
    (``sam2.1_hiera_tiny|small|base_plus|large``), optionally at another input
    side; ``build_sam`` loads the weights (an official ``.pt`` file keeps the
    state dict under ``model``)."""
    return build_sam2_from_config(sam2_config(architecture, img_size=img_size))

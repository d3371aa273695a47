"""``set_image`` resizes as the reference does: embeddings equal the reference's.

The reference (``segment_anything``) resizes a uint8 image with torchvision's
``resize`` on a PIL image, i.e. Pillow's bilinear filter. torchvision is not
installed here; ``reference_shims`` does what it does (Pillow, not our code).
The model on the reference side is the reference's own ``Sam`` (its ViT
encoder, prompt encoder and decoder), built at the size of ``tiny_test_config``
and loaded with our weights.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image
from segment_anything.modeling import (
    ImageEncoderViT,
    MaskDecoder,
    PromptEncoder,
    Sam,
    TwoWayTransformer,
)
from segment_anything.predictor import SamPredictor as RefPredictor
from segment_anything.utils.transforms import ResizeLongestSide as RefResize

from sam_model import SamPredictor, build_sam_from_config, tiny_test_config
from sam_model.transforms import ResizeLongestSide, resize_uint8


def _photo_like(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth gradients, edges and noise: resizing filters differ on all three."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1),
                    (xx + yy) % 256], axis=2).astype(np.int64)
    img += rng.integers(-40, 41, img.shape)
    img[h // 4: h // 2, w // 3: 2 * w // 3] = (230, 20, 60)
    return np.clip(img, 0, 255).astype(np.uint8)


def _reference_sam(config) -> Sam:
    enc, dec = config.encoder, config.decoder
    emb = config.image_embedding_size
    return Sam(
        image_encoder=ImageEncoderViT(
            img_size=enc.img_size, patch_size=enc.patch_size, in_chans=enc.in_chans,
            embed_dim=enc.embed_dim, depth=enc.depth, num_heads=enc.num_heads,
            mlp_ratio=enc.mlp_ratio, out_chans=enc.out_chans, qkv_bias=enc.qkv_bias,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), use_abs_pos=enc.use_abs_pos,
            use_rel_pos=enc.use_rel_pos, window_size=enc.window_size,
            global_attn_indexes=tuple(enc.global_attn_indexes),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=config.prompt_embed_dim, image_embedding_size=(emb, emb),
            input_image_size=(config.img_size, config.img_size),
            mask_in_chans=config.mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=dec.num_multimask_outputs,
            transformer=TwoWayTransformer(depth=dec.depth, embedding_dim=config.prompt_embed_dim,
                                          mlp_dim=dec.mlp_dim, num_heads=dec.num_heads),
            transformer_dim=config.prompt_embed_dim, iou_head_depth=dec.iou_head_depth,
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
        pixel_mean=list(config.pixel_mean), pixel_std=list(config.pixel_std),
    ).eval()


@pytest.mark.parametrize("shape", [(300, 421), (97, 61), (600, 800)])
def test_resize_is_pillow_bilinear_like_the_reference(shape):
    """Down- and upscaling, wide and tall: byte-identical to Pillow and to the reference."""
    img = _photo_like(*shape)
    size = ResizeLongestSide(256).get_preprocess_shape(*shape, 256)
    ours = ResizeLongestSide(256).apply_image(img)
    pil = np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(ours, pil)
    np.testing.assert_array_equal(ours, RefResize(256).apply_image(img))
    grey = Image.fromarray(img[..., 0]).resize((size[1], size[0]), Image.Resampling.BILINEAR)
    np.testing.assert_array_equal(resize_uint8(img[..., :1], size)[..., 0], np.asarray(grey))


def test_set_image_embedding_equals_reference_on_a_non_square_image():
    """Our predictor on our Sam against the reference predictor on the reference Sam,
    same weights, a 300x421 image (downscaled to 182x256): equal to float32 noise."""
    config = tiny_test_config(img_size=256)
    torch.manual_seed(0)
    ours = build_sam_from_config(config).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for value in ours.state_dict().values():
            if value.dtype.is_floating_point:
                value.add_(torch.randn(value.shape, generator=gen) * 0.05)
    ref = _reference_sam(config)
    ref.load_state_dict(ours.state_dict())
    image = _photo_like(300, 421, seed=2)
    p_ours, p_ref = SamPredictor(ours), RefPredictor(ref)
    with torch.no_grad():
        p_ours.set_image(image)
        p_ref.set_image(image)
    assert p_ours.input_size == p_ref.input_size == (182, 256)
    a, b = p_ours.get_image_embedding(), p_ref.get_image_embedding()
    spread = float(b.max() - b.min())
    assert float((a - b).abs().max()) <= 1e-5 * spread

"""Model parts against the reference implementation, at tiny sizes, and the registry."""

from __future__ import annotations

import dataclasses
from functools import partial

import pytest
import torch
from sam_helpers import perturb_
from segment_anything.modeling import (
    ImageEncoderViT as RefViT,
)
from segment_anything.modeling import (
    MaskDecoder as RefDecoder,
)
from segment_anything.modeling import (
    PromptEncoder as RefPromptEncoder,
)
from segment_anything.modeling import (
    Sam as RefSam,
)
from segment_anything.modeling import (
    TwoWayTransformer as RefTransformer,
)

import sam_model
from sam_model import build, configs
from sam_model.transformer import Attention


def _reference_tiny(cfg: configs.SamConfig) -> RefSam:
    enc, dec = cfg.encoder, cfg.decoder
    emb = cfg.image_embedding_size
    return RefSam(
        image_encoder=RefViT(
            img_size=enc.img_size,
            patch_size=enc.patch_size,
            embed_dim=enc.embed_dim,
            depth=enc.depth,
            num_heads=enc.num_heads,
            mlp_ratio=enc.mlp_ratio,
            out_chans=enc.out_chans,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=enc.window_size,
            global_attn_indexes=enc.global_attn_indexes,
        ),
        prompt_encoder=RefPromptEncoder(
            embed_dim=cfg.prompt_embed_dim,
            image_embedding_size=(emb, emb),
            input_image_size=(enc.img_size, enc.img_size),
            mask_in_chans=cfg.mask_in_chans,
        ),
        mask_decoder=RefDecoder(
            transformer_dim=cfg.prompt_embed_dim,
            transformer=RefTransformer(
                depth=dec.depth,
                embedding_dim=cfg.prompt_embed_dim,
                mlp_dim=dec.mlp_dim,
                num_heads=dec.num_heads,
            ),
            iou_head_hidden_dim=dec.iou_head_hidden_dim,
        ),
    ).eval()


def _prompts(b: int = 1, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, 3, 2, generator=g) * 250
    labels = torch.tensor([[1, 0, 1]] * b)
    boxes = torch.sort(torch.rand(b, 2, 2, generator=g) * 250, dim=1).values
    boxes = boxes.transpose(1, 2).reshape(b, 4)[:, [0, 2, 1, 3]]
    masks = torch.randn(b, 1, 64, 64, generator=g) * 3
    return [
        ((pts[:, :1], labels[:, :1]), None, None),
        ((pts, labels), None, None),
        (None, boxes, None),
        ((pts[:, :1], labels[:, :1]), boxes, None),
        ((pts, labels), None, masks),
        (None, None, masks),
    ]


@torch.no_grad()
def test_tiny_model_matches_reference(tiny_sam):
    ref = _reference_tiny(tiny_test := configs.tiny_test_config())
    assert tiny_test.image_embedding_size == 16
    ref.load_state_dict(tiny_sam.state_dict())
    x = torch.randn(2, 3, 256, 256)
    emb = tiny_sam.image_encoder(x)
    torch.testing.assert_close(emb, ref.image_encoder(x), atol=1e-5, rtol=1e-4)
    pe = tiny_sam.prompt_encoder.get_dense_pe()
    torch.testing.assert_close(pe, ref.prompt_encoder.get_dense_pe())
    for b in (1, 3):
        for points, boxes, masks in _prompts(b):
            s1, d1 = tiny_sam.prompt_encoder(points, boxes, masks)
            s2, d2 = ref.prompt_encoder(points, boxes, masks)
            torch.testing.assert_close(s1, s2)
            torch.testing.assert_close(d1, d2, atol=1e-5, rtol=1e-5)
            for multimask in (True, False):
                m1, i1 = tiny_sam.mask_decoder(emb[:1], pe, s1, d1, multimask)
                m2, i2 = ref.mask_decoder(emb[:1], pe, s2, d2, multimask)
                torch.testing.assert_close(m1, m2, atol=1e-4, rtol=1e-4)
                torch.testing.assert_close(i1, i2, atol=1e-5, rtol=1e-4)
            allm, alli = tiny_sam.mask_decoder.predict_masks(emb[:1], pe, s1, d1)
            refm, refi = ref.mask_decoder.predict_masks(emb[:1], pe, s2, d2)
            torch.testing.assert_close(allm, refm, atol=1e-4, rtol=1e-4)
            torch.testing.assert_close(alli, refi, atol=1e-5, rtol=1e-4)
    low = torch.randn(2, 3, 64, 64)
    for input_size, original in [((256, 192), (400, 300)), ((256, 256), (256, 256))]:
        torch.testing.assert_close(
            tiny_sam.postprocess_masks(low, input_size, original),
            ref.postprocess_masks(low, input_size, original),
        )
    img = torch.rand(3, 200, 256) * 255
    torch.testing.assert_close(tiny_sam.preprocess(img), ref.preprocess(img))


@torch.no_grad()
def test_sam_forward_matches_reference(tiny_sam):
    ref = _reference_tiny(configs.tiny_test_config())
    ref.load_state_dict(tiny_sam.state_dict())
    (pts, labels), boxes, _ = _prompts(2)[3]
    batch = [
        {"image": torch.rand(3, 256, 192) * 255, "original_size": (300, 225),
         "point_coords": pts, "point_labels": labels, "boxes": boxes},
        {"image": torch.rand(3, 160, 256) * 255, "original_size": (160, 256)},
    ]
    for ours, theirs in zip(tiny_sam(batch, True), ref(batch, True)):
        assert ours.keys() == theirs.keys()
        torch.testing.assert_close(ours["low_res_logits"], theirs["low_res_logits"],
                                   atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(ours["iou_predictions"], theirs["iou_predictions"],
                                   atol=1e-5, rtol=1e-4)
        assert ours["masks"].shape == theirs["masks"].shape


@pytest.mark.parametrize("nq,nk", [(3, 50), (50, 3), (6, 6)])
def test_attention_paths_agree(nq, nk):
    torch.manual_seed(0)
    attn = perturb_(Attention(32, 2, downsample_rate=2))
    q, k, v = torch.randn(4, nq, 32), torch.randn(4, nk, 32), torch.randn(4, nk, 32)
    torch.testing.assert_close(attn(q, k, v), attn._plain(q, k, v), atol=1e-5, rtol=1e-4)
    # a batch-1 side is broadcast, never copied, and gives the same as repeating it
    k1, v1 = k[:1], v[:1]
    torch.testing.assert_close(
        attn(q, k1, v1), attn._plain(q, k1.expand(4, -1, -1), v1.expand(4, -1, -1)),
        atol=1e-5, rtol=1e-4,
    )
    q1 = q[:1]
    torch.testing.assert_close(
        attn(q1, k, v), attn._plain(q1.expand(4, -1, -1), k, v), atol=1e-5, rtol=1e-4
    )


@torch.no_grad()
def test_batched_prompts_equal_single_prompts(tiny_sam):
    emb = torch.randn(1, 32, 16, 16)
    pe = tiny_sam.prompt_encoder.get_dense_pe()
    (pts, labels), boxes, masks = _prompts(3)[4][0], _prompts(3)[2][1], _prompts(3)[4][2]
    for with_mask in (False, True):
        s, d = tiny_sam.prompt_encoder((pts, labels), boxes, masks if with_mask else None)
        m, i = tiny_sam.mask_decoder(emb, pe, s, d, True)
        for j in range(3):
            mj, ij = tiny_sam.mask_decoder(emb, pe, s[j : j + 1], d[j : j + 1], True)
            torch.testing.assert_close(m[j : j + 1], mj, atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(i[j : j + 1], ij, atol=1e-6, rtol=1e-4)
        # one embedding per prompt (batch B) gives the same as a shared one
        m_b, _ = tiny_sam.mask_decoder(emb.expand(3, -1, -1, -1).clone(), pe, s, d, True)
        torch.testing.assert_close(m_b, m, atol=1e-5, rtol=1e-4)


def test_encode_images_batched(tiny_sam):
    imgs = torch.rand(3, 3, 256, 200) * 255
    out = sam_model.encode_images(tiny_sam, imgs)
    assert out.shape == (3, 32, 16, 16) and out.dtype == torch.float32
    single = sam_model.encode_images(tiny_sam, imgs[1:2])
    torch.testing.assert_close(out[1:2], single, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="exceed"):
        sam_model.encode_images(tiny_sam, torch.zeros(1, 3, 300, 10))
    with pytest.raises(ValueError, match="Bx3xHxW"):
        sam_model.encode_images(tiny_sam, torch.zeros(3, 10, 10))


def test_sam_attributes(tiny_sam):
    assert tiny_sam.mask_threshold == 0.0 and tiny_sam.image_format == "RGB"
    assert tiny_sam.image_encoder.img_size == 256
    pe = tiny_sam.prompt_encoder
    assert pe.embed_dim == 32 and pe.image_embedding_size == (16, 16)
    assert pe.input_image_size == (256, 256)
    assert pe.get_dense_pe().shape == (1, 32, 16, 16)
    assert tiny_sam.device == torch.device("cpu")
    assert tiny_sam.pixel_mean.shape == (3, 1, 1) and tiny_sam.pixel_std.shape == (3, 1, 1)
    assert "pixel_mean" not in tiny_sam.state_dict()
    assert not tiny_sam.training


def test_registry_and_configs():
    assert set(sam_model.list_models()) >= {"vit_b", "vit_l", "vit_h", "vit_t", "sam_tiny"}
    with pytest.raises(ValueError, match="unknown model"):
        sam_model.build_sam("vit_x")
    cfg = configs.tiny_test_config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.prompt_embed_dim = 64
    with pytest.raises(ValueError, match="out_chans"):
        configs.SamConfig(encoder=cfg.encoder, prompt_embed_dim=64)
    # an encoder from another module plugs in by a "module:function" kind
    plugged = dataclasses.replace(
        cfg, encoder=dataclasses.replace(cfg.encoder, kind="sam_model.image_encoder:build_vit_encoder")
    )
    model = sam_model.build_sam_from_config(plugged)
    assert model.image_encoder.img_size == 256
    with pytest.raises(ValueError, match="unknown encoder kind"):
        build.build_image_encoder(dataclasses.replace(cfg.encoder, kind="nope"))
    # decoder width is a parameter: a 128-channel model
    narrow = configs.SamConfig(
        encoder=dataclasses.replace(cfg.encoder, out_chans=128), prompt_embed_dim=128,
        decoder=configs.MaskDecoderConfig(num_heads=4, mlp_dim=256, iou_head_hidden_dim=128),
    )
    m = sam_model.build_sam_from_config(narrow)
    assert m.mask_decoder.transformer_dim == 128
    assert m.mask_decoder.output_upscaling[3].out_channels == 16


def _ref_builders():
    from mobile_sam.build_sam import build_sam_vit_t
    from segment_anything.build_sam import sam_model_registry

    return {
        "vit_b": sam_model_registry["vit_b"],
        "vit_l": sam_model_registry["vit_l"],
        "vit_h": sam_model_registry["vit_h"],
        "vit_t": build_sam_vit_t,
    }


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h", "vit_t"])
def test_official_state_dict_keys_and_shapes(name):
    """Keys and shapes must be the official ones. Built on the meta device (no
    memory, no time) except MobileSAM's reference, which reads values while building."""
    device = "cpu" if name == "vit_t" else "meta"
    with torch.device(device):
        theirs = _ref_builders()[name]()
        ours = sam_model.build_sam_from_config(configs.official_config(name))
    sig = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    ref_sig = {k: tuple(v.shape) for k, v in theirs.state_dict().items()}
    assert sig == ref_sig


def test_encoder_autocast_is_opt_in(tiny_sam):
    """float32 by default; bf16 autocast (meant for GPUs) stays close and returns float32."""
    imgs = torch.rand(1, 3, 256, 256) * 255
    exact = sam_model.encode_images(tiny_sam, imgs)
    torch.testing.assert_close(exact, tiny_sam.image_encoder(tiny_sam.preprocess(imgs)))
    tiny_sam.encoder_autocast = torch.bfloat16
    try:
        fast = sam_model.encode_images(tiny_sam, imgs)
    finally:
        tiny_sam.encoder_autocast = None
    assert fast.dtype == torch.float32
    assert (fast - exact).abs().max() < 0.05 * exact.abs().max()
    assert not torch.equal(fast, exact)


def test_gradients_flow_for_training(tiny_sam):
    """Fine-tuning needs gradients through encoder, prompt encoder and decoder."""
    imgs = torch.rand(2, 3, 256, 256) * 255
    emb = tiny_sam.image_encoder(tiny_sam.preprocess(imgs))
    (pts, labels), boxes, _ = _prompts(2)[3]
    sparse, dense = tiny_sam.prompt_encoder((pts, labels), boxes, None)
    masks, iou = tiny_sam.mask_decoder(emb, tiny_sam.prompt_encoder.get_dense_pe(),
                                       sparse, dense, True)
    (masks.square().mean() + iou.sum()).backward()
    for name in ("image_encoder.blocks.1.attn.rel_pos_h", "image_encoder.patch_embed.proj.weight",
                 "prompt_encoder.point_embeddings.1.weight",
                 "mask_decoder.transformer.layers.0.cross_attn_image_to_token.q_proj.weight",
                 "mask_decoder.output_upscaling.0.weight"):
        grad = tiny_sam.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name

"""SamPredictor and image conversion on a tiny random-weight model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from segment_anything.predictor import SamPredictor as RefPredictor

from sam_model import ImageFormatError, SamModelError, SamPredictor
from sam_model.transforms import ResizeLongestSide, resize_uint8, to_rgb_uint8


def _image(h=150, w=200, seed=0):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img[40:90, 60:140] = (220, 30, 30)
    return img


PROMPTS = [
    dict(point_coords=np.array([[100, 60]]), point_labels=np.array([1])),
    dict(point_coords=np.array([[100, 60], [20, 20]]), point_labels=np.array([1, 0])),
    dict(box=np.array([50, 30, 150, 100])),
    dict(point_coords=np.array([[100, 60]]), point_labels=np.array([1]),
         box=np.array([50, 30, 150, 100])),
]


@pytest.mark.parametrize("prompt", PROMPTS)
@pytest.mark.parametrize("multimask", [True, False])
def test_predict_matches_reference_predictor_on_our_model(tiny_sam, prompt, multimask):
    """The reference predictor runs unchanged on our Sam and agrees with ours."""
    image = _image()
    ours, theirs = SamPredictor(tiny_sam), RefPredictor(tiny_sam)
    ours.set_image(image)
    theirs.set_image(image)
    torch.testing.assert_close(ours.get_image_embedding(), theirs.get_image_embedding())
    assert ours.input_size == theirs.input_size and ours.original_size == theirs.original_size
    m1, i1, l1 = ours.predict(**prompt, multimask_output=multimask)
    m2, i2, l2 = theirs.predict(**prompt, multimask_output=multimask)
    n = 3 if multimask else 1
    assert m1.shape == (n, 150, 200) and m1.dtype == bool
    assert i1.shape == (n,) and i1.dtype == np.float32
    assert l1.shape == (n, 64, 64) and l1.dtype == np.float32
    np.testing.assert_allclose(l1, l2, atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(i1, i2, atol=1e-5, rtol=1e-4)
    lg1, _, _ = ours.predict(**prompt, multimask_output=multimask, return_logits=True)
    lg2, _, _ = theirs.predict(**prompt, multimask_output=multimask, return_logits=True)
    np.testing.assert_allclose(lg1, lg2, atol=1e-4, rtol=1e-4)
    sure = np.abs(lg2) > 1e-3
    assert np.array_equal(m1[sure], m2[sure])
    # the low-res logits go back in as a mask prompt
    best = l1[np.argmax(i1)][None]
    m3, _, _ = ours.predict(**prompt, mask_input=best, multimask_output=False)
    m4, _, _ = theirs.predict(**prompt, mask_input=best, multimask_output=False)
    assert m3.shape == (1, 150, 200)
    assert (m3 != m4).mean() < 1e-3


def test_predict_torch_batch_equals_single(tiny_sam):
    pred = SamPredictor(tiny_sam)
    pred.set_image(_image())
    pts = torch.tensor([[[30.0, 40.0]], [[120.0, 80.0]], [[200.0, 10.0]]])
    labels = torch.ones(3, 1, dtype=torch.long)
    boxes = torch.tensor([[10.0, 10.0, 100.0, 90.0], [50, 50, 200, 150], [0, 0, 255, 190]])
    masks, iou, low = pred.predict_torch(pts, labels, boxes, multimask_output=True)
    assert masks.shape == (3, 3, 150, 200) and iou.shape == (3, 3) and low.shape == (3, 3, 64, 64)
    for j in range(3):
        _, iou_j, low_j = pred.predict_torch(pts[j : j + 1], labels[j : j + 1], boxes[j : j + 1])
        torch.testing.assert_close(low[j : j + 1], low_j, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(iou[j : j + 1], iou_j, atol=1e-6, rtol=1e-4)


def test_set_image_embedding_restores_predictions(tiny_sam):
    pred = SamPredictor(tiny_sam)
    pred.set_image(_image())
    expected = pred.predict(**PROMPTS[1])
    features = pred.get_image_embedding().clone()
    other = SamPredictor(tiny_sam)
    other.set_image_embedding(features, original_size=(150, 200))
    assert other.input_size == (192, 256)
    for a, b in zip(expected, other.predict(**PROMPTS[1])):
        np.testing.assert_array_equal(a, b)
    # a tile embedded unresized: input_size == original_size, masks at tile size
    tile = _image(256, 256)
    pred.set_image(tile)
    feats = pred.get_image_embedding()
    other.set_image_embedding(feats[0], original_size=(256, 256), input_size=(256, 256))
    masks, _, _ = other.predict(**PROMPTS[0])
    assert masks.shape == (3, 256, 256)
    with pytest.raises(SamModelError, match="embedding of shape"):
        other.set_image_embedding(torch.zeros(1, 16, 16, 16), original_size=(10, 10))


def test_set_torch_image_and_errors(tiny_sam):
    pred = SamPredictor(tiny_sam)
    with pytest.raises(RuntimeError, match="no image set"):
        pred.predict(**PROMPTS[0])
    image = _image()
    resized = ResizeLongestSide(256).apply_image(image)
    pred.set_torch_image(torch.from_numpy(resized).permute(2, 0, 1)[None].float(), (150, 200))
    a = pred.get_image_embedding().clone()
    pred.set_image(image)
    torch.testing.assert_close(a, pred.get_image_embedding())
    with pytest.raises(ImageFormatError, match="long side"):
        pred.set_torch_image(torch.zeros(1, 3, 100, 100), (100, 100))
    with pytest.raises(SamModelError, match="point_labels"):
        pred.predict(point_coords=np.array([[1, 2]]))
    with pytest.raises(SamModelError, match="labels"):
        pred.predict(point_coords=np.array([[1, 2]]), point_labels=np.array([1, 1]))
    pred.reset_image()
    assert not pred.is_image_set and pred.features is None


def test_bgr_input_is_flipped(tiny_sam):
    image = _image()
    a, b = SamPredictor(tiny_sam), SamPredictor(tiny_sam)
    a.set_image(image)
    b.set_image(np.ascontiguousarray(image[..., ::-1]), image_format="BGR")
    torch.testing.assert_close(a.get_image_embedding(), b.get_image_embedding())


def test_image_conversion_rule():
    rgb = _image(20, 30)
    gray = rgb[..., 0]
    np.testing.assert_array_equal(to_rgb_uint8(gray), np.repeat(gray[..., None], 3, axis=2))
    np.testing.assert_array_equal(to_rgb_uint8(gray[..., None]), to_rgb_uint8(gray))
    two = np.stack([gray, np.full_like(gray, 7)], axis=2)
    np.testing.assert_array_equal(to_rgb_uint8(two), to_rgb_uint8(gray))
    rgba = np.concatenate([rgb, np.zeros((20, 30, 1), np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgb)
    # 16 bit: min..max stretched to 0..255 over all channels
    u16 = np.zeros((2, 2, 3), np.uint16)
    u16[0, 0] = (1000, 2000, 3000)
    u16[1, 1] = (3000, 3000, 3000)
    u16[...] = np.maximum(u16, 1000)
    out = to_rgb_uint8(u16)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [0, 128, 255])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])
    # float in [0, 1] is scaled by 255 (no stretch), other floats are stretched
    f = np.full((2, 2), 0.5, np.float32)
    assert (to_rgb_uint8(f) == 128).all()
    g = np.array([[-1.0, 1.0], [np.nan, 0.0]])
    np.testing.assert_array_equal(to_rgb_uint8(g)[..., 0], [[0, 255], [0, 128]])
    assert (to_rgb_uint8(np.full((3, 3), 7, np.int32)) == 0).all()
    np.testing.assert_array_equal(to_rgb_uint8(np.eye(2, dtype=bool))[..., 0], [[255, 0], [0, 255]])
    for bad in (np.zeros((4, 4, 5)), np.zeros(4), np.zeros((0, 3, 3)), np.zeros((2, 2), complex),
                np.array([["a"]])):
        with pytest.raises(ImageFormatError):
            to_rgb_uint8(bad)
    with pytest.raises(ValueError):  # ImageFormatError is a ValueError
        to_rgb_uint8(np.zeros((2, 2, 2, 2)))


def test_gray_rgba_16bit_in_set_image(tiny_sam):
    pred = SamPredictor(tiny_sam)
    image = _image()
    pred.set_image(image)
    ref = pred.get_image_embedding().clone()
    pred.set_image(np.concatenate([image, np.full((150, 200, 1), 9, np.uint8)], axis=2))
    torch.testing.assert_close(pred.get_image_embedding(), ref)
    pred.set_image(image[..., 1])
    assert pred.get_image_embedding().shape == ref.shape
    pred.set_image(image.astype(np.uint16) * 257)  # full 16-bit range: same as uint8
    stretched = to_rgb_uint8(image.astype(np.uint16) * 257)
    assert np.abs(stretched.astype(int) - image).max() <= 1


def test_resize_shape_and_coordinates():
    """The resized image's size and the prompts' scaling (the pixels: test_reference_resize)."""
    img = _image(300, 400)
    assert resize_uint8(img, (150, 200)).shape == (150, 200, 3)
    tr = ResizeLongestSide(1024)
    assert tr.get_preprocess_shape(300, 400, 1024) == (768, 1024)
    coords = tr.apply_coords(np.array([[400.0, 300.0]]), (300, 400))
    np.testing.assert_allclose(coords, [[1024.0, 768.0]])
    boxes = tr.apply_boxes(np.array([[0, 0, 400, 300]]), (300, 400))
    np.testing.assert_allclose(boxes, [[0, 0, 1024, 768]])
    tb = tr.apply_boxes_torch(torch.tensor([[0.0, 0.0, 400.0, 300.0]]), (300, 400))
    torch.testing.assert_close(tb, torch.tensor([[0.0, 0.0, 1024.0, 768.0]]))


def test_predict_on_restored_tile_embedding_matches_predict_torch():
    """A restored embedding with input_size == original_size (an edge tile of
    the tiled engine) takes prompts in tile pixels, unscaled."""
    from sam_model import SamPredictor, build_sam_from_config, encode_images
    from sam_model.configs import tiny_test_config

    torch.manual_seed(0)
    model = build_sam_from_config(tiny_test_config(img_size=256)).eval()
    pred = SamPredictor(model)
    with torch.no_grad():
        feats = encode_images(model, torch.rand(1, 3, 200, 150) * 255)
    pred.set_image_embedding(feats, original_size=(200, 150), input_size=(200, 150))
    masks, iou, low = pred.predict(
        point_coords=np.array([[40.0, 60.0]]), point_labels=np.array([1]),
        box=np.array([10.0, 20.0, 120.0, 180.0]))
    t_masks, t_iou, t_low = pred.predict_torch(
        torch.tensor([[[40.0, 60.0]]]), torch.tensor([[1]]),
        boxes=torch.tensor([[10.0, 20.0, 120.0, 180.0]]))
    np.testing.assert_array_equal(masks, t_masks[0].numpy())
    np.testing.assert_allclose(iou, t_iou[0].numpy())
    np.testing.assert_allclose(low, t_low[0].numpy())

"""Full-size ViT-B and MobileSAM (vit_t) against the reference packages.

Random weights, perturbed so zero-initialised parameters matter, are saved as
a checkpoint and loaded by both implementations. One image embedding per model
is computed (module-scoped fixture) and shared by all prompt tests.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sam_helpers import perturb_

import sam_model

PROMPTS = {
    "point": dict(point_coords=np.array([[420, 250]]), point_labels=np.array([1])),
    "points_negative": dict(
        point_coords=np.array([[420, 250], [100, 500], [700, 90]]),
        point_labels=np.array([1, 0, 0]),
    ),
    "box": dict(box=np.array([300, 150, 620, 420])),
    "box_point": dict(
        point_coords=np.array([[420, 250]]), point_labels=np.array([1]),
        box=np.array([300, 150, 620, 420]),
    ),
}


def _reference(name, checkpoint):
    if name == "vit_t":
        from mobile_sam import SamPredictor
        from mobile_sam.build_sam import build_sam_vit_t as build
    else:
        from segment_anything import SamPredictor
        from segment_anything.build_sam import sam_model_registry

        build = sam_model_registry[name]
    return build(checkpoint=str(checkpoint)).eval(), SamPredictor


def _image():
    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
    img[150:420, 300:620] = (40, 200, 90)
    img[200:300, 380:460] = (250, 250, 250)
    return img


@pytest.fixture(scope="module", params=["vit_b", "vit_t"])
def pair(request, tmp_path_factory):
    """(our predictor, reference predictor, our model, reference model) on one image."""
    name = request.param
    torch.manual_seed(0)
    ours = perturb_(sam_model.build_sam(name, pretrained=False), seed=5, scale=0.02)
    ckpt = tmp_path_factory.mktemp(name) / f"{name}_random.pth"
    torch.save(ours.state_dict(), ckpt)
    for p in ours.parameters():  # forget the weights, then read them back strictly
        p.data.zero_()
    sam_model.load_checkpoint(ours, ckpt, model_name=name)
    ref, ref_predictor_cls = _reference(name, ckpt)
    image = _image()
    p_ours, p_ref = sam_model.SamPredictor(ours), ref_predictor_cls(ref)
    with torch.no_grad():
        p_ours.set_image(image)
        p_ref.set_image(image)
    return name, p_ours, p_ref, ours, ref


def test_embeddings_equal(pair):
    _, p_ours, p_ref, _, _ = pair
    assert p_ours.input_size == p_ref.input_size == (768, 1024)
    assert p_ours.original_size == p_ref.original_size == (600, 800)
    torch.testing.assert_close(
        p_ours.get_image_embedding(), p_ref.get_image_embedding(), atol=2e-4, rtol=1e-4
    )


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("prompt", list(PROMPTS))
def test_prompt_outputs_equal(pair, prompt, multimask):
    """Same embedding in both (ours copied into the reference predictor) so the
    comparison isolates prompt encoder, decoder and upscaling."""
    _, p_ours, p_ref, _, _ = pair
    p_ref.features = p_ours.get_image_embedding().clone()
    kwargs = dict(PROMPTS[prompt], multimask_output=multimask)
    lg1, i1, l1 = p_ours.predict(**kwargs, return_logits=True)
    lg2, i2, l2 = p_ref.predict(**kwargs, return_logits=True)
    n = 3 if multimask else 1
    assert lg1.shape == lg2.shape == (n, 600, 800)
    torch.testing.assert_close(torch.from_numpy(l1), torch.from_numpy(l2), atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(i1), torch.from_numpy(i2), atol=2e-5, rtol=1e-4)
    torch.testing.assert_close(torch.from_numpy(lg1), torch.from_numpy(lg2), atol=2e-4, rtol=1e-4)
    if prompt == "box_point":  # boolean masks: thresholded logits, equal where not borderline
        m1, _, _ = p_ours.predict(**kwargs)
        m2, _, _ = p_ref.predict(**kwargs)
        assert m1.dtype == bool and m1.shape == (n, 600, 800)
        sure = np.abs(lg2) > 1e-3
        assert np.array_equal(m1[sure], m2[sure])
        assert (m1 != m2).mean() < 1e-5


def test_reference_predictor_runs_on_our_model(pair):
    """Call compatibility: the reference predictor's decoder side on our Sam."""
    name, p_ours, _, ours, _ = pair
    if name == "vit_t":
        from mobile_sam import SamPredictor
    else:
        from segment_anything import SamPredictor
    p = SamPredictor(ours)
    p.features = p_ours.get_image_embedding()
    p.original_size, p.input_size, p.is_image_set = p_ours.original_size, p_ours.input_size, True
    m1, i1, l1 = p_ours.predict(**PROMPTS["box_point"])
    m2, i2, l2 = p.predict(**PROMPTS["box_point"])
    np.testing.assert_allclose(l1, l2, atol=2e-4, rtol=1e-4)
    np.testing.assert_allclose(i1, i2, atol=2e-5, rtol=1e-4)

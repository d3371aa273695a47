"""Fingerprints of a model: its name is its own, its weights are hashed once per model."""

from __future__ import annotations

import torch

import sam_model
from napari_sam.core.tiling import signature


def _tiny():
    return sam_model.build_sam_from_config(sam_model.tiny_test_config(img_size=256)).eval()


def test_weights_hash_is_computed_once_per_model_until_weights_change(monkeypatch):
    model = _tiny()
    calls = []
    real = signature._hash_state
    monkeypatch.setattr(signature, "_hash_state", lambda m: calls.append(1) or real(m))
    first = signature.weights_hash(model)
    assert signature.weights_hash(model) == first and len(calls) == 1  # many inputs, one hash
    same = _tiny()
    same.load_state_dict(model.state_dict())
    assert signature.weights_hash(same) == first and len(calls) == 2  # another model object
    with torch.no_grad():
        next(model.parameters()).add_(1.0)  # a training step changes the weights in place
    assert signature.weights_hash(model) != first and len(calls) == 3
    model.load_state_dict(same.state_dict())
    assert signature.weights_hash(model) == first and len(calls) == 4


def test_model_name_is_the_models_own():
    model = _tiny()
    assert model.model_name is None
    assert signature.model_name(model) == type(model.image_encoder).__name__
    model = sam_model.build_sam("sam_tiny", pretrained=False, img_size=256)
    assert model.model_name == "sam_tiny" and signature.model_name(model) == "sam_tiny"
    assert signature.model_name(model, "other") == "other"

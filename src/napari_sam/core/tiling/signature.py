"""Fingerprints of what an embedding depends on: the model's name and weights."""

from __future__ import annotations

import hashlib


def weights_hash(model) -> str:
    """sha256 of a torch module's state dict (names, dtypes, shapes and values), hex.

    Identical weights give the same hash whatever the device they sit on.
    """
    import torch

    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        t = t.contiguous()
        digest.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def model_name(model, name: str | None = None) -> str:
    """``name`` when given, else the model's ``model_name``/``name`` attribute, else its encoder class."""
    if name:
        return str(name)
    for attr in ("model_name", "name"):
        value = getattr(model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(getattr(model, "image_encoder", model)).__name__

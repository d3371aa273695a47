"""Fingerprints of what an embedding depends on: the model's name and weights."""

from __future__ import annotations

import hashlib
import weakref

import torch

# model -> (state token, hash): the hash of a model is computed once, and again
# only when its weights change (see _state_token)
_HASHES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state_token(model) -> tuple:
    """What changes when a model's weights do: each tensor's storage, device and
    in-place version counter (loading, training steps and ``.to()`` all change it)."""
    return tuple((key, t.device.type, t.data_ptr(), t._version)
                 for key, t in model.state_dict().items())


def _hash_state(model) -> str:
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


def weights_hash(model) -> str:
    """sha256 of a torch module's state dict (names, dtypes, shapes and values), hex.

    Identical weights give the same hash whatever the device they sit on. The
    hash is computed once per model and kept until its weights change (seconds
    for ViT-H, so not once per input).
    """
    token = _state_token(model)
    known = _HASHES.get(model)
    if known is not None and known[0] == token:
        return known[1]
    digest = _hash_state(model)
    _HASHES[model] = (token, digest)
    return digest


def model_name(model, name: str | None = None) -> str:
    """``name`` when given, else the model's own ``model_name`` (set by ``build_sam``),
    else its image encoder's class (a network built from a bare config)."""
    return str(name or model.model_name or type(model.image_encoder).__name__)

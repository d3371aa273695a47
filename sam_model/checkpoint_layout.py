"""What a checkpoint file holds: read its state dict safely and name the layout its keys have.

Reusable by anything that loads weights (``build_sam``'s error messages,
``napari-sam models verify``): :func:`load_state_dict` reads a file on the
CPU with ``weights_only=True``; :func:`detect_architecture` tells the
official layouts apart from names and shapes alone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any


class CheckpointReadError(Exception):
    """A file is not a readable torch state dict; the message names the file."""


_VIT_SHAPES = {(768, 12): "vit_b", (1024, 24): "vit_l", (1280, 32): "vit_h"}
_PARTS = ("image_encoder.", "prompt_encoder.", "mask_decoder.")


def detect_architecture(state: Mapping[str, Any]) -> str | None:
    """Which official layout a state dict's keys and shapes look like, or ``None``.

    ``state`` maps names to tensors (only ``.shape`` is read). ViT-B/L/H are
    told apart by the patch-embedding width and the number of encoder blocks
    (768/12, 1024/24, 1280/32); MobileSAM's TinyViT (``vit_t``) by its
    convolutional patch embedding and ``layers`` stages. This is a quick
    guess for messages; a strict ``load_state_dict`` is the real test.
    """
    keys = set(state)
    if not all(any(k.startswith(p) for k in keys) for p in _PARTS):
        return None
    if "image_encoder.patch_embed.seq.0.c.weight" in keys and any(
            k.startswith("image_encoder.layers.") for k in keys):
        return "vit_t"
    proj = state.get("image_encoder.patch_embed.proj.weight")
    blocks = {int(m.group(1)) for k in keys
              if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    if proj is None or not blocks:
        return None
    return _VIT_SHAPES.get((int(proj.shape[0]), max(blocks) + 1))


def describe_state_dict(state: Mapping[str, Any]) -> str:
    """A short human description of a state dict's layout, for reports and error messages."""
    arch = detect_architecture(state)
    if arch is not None:
        return f"{arch} layout ({len(state)} tensors)"
    missing = [p.rstrip(".") for p in _PARTS if not any(k.startswith(p) for k in state)]
    if missing:
        return f"not a SAM state dict: no {', '.join(missing)} keys ({len(state)} tensors)"
    proj = state.get("image_encoder.patch_embed.proj.weight")
    width = f"patch width {int(proj.shape[0])}, " if proj is not None else ""
    return f"SAM-like state dict of no published layout ({width}{len(state)} tensors)"


def load_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint's state dict on the CPU with ``weights_only=True`` (memory-mapped if possible).

    Raises :class:`CheckpointReadError` when the file is not a flat ``name -> tensor`` mapping.
    """
    import torch

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if not (magic.startswith(b"PK\x03\x04") or magic.startswith(b"\x80")):
        raise CheckpointReadError(f"{path}: not a torch checkpoint (neither a zip archive nor a pickle)")
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as exc:  # legacy (non-zip) files cannot be memory-mapped
            if "mmap" not in str(exc).lower() and "zip" not in str(exc).lower():
                raise
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or foreign files
        raise CheckpointReadError(f"{path}: cannot be read as a torch checkpoint "
                                  f"({_reason(exc)})") from exc
    if not isinstance(state, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise CheckpointReadError(f"{path}: not a state dict (a flat mapping of names to tensors)")
    return dict(state)


def _reason(exc: Exception) -> str:
    """One short line from torch's (often long, advisory) load errors."""
    text = str(exc).strip()
    refused = re.search(r"WeightsUnpickler error: ([^\n]*)", text)
    if refused:
        return f"refused by weights_only=True: {refused.group(1).split('. Please')[0].strip()}"
    return text.splitlines()[0] if text else type(exc).__name__


#: Names :func:`detect_architecture` can return.
KNOWN_LAYOUTS = frozenset(_VIT_SHAPES.values()) | {"vit_t"}

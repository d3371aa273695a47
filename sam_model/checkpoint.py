"""Reading checkpoint files and loading them strictly into a model.

Files are read with ``torch.load(..., weights_only=True, map_location=...)``.
A file that is not a state dict for the requested model raises
``CheckpointError`` (a ``ValueError``) that names the model the file looks
like, or lists the missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from . import model_table
from .build import resolve
from .errors import CheckpointError

__all__ = ["CheckpointError", "architecture_of", "load_checkpoint", "read_state_dict"]

_WRAPPER_KEYS = ("model", "state_dict")
_SHOW = 5  # keys listed per category in error messages


def read_state_dict(path: str | os.PathLike, map_location="cpu") -> dict[str, torch.Tensor]:
    """Read a state dict (name -> tensor) from ``path`` without unpickling code.

    A dict wrapping the state dict under 'model' or 'state_dict' is unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # damaged file, not a torch file, or pickled code
        raise CheckpointError(
            f"{path}: cannot read checkpoint (damaged, truncated or not a PyTorch "
            f"weights file): {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        ) from exc
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            inner = obj.get(key)
            if isinstance(inner, Mapping) and not any(
                isinstance(v, torch.Tensor) for v in obj.values()
            ):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return dict(obj)


def state_signature(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Key -> shape of a model's state dict."""
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@functools.cache
def _layout(architecture: str, builder: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    """Key/shape signature of an architecture, from a build on the meta device (no memory)."""
    with torch.device("meta"):
        model = resolve(builder)(architecture, img_size=None)
    return tuple(state_signature(model).items())


def architecture_of(state: Mapping[str, torch.Tensor]) -> str | None:
    """The architecture (``sam_model.model_table``) whose keys and shapes equal ``state``'s.

    Every architecture of the model table is compared, in table order; None
    when none fits.
    """
    sig = {k: tuple(v.shape) for k, v in state.items()}
    for entry in model_table.MODELS.values():
        if dict(_layout(entry.architecture, entry.builder)) == sig:
            return entry.architecture
    return None


def check_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, model_name: str | None
) -> None:
    """Raise ``CheckpointError`` unless ``state`` has exactly the model's keys and shapes."""
    expected = state_signature(model)
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected == got:
        return
    wanted = f"model {model_name!r}" if model_name else "this model"
    looks_like = architecture_of(state)
    if looks_like is not None and looks_like != model_name:
        raise CheckpointError(
            f"{source}: this is a {looks_like!r} checkpoint, but {wanted} was asked for; "
            f"use --model {looks_like} (or build_sam({looks_like!r}, ...))"
        )
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:_SHOW])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:_SHOW])})")
    if shapes:
        shown = ", ".join(f"{k}: file {got[k]} vs model {expected[k]}" for k in shapes[:_SHOW])
        parts.append(f"{len(shapes)} keys with other shapes ({shown})")
    raise CheckpointError(f"{source}: does not fit {wanted}: " + "; ".join(parts))


def load_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    model_name: str | None = None,
    map_location="cpu",
) -> nn.Module:
    """Load a checkpoint file strictly into ``model`` (in place); returns the model."""
    state = read_state_dict(path, map_location=map_location)
    check_state_dict(model, state, source=str(path), model_name=model_name)
    model.load_state_dict(state, strict=True)
    return model

"""``build_sam``: a model by name, built as the model table says.

The table (``sam_model.model_table``) gives each name its architecture, the
builder of its network and where its weights are; ``build_sam`` builds the
network, loads the weights strictly (a given file, else the shipped or cached
ones) and names the model (``model.model_name``).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from . import weights
from .build import resolve
from .checkpoint import CheckpointError, load_checkpoint
from .model_table import MODELS, ModelEntry
from .sam import Sam


def _pretrained_checkpoint(entry: ModelEntry) -> Path:
    """The shipped or cached weights of ``entry``, or a CheckpointError saying how to get them."""
    path = weights.cached_path(entry.name)
    if path is not None:
        return Path(path)
    where = weights.target_path(entry.name)
    if entry.packaged is not None:
        raise CheckpointError(
            f"{where}: the shipped {entry.name} weights are missing from this installation; "
            "reinstall napari-sam or pass a checkpoint path")
    raise CheckpointError(
        f"no weights for {entry.name!r} in the cache ({where}); "
        f"run `napari-sam models download {entry.name}` or pass a checkpoint path")


_HALF_DTYPES = (torch.bfloat16, torch.float16)


def build_sam(
    name: str,
    checkpoint: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    pretrained: bool = True,
    img_size: int | None = None,
    compile: bool = False,
) -> Sam:
    """Build a model by name, in eval mode.

    Args:
        name: one of ``list_models()``.
        checkpoint: a state-dict file to load strictly (official key names).
        device: where to put the model (default: CPU).
        dtype: None or ``torch.float32`` for exact float32; ``torch.bfloat16``
            or ``torch.float16`` run the image encoder under autocast (GPU
            speed-up; the prompt encoder and decoder stay float32).
        pretrained: without ``checkpoint``, load the default weights (the
            shipped ones for 'sam_tiny', the cached official ones otherwise);
            False gives random weights.
        img_size: input side for random-weight models (default: the model's).
        compile: compile the image encoder with ``torch.compile``.
    """
    try:
        entry = MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(MODELS)}") from None
    if dtype is not None and dtype != torch.float32 and dtype not in _HALF_DTYPES:
        raise ValueError(f"dtype must be float32, bfloat16 or float16, not {dtype}")
    if checkpoint is None and pretrained:
        checkpoint = _pretrained_checkpoint(entry)  # fail before building anything
    model = resolve(entry.builder)(entry.architecture, img_size=img_size)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, model_name=name)
    model.model_name = name
    if dtype in _HALF_DTYPES:
        model.encoder_autocast = dtype
    if compile:
        model._compiled["encoder"] = torch.compile(model.image_encoder)
    if device is not None:
        model = model.to(device)
    return model.eval()

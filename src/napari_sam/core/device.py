"""Choosing the torch device: ``auto`` takes CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import torch

from napari_sam.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def pick_device(name: str | None = "auto"):
    """A ``torch.device`` for ``name`` (``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``).

    ``auto`` (or None) picks the fastest available; asking for a device that
    is not available raises :class:`~napari_sam.errors.InputError`.
    """
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise InputError(f"--device {name}: choose one of {', '.join(DEVICE_CHOICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise InputError(f"--device {name}: MPS is not available on this machine")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise InputError(f"--device {name}: {exc}") from exc


def default_batch_size(device) -> int:
    """Tiles per encoder call: 1 on a CPU (batching gains nothing there), 4 on a GPU."""
    return 1 if str(device).startswith("cpu") else 4

"""Training checkpoints (resumable state) and exported weights files.

Both are written atomically (a temporary file, then a rename), so an
interrupted write never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import threading
from pathlib import Path

import torch
from torch import nn


def save_checkpoint(path: Path, *, model, optimizer, step, config, wall_s, history,
                    model_name) -> None:
    """Write a resumable checkpoint atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save({
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "step": step,
        "config": config.to_dict(),
        "wall_s": wall_s,
        "history": history,
        "model_name": model_name,
    }, tmp)
    os.replace(tmp, path)


def load_checkpoint_state(path: str | os.PathLike, map_location="cpu") -> dict:
    """The dict written by :func:`save_checkpoint` (read with ``weights_only``)."""
    return torch.load(path, map_location=map_location, weights_only=True)


def export_weights(model: nn.Module, path: str | os.PathLike, *, half: bool = True) -> str:
    """Write the model's state dict (official key names) atomically; return its sha256.

    With ``half`` floating tensors are stored as float16 (loading casts them
    back to the model's float32).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: (v.detach().to("cpu", torch.float16) if half and v.is_floating_point()
                 else v.detach().cpu()).contiguous()
             for k, v in model.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def _stop_on_sigterm(flag: dict):
    """Turn SIGTERM into a request to stop after the current step (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        flag["stop"] = True

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)

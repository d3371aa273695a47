"""Progress inside one network call, and Cancel that does not wait for it to end.

Core's generators yield between tiles, so a run on one tile (or the first
embedding of an interactive session, 10+ s on a CPU) would show 0% and ignore
Cancel until the encoder returns. :func:`watch_model` puts forward pre-hooks on
the encoder's submodules and on the mask decoder. In a thread running a
:class:`Watch` (the widgets' worker threads) every hook

- raises :class:`Interrupted` once the watch is cancelled, so a run stops
  within one encoder block;
- reports how far the encoder is (the fraction of its blocks run so far) and
  how many decoder passes were made (its two-way transformer's runs, whether
  the caller entered through the decoder's ``forward`` or, as the automatic
  generator does, ``run_transformer``), through the watch's callback.

Hooks do nothing in other threads (scripts, the CLI, tests calling the model
directly). No Qt, no napari here.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

_local = threading.local()
_HOOKED = "_napari_sam_watched"


class Interrupted(Exception):  # noqa: N818 - the name says what happened
    """Raised inside the model when the running task was cancelled."""


@dataclass(frozen=True)
class Activity:
    """What the network is doing: ``kind`` "encoder" (``fraction`` 0..1 of its
    blocks) or "decoder" (``calls``: decoder calls made in this task)."""

    kind: str
    fraction: float = 0.0
    calls: int = 0


class Watch:
    """Cancel flag and activity callback of the task running in this thread.

    Use as a context manager in the worker thread (around the generator's
    steps); :meth:`cancel` may be called from any thread.
    """

    def __init__(self, on_activity: Callable[[Activity], None] | None = None) -> None:
        self.on_activity = on_activity
        self._cancelled = threading.Event()
        self.decoder_calls = 0

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        self._cancelled.set()

    def __enter__(self) -> Watch:
        self._previous = getattr(_local, "watch", None)
        _local.watch = self
        return self

    def __exit__(self, *exc: Any) -> None:
        _local.watch = self._previous

    def _report(self, activity: Activity) -> None:
        if self.on_activity is not None:
            self.on_activity(activity)


def current() -> Watch | None:
    """The watch of the task running in this thread, or None."""
    return getattr(_local, "watch", None)


def encoder_blocks(encoder: Any) -> list[Any]:
    """The encoder's steps whose start is reported: its submodules one and two levels
    down (a ViT's ``blocks.N``, a neck's layers) and the items of lists at the third
    (a CNN trunk's ``trunk._blocks.N``, run one after another inside the trunk)."""
    modules = dict(encoder.named_modules())
    out = []
    for name, module in modules.items():
        depth = name.count(".") + 1 if name else 0
        parent = modules.get(name.rpartition(".")[0]) if depth == 3 else None
        if 1 <= depth <= 2 or type(parent).__name__ == "ModuleList":
            out.append(module)
    return out


def watch_model(model: Any) -> Any:
    """Install the hooks on ``model`` (a ``sam_model.Sam``) once; returns the model."""
    if getattr(model, _HOOKED, False):
        return model
    encoder = getattr(model, "image_encoder", None)
    decoder = getattr(model, "mask_decoder", None)
    if encoder is None or decoder is None:
        return model
    blocks = encoder_blocks(encoder)
    total = max(1, len(blocks))
    state = {"done": 0}

    def encoder_started(_module: Any, _args: Any) -> None:
        watch = current()
        if watch is None:
            return
        if watch.cancelled:
            raise Interrupted("cancelled")
        state["done"] = 0
        watch._report(Activity("encoder", 0.0))

    def block_started(_module: Any, _args: Any) -> None:
        watch = current()
        if watch is None:
            return
        if watch.cancelled:
            raise Interrupted("cancelled")
        state["done"] += 1
        watch._report(Activity("encoder", min(1.0, state["done"] / total)))

    def decoder_started(_module: Any, _args: Any) -> None:
        watch = current()
        if watch is None:
            return
        if watch.cancelled:
            raise Interrupted("cancelled")
        watch.decoder_calls += 1
        watch._report(Activity("decoder", calls=watch.decoder_calls))

    encoder.register_forward_pre_hook(encoder_started)
    for block in blocks:
        block.register_forward_pre_hook(block_started)
    # the decoder's transformer runs once per decoder pass whichever entry point the
    # caller used (forward, or run_transformer as the automatic generator does)
    getattr(decoder, "transformer", decoder).register_forward_pre_hook(decoder_started)
    setattr(model, _HOOKED, True)
    return model

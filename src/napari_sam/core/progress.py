"""Long work as generators of progress events.

Every long computation in ``core`` is a generator that yields
:class:`Progress` events and *returns* its result. Scripts and tests drain it
with :func:`run`; the CLI with :func:`run_with_bar`; the GUI wraps the same
generator in a napari thread worker.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of a long computation: ``done`` of ``total`` units of ``stage``."""

    stage: str
    done: int
    total: int
    message: str = ""


ProgressGen = Generator[Progress, None, T]


def run(gen: Generator[Progress, Any, T], callback: Callable[[Progress], Any] | None = None) -> T:
    """Drain ``gen`` synchronously, calling ``callback`` on each event; return its result."""
    while True:
        try:
            event = next(gen)
        except StopIteration as stop:
            return stop.value
        if callback is not None:
            callback(event)


def run_with_bar(gen: Generator[Progress, Any, T], *, disable: bool | None = None) -> T:
    """Drain ``gen`` showing one tqdm bar per stage on stderr."""
    bars: dict[str, Any] = {}

    def show(event: Progress) -> None:
        bar = bars.get(event.stage)
        if bar is None:
            bar = tqdm(total=event.total, desc=event.stage, file=sys.stderr, disable=disable,
                       leave=True, dynamic_ncols=True)
            bars[event.stage] = bar
        if bar.total != event.total:
            bar.total = event.total
        bar.n = event.done
        if event.message:
            bar.set_postfix_str(event.message, refresh=False)
        bar.refresh()

    try:
        return run(gen, show)
    finally:
        for bar in bars.values():
            bar.close()

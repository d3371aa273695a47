"""Run core's progress generators off the GUI thread.

Core's long work is a generator that yields ``Progress`` events and returns a
result. :func:`start_task` runs one in a napari thread worker: each event
updates a napari progress bar (one per stage, shown in the activity dock), the
return value goes to ``on_done`` on the GUI thread, an exception becomes a
notification, and ``task.cancel()`` stops the generator at its next yield and
closes it (its ``finally`` blocks run; outputs are written atomically, so
nothing half-written stays). The generator runs under a
:class:`~napari_sam._widgets.activity.Watch`: a network call in progress
reports how far it is (``on_activity``) and stops within one encoder block on
cancel, instead of finishing first.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from typing import Any

from napari_sam._widgets.activity import Activity, Interrupted, Watch
from napari_sam.core.progress import Progress

ACTIVITY_INTERVAL = 0.1  # seconds between two activity reports sent to the GUI


class TaskFailed(Exception):
    """Raised in the worker in place of a RuntimeError, which napari's worker would swallow."""


class Task:
    """A generator running in a napari ``GeneratorWorker`` with progress bars.

    ``state`` is "running", then one of "done", "failed", "cancelled";
    ``running`` stays True until the worker thread has finished for good.
    """

    def __init__(self, factory: Callable[[], Generator[Progress, Any, Any]], *,
                 on_done: Callable[[Any], None], on_event: Callable[[Progress], None] | None = None,
                 on_finish: Callable[[Task], None] | None = None, desc: str = "napari-sam",
                 on_activity: Callable[[Activity], None] | None = None) -> None:
        from napari.qt.threading import create_worker

        self.state = "running"
        self._finished_flag = False
        self.error: BaseException | None = None
        self.result: Any = None
        self._gen: Generator | None = None
        self._bars: dict[str, Any] = {}
        self._desc = desc
        self._on_done = on_done
        self._on_event = on_event
        self._on_finish = on_finish
        self._on_activity = on_activity
        self._interrupted = False
        self._last_report = 0.0
        self.watch = Watch(on_activity=self._report_activity)
        # an "errored" handler of our own keeps superqt from re-raising in the GUI thread
        self.worker = create_worker(self._drive, factory, _start_thread=False, _connect={
            "yielded": self._event, "returned": self._returned, "errored": self._errored,
            "aborted": self._aborted, "finished": self._finished})
        # Run it on a Python thread, not Qt's pool: pyproj < 3.8 keeps a per-thread PROJ
        # context that dangles when a pooled Qt thread is reused, and crashes the process
        # (pyproj issues #1509, #1622). Signals still reach the GUI thread queued.
        self._thread = threading.Thread(target=self.worker.run, name=f"{desc} worker",
                                        daemon=True)
        self._thread.start()

    def _drive(self, factory: Callable[[], Generator[Progress, Any, Any]]):
        try:
            with self.watch:
                self._gen = factory()
                result = yield from self._gen
        except Interrupted:  # cancelled inside a network call
            self._interrupted = True
            return None
        except RuntimeError as exc:  # superqt turns RuntimeError into a mere warning
            raise TaskFailed(str(exc)) from exc
        return result

    def _report_activity(self, activity: Activity) -> None:
        """In the worker thread: pass ``activity`` to the GUI (at most every 0.1 s)."""
        now = time.monotonic()
        if activity.fraction < 1.0 and now - self._last_report < ACTIVITY_INTERVAL:
            return
        self._last_report = now
        try:
            self.worker.yielded.emit(activity)
        except RuntimeError:  # the worker's Qt signals are gone (viewer closed): nobody listens
            pass

    @property
    def running(self) -> bool:
        return not self._finished_flag

    def cancel(self) -> None:
        """Stop the run: inside a network call (next encoder block) or at the next yield."""
        if self.running:
            self.watch.cancel()
            self.worker.quit()

    def _event(self, event: Any) -> None:
        if isinstance(event, Activity) and not self._finished_flag:
            if self._on_activity is not None:
                self._on_activity(event)
            return
        if not isinstance(event, Progress) or self._finished_flag:
            return
        # the widget first: napari's bars may process pending Qt events (the end of the
        # run among them) while they update, and nothing may follow that end
        if self._on_event is not None:
            self._on_event(event)
        from napari.utils import progress

        bar = self._bars.get(event.stage)
        if bar is None:
            bar = progress(total=max(event.total, 0), desc=f"{self._desc}: {event.stage}")
            self._bars[event.stage] = bar
        if bar.total != event.total:
            bar.total = event.total
        step = event.done - bar.n
        if step:
            bar.update(step)
        if self._finished_flag:  # the run ended while the bar was being updated
            bar.close()

    def _returned(self, result: Any) -> None:
        if self._interrupted:
            self.state = "cancelled"
            return
        self.state = "done"
        self.result = result
        self._on_done(result)

    def _errored(self, exc: BaseException) -> None:
        from napari.utils.notifications import show_error

        self.state = "failed"
        self.error = exc
        show_error(f"{self._desc} failed: {exc}")

    def _aborted(self) -> None:
        self.state = "cancelled"
        gen, self._gen = self._gen, None
        if gen is not None:
            gen.close()

    def _finished(self) -> None:
        self._finished_flag = True
        if self.state == "running":  # aborted before the first event, or swallowed
            self.state = "cancelled"
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
        if self._on_finish is not None:
            self._on_finish(self)


def describe(event: Progress) -> str:
    """A one-line status text for a progress event: "embed 3/12 tile (2, 1)"."""
    text = f"{event.stage} {event.done}/{event.total}" if event.total else event.stage
    return f"{text} {event.message}".strip()

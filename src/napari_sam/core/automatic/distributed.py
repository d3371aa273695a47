"""Scale-out of tile decoding on a dask.distributed cluster.

Only the per-tile work (restore an embedding, decode the tile's points,
filter, crop) runs on the workers; merging, painting and writing stay in the
client process and consume the results in row-major tile order, so the
output is identical to a single-process run. At most ``window`` tiles are in
flight, which bounds the client's memory whatever the raster's size.
"""

from __future__ import annotations

import contextlib
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from napari_sam.errors import InputError


def _apply(fn: Callable, work: Any) -> Any:
    return fn(work)


class DaskExecutor:
    """Runs ``fn(work)`` for each work item on a dask cluster, results in submission order.

    ``client``: a ``distributed.Client``. ``window``: tiles in flight (default
    two per worker thread, at least 4).
    """

    def __init__(self, *, client, window: int | None = None) -> None:
        self.client = client
        if window is None:
            threads = sum(client.nthreads().values()) or 1
            window = max(4, 2 * threads)
        self.window = int(window)

    def map_ordered(self, fn: Callable, works: Iterable) -> Iterator[tuple[Any, Any]]:
        """Yield ``(work.index, fn(work))`` in the order of ``works``."""
        [fn_future] = self.client.scatter([fn], broadcast=True, hash=False)
        pending: deque = deque()
        try:
            for work in works:
                pending.append((work.index, self.client.submit(_apply, fn_future, work, pure=False)))
                if len(pending) >= self.window:
                    index, future = pending.popleft()
                    yield index, future.result()
            while pending:
                index, future = pending.popleft()
                yield index, future.result()
        finally:
            for _, future in pending:
                future.cancel()
            fn_future.release()


@contextlib.contextmanager
def dask_executor(*, scheduler: str | None = None, workers: int | None = None,
                  threads_per_worker: int = 1, processes: bool = True) -> Iterator[DaskExecutor]:
    """A :class:`DaskExecutor` on an existing scheduler ``ADDRESS`` or on ``workers`` local workers.

    With ``scheduler`` the cluster is used as it is (and left running); with
    ``workers`` a ``LocalCluster`` is started and closed afterwards.
    """
    # lazy on purpose: distributed takes about a second to import and only this needs it
    from distributed import Client, LocalCluster

    if scheduler is not None and workers is not None:
        raise InputError("give --scheduler or --workers, not both")
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="10s")
        except OSError as exc:
            raise InputError(f"{scheduler}: cannot reach the dask scheduler ({exc})") from exc
        try:
            yield DaskExecutor(client=client)
        finally:
            client.close()
        return
    if workers is None or workers < 1:
        raise InputError(f"--workers must be at least 1, got {workers}")
    extra = {}
    if processes:  # share the cores between worker processes instead of oversubscribing them
        share = max(1, (os.cpu_count() or 1) // int(workers))
        extra["env"] = {"OMP_NUM_THREADS": str(share), "MKL_NUM_THREADS": str(share)}
    cluster = LocalCluster(n_workers=int(workers), threads_per_worker=threads_per_worker,
                           processes=processes, dashboard_address=None, **extra)
    client = Client(cluster)
    try:
        yield DaskExecutor(client=client)
    finally:
        client.close()
        cluster.close()


def executor_for(scheduler: str | None = None, workers: int | None = None):
    """The executor context of a run: :func:`dask_executor` on the ``scheduler`` or the
    ``workers`` given (both: it refuses), or, with neither, a context that gives None
    (decode in this process)."""
    given = {k: v for k, v in (("scheduler", scheduler), ("workers", workers)) if v is not None}
    return dask_executor(**given) if given else contextlib.nullcontext(None)

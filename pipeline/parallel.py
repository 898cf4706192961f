"""An ordered process pool for per-clip work (features, leak check): results in input order, so a
stage's output never depends on how many workers computed it."""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
MIN_ITEMS_PER_WORKER = 4  # below this a worker's start-up (seconds: imports, model load) costs more than it saves


def _one_thread(initializer: Callable | None, args: tuple) -> None:
    # Workers are sized to the cores: BLAS / torch threads on top would oversubscribe them, and
    # change the summation order of results.
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if initializer is not None:
        initializer(*args)
    if "torch" in sys.modules:  # the initializer loaded a model
        sys.modules["torch"].set_num_threads(1)


def ordered_map(function: Callable[[T], R], items: list[T], workers: int, *,
                initializer: Callable | None = None, initargs: tuple = ()) -> Iterator[R]:
    """`map(function, items)`, in order, over up to `workers` spawned processes (0: one per core), each
    with one compute thread; runs in this process (one thread too) when the work is too small to share."""
    workers = min(workers or os.cpu_count() or 1, len(items) // MIN_ITEMS_PER_WORKER)
    if workers <= 1:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):  # as in a worker: the same summation order whatever the pool size
            if initializer is not None:
                initializer(*initargs)
            torch = sys.modules.get("torch")
            threads = torch.get_num_threads() if torch else None
            try:
                if torch:
                    torch.set_num_threads(1)
                yield from map(function, items)
            finally:
                if torch:
                    torch.set_num_threads(threads)
        return
    chunksize = max(1, min(16, len(items) // (8 * workers)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_thread, initargs=(initializer, initargs)) as pool:
        yield from pool.map(function, items, chunksize=chunksize)


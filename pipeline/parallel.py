"""An ordered process pool for per-clip work (features, leak check): results in input order, and the
same numbers whatever the number of workers.

Every call runs with one BLAS / OpenMP thread (and one torch thread), in a worker or in this process:
workers are sized to the cores, so more threads would oversubscribe them, and a different thread count
changes the order of floating-point sums, hence the last bits of a feature or an embedding.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
MIN_ITEMS_PER_WORKER = 4  # below this a worker's start-up (seconds: imports, model load) costs more than it saves


@contextlib.contextmanager
def single_thread() -> Iterator[None]:
    """Torch (if loaded) and every loaded BLAS / OpenMP library on one thread, restored afterwards."""
    import scipy.linalg  # noqa: F401 - loads scipy's own OpenBLAS now, so the limit below reaches it
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    if torch:
        torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        if torch:
            torch.set_num_threads(threads)


def _one_thread_call(function: Callable[[T], R], item: T) -> R:
    with single_thread():
        return function(item)


def _start_worker(initializer: Callable | None, initargs: tuple) -> None:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"  # read when each library loads, which happens after this in a fresh worker
    if initializer is not None:
        initializer(*initargs)


def ordered_map(function: Callable[[T], R], items: list[T], workers: int, *,
                initializer: Callable | None = None, initargs: tuple = ()) -> Iterator[R]:
    """`map(function, items)`, in order, over up to `workers` spawned processes (0: one per core); in
    this process when the work is too small to share. `initializer(*initargs)` runs once per process."""
    workers = min(workers or os.cpu_count() or 1, len(items) // MIN_ITEMS_PER_WORKER)
    call = functools.partial(_one_thread_call, function)
    if workers <= 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(call, items)
        return
    chunksize = max(1, min(16, len(items) // (8 * workers)))
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(initializer, initargs)) as pool:
        yield from pool.map(call, items, chunksize=chunksize)

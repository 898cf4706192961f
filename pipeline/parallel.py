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
# Cores a process's pools may use by default, set by a parent that runs several such processes at once (the
# runner's shard workers): two shards on two cores each starting a pool of two would start four more
# processes, each paying seconds of imports and model loading, on cores already busy.
CPU_SHARE_ENV = "SYNTHAUDIO_CPU_SHARE"


def available_cpus() -> int:
    """Cores this process's pools use by default: its share when a parent set one, else every core."""
    share = os.environ.get(CPU_SHARE_ENV)
    return max(1, int(share)) if share else (os.cpu_count() or 1)


def share_cpus(cores: int) -> None:
    """Process-pool initialiser: this worker's pools default to `cores` processes (see CPU_SHARE_ENV)."""
    os.environ[CPU_SHARE_ENV] = str(cores)


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


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Torch on `count` threads for the duration of the block, restored afterwards (scoped, never left
    changed behind the caller's back)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# A worker process's state, made once by the pool's initialiser (see ordered_map's `state`): the only
# per-process slot; stages keep none of their own.
_worker_state: dict = {}


def _start_worker(state_factory: Callable | None, state_args: tuple) -> None:
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"  # read when each library loads, which happens after this in a fresh worker
    if state_factory is not None:
        _worker_state["state"] = state_factory(*state_args)


def _one_thread_call_with_state(function: Callable, item):
    with single_thread():
        return function(_worker_state["state"], item)


def ordered_map(function: Callable[[T], R], items: list[T], workers: int, *,
                state: tuple[Callable, tuple] | None = None, local_state=None) -> Iterator[R]:
    """`map(function, items)`, in order, over up to `workers` spawned processes (0: one per core, or this
    process's share of the cores, `available_cpus`); in this process when the work is too small to share,
    or when this process is daemonic (a Celery worker's task process), which may not start children.

    With `state=(factory, args)`, `function(state, item)` is called instead, where each worker process
    makes its state once with `factory(*args)` (e.g. loads a model); in this process `local_state` is used
    if given (a model already loaded), else the factory."""
    workers = min(workers or available_cpus(), len(items) // MIN_ITEMS_PER_WORKER)
    if multiprocessing.current_process().daemon:
        # A daemonic process may not have children: a Celery prefork worker runs tasks in one. Work here.
        workers = 1
    if state is None:
        call = functools.partial(_one_thread_call, function)
    else:
        call = functools.partial(_one_thread_call_with_state, function)
    if workers <= 1:
        if state is None:
            yield from map(call, items)
            return
        own = local_state if local_state is not None else state[0](*state[1])
        for item in items:
            with single_thread():
                yield function(own, item)
        return
    chunksize = max(1, min(16, len(items) // (8 * workers)))
    factory, args = state if state is not None else (None, ())
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_start_worker, initargs=(factory, args)) as pool:
        yield from pool.map(call, items, chunksize=chunksize)

"""pipeline.parallel.ordered_map: order, work inside processes that may not start children, and a process's
share of the cores."""

import multiprocessing
import os

from pipeline.parallel import CPU_SHARE_ENV, ordered_map


def _square(x: int) -> int:
    return x * x


def _pid(_: int) -> int:
    return os.getpid()


def _map_in_a_daemon(queue) -> None:
    try:
        queue.put(list(ordered_map(_square, list(range(40)), workers=2)))
    except Exception as exc:  # noqa: BLE001 - the test reports what went wrong
        queue.put(repr(exc))


def test_results_come_back_in_order_from_a_pool():
    assert list(ordered_map(_square, list(range(40)), workers=2)) == [x * x for x in range(40)]


def test_a_daemonic_process_such_as_a_celery_task_maps_in_itself():
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_map_in_a_daemon, args=(queue,), daemon=True)
    process.start()
    result = queue.get(timeout=120)
    process.join(timeout=30)
    assert result == [x * x for x in range(40)]  # not "daemonic processes are not allowed to have children"


def test_a_process_given_one_core_maps_in_itself_by_default_and_more_when_asked(monkeypatch):
    """The runner gives each of its shard processes its share of the cores (share_cpus): with one core, a
    default pool (workers 0) is no pool — no worker processes start on cores the other shards use."""
    monkeypatch.delenv(CPU_SHARE_ENV, raising=False)
    if os.cpu_count() > 1:  # every core: a pool of worker processes
        assert os.getpid() not in set(ordered_map(_pid, list(range(40)), workers=0))
    monkeypatch.setenv(CPU_SHARE_ENV, "1")  # what share_cpus(1), the runner's pool initialiser, sets in a shard process
    assert set(ordered_map(_pid, list(range(40)), workers=0)) == {os.getpid()}
    assert os.getpid() not in set(ordered_map(_pid, list(range(40)), workers=2))  # an explicit count is kept

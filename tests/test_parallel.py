"""pipeline.parallel.ordered_map: order, and work inside processes that may not start children."""

import multiprocessing

from pipeline.parallel import ordered_map


def _square(x: int) -> int:
    return x * x


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

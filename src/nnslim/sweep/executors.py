"""Where independent tasks run (sweep points, sequences to adapt): a local process pool (the default) or a Ray cluster.

Both keep at most as many points in flight as there are free slots, so the progress display's
"running" count is true, and both yield each point's outcome as soon as it is finished. The
shared inputs travel once: to each pool worker when it starts, or into Ray's object store.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from nnslim.errors import NnslimError

Item = TypeVar("Item")
Task = Callable[[Any, Any], dict[str, Any]]
"""A task: (the shared inputs, one item) -> its outcome; a module-level function, so that it pickles."""
_worker: tuple[Task, Any] | None = None
PR_SET_PDEATHSIG = 1
"""Linux's prctl option: the signal a process gets when its parent dies."""


def _die_with_parent() -> None:
    """Have Linux stop this worker when the process that started it dies, so that a killed run leaves no orphans."""
    if sys.platform == "linux":
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _start_worker(task: Task, inputs: Any) -> None:
    global _worker
    _die_with_parent()
    _worker = (task, inputs)


def _run_in_worker(item: Any) -> dict[str, Any]:
    if _worker is None:
        raise RuntimeError("the worker was started without its inputs")
    task, inputs = _worker
    return task(inputs, item)


def local_slots(threads: int) -> int:
    """Tasks that fit side by side on this machine at ``threads`` threads each."""
    return max(1, (os.cpu_count() or 1) // threads)


def _windowed(
    items: list[Item],
    slots: int,
    submit: Callable[[Item], Any],
    finished: Callable[[list[Any]], list[tuple[Any, dict[str, Any]]]],
    on_start: Callable[[Item], None],
) -> Iterator[tuple[Item, dict[str, Any]]]:
    """Keep up to ``slots`` items in flight; yield each outcome as ``finished`` reports it."""
    queue = list(items)
    running: dict[Any, Item] = {}
    while queue or running:
        while queue and len(running) < slots:
            item = queue.pop(0)
            running[submit(item)] = item
            on_start(item)
        for handle, outcome in finished(list(running)):
            yield running.pop(handle), outcome


def run_local(
    task: Task, items: list[Item], inputs: Any, workers: int, on_start: Callable[[Item], None]
) -> Iterator[tuple[Item, dict[str, Any]]]:
    """Run ``task(inputs, item)`` for every item in a pool of ``workers`` fresh processes on this machine."""
    context = multiprocessing.get_context("spawn")  # no forked copies of PyTorch's thread pools
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(task, inputs)) as pool:

        def finished(futures: list[Future[dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            return [(future, future.result()) for future in done]

        yield from _windowed(items, workers, lambda item: pool.submit(_run_in_worker, item), finished, on_start)


def run_ray(
    task: Task, items: list[Item], inputs: Any, threads: int, address: str, on_start: Callable[[Item], None]
) -> Iterator[tuple[Item, dict[str, Any]]]:
    """Run ``task(inputs, item)`` for every item as Ray tasks of ``threads`` CPUs each.

    Args:
        task: What runs for each item.
        items: The items.
        inputs: Put into the object store once; every task reads it from there.
        threads: CPUs per task.
        address: ``local`` starts a Ray instance on this machine; ``auto`` or ``HOST:PORT``
            joins a running cluster.
        on_start: Told of each item as it is submitted.

    Raises:
        NnslimError: Ray is not installed, or the cluster cannot be reached.
    """
    try:
        import ray
    except ImportError:
        raise NnslimError("the Ray executor needs Ray: pip install 'nnslim[ray]'") from None
    try:
        ray.init(address=None if address == "local" else address, include_dashboard=False, logging_level=logging.ERROR)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise NnslimError(f"cannot reach the Ray cluster at {address!r}: {exc}") from None
    try:
        shared = ray.put(inputs)
        remote = ray.remote(num_cpus=threads, max_retries=0)(task)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))

        def finished(refs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
            done, _ = ray.wait(refs, num_returns=1)
            return [(ref, ray.get(ref)) for ref in done]

        yield from _windowed(items, slots, lambda item: remote.remote(shared, item), finished, on_start)
    finally:
        ray.shutdown()

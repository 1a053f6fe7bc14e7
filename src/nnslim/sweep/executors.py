"""Where sweep points run: a local process pool (the default) or a Ray cluster.

Both keep at most as many points in flight as there are free slots, so the progress display's
"running" count is true, and both yield each point's outcome as soon as it is finished. The
shared inputs travel once: to each pool worker when it starts, or into Ray's object store.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any

from nnslim.errors import NnslimError
from nnslim.sweep.space import SweepPoint
from nnslim.sweep.worker import SharedInputs, attempt

Outcome = tuple[SweepPoint, dict[str, Any]]
_worker_inputs: SharedInputs | None = None


def _start_worker(inputs: SharedInputs) -> None:
    global _worker_inputs
    _worker_inputs = inputs


def _run_in_worker(point: SweepPoint) -> dict[str, Any]:
    if _worker_inputs is None:
        raise RuntimeError("the worker was started without its inputs")
    return attempt(_worker_inputs, point)


def local_slots(threads: int) -> int:
    """Points that fit side by side on this machine at ``threads`` threads each."""
    return max(1, (os.cpu_count() or 1) // threads)


def _windowed(
    points: list[SweepPoint],
    slots: int,
    submit: Callable[[SweepPoint], Any],
    finished: Callable[[list[Any]], list[tuple[Any, dict[str, Any]]]],
    on_start: Callable[[SweepPoint], None],
) -> Iterator[Outcome]:
    """Keep up to ``slots`` points in flight; yield each outcome as ``finished`` reports it."""
    queue = list(points)
    running: dict[Any, SweepPoint] = {}
    while queue or running:
        while queue and len(running) < slots:
            point = queue.pop(0)
            running[submit(point)] = point
            on_start(point)
        for handle, outcome in finished(list(running)):
            yield running.pop(handle), outcome


def run_local(
    points: list[SweepPoint], inputs: SharedInputs, workers: int, on_start: Callable[[SweepPoint], None]
) -> Iterator[Outcome]:
    """Run points in a pool of ``workers`` fresh processes on this machine."""
    context = multiprocessing.get_context("spawn")  # no forked copies of PyTorch's thread pools
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(inputs,)) as pool:

        def finished(futures: list[Future[dict[str, Any]]]) -> list[tuple[Any, dict[str, Any]]]:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
            return [(future, future.result()) for future in done]

        yield from _windowed(points, workers, lambda p: pool.submit(_run_in_worker, p), finished, on_start)


def run_ray(
    points: list[SweepPoint], inputs: SharedInputs, address: str, on_start: Callable[[SweepPoint], None]
) -> Iterator[Outcome]:
    """Run points as Ray tasks of ``inputs.threads`` CPUs each.

    Args:
        points: The points to run.
        inputs: Put into the object store once; every task reads it from there.
        address: ``local`` starts a Ray instance on this machine; ``auto`` or ``HOST:PORT``
            joins a running cluster.
        on_start: Told of each point as it is submitted.

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
        task = ray.remote(num_cpus=inputs.threads, max_retries=0)(attempt)
        slots = max(1, int(ray.cluster_resources().get("CPU", 1) // inputs.threads))

        def finished(refs: list[Any]) -> list[tuple[Any, dict[str, Any]]]:
            done, _ = ray.wait(refs, num_returns=1)
            return [(ref, ray.get(ref)) for ref in done]

        yield from _windowed(points, slots, lambda p: task.remote(shared, p), finished, on_start)
    finally:
        ray.shutdown()

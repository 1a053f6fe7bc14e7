import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nnslim.sweep.executors import run_local

PARENT = """
import sys, time
from pathlib import Path
from nnslim.sweep.executors import run_local
from tests.sweep.test_executors import sleeper

for _ in run_local(sleeper, [0], Path(sys.argv[1]), 1, lambda _: None):
    pass
"""


def sleeper(folder: Path, item: int) -> dict[str, int]:
    """A task that writes its process id, then sleeps far longer than any test waits."""
    (folder / "worker.pid").write_text(str(os.getpid()))
    time.sleep(120)
    return {"item": item}


def square(offset: int, item: int) -> dict[str, int]:
    return {"value": item * item + offset}


def test_the_local_pool_runs_every_item_with_the_shared_inputs() -> None:
    started: list[int] = []
    outcomes = dict(run_local(square, [1, 2, 3], 10, 2, started.append))
    assert outcomes == {1: {"value": 11}, 2: {"value": 14}, 3: {"value": 19}} and sorted(started) == [1, 2, 3]


@pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's")
def test_a_killed_run_leaves_no_worker_behind(tmp_path: Path) -> None:
    root = Path(__file__).parents[2]
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path)], cwd=root)
    marker = tmp_path / "worker.pid"
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    worker = int(marker.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(worker, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(worker, signal.SIGKILL)
    pytest.fail("the worker outlived its killed parent")

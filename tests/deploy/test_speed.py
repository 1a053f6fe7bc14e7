import pytest
import torch
from torch import nn

from nnslim.compress.lowrank import decompose
from nnslim.deploy.speed import frame_timing, layer_speeds, speed_in
from nnslim.errors import NnslimError
from nnslim.evaluate.runtime import RUNTIMES
from tests.deploy.common import tiny_filter, tiny_pair


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_filters_are_timed_in_turns_in_each_runtime(runtime: str) -> None:
    threads = torch.get_num_threads()
    timing = frame_timing({"a": tiny_filter(), "b": tiny_filter(seed=2)}, runtime, [tiny_pair("t")], threads=1)
    assert torch.get_num_threads() == threads
    assert (timing["runtime"], timing["threads"], timing["repetitions"]) == (runtime, 1, 5)
    assert all(len(timing[name]["runs_ms"]) == 5 and timing[name]["median_ms"] > 0 for name in "ab")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_kernel_and_its_low_rank_pair_are_timed_in_each_runtime(runtime: str) -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    speeds = layer_speeds([conv, decompose(conv, 2)], (1, 8, 40, 40), runtime, threads=1)
    assert len(speeds) == 2 and all(ms > 0 for ms in speeds)


def test_an_unknown_runtime_is_refused() -> None:
    with pytest.raises(NnslimError, match="runtime"):
        speed_in("tensorrt", [tiny_pair("t")])

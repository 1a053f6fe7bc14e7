from pathlib import Path

import onnx
import pytest

from nnslim.deploy.graph import INT8_OPS, describe, image_nodes, prepare, unsupported_nodes
from nnslim.models.filters import ArchSpec, build
from tests.compress.user_filter import UserFilter
from tests.deploy.common import QP_ARCH, tiny_filter


def test_the_image_path_of_a_qp_filter_leaves_out_shape_and_qp_arithmetic(tmp_path: Path) -> None:
    graph = onnx.load(prepare(tiny_filter(QP_ARCH), tmp_path))
    ops = [n.op_type for n in image_nodes(graph)]
    assert ops == ["Concat", "Conv", "Relu", "Conv", "Relu", "Conv", "Add"]
    assert {"Shape", "Div", "Expand"} <= {n.op_type for n in graph.graph.node}  # there, but not on the image path
    assert unsupported_nodes(graph) == []


@pytest.mark.parametrize("arch", [ArchSpec("vrcnn"), ArchSpec("postfilter", {"channels": 8, "layers": 3})])
def test_built_in_post_filters_run_in_int8(arch: ArchSpec, tmp_path: Path) -> None:
    assert unsupported_nodes(onnx.load(prepare(build(arch).eval(), tmp_path))) == []


def test_pixel_shuffle_and_prelu_have_no_int8_operator(tmp_path: Path) -> None:
    graph = onnx.load(prepare(UserFilter(channels=8).eval(), tmp_path))
    unsupported = unsupported_nodes(graph)
    assert sorted({n.op_type for n in unsupported}) == ["DepthToSpace", "PRelu"]
    assert all(n.op_type not in INT8_OPS for n in unsupported)
    assert describe(unsupported) == ", ".join(f"{n.op_type} ({n.name})" for n in unsupported)


def test_many_nodes_of_a_type_are_described_in_one_short_line() -> None:
    nodes = [onnx.helper.make_node("PRelu", ["x", "s"], ["y"], name=f"/p{i}") for i in range(5)]
    nodes.append(onnx.helper.make_node("DepthToSpace", ["y"], ["z"], name="/up", blocksize=2))
    assert describe(nodes) == "PRelu (/p0, /p1 and 3 more), DepthToSpace (/up)"

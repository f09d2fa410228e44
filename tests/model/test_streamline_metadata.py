"""model.streamline.metadata_or_empty: the one tolerant reader of a graph's 'bitlens' metadata
(hw.ir, model.golden and the host command use it)."""
import onnx
from onnx import TensorProto, helper
from qonnx.core.modelwrapper import ModelWrapper

from model.streamline import metadata_or_empty


def _graph(meta=None):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])
    m = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]))
    if meta is not None:
        m.metadata_props.add(key="bitlens", value=meta)
    return m


def test_metadata_of_a_bitlens_graph_as_proto_and_wrapper():
    m = _graph('{"model": "tfc-w1a1", "dataset": "fashion-mnist"}')
    assert metadata_or_empty(m) == {"model": "tfc-w1a1", "dataset": "fashion-mnist"}
    assert metadata_or_empty(ModelWrapper(m))["dataset"] == "fashion-mnist"


def test_foreign_or_unreadable_metadata_is_empty():
    assert metadata_or_empty(_graph()) == {}
    assert metadata_or_empty(_graph("{not json")) == {}
    assert metadata_or_empty(_graph("[1, 2]")) == {}
    onnx.checker.check_model(_graph("{}"))

"""Golden data for a streamlined graph: test images shaped for its input, and the accumulators
the accelerator must stream out for them (the bit-exact reference; qonnx for graphs without
BitLens metadata). Simulation and FINN's verification both compare against these."""
import numpy as np
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from tqdm import tqdm

from model.data import load_split, pad_images
from model.streamline import metadata_or_empty


def expected_outputs(graph_path, images):
    """Final accumulators of the streamlined graph: the bit-exact reference for BitLens graphs, else qonnx."""
    # The reference is a torch module and torch takes seconds to import: deferred to here, so that
    # importers that never compute golden data (hw.build for a Lattice board) start without it.
    import torch
    from model.reference import Reference
    try:
        ref = Reference(str(graph_path))
    except ValueError:      # a graph without BitLens metadata (synthetic test graphs): use qonnx
        ref = None
    if ref is not None:
        torch.set_num_threads(1)
        with torch.no_grad():
            acc = ref.predict_int(images)
        return np.asarray(acc, dtype=np.int64).reshape(len(images), -1), "model.reference"
    model = ModelWrapper(str(graph_path))
    iname = model.graph.input[0].name
    outs = []
    for img in tqdm(images, desc="qonnx", unit="img", mininterval=1.0):
        ctx = execute_onnx(model, {iname: img[None].astype(np.float32)}, return_full_exec_context=True)
        if "acc_out" not in ctx:
            raise ValueError(f"{graph_path}: no tensor 'acc_out' (README contract)")
        outs.append(np.asarray(ctx["acc_out"]).reshape(-1))
    return np.rint(np.array(outs)).astype(np.int64), "qonnx.execute_onnx"


def sample_images(graph_path, count, seed=0):
    """Test-set images shaped for the graph input; random uint8 images when no data set fits."""
    model = ModelWrapper(str(graph_path))
    shape = tuple(model.get_tensor_shape(model.graph.input[0].name))[1:]
    dataset = metadata_or_empty(model).get("dataset") or "mnist"
    source = None
    try:
        x, _ = load_split(dataset, "test")
        if x.shape[3] == shape[2] and x.shape[1] <= shape[0]:
            x = pad_images(x, shape[0])
        if tuple(x.shape[1:]) == shape:
            source = f"{dataset} test"
    except (ValueError, RuntimeError, OSError):
        source = None
    if source is None:
        n = 10000 if count is None else count
        x = np.random.default_rng(seed).integers(0, 256, (n,) + shape, dtype=np.uint8)
        source = "random uint8"
    if count is not None:
        x = x[:count]
    return np.ascontiguousarray(x.astype(np.uint8)), source

"""Occlusion on the hardware: stream images and their occluded copies through the simulated
accelerator and return what it computed.

    python -m bitlens.hw_occlusion --model tfc-w1a1 --board ulx3s --images 10 [--patch 4 --stride 2]

Occlusion only needs forward passes, so the map can be built from the accelerator's own
outputs. `run` returns the hardware's logits (its integer accumulators through the graph's final
scale and bias) for the base and the occluded images, plus whether every accumulator equals the
bit-exact reference; explain.report rebuilds the map and compares it with the reference's."""
from pathlib import Path

import numpy as np

from hw.compile import compile_graph
from model import paths
from model.reference import Reference
from sim import cocotb_env as E
from sim.run import RunError
from sim.tb_cpp import run_cpp
from sim.tb_top import run_top


def run(model, board, images, base_images, graph=None, out_dir=None, folding=None, simulator=None,
        chunk=500, progress=True):
    """images: occluded uint8 NHWC batch (image-major, as explain.methods.occlusion_inputs gives),
    base_images: the unoccluded images. Returns dict with base_logits, occluded_logits (float64
    from the hardware's accumulators), accumulators_equal, mismatched_images, simulator, seconds."""
    base = Path(out_dir) if out_dir else paths.board_dir(model, board)
    graph = Path(graph) if graph else paths.streamlined(model)
    if not graph.is_file():
        raise RunError(f"{graph}: no streamlined graph (run `make export MODEL={model}` first)")
    base_images = np.asarray(base_images, dtype=np.uint8)
    images = np.asarray(images, dtype=np.uint8)
    if len(base_images) == 0 or len(images) % len(base_images):
        raise RunError(f"{len(images)} occluded images are not a whole number of windows for "
                       f"{len(base_images)} base images")
    sim = E.pick_simulator(simulator)
    compile_graph(graph, base / "hw", board, folding=folding)
    stream = np.concatenate([base_images, images])
    ref = Reference(str(graph))
    expected = ref.predict_int(stream)
    runner = run_cpp if sim == "verilator" else run_top     # the fast harness where it exists
    res = runner(base / "hw" / "rtl", stream, expected, base / "occlusion_sim", simulator=sim, chunk=chunk,
                 progress=progress, keep_outputs=True)
    if res.get("stall") or "outputs" not in res or len(res["outputs"]) != len(stream):
        raise RunError(res.get("stall") or res.get("error") or "the simulation returned no outputs")
    acc = res["outputs"]
    scale = ref.out_scale.double().numpy()
    bias = ref.out_bias.double().numpy()
    logits = acc.astype(np.float64) * scale + bias
    nb = len(base_images)
    return dict(base_logits=logits[:nb], occluded_logits=logits[nb:], accumulators=acc,
                accumulators_equal=bool(np.array_equal(acc, expected)),
                mismatched_images=int(np.any(acc != expected, axis=1).sum()),
                images=int(len(stream)), simulator=res["simulator"], seconds=res["seconds"],
                cycles_per_image=res.get("cycles_per_image"), analytic_ii=res.get("analytic_ii"))

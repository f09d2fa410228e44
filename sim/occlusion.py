"""Occlusion on the hardware: stream images and their occluded copies through the simulated
accelerator and return what it computed.

    python -m sim.occlusion --model tfc-w1a1 --board ulx3s --images 10 [--patch 4 --stride 2]

Occlusion only needs forward passes, so the map can be built from the accelerator's own
outputs. `run` returns the hardware's logits (its integer accumulators through the graph's final
scale and bias) for the base and the occluded images, plus whether every accumulator equals the
bit-exact reference; explain.report rebuilds the map and compares it with the reference's."""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from model import paths
from model.golden import sample_images

ROOT = Path(__file__).resolve().parents[1]


def run(model, board, images, base_images, graph=None, out_dir=None, folding=None, simulator=None,
        chunk=500, progress=True):
    """images: occluded uint8 NHWC batch (image-major, as explain.methods.occlusion_inputs gives),
    base_images: the unoccluded images. Returns dict with base_logits, occluded_logits (float64
    from the hardware's accumulators), accumulators_equal, mismatched_images, simulator, seconds."""
    from hw.compile import compile_graph
    from model.reference import Reference
    from sim import cocotb_env as E
    from sim.run import RunError
    from sim.tb_cpp import run_cpp
    from sim.tb_top import run_top
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


def main(argv=None):
    from sim.cocotb_env import stop_simulator_with_us
    stop_simulator_with_us()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--board", default="ulx3s")
    ap.add_argument("--images", type=int, default=10, help="test images to occlude")
    ap.add_argument("--patch", type=int, default=4)
    ap.add_argument("--stride", type=int, default=2)
    ap.add_argument("--simulator", choices=["verilator", "icarus"])
    ap.add_argument("--folding", help="FINN-format folding JSON for the compiler")
    a = ap.parse_args(argv)
    try:
        import torch
        from explain.methods import attribute, occlusion_inputs, occlusion_map
        from model.reference import Reference
        graph = paths.streamlined(a.model)
        if a.images < 1:
            raise ValueError(f"--images must be positive, got {a.images}")
        imgs, _ = sample_images(graph, a.images) if graph.is_file() else (None, None)
        if imgs is None:
            raise ValueError(f"{graph}: no streamlined graph (run `make export MODEL={a.model}` first)")
        hw = run(a.model, a.board, occlusion_inputs(imgs, a.patch, a.stride, layout="NHWC"), imgs,
                 folding=a.folding, simulator=a.simulator)
        ref = Reference(str(graph))
        x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 256
        target = torch.as_tensor(hw["base_logits"].argmax(1))
        h, w, c = imgs.shape[1:]
        hw_map = occlusion_map(hw["base_logits"], hw["occluded_logits"], target, h, w, a.patch, a.stride, channels=c)
        ref_map = attribute("occlusion", ref, x, target, patch=a.patch, stride=a.stride)
    except (ValueError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted; the simulator was stopped", file=sys.stderr)
        return 130
    out = dict(model=a.model, board=a.board, patch=a.patch, stride=a.stride,
               **{k: v for k, v in hw.items() if not k.endswith("logits") and k != "accumulators"},
               map_max_abs_diff=float((hw_map - ref_map).abs().max()))
    path = paths.board_dir(a.model, a.board) / "occlusion.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(out, indent=1))
    os.replace(tmp, path)
    print(f"{out['images']} images through the {out['simulator']} simulation: accumulators equal: "
          f"{out['accumulators_equal']}; occlusion map max |hw - reference| {out['map_max_abs_diff']:.3g}")
    return 0 if out["accumulators_equal"] else 1


if __name__ == "__main__":
    sys.exit(main())

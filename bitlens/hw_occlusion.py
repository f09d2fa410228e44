"""Occlusion on the simulated accelerator against the reference's occlusion map:

    python -m bitlens hw-occlusion --model tfc-w1a1 --board ulx3s --images 10 [--patch 4 --stride 2]

Streams test images and their occluded copies through the accelerator (sim.occlusion), rebuilds
the occlusion map from the hardware's logits, and compares it with the map explain computes on the
bit-exact reference. Writes build/<model>/<board>/occlusion.json."""
import json
import os
import sys

import torch

from bitlens.cli import errors
from bitlens.cli import options as O
from explain.methods import attribute, occlusion_inputs, occlusion_map
from model import paths
from model.golden import sample_images
from model.reference import Reference
from sim.occlusion import run


def main(argv=None):
    return errors.run(_main, argv)     # SIGTERM ends the simulation like Ctrl-C


def _main(argv):
    ap = O.Parser(prog="python -m bitlens hw-occlusion", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--board", default="ulx3s")
    ap.add_argument("--images", type=O.positive_int, default=10, help="test images to occlude")
    ap.add_argument("--patch", type=O.positive_int, default=4)
    ap.add_argument("--stride", type=O.positive_int, default=2)
    ap.add_argument("--simulator", choices=["verilator", "icarus"])
    ap.add_argument("--folding", help="FINN-format folding JSON for the compiler")
    a = ap.parse_args(argv)
    graph = paths.streamlined(a.model)
    imgs, _ = sample_images(graph, a.images) if graph.is_file() else (None, None)
    if imgs is None:
        raise ValueError(f"{graph}: no streamlined graph (run `make export MODEL={a.model}` first)")
    try:
        hw = run(a.model, a.board, occlusion_inputs(imgs, a.patch, a.stride, layout="NHWC"), imgs,
                 folding=a.folding, simulator=a.simulator)
    except ImportError as e:        # a simulator binding missing: an environment fault, one line too
        raise RuntimeError(str(e)) from None
    ref = Reference(str(graph))
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 256
    target = torch.as_tensor(hw["base_logits"].argmax(1))
    h, w, c = imgs.shape[1:]
    hw_map = occlusion_map(hw["base_logits"], hw["occluded_logits"], target, h, w, a.patch, a.stride, channels=c)
    ref_map = attribute("occlusion", ref, x, target, patch=a.patch, stride=a.stride)
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

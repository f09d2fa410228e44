"""`python -m bitlens host --port /dev/ttyUSB0 --model M [--images N] [--check]`: send test images
to a board programmed with build/<M>/<board>/bitstream.bit and print the classes (hw.host). The
class is argmax of the logits the streamlined graph's final Mul/Add make of the accumulators the
board returns; --check compares every accumulator with the reference and exits 1 on a difference."""
import os
import sys
import time

import numpy as np
import onnx

from bitlens.cli import errors
from bitlens.cli import options as O
from hw.bitstream import logits_f32
from hw.host import BUILD, HostError, Serial, classify, load_built, output_affine, reference_accs
from model.data import load_split, pad_images
from model.streamline import metadata_or_empty


def main(argv=None) -> int:
    return errors.run(_main, argv)


def _main(argv) -> int:
    ap = O.Parser(prog="python -m bitlens host", description=__doc__.splitlines()[0])
    ap.add_argument("--port", default="/dev/ttyUSB0")
    ap.add_argument("--model", required=True)
    ap.add_argument("--board", default="ulx3s")
    ap.add_argument("--images", type=O.positive_int, default=10)
    ap.add_argument("--dataset", default=None, help="default: the one in the streamlined graph's metadata")
    ap.add_argument("--baud", type=O.positive_int, help="override the baud recorded in resources.json")
    ap.add_argument("--check", action="store_true", help="compare accumulators with the reference")
    ap.add_argument("--build-dir", default=str(BUILD), help="build folder (default ./build)")
    args = ap.parse_args(argv)
    if not os.path.exists(args.port):
        raise HostError(f"cannot open {args.port}: no such device (is the board plugged in?)")
    res, manifest, streamlined = load_built(args.model, args.board, args.build_dir)
    baud = args.baud or int(res["uart"]["baud"])
    graph = onnx.load(str(streamlined))
    shape = [d.dim_value for d in graph.graph.input[0].type.tensor_type.shape.dim]
    meta = metadata_or_empty(graph)
    x, y = load_split(args.dataset or meta.get("dataset") or "mnist", "test")
    x = pad_images(x[:args.images], shape[1])
    scale, bias = output_affine(streamlined)

    def show(i, a, c):
        cls = int(np.argmax(logits_f32(a, scale, bias)))
        print(f"image {i}: class {cls} (label {int(y[i])}, board {c})", flush=True)

    ser = Serial(args.port, baud)
    try:
        t0 = time.time()
        accs, board_cls = classify(ser, x, manifest, baud, progress=show)
        dt = time.time() - t0
    finally:
        ser.close()
    cls = np.argmax(logits_f32(accs, scale, bias), axis=1)
    if res.get("led_class_exact") and (board_cls != cls).any():
        print(f"warning: the board's class differs from the host's on {int((board_cls != cls).sum())} "
              "images", file=sys.stderr)
    print(f"{len(x)} images in {dt:.2f} s ({len(x) / dt:.1f} img/s), accuracy {np.mean(cls == y[:len(x)]):.4f}")
    if args.check:
        ref = reference_accs(streamlined, x)
        bad = int((ref != accs).any(axis=1).sum())
        print(f"reference check: {len(x) - bad}/{len(x)} images bit-exact")
        if bad:
            return 1
    return 0

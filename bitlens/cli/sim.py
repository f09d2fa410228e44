"""`python -m bitlens sim` (`make sim`): simulate a BitLens accelerator on test images and prove it
equals the streamlined graph (build/<model>/<board>/sim.json; sim.run). Exit 1 when any image
differs."""
import sys

from bitlens.cli import errors
from bitlens.cli import options as O
from sim.run import HARNESSES, run


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    ap = O.Parser(prog="python -m bitlens sim", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--board", default="ulx3s")
    ap.add_argument("--images", default="100", type=O.images_arg, help="number of test images or 'all'")
    ap.add_argument("--rtl", help="RTL folder with FINN port names and manifest.json (skips compiling)")
    ap.add_argument("--simulator", choices=["verilator", "icarus"])
    ap.add_argument("--graph", help="streamlined graph (default build/<model>/streamlined.onnx)")
    ap.add_argument("--out", help="output folder (default build/<model>/<board>)")
    ap.add_argument("--folding", help="FINN-format folding JSON for the compiler")
    ap.add_argument("--target-fps", type=O.positive_float, help="let the compiler pick the folding for this rate")
    ap.add_argument("--chunk", type=O.positive_int, help="images per streamed chunk (default 1000 fast, 500 cocotb)")
    ap.add_argument("--harness", choices=HARNESSES, default="fast",
                    help="fast: stream driven inside the simulator (default); cocotb: cocotb-clocked wrapper")
    ap.add_argument("--idle", type=int, choices=range(16), metavar="0..15", default=0, help="source idle level 0..15 (out of 16 cycles)")
    ap.add_argument("--backpressure", type=int, choices=range(16), metavar="0..15", default=0, help="sink back-pressure level 0..15")
    a = ap.parse_args(argv)
    res = run(a.model, a.board, a.images, a.rtl, a.simulator, a.graph, a.out, a.chunk, folding=a.folding,
              target_fps=a.target_fps, harness=a.harness, idle_level=a.idle, bp_level=a.backpressure)
    cpi = res.get("cycles_per_image")
    print(f"{res['images']} images ({res['images_source']}), equal: {res['equal']}, "
          f"cycles/image {cpi if cpi is None else round(cpi, 2)} vs analytic II {res['analytic_ii']}, "
          f"{res['simulator']} ({res['harness']}), {res['seconds']} s ({res.get('stream_seconds')} s streaming, "
          f"{res.get('cycles_per_second')} cycles/s)")
    if res.get("stall"):
        print(f"error: {res['stall']}", file=sys.stderr)
    return 0 if res["equal"] else 1

"""`python -m bitlens compile`: compile a streamlined graph into a FINN-architecture accelerator
(build/<model>/<board>/hw: RTL, folding, estimates, manifest; hw.compile) and print the estimates."""
from pathlib import Path

from bitlens.cli import errors
from bitlens.cli import options as O
from hw.boards import DEFAULT_BOARD
from hw.compile import compile_graph
from hw.errors import CompileError
from model import paths


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    ap = O.Parser(prog="python -m bitlens compile", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--board", default=DEFAULT_BOARD)
    ap.add_argument("--graph", help="streamlined graph (default build/<model>/streamlined.onnx)")
    ap.add_argument("--out", help="output folder (default build/<model>/<board>/hw)")
    ap.add_argument("--folding", help="FINN-format folding JSON")
    ap.add_argument("--target-fps", type=O.positive_float)
    a = ap.parse_args(argv)
    graph = a.graph or paths.streamlined(a.model)
    if not Path(graph).is_file():
        raise CompileError(f"{graph}: no streamlined graph (run `make export MODEL={a.model}` first)")
    out = a.out or paths.board_dir(a.model, a.board) / "hw"
    r = compile_graph(graph, out, a.board, a.folding, a.target_fps)
    e = r["estimates"]
    for row in e["layers"]:
        print(f"{row['layer']:>10} {row['kind']:>5} cycles {row['cycles']:>8} LUT {row['lut']:>7} "
              f"FF {row['ff']:>7} BRAM {row['bram']:>4}" + (f"  PE {row['PE']} SIMD {row['SIMD']}" if "PE" in row else ""))
    t = e["total"]
    print(f"II {e['analytic_ii']} cycles, {e['fps']:.1f} FPS at {e['clock_mhz']} MHz; LUT {t['lut']} FF {t['ff']} "
          f"BRAM {t['bram']}; written to {r['out_dir']}")
    return 0

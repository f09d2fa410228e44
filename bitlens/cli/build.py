"""`python -m bitlens build` (`make bitstream`): compile a model to Verilog, then build a bitstream
(Lattice boards) or a resource estimate and FINN build folder (Xilinx boards); hw.build.
Exit 2 when a Xilinx build stops short of FINN (FINN_ROOT unset), saying how to run it."""
from bitlens.cli import errors
from bitlens.cli import options as O
from hw.boards import BOARDS, DEFAULT_BOARD
from hw.build import build


def main(argv=None) -> int:
    return errors.run(_main, argv)


def _main(argv) -> int:
    ap = O.Parser(prog="python -m bitlens build", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="model name, e.g. tfc-w1a1 (build/<model>/)")
    ap.add_argument("--board", default=DEFAULT_BOARD, help=f"one of: {', '.join(BOARDS)}")
    ap.add_argument("--folding", help="folding config JSON keyed by MVAU_i (FINN format)")
    ap.add_argument("--target-fps", type=O.positive_float, help="let the compiler pick the folding for this rate")
    ap.add_argument("--baud", type=O.positive_int, help="UART baud for Lattice boards (default 1000000; must divide the clock)")
    ap.add_argument("--freq", type=O.positive_float, help="nextpnr target MHz (default the board clock)")
    args = ap.parse_args(argv)
    return build(args.model, args.board, args.folding, args.target_fps, args.baud, args.freq)

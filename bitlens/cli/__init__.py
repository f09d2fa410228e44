"""BitLens' commands: `python -m bitlens <command> [options]` (the Makefile's targets call these).

One module a command under bitlens/cli/, each holding its options and calling library functions;
option types and messages in bitlens/cli/options.py, the one-line error path in
bitlens/cli/errors.py. The studies and benches keep their own modules (`python -m bitlens.study`,
`python -m bitlens.bench.<x>`) and are reachable here too.
"""
import importlib
import sys

from bitlens.cli.options import unknown

# command -> module with main(argv); loaded only when asked for, on purpose: a hardware build or
# `twin` must not pay for torch, which the training and explanation commands import
COMMANDS = {
    "check": ("bitlens.cli.check", "stop early on a bad model or board name"),
    "twin": ("bitlens.cli.twin", "print a BNN's full-precision twin (empty when it has none)"),
    "train": ("bitlens.cli.train", "train a zoo model (build/<model>/model.pt)"),
    "export": ("bitlens.cli.export", "export, streamline and verify (build/<model>/streamlined.onnx)"),
    "compile": ("bitlens.cli.compile", "streamlined graph -> Verilog accelerator (build/<model>/<board>/hw)"),
    "build": ("bitlens.cli.build", "compile, then bitstream (Lattice) or estimate + FINN folder (Xilinx)"),
    "sim": ("bitlens.cli.sim", "simulate the accelerator against the reference (build/<model>/<board>/sim.json)"),
    "host": ("bitlens.cli.host", "send test images to a programmed board over its UART"),
    "finn-check": ("bitlens.cli.finn_check", "FINN's builder steps checked against the reference"),
    "report": ("bitlens.cli.report", "the per-board explanation report"),
    "gradreg": ("bitlens.cli.gradreg", "the gradient-regularisation study"),
    "hw-occlusion": ("bitlens.hw_occlusion", "occlusion maps on the simulated accelerator"),
    "study": ("bitlens.study", "the findings across datasets and topologies"),
    "interop": ("bitlens.interop", "FINN's BNN zoo through BitLens"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<13} {what}" for name, (_, what) in COMMANDS.items())
    return f"usage: python -m bitlens <command> [options]  (<command> --help for its options)\n\n{rows}\n"


def dispatch(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        print(f"error: {unknown('command', argv[0], COMMANDS)}", file=sys.stderr)
        return 2
    return importlib.import_module(COMMANDS[argv[0]][0]).main(argv[1:]) or 0

"""`python -m bitlens finn-check` (`make finn-check`): FINN's builder steps that need no Vivado run
on the model's FINN folder, FINN's Python model checked against the bit-exact reference after each
(build/<model>/<board>/finn/finn_check.json; hw.finn_check). Exit 0 when every step that ran is
equal on every image, no accumulator can overflow and the IIs agree; else 1, one line why."""
from bitlens.cli import errors
from bitlens.cli import options as O
from hw.finn_check import finn_check, verdict


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    ap = O.Parser(prog="python -m bitlens finn-check", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--board", default="pynq-z1")
    ap.add_argument("--images", type=O.positive_int, default=500, help="test images run through FINN's model after each step")
    ap.add_argument("--folding", help="folding JSON keyed MVAU_i (default: hw.compile's choice for the board)")
    ap.add_argument("--target-fps", type=O.positive_float)
    a = ap.parse_args(argv)
    res, path = finn_check(a.model, a.board, a.images, a.folding, a.target_fps)
    for s in res["steps"]:
        print(f"  {s['step']:<34} " + (f"{s['equal']}/{s['images']} equal" if "equal" in s else f"not run: {s['why']}"))
    f, b = res["finn"], res["bitlens"]
    print(f"FINN: II {f.get('ii')}, LUT {f.get('lut')}, BRAM18 {f.get('bram18')}; BitLens: II {b['ii']}, "
          f"LUT {b['lut']}, BRAM18 {b['bram18']} -> {path}")
    why = verdict(res)
    return errors.fail(why) if why else 0

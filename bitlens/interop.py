"""FINN's BNN zoo through BitLens, every config: `python -m bitlens interop [--models ...]`.

For each `bnn-pynq:<config>` of brevitas_examples: train (1 epoch; CNV on the first 10k training
images), export + verify (reference vs qonnx and vs Brevitas' integer outputs), simulate the
accelerator on test images against the reference, and tell for every board whether the default
design fits (with the numbers when it does not). Writes build/interop/interop.json; a model whose
step fails is recorded with the error, and the others still run.
"""
import json
import os
import sys
import time
import traceback

from bitlens.cli import errors
from bitlens.cli import options as O
from hw.boards import BOARDS, get_board
from hw.errors import CompileError
from hw.estimate import estimate
from hw.folding import choose_folding
from hw.ir import read_graph
from model import paths, zoo
from model.export import export
from model.train import train
from sim.run import run as simulate

FINN_ZOO = ("tfc_1w1a", "tfc_1w2a", "tfc_2w2a", "sfc_1w1a", "sfc_1w2a", "sfc_2w2a", "lfc_1w1a", "lfc_1w2a",
            "cnv_1w1a", "cnv_1w2a", "cnv_2w2a")
OUT = paths.BUILD / "interop" / "interop.json"


def board_fit(graph_path):
    """Per board: the default folding's II and resources, or why nothing fits."""
    out = {}
    for name in BOARDS:
        board = get_board(name)
        g = read_graph(graph_path)
        try:
            choose_folding(g, board)
        except CompileError as e:
            out[name] = dict(fits=False, why=str(e))
            continue
        est = estimate(g, board)
        out[name] = dict(fits=True, analytic_ii=est["analytic_ii"], **est["total"])
    return out


def check(cfg, board, fc_images, cnv_images, verify_fc, verify_cnv):
    name = zoo.BNN_PYNQ + cfg
    cnv = cfg.startswith("cnv")
    row = dict(model=name)
    t = train(name, epochs=1, limit=10000 if cnv else None)
    row["test_accuracy"] = t["test_accuracy"]
    v = export(name, verify_images=verify_cnv if cnv else verify_fc)
    row["verify"] = {k: v[k] for k in ("images", "reference_vs_qonnx_equal", "reference_vs_brevitas_equal", "ties",
                                       "brevitas_disagreements_unexplained")}
    row["boards"] = board_fit(paths.streamlined(name))
    if not row["boards"][board]["fits"]:   # simulated where it fits: the RTL is the same design
        board = next((b for b, f in row["boards"].items() if f["fits"]), board)
    s = simulate(name, board, cnv_images if cnv else fc_images, progress=False)
    row["sim"] = {k: s.get(k) for k in ("board", "images", "equal", "cycles_per_image", "analytic_ii", "simulator",
                                        "seconds")}
    return row


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv):
    p = O.Parser(prog="python -m bitlens interop", description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(FINN_ZOO), help="comma-separated bnn_pynq configs")
    p.add_argument("--board", default="ulx3s", help="board whose accelerator is simulated")
    p.add_argument("--fc-images", type=O.positive_int, default=1000)
    p.add_argument("--cnv-images", type=O.positive_int, default=5)
    p.add_argument("--verify-fc", type=O.positive_int, default=None, help="verified test images for FC (default all)")
    p.add_argument("--verify-cnv", type=O.positive_int, default=500)
    a = p.parse_args(argv)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    unknown = [m for m in models if m not in FINN_ZOO]
    if unknown:
        raise ValueError(f"--models: {O.unknown('bnn_pynq config', unknown[0], FINN_ZOO)}")
    rows = json.loads(OUT.read_text()).get("models", {}) if OUT.is_file() else {}
    for cfg in models:
        t0 = time.time()
        try:
            row = check(cfg, a.board, a.fc_images, a.cnv_images, a.verify_fc, a.verify_cnv)
        except (ValueError, RuntimeError, OSError) as e:
            row = dict(model=zoo.BNN_PYNQ + cfg, error=f"{type(e).__name__}: {e}",
                       where=traceback.extract_tb(e.__traceback__)[-1].name)
        row["seconds"] = round(time.time() - t0, 1)
        rows[cfg] = row
        sim = row.get("sim", {})
        print(f"{cfg}: " + (row["error"] if "error" in row else
              f"acc {row['test_accuracy']:.4f}, ref==qonnx {row['verify']['reference_vs_qonnx_equal']}/"
              f"{row['verify']['images']}, ==brevitas {row['verify']['reference_vs_brevitas_equal']}, "
              f"sim equal {sim['equal']} on {sim['images']}, cycles/image {sim['cycles_per_image']} "
              f"(II {sim['analytic_ii']})"), flush=True)
        OUT.parent.mkdir(parents=True, exist_ok=True)
        tmp = OUT.with_name(OUT.name + ".tmp")
        tmp.write_text(json.dumps(dict(models=rows), indent=1) + "\n")
        os.replace(tmp, OUT)
    return 0 if all("error" not in r and r["sim"]["equal"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

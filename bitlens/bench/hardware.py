"""Hardware benchmark: `python -m bitlens.bench.hardware` -> build/bench/hardware.json.

Simulates each exported zoo model on the default board's accelerator (Verilator, default
folding) and records images/s and cycles/s; collects, for every board already built, the build
time and the synthesised-vs-analytic resource ratios."""
import argparse
import json
import os
import sys
import time

from model import paths
from sim.run import run

BUILD = paths.BUILD
# images per model: the CNV accelerator at the default ULX3S folding takes ~10^5 cycles per image
# (the Verilator C++ harness streams ~1.5 M cycles/s: 100 CNV images in ~8 s)
IMAGES = {"tfc-w1a1": 10000, "cnv-w1a1": 100}
GOAL_TFC_10K_SECONDS = 600


def sim_bench(model, board, images):
    graph = paths.streamlined(model)
    if not graph.is_file():
        return dict(model=model, status="not exported", command=f"make export MODEL={model}")
    t0 = time.time()
    res = run(model, board, images, graph=graph, out_dir=BUILD / "bench" / "sim" / paths.slug(model), progress=False)
    wall = time.time() - t0
    sim_s = res.get("stream_seconds") or res["seconds"]
    cycles = res.get("simulated_cycles") or (res.get("cycles_per_image") or res["analytic_ii"]) * res["images"]
    return dict(model=model, board=board, status="ok", images=res["images"], equal=res["equal"],
                simulator=res["simulator"], harness=res.get("harness"), seconds_with_compile=round(wall, 2),
                seconds_simulating=sim_s, stream_cpu_seconds=res.get("stream_cpu_seconds"),
                images_per_s=round(res["images"] / sim_s, 2), cycles_per_s=round(cycles / sim_s),
                cycles_per_image=res.get("cycles_per_image"), analytic_ii=res["analytic_ii"],
                projected_10k_seconds=round(10000 * sim_s / res["images"], 1))


def built_boards():
    rows = []
    for res_path in sorted(BUILD.glob("*/*/resources.json")):
        model, board = res_path.parts[-3], res_path.parts[-2]
        if model in ("bench", "_test"):
            continue
        try:
            r = json.loads(res_path.read_text())
        except ValueError:
            continue
        est = (r.get("analytic") or {}).get("total", {})
        used = r.get("used", {})
        ratio = {k: round(used[k] / est[k], 3) for k in ("lut", "ff", "bram") if used.get(k) is not None and est.get(k)}
        rows.append(dict(model=model, board=board, flow=r.get("flow"), build_seconds=r.get("seconds"),
                         used=dict((k, used.get(k)) for k in ("lut", "ff", "bram")), analytic=est,
                         synthesis_over_estimate=ratio, fmax_mhz=r.get("fmax_mhz")))
    return rows


def full_test_set_runs():
    """sim.json files that cover the whole test set: the measured answer to the 10-minute goal."""
    out = []
    for p in sorted(BUILD.glob("*/*/sim.json")):
        try:
            r = json.loads(p.read_text())
        except ValueError:
            continue
        if r.get("images") == 10000:
            out.append(dict(model=p.parts[-3], board=p.parts[-2], equal=r.get("equal"), seconds=r.get("seconds"),
                            simulator=r.get("simulator"), cycles_per_image=r.get("cycles_per_image")))
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="ulx3s")
    ap.add_argument("--models", default=",".join(IMAGES))
    a = ap.parse_args(argv)
    try:
        sims = []
        for m in [m.strip() for m in a.models.split(",") if m.strip()]:
            print(f"[bench] simulating {m} ({IMAGES.get(m, 100)} images)", file=sys.stderr, flush=True)
            sims.append(sim_bench(m, a.board, IMAGES.get(m, 100)))
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    doc = dict(goal_tfc_10k_seconds=GOAL_TFC_10K_SECONDS, simulation=sims, full_test_set_sims=full_test_set_runs(),
               builds=built_boards())
    out = BUILD / "bench" / "hardware.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, out)
    for s in sims:
        if s["status"] == "ok":
            print(f"{s['model']}: {s['images_per_s']} img/s, {s['cycles_per_s']} cycles/s ({s['simulator']}, {s.get('harness')}), "
                  f"10k images in ~{s['projected_10k_seconds']} s; equal {s['equal']}")
        else:
            print(f"{s['model']}: {s['status']} ({s['command']})")
    for b in doc["builds"]:
        print(f"{b['model']} on {b['board']}: synthesis/estimate {b['synthesis_over_estimate']}, "
              f"build {b['build_seconds']} s")
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

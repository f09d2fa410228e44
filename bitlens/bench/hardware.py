"""Hardware benchmark: `python -m bitlens.bench.hardware` -> build/bench/hardware.json (+ hardware.md).

Per default design (each model's default folding on the board): Fmax, LUT/FF/BRAM post-route and
estimated, II analytic and simulated, images/s at Fmax, simulated cycles/s and the seconds a
whole-test-set simulation takes. Reads what earlier commands left: resources.json (`make
bitstream`) and a whole-test-set sim.json (`make sim IMAGES=all`), each used only when its analytic
II is the default design's. Without a whole-test-set run it simulates a sample (Verilator, into
build/bench/sim/, the user's sim.json untouched) and extrapolates, saying so. Builds bitstreams
only when asked (--build-bitstreams). Also records every built board's synthesis-vs-estimate
ratios and every whole-test-set sim.json found."""
import sys
import time

from bitlens.cli import errors
from bitlens.cli import options as O
from hw.boards import get_board
from hw.build import build as build_bitstream
from hw.estimate import estimate
from hw.folding import choose_folding
from hw.ir import read_graph
from model import paths, publish
from model.golden import sample_images
from sim.run import run

BUILD = paths.BUILD
MODELS = ("tfc-w1a1", "cnv-w1a1")
# images simulated when no whole-test-set sim.json of the default design exists: TFC's ~200
# cycles per image make its whole test set cheap (measured, not extrapolated); CNV's ~10^5 do not
SAMPLE = {"tfc-w1a1": 10000, "cnv-w1a1": 20}
GOALS = dict(fmax_mhz=100, full_test_set_seconds={"tfc-w1a1": 60, "cnv-w1a1": 1800})


def default_design(model, board):
    """The default folding's analytic II and resource estimate (nothing written)."""
    g = read_graph(str(paths.streamlined(model)))
    choose_folding(g, get_board(board))
    est = estimate(g, get_board(board))
    return int(est["analytic_ii"]), {k: est["total"].get(k) for k in ("lut", "ff", "bram")}


def test_set_size(model):
    return len(sample_images(paths.streamlined(model), None)[0])


def sample_sim(model, board, images):
    """Simulate `images` test images of the default design in build/bench/sim/<model>/."""
    res = run(model, board, images, out_dir=BUILD / "bench" / "sim" / paths.slug(model), progress=False)
    return res


def design_row(model, board, sample=None, built=None):
    """One default design: what its artifacts say, a sample simulation where they say nothing."""
    if not paths.streamlined(model).is_file():
        return dict(model=model, board=board, status="not exported", command=f"make export MODEL={model}")
    ii, est = default_design(model, board)
    bdir = paths.board_dir(model, board)
    row = dict(model=model, board=board, status="ok", analytic_ii=ii, estimate=est)

    r = publish.read_json(bdir / "resources.json")
    if r and r.get("analytic_ii") == ii and r.get("fmax_mhz"):
        used = r.get("used", {})
        row.update(fmax_mhz=r["fmax_mhz"], clock_mhz=r.get("target_mhz"), timing_met=r.get("timing_met"),
                   post_route={k: used.get(k) for k in ("lut", "ff", "bram")},
                   images_per_s_at_fmax=round(r["fmax_mhz"] * 1e6 / ii, 1), resources_json=str(bdir / "resources.json"))
        if r.get("target_mhz"):
            row["images_per_s_at_clock"] = round(r["target_mhz"] * 1e6 / ii, 1)
    else:
        why = "not built" if r is None else f"built with another design (II {r.get('analytic_ii')})"
        row.update(fmax_mhz=why, post_route=why, images_per_s_at_fmax=why,
                   command=f"make bitstream MODEL={model} BOARD={board}")

    n_test = test_set_size(model)
    s = publish.read_json(bdir / "sim.json")
    if s and s.get("images") == n_test and s.get("analytic_ii") == ii and s.get("equal"):
        row.update(full_test_set="measured", sim_json=str(bdir / "sim.json"), simulated_images=n_test,
                   full_test_set_seconds=s.get("seconds"), full_test_set_stream_seconds=s.get("stream_seconds"))
    else:
        k = min(sample or SAMPLE.get(model, 100), n_test)
        print(f"[bench] {model}: no whole-test-set sim.json of the default design; simulating {k} images",
              file=sys.stderr, flush=True)
        t0 = time.time()
        s = sample_sim(model, board, k)
        wall = time.time() - t0
        stream = s.get("stream_seconds") or s["seconds"]
        if k == n_test:
            row.update(full_test_set="measured by the bench", full_test_set_seconds=round(wall, 1),
                       full_test_set_stream_seconds=stream)
        else:
            # streaming scales with the images; the build and the start do not (sample_seconds_with_build)
            row.update(full_test_set=f"extrapolated from {k} images",
                       full_test_set_stream_seconds=round(n_test * stream / k, 1))
            row["full_test_set_seconds"] = row["full_test_set_stream_seconds"]
        row.update(simulated_images=k, sample_seconds_with_build=round(wall, 2), sample_stream_seconds=stream)
    cycles, cpu = s.get("simulated_cycles"), s.get("stream_cpu_seconds")
    row.update(test_set_images=n_test, equal=s.get("equal"), simulator=s.get("simulator"), harness=s.get("harness"),
               cycles_per_image=s.get("cycles_per_image"), simulated_cycles=cycles,
               sim_cycles_per_s=s.get("cycles_per_second"), stream_cpu_seconds=cpu)
    if cycles and cpu:
        # the simulator's CPU time: on a shared machine a steadier figure than the wall time
        row["sim_cycles_per_cpu_s"] = round(cycles / cpu)
        row["full_test_set_cpu_seconds"] = round(cpu * n_test / row["simulated_images"], 1)
    return row


def built_boards():
    rows = []
    for res_path in sorted(BUILD.glob("*/*/resources.json")):
        model, board = res_path.parts[-3], res_path.parts[-2]
        if model in ("bench", "_test"):
            continue
        r = publish.read_json(res_path)
        if r is None:
            continue
        est = (r.get("analytic") or {}).get("total", {})
        used = r.get("used", {})
        ratio = {k: round(used[k] / est[k], 3) for k in ("lut", "ff", "bram") if used.get(k) is not None and est.get(k)}
        rows.append(dict(model=model, board=board, flow=r.get("flow"), build_seconds=r.get("seconds"),
                         used=dict((k, used.get(k)) for k in ("lut", "ff", "bram")), analytic=est,
                         synthesis_over_estimate=ratio, fmax_mhz=r.get("fmax_mhz")))
    return rows


def full_test_set_runs():
    """sim.json files that cover a whole 10k-image test set, whatever their folding."""
    out = []
    for p in sorted(BUILD.glob("*/*/sim.json")):
        r = publish.read_json(p)
        if r and r.get("images") == 10000:
            out.append(dict(model=p.parts[-3], board=p.parts[-2], equal=r.get("equal"), seconds=r.get("seconds"),
                            simulator=r.get("simulator"), cycles_per_image=r.get("cycles_per_image"),
                            analytic_ii=r.get("analytic_ii")))
    return out


def _num(v, fmt="{:,.0f}"):
    return fmt.format(v) if isinstance(v, (int, float)) else str(v)


def table(rows, board):
    """Markdown table of the default designs, one column a design."""
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return ""

    def res(r, k):
        post = r["post_route"][k] if isinstance(r["post_route"], dict) else "-"
        return f"{_num(post)} / {_num(r['estimate'][k])}"

    lines = [f"| default design on {board} | " + " | ".join(r["model"] for r in ok) + " |",
             "|---" * (len(ok) + 1) + "|"]
    spec = [
        ("Fmax post-route (MHz)", lambda r: _num(r["fmax_mhz"], "{:.1f}")),
        ("LUT post-route / estimate", lambda r: res(r, "lut")),
        ("FF post-route / estimate", lambda r: res(r, "ff")),
        ("BRAM post-route / estimate", lambda r: res(r, "bram")),
        ("II analytic / simulated (cycles/image)",
         lambda r: f"{r['analytic_ii']} / {_num(r['cycles_per_image'], '{:.1f}')}"),
        ("images/s at Fmax", lambda r: _num(r["images_per_s_at_fmax"])),
        ("simulation cycles/s (wall / simulator CPU)",
         lambda r: f"{_num(r['sim_cycles_per_s'])} / {_num(r.get('sim_cycles_per_cpu_s', '-'))}"),
        ("full test set simulated (s)", lambda r: f"{_num(r['full_test_set_seconds'], '{:.1f}')} "
                                                  f"({r['full_test_set']}; simulator CPU "
                                                  f"{_num(r.get('full_test_set_cpu_seconds', '-'), '{:.1f}')} s; "
                                                  f"{r['test_set_images']} images, equal {r['equal']})"),
    ]
    for name, f in spec:
        lines.append(f"| {name} | " + " | ".join(f(r) for r in ok) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    return errors.run(_main, argv)


def _main(argv=None):
    ap = O.Parser(prog="python -m bitlens.bench.hardware", description=__doc__.splitlines()[0])
    ap.add_argument("--board", default="ulx3s")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--sample", type=O.positive_int,
                    help="images simulated when no whole-test-set sim.json exists (default: TFC 1000, CNV 20)")
    ap.add_argument("--build-bitstreams", action="store_true",
                    help="build the default design's bitstream where none of it exists (minutes each)")
    a = ap.parse_args(argv)
    get_board(a.board)
    models = [m.strip() for m in a.models.split(",") if m.strip()]
    if a.build_bitstreams:
        for m in models:
            if paths.streamlined(m).is_file():
                ii, _ = default_design(m, a.board)
                r = publish.read_json(paths.board_dir(m, a.board) / "resources.json")
                if not (r and r.get("analytic_ii") == ii):
                    print(f"[bench] building the {m} bitstream for {a.board}", file=sys.stderr, flush=True)
                    build_bitstream(m, a.board)
    rows = [design_row(m, a.board, a.sample) for m in models]
    md = table(rows, a.board)
    doc = dict(goals=GOALS, board=a.board, designs=rows, full_test_set_sims=full_test_set_runs(),
               builds=built_boards(), table_markdown=md)
    out = BUILD / "bench" / "hardware.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    publish.atomic_json(out, doc, indent=1)
    publish.atomic_text(out.with_suffix(".md"), md)
    for r in rows:
        if r["status"] != "ok":
            print(f"{r['model']}: {r['status']} ({r['command']})")
    print(md, end="")
    print(f"-> {out}, {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

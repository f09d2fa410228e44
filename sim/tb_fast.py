"""Fast whole-accelerator harness: the stream runs inside the simulator, cocotb only orchestrates.

`sim/bl_stream_tb.v` generates the clock and the reset, streams each chunk of images from a
$readmemh file with pseudo-random source idles and sink back-pressure (an LFSR), stores every
output beat and the cycle stamp of each image's completion, and raises `done`. Python writes the
chunk, starts it, and then only wakes on `done` or on a coarse timer (for the progress bar and the
stall watch) whose period grows until a wake-up is ~0.5 s of wall time apart.

This is the fast harness on Icarus, where a Verilog clock beats cocotb's. On Verilator it measured
no faster than cocotb's Clock (~0.25 M cycles/s on TFC-w1a1): cocotb's Verilator main loop does its
VPI bookkeeping in every time slot, so there the same wrapper runs under a C++ main (sim/tb_cpp.py).

run_fast() returns the same result dict as sim.tb_top.run_top, plus `harness`,
`simulated_cycles` and `cycles_per_second` (simulated cycles over the streaming wall time)."""
import os
import time
from pathlib import Path

import numpy as np

from sim import cocotb_env as E
from sim.tb_top import decode_outputs
from sim.top_run import begin_test, run_stream_test, write_result

try:
    import cocotb
except ImportError:
    cocotb = None

HARNESS = "cocotb-verilog-clock"
TB_FILE = Path(__file__).resolve().with_name("bl_stream_tb.v")
PERIOD_NS = 10                      # bl_stream_tb's HALF_PERIOD 5 ns
FAST_VLT = """`verilator_config
public_flat_rw -module "bl_stream_tb" -var "*"
"""
# the clock is a Verilog delay: Verilator needs --timing, which Debian's g++ 12 compiles only with
# -fcoroutines
VERILATOR_ARGS = ["--timing", "-CFLAGS", "-fcoroutines"]
DEFAULT_CHUNK = 1000


def write_words_hex(path, images, m):
    """Images (n, ...) of in_elem_bits-wide elements -> one $readmemh line per input beat,
    element 0 in the least significant bits (vectorised: 10k MNIST images in well under a second)."""
    flat = np.asarray(images, dtype=np.int64).reshape(len(images), -1)
    elems, bits = m["in_elems_per_beat"], m["in_elem_bits"]
    need = m["in_beats"] * elems
    if flat.shape[1] != need:
        raise E.SimulationFailed(f"images have {flat.shape[1]} elements, the accelerator takes {need} per image")
    v = flat.reshape(-1, elems) & ((1 << bits) - 1)
    bit = (v[:, :, None] >> np.arange(bits)) & 1                        # LSB first
    bit = bit.reshape(len(v), elems * bits).astype(np.uint8)
    ndig = max(1, (elems * bits + 3) // 4)
    bit = np.pad(bit, ((0, 0), (0, ndig * 4 - elems * bits)))
    nib = bit.reshape(len(v), ndig, 4) @ np.array([1, 2, 4, 8], dtype=np.uint8)
    chars = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)[nib[:, ::-1]]
    lines = np.concatenate([chars, np.full((len(v), 1), ord("\n"), dtype=np.uint8)], axis=1)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(lines.tobytes())
    os.replace(tmp, path)
    return len(v)


def run_fast(rtl_dir, images, expected, work_dir, simulator=None, chunk=DEFAULT_CHUNK, idle_level=0,
             bp_level=0, progress=True, keep_outputs=False):
    """Simulate the accelerator in rtl_dir on uint8 images with the in-simulator stream."""
    def launch(m, rtl_dir, work, run_dir, cfg):
        c = cfg["chunk"]
        params = dict(IN_W=m["in_width"], OUT_W=m["out_width"], IN_DEPTH=max(2, c * m["in_beats"]),
                      OUT_DEPTH=max(2, c * m["out_beats"]), OUT_BEATS=m["out_beats"])
        define = [] if m["top"] == "bitlens_top" else [f"-DBL_DUT={m['top']}"]
        return E.run_cocotb([rtl_dir / f for f in m["files"]] + [TB_FILE], "bl_stream_tb", "sim.tb_fast",
                            work / "fast_build", parameters=params, simulator=simulator, config=cfg,
                            test_dir=run_dir, test_log=not progress,
                            extra_env={"COCOTB_LOG_LEVEL": "WARNING"} if progress else None,
                            extra_build_args={"verilator": VERILATOR_ARGS + define, "icarus": define},
                            public_vlt=FAST_VLT)
    return run_stream_test(rtl_dir, images, expected, work_dir, "run_fast", chunk, idle_level, bp_level,
                           progress, keep_outputs, launch, simulator)


async def _wait_done(dut, n_in, n_out, out_beats, stall_cycles, bar, state):
    """Sleep until `done` (or a stall); the timer only feeds the progress bar and the stall watch."""
    from cocotb.triggers import First, ReadOnly, RisingEdge, Timer
    last, still = (-1, -1), 0
    while True:
        step = state["step"]
        t = time.time()
        await First(RisingEdge(dut.done), Timer(step * PERIOD_NS, unit="ns"))
        await ReadOnly()
        ip, op = int(dut.in_ptr.value), int(dut.out_ptr.value)
        if bar is not None and op // out_beats > state["shown"]:
            bar.update(min(op, n_out) // out_beats - state["shown"])
            state["shown"] = min(op, n_out) // out_beats
        if int(dut.done.value):
            return ip, op
        if time.time() - t < 0.5 and step < (1 << 24):
            state["step"] = step * 2
        if (ip, op) == last:
            still += step
            if still >= stall_cycles:
                if ip < n_in:
                    what = (f"input not accepted: s_tready low after {ip} of {n_in} input beats "
                            f"({op} of {n_out} output beats seen)")
                else:
                    what = f"no output: all {n_in} input beats accepted but only {op} of {n_out} output beats came"
                raise E.StreamStall(f"stream stalled for {still} cycles: {what}")
        else:
            still, last = 0, (ip, op)


if cocotb is not None:
    @cocotb.test()
    async def top_fast(dut):
        from cocotb.triggers import RisingEdge, Timer
        cfg, m, images, expected, res, bar = begin_test(harness=HARNESS)
        n, chunk, ob = len(images), cfg["chunk"], m["out_beats"]
        ii = max(1, int(m["analytic_ii"]))
        dut.chunk.value = 0
        dut.n_in.value = 0
        dut.n_out.value = 0
        dut.idle_level.value = cfg["idle_level"]
        dut.bp_level.value = cfg["bp_level"]
        await RisingEdge(dut.ap_rst_n)
        tally = E.ChunkTally(keep=bool(cfg.get("outputs")))
        state = dict(step=4096, shown=0)
        cycles = 0
        t_stream = time.time()
        try:
            for k, start in enumerate(range(0, n, chunk), 1):
                imgs = images[start:start + chunk]
                n_in = write_words_hex("tb_in.hex", imgs, m)
                n_out = len(imgs) * ob
                dut.n_in.value = n_in
                dut.n_out.value = n_out
                dut.chunk.value = k
                ip, op = await _wait_done(dut, n_in, n_out, ob, max(20000, 20 * ii), bar, state)
                cycles += int(dut.chunk_cycles.value)
                await Timer(1, unit="ns")             # leave the read-only phase before writing again
                if op != n_out:
                    raise E.SimulationFailed(f"device produced {op} output beats in chunk {k}, expected {n_out}")
                got = decode_outputs(E._read_hex("tb_out.hex", n_out), m)
                stamps = E._read_hex("tb_stamp.hex", len(imgs))
                tally.add(start, got, expected[start:start + chunk], stamps)
        except E.StreamStall as e:
            res["stall"] = str(e)
        except E.SimulationFailed as e:
            res["error"] = str(e)
        finally:
            if bar is not None:
                bar.close()
        secs = time.time() - t_stream
        res["stream_seconds"] = round(secs, 4)
        res["simulated_cycles"] = cycles
        res["cycles_per_second"] = round(cycles / secs) if secs > 0 else None
        tally.summarise(res, ii)
        res["equal"] = not tally.bad and res["stall"] is None and "error" not in res
        write_result(cfg, res, tally.outputs())
        assert res["stall"] is None, res["stall"]
        assert "error" not in res, res["error"]
        assert not tally.bad, f"{len(tally.bad)} of {n} images differ; first: {res.get('first_mismatch')}"

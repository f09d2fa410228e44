"""Analytic estimates of a folded design (cycles, II, LUT/FF/BRAM of units and glue) and whether
it fits a board."""
from hw import units as U
from hw.layers import MVAU, SWG, Graph, Thresholding
from hw.links import _dwc_chain, _links, link_fifo_depth

FIT_LIMIT = 0.8          # fraction of a part's LUT/FF/BRAM the chooser may fill (routing headroom)


def estimate(graph: Graph, board):
    kbit = board.bram_kbit
    rows = []
    for l in graph.layers:
        r = l.resources(kbit)
        extra = {}
        if isinstance(l, MVAU):
            extra = {"PE": l.pe, "SIMD": l.simd, "pipeline_cycles": l.latency(kbit),
                     "weight_banks": -(-(l.mw // l.simd) * (l.mh // l.pe) // l.bank_depth(kbit)) if l.bank_depth(kbit) else 1}
        elif isinstance(l, Thresholding):
            extra = {"PE": l.pe, "thresholds": l.n_thr}
        elif isinstance(l, SWG) and l.padded:
            extra = {"pad": list(l.pad), "pad_value": l.pad_value}
        rows.append(dict(layer=l.name, kind=type(l).__name__, cycles=int(l.cycles()), **r, **extra))
    ii = max(r["cycles"] for r in rows)
    glue = dict(lut=0, ff=0, bram=0)
    for (bits, a, b), l in zip(_links(graph), graph.layers[1:]):
        chain = _dwc_chain(a, b)
        for x, y in zip(chain, chain[1:]):
            for k, v in U.dwc_resources(x * bits, y * bits).items():
                glue[k] += v
        for k, v in U.fifo_resources(b * bits, link_fifo_depth(l, ii), kbit).items():
            glue[k] += v
    for k, v in U.fifo_resources(graph.layers[0].in_elems * graph.in_bits, link_fifo_depth(graph.layers[0], ii),
                                 kbit).items():
        glue[k] += v
    total = {k: sum(r[k] for r in rows) + glue[k] for k in ("lut", "ff", "bram")}
    clk = board.clock_mhz
    return dict(board=board.name, clock_mhz=clk, layers=rows, glue=glue, total=total, analytic_ii=int(ii),
                latency_cycles=int(sum(r["cycles"] + r.get("pipeline_cycles", 0) for r in rows)), fps=clk * 1e6 / ii,
                capacity=dict(lut=board.lut, ff=board.ff, bram=board.bram))


def fits(est, board, limit=1.0):
    t = est["total"]
    return t["lut"] <= limit * board.lut and t["ff"] <= limit * board.ff and t["bram"] <= limit * board.bram


def _fit_message(est, board):
    t = est["total"]
    return (f"design needs {t['lut']} LUT, {t['ff']} FF, {t['bram']} BRAM; {board.name} ({board.part}) has "
            f"{board.lut} LUT, {board.ff} FF, {board.bram} BRAM, of which BitLens fills at most "
            f"{FIT_LIMIT:.0%} ({int(FIT_LIMIT * board.lut)} LUT, {int(FIT_LIMIT * board.ff)} FF, "
            f"{int(FIT_LIMIT * board.bram)} BRAM) to leave room for routing")

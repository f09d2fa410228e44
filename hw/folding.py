"""Folding (FINN's PE/SIMD per layer): read and check a FINN-format folding config, apply it, or
choose the cheapest folding meeting an II for a board."""
import json
import math
from pathlib import Path

from hw.errors import FitError, FoldingError
from hw.estimate import FIT_LIMIT, _fit_message, estimate, fits
from hw.layers import MVAU, SWG, Graph, Pool, Thresholding

# Without a folding or a target FPS the chooser stays within this share of the part: the fastest
# design that fits the whole part (e.g. ~50k LUT for TFC on ULX3S) takes an hour to place and to
# Verilate, while the board's UART caps the useful rate far below it anyway.
DEFAULT_SHARE = 0.1


def load_folding(folding):
    if folding is None:
        return None
    where = ""
    if isinstance(folding, (str, Path)):
        where = f"{folding}: "
        p = Path(folding)
        if not p.is_file():
            raise FoldingError(f"{p}: folding file not found")
        try:
            folding = json.loads(p.read_text())
        except ValueError as e:
            raise FoldingError(f"{p}: not JSON ({e})") from None
    if not isinstance(folding, dict):
        raise FoldingError(where + "folding must be a dict {\"Defaults\": {}, \"MVAU_i\": {\"PE\": p, \"SIMD\": s}}")
    for key, val in folding.items():
        if not isinstance(val, dict):
            raise FoldingError(f"{where}entry '{key}' must be an object like {{\"PE\": 2, \"SIMD\": 4}}, "
                               f"got {type(val).__name__}")
        for k in ("PE", "SIMD"):
            v = val.get(k)
            if key != "Defaults" and v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise FoldingError(f"{where}{key}.{k} must be a positive whole number, got {json.dumps(v)}")
    return folding


def _propagate(graph: Graph):
    """Set SWG SIMD and Pool PE from the MVAUs around them, and the input thresholding's PE (unless
    a folding config gave it) so that it never limits the II of the rest."""
    layers = graph.layers
    for i, l in enumerate(layers):
        if isinstance(l, SWG):
            nxt = layers[i + 1]
            l.simd = nxt.simd
        elif isinstance(l, Pool):
            prev = layers[i - 1]
            l.pe = math.gcd(prev.out_elems, l.c)
    for i, l in enumerate(layers):
        if isinstance(l, Thresholding) and not l.pe_fixed:
            rest = [x.cycles() for x in layers if x is not l]
            l.pe = thresh_default_pe(l, max(rest) if rest else 1, layers[i + 1].in_elems if i + 1 < len(layers)
                                     else 1)


def thresh_default_pe(l: Thresholding, ii: int, nxt_elems: int) -> int:
    """Smallest legal PE whose cycles, and the width-converter link to the next unit (gcd of the two
    beat sizes per cycle), stay within the II; else the one that comes closest."""
    total = l.pixels * l.c

    def worst(pe):
        return max(l.cycles(pe), total // math.gcd(pe, nxt_elems))
    legal = l.legal_pe()
    ok = [pe for pe in legal if worst(pe) <= ii]
    return ok[0] if ok else min(legal, key=lambda pe: (worst(pe), pe))


def apply_folding(graph: Graph, folding: dict):
    known = {l.name for l in graph.layers}
    for key, val in folding.items():
        if key == "Defaults":
            continue
        if key not in known:
            raise FoldingError(f"folding names '{key}', which is not a layer; layers: {', '.join(sorted(known))}")
    for l in graph.layers:
        if isinstance(l, Thresholding):
            cfg = folding.get(l.name)
            l.pe_fixed = cfg is not None and "PE" in cfg     # without one: chosen to keep up (_propagate)
            if l.pe_fixed:
                pe = cfg["PE"]
                if not isinstance(pe, int) or pe not in l.legal_pe():
                    raise FoldingError(f"{l.name}: PE={pe} must divide C={l.c} or be a multiple of it dividing "
                                       f"H*W*C={l.pixels * l.c}; legal PE: {l.legal_pe()}")
                l.pe = pe
    for mv in graph.mvaus:
        cfg = folding.get(mv.name)
        if cfg is None:
            raise FoldingError(f"folding has no entry for {mv.name} (need PE and SIMD)")
        pe, simd = cfg.get("PE", 1), cfg.get("SIMD", 1)
        if not isinstance(pe, int) or pe not in mv.legal_pe():
            raise FoldingError(f"{mv.name}: PE={pe} does not divide MH={mv.mh}; legal PE: {mv.legal_pe()}")
        if not isinstance(simd, int) or simd not in mv.legal_simd():
            what = f"the {mv.after_swg} channels of its window generator" if mv.after_swg else f"MW={mv.mw}"
            raise FoldingError(f"{mv.name}: SIMD={simd} does not divide {what}; legal SIMD: {mv.legal_simd()}")
        mv.pe, mv.simd = pe, simd
    _propagate(graph)


def folding_dict(graph: Graph):
    out = {"Defaults": {}}
    for l in graph.layers:
        if isinstance(l, MVAU):
            out[l.name] = {"PE": l.pe, "SIMD": l.simd}
        elif isinstance(l, SWG):
            out[l.name] = {"SIMD": l.simd}
        elif isinstance(l, (Pool, Thresholding)):
            out[l.name] = {"PE": l.pe}
    return out


def cost(res, board):
    """Share of the part a layer uses, summed over LUT, FF and BRAM: what the chooser minimises."""
    return res["lut"] / board.lut + res["ff"] / board.ff + res["bram"] / max(board.bram, 1)


def choose_folding(graph: Graph, board, target_fps=None, share=DEFAULT_SHARE):
    """Cheapest folding per MVAU meeting an II. Without a target: the smallest II whose LUTs stay
    within `share` of the part and that fits (share=FIT_LIMIT gives the fastest that fits), else
    the most folded design."""
    kbit = board.bram_kbit
    mvs = graph.mvaus
    cands = {}
    for mv in mvs:
        opts = []
        for pe in mv.legal_pe():
            for simd in mv.legal_simd():
                opts.append((mv.cycles(pe, simd), cost(mv.resources(kbit, pe, simd), board), pe, simd))
        cands[mv.name] = opts

    def pick(ii):
        for mv in mvs:
            ok = [o for o in cands[mv.name] if o[0] <= ii]
            if not ok:
                return False
            _, _, mv.pe, mv.simd = min(ok, key=lambda o: (o[1], o[0]))
        _propagate(graph)
        return True

    if target_fps is not None:
        if target_fps <= 0:
            raise FoldingError(f"target FPS must be positive, got {target_fps}")
        ii = int(board.clock_mhz * 1e6 // target_fps)
        if ii < 1 or not pick(ii):
            best = max(min(o[0] for o in cands[mv.name]) for mv in mvs)
            raise FoldingError(f"target {target_fps:g} FPS needs II <= {max(ii, 0)} cycles at {board.clock_mhz} MHz; "
                               f"the fastest folding reaches II {best} "
                               f"({board.clock_mhz * 1e6 / best:.1f} FPS)")
        est = estimate(graph, board)
        if not fits(est, board):
            raise FitError(f"target {target_fps:g} FPS does not fit: " + _fit_message(est, board))
        return
    iis = sorted({o[0] for opts in cands.values() for o in opts})
    floor = max(min(o[0] for o in cands[mv.name]) for mv in mvs)
    iis = [x for x in iis if x >= floor]
    for ii in iis:
        pick(ii)
        est = estimate(graph, board)
        # the weights need their BRAM at any folding: the share bounds the logic only, and of it the
        # LUTs: pipeline registers (one behind most LUTs, as many FFs as LUTs on these parts) must
        # not push a design to a slower folding; fits() still checks the FFs
        t = est["total"]
        if t["lut"] <= share * board.lut and fits(est, board, FIT_LIMIT):
            return
    pick(iis[-1])           # nothing within the share: the most folded design, if it fits at all
    est = estimate(graph, board)
    if not fits(est, board, FIT_LIMIT):
        raise FitError("even the most folded design does not fit: " + _fit_message(est, board))

"""Python twins of the hw/rtl units: reference behaviour (numpy, same math as the qonnx nodes),
packing of weights/thresholds into memory words, stream packing, and analytic cycle and resource
estimates (simple FINN-like formulas; LUT counts are 4-input-LUT equivalents)."""
import math
from pathlib import Path

import numpy as np

RTL_DIR = Path(__file__).resolve().parent / "rtl"
UNIT_FILES = ["mvau.v", "swg.v", "pad.v", "pool.v", "thresholding.v", "fifo.v", "dwc.v"]

MODE_XNOR, MODE_BIPOLAR, MODE_INT = 0, 1, 2
OUT_FIFO_MVAU = 8
OUT_FIFO_SWG = 4
OUT_FIFO_THRESH = 4


class UnitError(ValueError):
    pass


# ----------------------------------------------------------------------------- integer helpers
def signed_bits(lo: int, hi: int) -> int:
    """Bits of a two's-complement register holding every integer in [lo, hi]."""
    b = 1
    while not (-(1 << (b - 1)) <= lo and hi <= (1 << (b - 1)) - 1):
        b += 1
    return b


def unsigned_bits(hi: int) -> int:
    return max(1, int(hi).bit_length())


def divisors(n: int):
    return [d for d in range(1, n + 1) if n % d == 0]


def pad8(bits: int) -> int:
    return max(8, (bits + 7) // 8 * 8)


def in_range(bits: int, signed: bool):
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)


# ----------------------------------------------------------------------------- streams
def pack_beats(values, elems: int, bits: int):
    """Flat integer sequence -> list of words, `elems` elements per word, element 0 in the LSBs."""
    v = np.asarray(values, dtype=np.int64).reshape(-1)
    if v.size % elems:
        raise UnitError(f"{v.size} elements do not fill beats of {elems}")
    mask = (1 << bits) - 1
    words = []
    for beat in v.reshape(-1, elems):
        w = 0
        for i, e in enumerate(beat.tolist()):
            w |= (int(e) & mask) << (i * bits)
        words.append(w)
    return words


def unpack_beats(words, elems: int, bits: int, signed: bool = False):
    mask = (1 << bits) - 1
    out = []
    for w in words:
        w = int(w)
        for i in range(elems):
            e = (w >> (i * bits)) & mask
            if signed and e >> (bits - 1):
                e -= 1 << bits
            out.append(e)
    return np.asarray(out, dtype=np.int64)


def write_memh(path, words, width: int):
    """$readmemh file, one word per line; written under a temp name then renamed."""
    digits = max(1, (width + 3) // 4)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(f"{int(w):0{digits}x}\n" for w in words))
    tmp.replace(path)


# ----------------------------------------------------------------------------- MVAU
def mvau_ref(x, weights, thresholds=None, mode=MODE_XNOR):
    """x: (..., MW) integers (bits for XNOR); weights: (MH, MW) — bits {0,1} for XNOR, ±1 for
    bipolar, integers otherwise. Returns accumulators (..., MH) or, with thresholds (MH, T) sorted,
    the number of thresholds each accumulator reaches (acc >= T_k), as qonnx MultiThreshold."""
    x = np.asarray(x, dtype=np.int64)
    w = np.asarray(weights, dtype=np.int64)
    if mode == MODE_XNOR:
        acc = (x[..., None, :] == w).sum(-1)        # popcount of matches (XNOR)
    else:
        acc = x @ w.T
    if thresholds is None:
        return acc
    t = np.asarray(thresholds)
    return (acc[..., None] >= t).sum(-1).astype(np.int64)


def mvau_acc_range(weights, mode, in_bits, in_signed):
    """Exact accumulator range over all inputs, also of every partial sum (each term spans 0)."""
    w = np.asarray(weights, dtype=np.int64)
    if mode == MODE_XNOR:
        return 0, int(w.shape[1])
    lo_x, hi_x = in_range(in_bits, in_signed)
    a, b = w * lo_x, w * hi_x
    hi = np.maximum(np.maximum(a, b), 0).sum(1).max()
    lo = np.minimum(np.minimum(a, b), 0).sum(1).min()
    return int(lo), int(hi)


def clip_thresholds(thresholds, lo, hi):
    """acc >= T for integer acc in [lo, hi] is unchanged by T -> clip(ceil(T), lo, hi + 1)."""
    t = np.ceil(np.asarray(thresholds, dtype=np.float64))
    return np.clip(t, lo, hi + 1).astype(np.int64)


def mvau_weight_words(weights, pe, simd, mode, w_bits=1):
    """Word nf*SF + sf holds, at lane p*SIMD + s, weight[nf*PE + p, sf*SIMD + s]."""
    w = np.asarray(weights, dtype=np.int64)
    mh, mw = w.shape
    if mode == MODE_BIPOLAR:
        bits = (w > 0).astype(np.int64)                  # bit 1 = +1
    elif mode == MODE_XNOR:
        bits = w & 1
    else:
        bits = w & ((1 << w_bits) - 1)
    nf, sf = mh // pe, mw // simd
    # (nf, pe, sf, simd) -> (nf, sf, pe, simd)
    lanes = bits.reshape(nf, pe, sf, simd).transpose(0, 2, 1, 3).reshape(nf * sf, pe * simd)
    wb = 1 if mode in (MODE_XNOR, MODE_BIPOLAR) else w_bits
    return pack_beats(lanes.reshape(-1), pe * simd, wb)


def mvau_thresh_words(thresholds, pe, acc_bits):
    """Word nf holds threshold k of lane p at bit (p*N_THR + k)*ACC_BITS."""
    t = np.asarray(thresholds, dtype=np.int64)
    mh, nt = t.shape
    return pack_beats(t.reshape(mh // pe, pe * nt).reshape(-1), pe * nt, acc_bits)


def mvau_cycles(mw, mh, pe, simd, pixels=1):
    return (mw // simd) * (mh // pe) * pixels


TREE_PIPE_MVAU = 2     # bl_mvau TREE_PIPE: adder-tree levels between pipeline registers
MEM_REG_MVAU = 1       # bl_mvau MEM_REG: weight memory output and input vector registered


def mvau_tree(simd, mode, in_bits, acc_bits, w_bits=1, tree_pipe=TREE_PIPE_MVAU):
    """bl_mvau's compressor tree: (term bits, levels, register stages, [(nodes, bits) per level])."""
    tb = min(acc_bits, 1 if mode == MODE_XNOR else in_bits + 1 if mode == MODE_BIPOLAR else in_bits + w_bits)
    td = math.ceil(math.log2(simd)) if simd > 1 else 0
    ts = (td - 1) // tree_pipe if tree_pipe > 0 and td > 1 else 0
    levels = [(math.ceil(simd / 2 ** h), min(tb + h, acc_bits)) for h in range(1, td + 1)]
    return tb, td, ts, levels


MVAU_BANK_GROUP = 4     # bl_mvau's BG: banks a group, selected one step before the groups


def mvau_mem_regs(banked=False, mem_reg=MEM_REG_MVAU):
    """bl_mvau's MR: registers after the weight memory's read (with banks: the banks' own, the
    groups' select and the final select)."""
    return 3 if banked else (1 if mem_reg else 0)


def mvau_latency(simd, mode, in_bits, acc_bits, w_bits=1, tree_pipe=TREE_PIPE_MVAU, mem_reg=MEM_REG_MVAU,
                 banked=False):
    """Cycles from the issue of a vector's last input beat to its output beat's m_tvalid, with the
    FIFO empty: stage 1, the memory registers, the tree's registers, partial-sum, accumulator,
    threshold and FIFO."""
    return 5 + mvau_mem_regs(banked, mem_reg) + mvau_tree(simd, mode, in_bits, acc_bits, w_bits, tree_pipe)[2]


def mvau_out_fifo(simd, mode, in_bits, acc_bits, w_bits=1, tree_pipe=TREE_PIPE_MVAU, mem_reg=MEM_REG_MVAU,
                  banked=False):
    """bl_mvau's output FIFO depth: OUT_FIFO, or the credit round trip rounded up to a power of two."""
    ts = mvau_tree(simd, mode, in_bits, acc_bits, w_bits, tree_pipe)[2]
    return 1 << (max(OUT_FIFO_MVAU, ts + mvau_mem_regs(banked, mem_reg) + 7) - 1).bit_length()


PDP_WIDTH = 36          # the ECP5 block's 512 x 36 shape only exists as a pseudo-dual-port RAM


def _bram_shapes(kbit):
    if kbit >= 16:
        return [(16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36)]
    return [(2048, 2), (1024, 4), (512, 8), (256, 16)]


def bram_blocks(depth, width, kbit=18):
    """Block RAMs for a depth x width memory (simple dual port), best aspect ratio per block."""
    if depth <= 0 or width <= 0:
        return 0
    return min(math.ceil(depth / d) * math.ceil(width / w) for d, w in _bram_shapes(kbit))


def bank_depth(depth, width, kbit=18):
    """bl_mvau's W_BANK_D for a weight memory: 0 when it needs no banks (LUT RAM, or one block deep),
    else the depth of the cheapest block shape (the shallowest of equal cost: each bank is then
    blocks side by side that synthesis cannot cascade behind a mux)."""
    if memory_cost(depth, width, kbit)[1] == 0:
        return 0
    cost = bram_blocks(depth, width, kbit)
    cheapest = [(d, w) for d, w in _bram_shapes(kbit) if math.ceil(depth / d) * math.ceil(width / w) == cost]
    # an equally cheap true dual-port shape before the 36-bit pseudo-dual-port one, whose output
    # register the ECP5 flow leaves unused (hw.bram_outreg)
    d = min(d for d, w in ([s for s in cheapest if s[1] < PDP_WIDTH] or cheapest))
    return d if depth > d else 0


def bank_words(words, bank_d):
    """Weight words split into bl_mvau's banks of bank_d words (the last one shorter)."""
    return [words[i:i + bank_d] for i in range(0, len(words), bank_d)]


def memory_cost(depth, width, kbit=18):
    """(lut, bram): small memories go to LUT RAM (64 x 1 per LUT-equivalent), big ones to BRAM."""
    if depth * width <= 2048 or depth <= 32:
        return width * math.ceil(depth / 64), 0
    return 0, bram_blocks(depth, width, kbit)


def mvau_resources(mw, mh, pe, simd, mode, in_bits, acc_bits, n_thr, w_bits=1, kbit=18):
    sf, nf = mw // simd, mh // pe
    a = 1 if mode == MODE_XNOR else in_bits
    w = 1 if mode != MODE_INT else w_bits
    if mode == MODE_XNOR:
        mult = simd                                           # one XNOR per lane
    elif mode == MODE_BIPOLAR:
        mult = simd * min(acc_bits, in_bits + 1) // 2          # conditional negate at term width
    else:
        mult = simd * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
    # compressor tree: level h adds pairs at TB + h bits (LUT4 equivalents ~ bits per adder)
    _, _, _, levels = mvau_tree(simd, mode, in_bits, acc_bits, w_bits)
    tree = sum(n * b for n, b in levels)
    tree_ff = sum(n * b for h, (n, b) in enumerate(levels, 1)
                  if h % TREE_PIPE_MVAU == 0 and h < len(levels))
    comp = n_thr * acc_bits
    wl, wb = memory_cost(sf * nf, pe * simd * w, kbit)
    bd = bank_depth(sf * nf, pe * simd * w, kbit)
    banks = math.ceil(sf * nf / bd) if bd else 1
    tl, tb = memory_cost(nf, pe * max(n_thr, 1) * acc_bits, kbit) if n_thr else (0, 0)
    bl, bb = memory_cost(sf, simd * a, kbit) if nf > 1 else (0, 0)
    out_bits = unsigned_bits(n_thr) if n_thr else acc_bits
    depth = mvau_out_fifo(simd, mode, in_bits, acc_bits, w_bits, banked=banks > 1)
    fifo = pe * out_bits * depth // 4
    # banks: their select mux (LUT4 equivalents ~ bits x (banks - 1) / 3) and output registers
    bank_lut = pe * simd * w * (banks - 1) // 3 if banks > 1 else 0
    groups = math.ceil(banks / MVAU_BANK_GROUP)
    bank_ff = (banks + groups + 1) * pe * simd * w + 2 * simd * a if banks > 1 else 0
    lut = 60 + pe * (mult + tree + acc_bits + comp) + wl + tl + bl + fifo + bank_lut
    # the memory register holds both input sources (stream and buffer) and the weight word; the
    # thresholds are registered twice (memory output register, then beside the accumulator)
    ff = 40 + simd * a * (2 + 2 * MEM_REG_MVAU) + pe * simd * w * (1 + MEM_REG_MVAU) \
        + pe * (2 * acc_bits + 2 * n_thr * acc_bits + tree_ff + out_bits) + pe * out_bits * depth + bank_ff
    return dict(lut=int(lut), ff=int(ff), bram=int(wb + tb + bb))


# ----------------------------------------------------------------------------- SWG
def conv_out_dim(ifm, k, s, total_pad=0):
    """Output size of a convolution, as qonnx's compute_conv_output_dim (floor)."""
    return (ifm + total_pad - k) // s + 1


def pad_ref(images, pad=(0, 0, 0, 0), value=0):
    """images (N, H, W, C) padded by pad = [top, left, bottom, right] with `value` (qonnx Im2Col's
    pad_amount order and pad_value)."""
    t, l, b, r = (int(p) for p in pad)
    return np.pad(np.asarray(images), ((0, 0), (t, b), (l, r), (0, 0)), mode="constant", constant_values=value)


def swg_ref(images, k, s, pad=(0, 0, 0, 0), pad_value=0):
    """images (N, H, W, C) -> (N, OH, OW, K*K*C) in (kh, kw, c) order, like qonnx Im2Col (padding
    pad = [top, left, bottom, right] with pad_value first)."""
    x = pad_ref(images, pad, pad_value) if any(pad) else np.asarray(images)
    n, h, w, c = x.shape
    oh, ow = conv_out_dim(h, k, s), conv_out_dim(w, k, s)
    out = np.empty((n, oh, ow, k * k * c), dtype=x.dtype)
    for oy in range(oh):
        for ox in range(ow):
            out[:, oy, ox] = x[:, oy * s:oy * s + k, ox * s:ox * s + k, :].reshape(n, -1)
    return out


def swg_buf_rows(k):
    """Line-buffer rows of bl_swg (its BUF_ROWS default): the K rows in use plus the K rows of the
    next window, also the next image's first (rows no window reads are dropped, not stored)."""
    return 2 * k


def swg_cycles(ifm, c, k, s, simd, ifm_w=None):
    """Steady-state cycles per image of an IFM x IFM_W input (the padded image when a bl_pad feeds
    it): the reader emits OFM_H OFM_W K^2 C/SIMD beats, one per cycle, unless input (IFM IFM_W
    C/SIMD beats, one per cycle, unread rows included) is slower. The line buffer lets the writer
    fill the next image's first window while the reader is on the last output row, so neither
    waits at image boundaries (bl_swg alone, any K, S, padding: exactly this many cycles)."""
    ifm_w = ifm if ifm_w is None else ifm_w
    cf = c // simd
    read = conv_out_dim(ifm, k, s) * conv_out_dim(ifm_w, k, s) * k * k * cf
    write = ifm * ifm_w * cf
    return max(read, write)


SWG_SLICE_BITS = 18     # bl_swg's SLW


def swg_resources(ifm, c, k, s, simd, bits, kbit=18, ifm_w=None):
    ifm_w = ifm if ifm_w is None else ifm_w
    cf = c // simd
    depth = swg_buf_rows(k) * ifm_w * cf
    # bl_swg's buffer is slices of at most SWG_SLICE_BITS, a block RAM (or LUT RAM) each
    w = simd * bits
    slices = [min(SWG_SLICE_BITS, w - lo) for lo in range(0, w, SWG_SLICE_BITS)]
    ml, mb = (sum(x) for x in zip(*(memory_cost(depth, sw, kbit) for sw in slices)))
    ab = unsigned_bits(depth)
    rb = unsigned_bits(ifm) + unsigned_bits(s)          # the writer's row and stride-phase counters
    lut = 80 + 6 * ab + 2 * rb + ml + simd * bits * OUT_FIFO_SWG // 4
    # two read registers, and the write (enable, address, word) registered in front of the buffer
    ff = 60 + 9 * ab + rb + 2 + simd * bits * (3 + OUT_FIFO_SWG)
    return dict(lut=int(lut), ff=int(ff), bram=int(mb))


# ----------------------------------------------------------------------------- padding (bl_pad)
def pad_cycles(h, w, c, simd, pad):
    """bl_pad emits one beat per cycle: the padded image, (H+T+B) (W+L+R) C/SIMD beats."""
    t, l, b, r = pad
    return (h + t + b) * (w + l + r) * (c // simd)


def pad_resources(h, w, c, simd, bits, pad):
    """Row/column/fold counters, the interior test, one output register stage with its mux (yosys
    synth_ecp5, 6x6 image, C 2, SIMD 2, 2 bits, pad 1 all round: 27 LUT, 14 FF; model 43, 17)."""
    t, l, b, r = pad
    cb = unsigned_bits(h + t + b) + unsigned_bits(w + l + r) + unsigned_bits(c // simd)
    lut = 12 + 3 * cb + simd * bits
    ff = 4 + cb + simd * bits
    return dict(lut=int(lut), ff=int(ff), bram=0)


# ----------------------------------------------------------------------------- input thresholding
def thresh_ref(x, thresholds):
    """x (..., C) integers, thresholds (C, T) or (1, T) sorted: number of thresholds with x >= t,
    per channel (qonnx MultiThreshold on NHWC / NC data)."""
    x = np.asarray(x, dtype=np.int64)
    t = np.asarray(thresholds)
    if t.shape[0] == 1:
        t = np.repeat(t, x.shape[-1], axis=0)
    return (x[..., None] >= t).sum(-1).astype(np.int64)


def thresh_legal_pe(pixels, c):
    """PE values bl_thresholding takes: PE | C (NF = C/PE threshold words), or C | PE with PE
    dividing the image (each beat then holds PE/C whole pixels, one threshold word)."""
    return [d for d in divisors(pixels * c) if c % d == 0 or d % c == 0]


def thresh_clip(thresholds, in_bits=8):
    """x >= T for x in 0..2^in_bits - 1 is unchanged by T -> clip(ceil(T), 0, 2^in_bits):
    a threshold <= 0 always passes, one of 2^in_bits never does."""
    return clip_thresholds(thresholds, 0, (1 << in_bits) - 1)


def thresh_words(thresholds, pe, in_bits=8):
    """Word nf holds threshold k of lane p at bit (p*T + k)*(IN_BITS+1): the threshold of channel
    (nf*PE + p) mod C; NF = max(1, C/PE) words."""
    t = np.asarray(thresholds, dtype=np.int64)
    c, nt = t.shape
    nf = max(1, c // pe)
    lanes = np.stack([t[(nf_i * pe + np.arange(pe)) % c] for nf_i in range(nf)])   # (NF, PE, T)
    return pack_beats(lanes.reshape(-1), pe * nt, in_bits + 1)


def thresh_cycles(pixels, c, pe):
    return pixels * c // pe


def thresh_resources(c, pe, n_thr, in_bits=8, out_bits=1, kbit=18):
    """PE x T comparators of IN_BITS+1 bits against (mostly constant) thresholds, a per-lane count of
    T compare bits, the input register and the output FIFO. The threshold ROM (NF = C/PE words of
    PE*T*(IN_BITS+1) bits) is a memory only when deep; a few words fold into the comparators,
    selected by the fold counter. Checked against yosys synth_ecp5 (LUT4 + 2 per CCU2C): C 1 PE 4
    T 1: 67 (model 44); C 6 PE 3 T 3: 104 (model 93); C 3 PE 12 T 3: 254 (model 272)."""
    tb = in_bits + 1
    nf = max(1, c // pe)
    nfb = unsigned_bits(nf - 1) if nf > 1 else 0
    cmp_l = n_thr * (tb // 2 + 1 + nfb)
    count = max(0, n_thr - 1) * out_bits
    deep = nf > 16
    tl, tbr = memory_cost(nf, pe * n_thr * tb, kbit) if deep else (0, 0)
    fifo = pe * out_bits * OUT_FIFO_THRESH // 4
    lut = 20 + pe * (cmp_l + count) + tl + fifo + nfb
    ff = 12 + pe * in_bits + (pe * n_thr * tb if deep else 0) + pe * out_bits * OUT_FIFO_THRESH + nfb
    return dict(lut=int(lut), ff=int(ff), bram=int(tbr))


# ----------------------------------------------------------------------------- pool
def pool_ref(images, k):
    """Max-pool K x K stride K (floor) on (N, H, W, C)."""
    x = np.asarray(images)
    n, h, w, c = x.shape
    oh, ow = h // k, w // k
    x = x[:, :oh * k, :ow * k].reshape(n, oh, k, ow, k, c)
    return x.max(axis=(2, 4))


def pool_cycles(ifm, c, pe):
    return ifm * ifm * (c // pe)


def pool_resources(ifm, c, k, pe, bits, kbit=18):
    words = (ifm // k) * (c // pe)
    ab = words.bit_length()
    lut = 40 + pe * bits * 4 + pe * bits * math.ceil(words / 64) + ab // 2    # + the write bypass
    ff = 40 + 2 * pe * bits + 2 * ab + 1                   # + the address and the registered write
    return dict(lut=int(lut), ff=int(ff), bram=0)


# ----------------------------------------------------------------------------- FIFO / DWC
# yosys puts a FIFO this deep in a block RAM even when it holds few bits (it chose one for 512 x 1),
# so such a FIFO gets bl_fifo's output register (OUT_REG)
FIFO_OUT_REG_DEPTH = 64


def fifo_out_reg(depth):
    """bl_fifo's OUT_REG for a FIFO of this depth: 1 where synthesis may use a block RAM."""
    return int(depth >= FIFO_OUT_REG_DEPTH)


# ... and one that small in LUT RAM (bl_fifo LUTRAM): a block RAM's clock-to-out in front of the
# output register's bypass mux, placed wherever the block's column is, limited cnv to 86 MHz
FIFO_LUTRAM_BITS = 4096


def fifo_lutram(width, depth):
    """bl_fifo's LUTRAM for a FIFO of this shape."""
    return int(fifo_out_reg(depth) == 1 and width * depth <= FIFO_LUTRAM_BITS)


def fifo_resources(width, depth, kbit=18):
    if fifo_lutram(width, depth):
        ml, mb = width * math.ceil(depth / 64), 0
    else:
        ml, mb = memory_cost(depth, width, kbit) if depth > 4 else (width * depth // 4, 0)
    oreg = width * fifo_out_reg(depth)                     # the output register and its bypass mux
    return dict(lut=int(10 + ml + width // 2 + oreg),
                ff=int(12 + 2 * max(1, depth).bit_length() + (width if depth <= 4 else 0) + oreg), bram=int(mb))


def dwc_resources(in_w, out_w):
    w = max(in_w, out_w)
    return dict(lut=int(10 + w), ff=int(8 + 2 * w), bram=0)


def dwc_cycles(in_elems, out_elems, total_elems):
    """One beat of the wider side per max(ratio) cycles: the narrow side moves one beat per cycle."""
    return total_elems // min(in_elems, out_elems)


FIFO_LATENCY = 1    # bl_fifo: a beat taken in cycle c is offered from cycle c + 1 (also with OUT_REG)
DWC_LATENCY = 1     # bl_dwc (unequal widths): the converted beat is offered the cycle after it is complete


def fifo_ref(words):
    """bl_fifo hands on every beat unchanged, in order."""
    return [int(w) for w in words]


def fifo_cycles(beats):
    """Cycles from the first beat in to the last beat out (both counted), neither side stalling:
    bl_fifo takes and gives one beat a cycle at any DEPTH >= 2."""
    return beats + FIFO_LATENCY


def dwc_ref(words, in_elems, out_elems, bits):
    """bl_dwc: the same element stream in beats of out_elems (element 0 in the LSBs on both sides)."""
    return pack_beats(unpack_beats(words, in_elems, bits), out_elems, bits)


def dwc_stream_cycles(in_elems, out_elems, total_elems):
    """Cycles from the first beat in to the last beat out (both counted), neither side stalling: the
    narrow side moves a beat a cycle; equal widths are a wire."""
    lat = 0 if in_elems == out_elems else DWC_LATENCY
    return dwc_cycles(in_elems, out_elems, total_elems) + lat


# ----------------------------------------------------------------------------- UART (8N1)
def uart_line(data, clks_per_bit):
    """bl_uart_tx's line, one level a cycle, for bytes offered back to back: each byte takes one
    cycle to be taken (line idle), then the start bit, 8 data bits LSB first and the stop bit, each
    clks_per_bit cycles."""
    line = []
    for byte in data:
        bits = [0] + [(int(byte) >> i) & 1 for i in range(8)] + [1]
        line += [1] + [b for b in bits for _ in range(clks_per_bit)]
    return line


def uart_tx_cycles(n_bytes, clks_per_bit):
    return n_bytes * (10 * clks_per_bit + 1)


def uart_rx_ref(line, clks_per_bit):
    """What bl_uart_rx makes of a line (one level a cycle): a falling edge starts a byte if the line is
    still low half a bit later; the data bits are sampled a bit apart from there; a low stop bit drops
    the byte. Returns [(byte, framing_ok)], in order."""
    line = [int(v) for v in line]
    half = (clks_per_bit - 1) // 2
    out, t = [], 0
    while t < len(line):
        if line[t]:
            t += 1
            continue
        mid = t + half + 1                  # the start bit's middle
        if mid >= len(line):
            break
        if line[mid]:                       # a glitch, not a start bit
            t = mid + 1
            continue
        samples = [mid + clks_per_bit * (i + 1) for i in range(9)]
        if samples[-1] >= len(line):
            break
        byte = sum(line[s] << i for i, s in enumerate(samples[:8]))
        out.append((byte, bool(line[samples[8]])))
        t = samples[8] + 1
    return out


def uart_resources(clks_per_bit):
    """Receiver plus transmitter: bit counters of ceil(log2(CLKS_PER_BIT + 1)) bits, two shift
    registers, state and the two-flop synchroniser. The LUT term is fitted to yosys synth_ecp5 of
    the pair at CLKS_PER_BIT 4, 25 and 217 (carry cells counted as two LUTs)."""
    cb = max(1, int(clks_per_bit).bit_length())
    ff = (cb + 3 + 8 + 8 + 2 + 2 + 2) + (cb + 4 + 9 + 2)
    return dict(lut=int(2 * cb + 62), ff=int(ff), bram=0)

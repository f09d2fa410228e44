"""The compiler's layer IR, one class per FINN op (Thresholding, SWG = ConvolutionInputGenerator,
MVAU, Pool = StreamingMaxPool): its stream shape, legal folding, cycles and resources from the
unit twins (hw/units.py)."""
from dataclasses import dataclass, field

import numpy as np

from hw import units as U


class _Lanes:
    """A unit whose input and output beats both carry `lanes` elements (its PE or SIMD)."""

    @property
    def in_elems(self):
        return self.lanes

    @property
    def out_elems(self):
        return self.lanes


class _Mover(_Lanes):
    """A unit that moves elements without changing their width."""

    @property
    def out_bits(self):
        return self.bits


@dataclass
class Thresholding(_Lanes):
    """The graph's input MultiThreshold (Thresh_in): pixel bytes -> counts of thresholds passed."""
    name: str
    pixels: int
    c: int
    thresholds: np.ndarray = field(repr=False)      # (C, T) integers clipped to 0..2^in_bits
    out_bits: int = 1
    in_bits: int = 8
    pe: int = 1
    pe_fixed: bool = False                           # PE given by a folding config

    @property
    def n_thr(self):
        return int(self.thresholds.shape[1])

    @property
    def lanes(self):
        return self.pe

    def legal_pe(self):
        return U.thresh_legal_pe(self.pixels, self.c)

    def cycles(self, pe=None):
        return U.thresh_cycles(self.pixels, self.c, pe or self.pe)

    def resources(self, kbit, pe=None):
        return U.thresh_resources(self.c, pe or self.pe, self.n_thr, self.in_bits, self.out_bits, kbit)


@dataclass
class SWG(_Mover):
    """Im2Col: bl_swg on an ifm x ifm_w image, behind a bl_pad when pad = [top, left, bottom, right]
    is not all zero."""
    name: str
    ifm: int
    c: int
    k: int
    s: int
    bits: int
    simd: int = 1
    ifm_w: int = 0                                   # 0: square (ifm)
    pad: tuple = (0, 0, 0, 0)
    pad_value: int = 0

    @property
    def w(self):
        return self.ifm_w or self.ifm

    @property
    def padded(self):
        return any(self.pad)

    @property
    def hp(self):
        return self.ifm + self.pad[0] + self.pad[2]

    @property
    def wp(self):
        return self.w + self.pad[1] + self.pad[3]

    @property
    def ofm(self):
        return U.conv_out_dim(self.hp, self.k, self.s)

    @property
    def ofm_w(self):
        return U.conv_out_dim(self.wp, self.k, self.s)

    @property
    def lanes(self):
        return self.simd

    def cycles(self):
        # bl_pad emits the padded image at one beat per cycle, which the window generator's cycles
        # (over the padded image) already cover
        return U.swg_cycles(self.hp, self.c, self.k, self.s, self.simd, ifm_w=self.wp)

    def resources(self, kbit):
        r = U.swg_resources(self.hp, self.c, self.k, self.s, self.simd, self.bits, kbit, ifm_w=self.wp)
        if self.padded:
            p = U.pad_resources(self.ifm, self.w, self.c, self.simd, self.bits, self.pad)
            r = {k: r[k] + p[k] for k in r}
        return r


@dataclass
class MVAU:
    name: str
    mw: int
    mh: int
    mode: int
    in_bits: int
    in_signed: bool
    w_bits: int
    weights: np.ndarray = field(repr=False)          # (MH, MW) integers
    thresholds: np.ndarray = field(default=None, repr=False)   # (MH, T) clipped integers or None
    pixels: int = 1
    thresh_name: str = ""
    act_bits: int = 0                                 # activation output bits (0: accumulators)
    acc_lo: int = 0
    acc_hi: int = 0
    pe: int = 1
    simd: int = 1
    after_swg: int = 0                                # channels of the SWG feeding it (0: none)

    @property
    def n_thr(self):
        return 0 if self.thresholds is None else int(self.thresholds.shape[1])

    @property
    def acc_bits(self):
        hi = self.acc_hi + 1 if self.n_thr else self.acc_hi
        return max(U.signed_bits(self.acc_lo, hi), self.in_bits + 1)

    @property
    def out_bits(self):
        return self.act_bits if self.n_thr else self.acc_bits

    @property
    def in_elems(self):
        return self.simd

    @property
    def out_elems(self):
        return self.pe

    def legal_pe(self):
        return U.divisors(self.mh)

    def legal_simd(self):
        # after a window generator the SIMD lanes must come from one pixel's channels (FINN rule)
        return U.divisors(self.after_swg) if self.after_swg else U.divisors(self.mw)

    def cycles(self, pe=None, simd=None):
        return U.mvau_cycles(self.mw, self.mh, pe or self.pe, simd or self.simd, self.pixels)

    def bank_depth(self, kbit):
        """bl_mvau's W_BANK_D for this folding (0: one weight memory)."""
        return U.bank_depth((self.mw // self.simd) * (self.mh // self.pe), self.pe * self.simd * self.w_bits, kbit)

    def latency(self, kbit, simd=None):
        """bl_mvau's pipeline: cycles from a vector's last input beat to its output beat."""
        return U.mvau_latency(simd or self.simd, self.mode, self.in_bits, self.acc_bits, self.w_bits,
                              banked=self.bank_depth(kbit) > 0)

    def resources(self, kbit, pe=None, simd=None):
        return U.mvau_resources(self.mw, self.mh, pe or self.pe, simd or self.simd, self.mode, self.in_bits,
                                self.acc_bits, self.n_thr, self.w_bits, kbit)


@dataclass
class Pool(_Mover):
    name: str
    ifm: int
    c: int
    k: int
    bits: int
    pe: int = 1

    @property
    def lanes(self):
        return self.pe

    def cycles(self):
        return U.pool_cycles(self.ifm, self.c, self.pe)

    def resources(self, kbit):
        return U.pool_resources(self.ifm, self.c, self.k, self.pe, self.bits, kbit)


@dataclass
class Graph:
    layers: list
    in_shape: tuple          # (H, W, C)
    in_bits: int
    model: str = ""

    @property
    def mvaus(self):
        return [l for l in self.layers if isinstance(l, MVAU)]

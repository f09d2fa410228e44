"""ECP5 PLL (EHXPLLL) dividers for an output frequency, the search Project Trellis' ecppll does:
PFD = f_in / CLKI_DIV in 3.125..400 MHz, VCO = f_out * CLKOP_DIV in 400..800 MHz, feedback from
CLKOP so f_out = f_in * CLKFB_DIV / CLKI_DIV. The parameters are bl_pll_ecp5's (hw/rtl/pll_ecp5.v)."""
from dataclasses import dataclass

PFD_MHZ = (3.125, 400.0)
VCO_MHZ = (400.0, 800.0)
CLKI_DIV_MAX, CLKFB_DIV_MAX, CLKOP_DIV_MAX = 128, 80, 128


class PllError(ValueError):
    pass


@dataclass(frozen=True)
class PllConfig:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    f_in_mhz: float

    @property
    def f_out_mhz(self) -> float:
        return self.f_in_mhz * self.clkfb_div / self.clki_div

    @property
    def vco_mhz(self) -> float:
        return self.f_out_mhz * self.clkop_div

    def params(self) -> dict:
        """bl_pll_ecp5's Verilog parameters (the coarse phase half an output cycle, as ecppll sets it)."""
        return {"CLKI_DIV": self.clki_div, "CLKFB_DIV": self.clkfb_div, "CLKOP_DIV": self.clkop_div,
                "CLKOP_CPHASE": self.clkop_div // 2}


def pll_config(f_in_mhz: float, f_out_mhz: float, tol_mhz: float = 0.5) -> PllConfig:
    """Dividers whose output is closest to f_out_mhz (ties: VCO nearest 600 MHz); an error when
    nothing lands within tol_mhz, since the UART divisors and the timing target assume f_out."""
    best = None
    for ci in range(1, CLKI_DIV_MAX + 1):
        pfd = f_in_mhz / ci
        if not PFD_MHZ[0] <= pfd <= PFD_MHZ[1]:
            continue
        for fb in range(1, CLKFB_DIV_MAX + 1):
            out = pfd * fb
            for op in range(1, CLKOP_DIV_MAX + 1):
                vco = out * op
                if not VCO_MHZ[0] <= vco <= VCO_MHZ[1]:
                    continue
                key = (abs(out - f_out_mhz), abs(vco - 600.0))
                if best is None or key < best[0]:
                    best = (key, PllConfig(ci, fb, op, f_in_mhz))
    if best is None or best[0][0] > tol_mhz:
        got = f"; nearest {best[1].f_out_mhz:.3f} MHz" if best else ""
        raise PllError(f"the ECP5 PLL cannot make {f_out_mhz:g} MHz from {f_in_mhz:g} MHz within "
                       f"{tol_mhz:g} MHz{got}")
    return best[1]

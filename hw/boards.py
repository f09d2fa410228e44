"""Boards BitLens targets and the capacities of their parts.

Yosys knows device families, not parts, so fit checks need this table. Numbers are the vendors'
data-sheet capacities. BRAM is counted in 18-kbit-class blocks (Xilinx BRAM18, ECP5 EBR 18 kbit,
iCE40 EBR 4 kbit: see `bram_kbit`).
"""
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Board:
    name: str
    vendor: str            # "lattice" | "xilinx"
    family: str            # yosys synth family: ecp5, ice40, xc7, xcup
    part: str
    package: str
    lut: int
    ff: int
    bram: int              # blocks of bram_kbit each
    bram_kbit: int
    dsp: int
    clock_mhz: float       # the accelerator's clock (estimates, FPS, the bitstream's target)
    finn_board: str = ""   # FINN's board name (Xilinx only)
    notes: str = ""
    extra: dict = field(default_factory=dict)
    osc_mhz: float = 0.0   # oscillator a PLL makes clock_mhz from (0: no PLL, the oscillator is the clock)


BOARDS = {
    "ulx3s": Board("ulx3s", "lattice", "ecp5", "LFE5U-85F", "CABGA381", lut=83640, ff=83640,
                   bram=208, bram_kbit=18, dsp=156, clock_mhz=100.0, osc_mhz=25.0,
                   notes="Radiona ULX3S, 25 MHz oscillator (PLL to 100 MHz), FTDI USB serial",
                   extra={"nextpnr_device": "--85k", "clk_pin": "G2", "uart_tx_pin": "L4",
                          "uart_rx_pin": "M1", "led_pins": ["B2", "C2", "C1", "D2", "D1", "E2", "E1", "H3"]}),
    "icebreaker": Board("icebreaker", "lattice", "ice40", "iCE40UP5K", "SG48", lut=5280, ff=5280,
                        bram=30, bram_kbit=4, dsp=8, clock_mhz=12.0,
                        notes="iCEBreaker (iCE40 UP5K), 12 MHz oscillator, FTDI USB serial",
                        extra={"nextpnr_device": "--up5k", "clk_pin": "35", "uart_tx_pin": "9",
                               "uart_rx_pin": "6"}),
    "pynq-z1": Board("pynq-z1", "xilinx", "xc7", "xc7z020clg400-1", "clg400", lut=53200, ff=106400,
                     bram=280, bram_kbit=18, dsp=220, clock_mhz=100.0, finn_board="Pynq-Z1"),
    "pynq-z2": Board("pynq-z2", "xilinx", "xc7", "xc7z020clg400-1", "clg400", lut=53200, ff=106400,
                     bram=280, bram_kbit=18, dsp=220, clock_mhz=100.0, finn_board="Pynq-Z2"),
    "ultra96": Board("ultra96", "xilinx", "xcup", "xczu3eg-sbva484-1-e", "sbva484", lut=70560,
                     ff=141120, bram=432, bram_kbit=18, dsp=360, clock_mhz=100.0, finn_board="Ultra96"),
    "zcu104": Board("zcu104", "xilinx", "xcup", "xczu7ev-ffvc1156-2-e", "ffvc1156", lut=230400,
                    ff=460800, bram=624, bram_kbit=18, dsp=1728, clock_mhz=100.0, finn_board="ZCU104"),
    "kv260": Board("kv260", "xilinx", "xcup", "xck26-sfvc784-2LV-c", "sfvc784", lut=117120,
                   ff=234240, bram=288, bram_kbit=18, dsp=1248, clock_mhz=100.0, finn_board="KV260_SOM"),
}

DEFAULT_BOARD = "ulx3s"


def get_board(name: str) -> Board:
    try:
        return BOARDS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown board '{name}'; known boards: {', '.join(BOARDS)}") from None

`timescale 1ns/1ps
`default_nettype none
// bl_pll_ecp5: one ECP5 PLL (EHXPLLL) output, CLKOP fed back to itself:
//   f_out = f_in * CLKFB_DIV / CLKI_DIV, VCO = f_out * CLKOP_DIV (400..800 MHz).
// The dividers come from hw/ecp5_pll.py; nextpnr derives the output clock's constraint from them
// and the input pin's FREQUENCY, so the accelerator's paths are timed at f_out.
module bl_pll_ecp5 #(
    parameter CLKI_DIV = 1,         // reference divider (PFD = f_in / CLKI_DIV, 3.125..400 MHz)
    parameter CLKFB_DIV = 4,        // feedback divider: the multiplication
    parameter CLKOP_DIV = 6,        // VCO to output divider
    parameter CLKOP_CPHASE = 3      // coarse phase in VCO cycles (half an output cycle, as ecppll)
) (
    input  wire clk_in,
    output wire clk_out,
    output wire locked
);
    (* ICP_CURRENT="12" *) (* LPF_RESISTOR="8" *) (* MFG_ENABLE_FILTEROPAMP="1" *) (* MFG_GMCREF_SEL="2" *)
    EHXPLLL #(
        .PLLRST_ENA("DISABLED"),
        .INTFB_WAKE("DISABLED"),
        .STDBY_ENABLE("DISABLED"),
        .DPHASE_SOURCE("DISABLED"),
        .OUTDIVIDER_MUXA("DIVA"),
        .OUTDIVIDER_MUXB("DIVB"),
        .OUTDIVIDER_MUXC("DIVC"),
        .OUTDIVIDER_MUXD("DIVD"),
        .CLKI_DIV(CLKI_DIV),
        .CLKOP_ENABLE("ENABLED"),
        .CLKOP_DIV(CLKOP_DIV),
        .CLKOP_CPHASE(CLKOP_CPHASE),
        .CLKOP_FPHASE(0),
        .FEEDBK_PATH("CLKOP"),
        .CLKFB_DIV(CLKFB_DIV)
    ) u_pll (
        .RST(1'b0),
        .STDBY(1'b0),
        .CLKI(clk_in),
        .CLKOP(clk_out),
        .CLKFB(clk_out),
        .CLKINTFB(),
        .PHASESEL0(1'b0),
        .PHASESEL1(1'b0),
        .PHASEDIR(1'b1),
        .PHASESTEP(1'b1),
        .PHASELOADREG(1'b1),
        .PLLWAKESYNC(1'b0),
        .ENCLKOP(1'b0),
        .LOCK(locked)
    );
endmodule
`default_nettype wire

`timescale 1ns/1ps
`default_nettype none
// bl_tb_chain: a test chain of A -> B -> C -> A elements per beat (A | C, C | B, A | B) of BITS each,
// FIFOs in between, so a handshake bug in one unit shows up as a stall or a reordering of the chain.
module bl_tb_chain #(
    parameter A = 2,     // elements per beat in and out
    parameter B = 8,     // after up-conversion
    parameter C = 4,     // after the first down-conversion
    parameter BITS = 3   // bits per element
) (
    input  wire              ap_clk,
    input  wire              ap_rst_n,
    input  wire [A*BITS-1:0] s_tdata,
    input  wire              s_tvalid,
    output wire              s_tready,
    output wire [A*BITS-1:0] m_tdata,
    output wire              m_tvalid,
    input  wire              m_tready
);
    wire [A*BITS-1:0] d0;
    wire [B*BITS-1:0] d1, d2;
    wire [C*BITS-1:0] d3;
    wire v0, r0, v1, r1, v2, r2, v3, r3;
    bl_fifo #(.WIDTH(A*BITS), .DEPTH(4)) f0 (ap_clk, ap_rst_n, s_tdata, s_tvalid, s_tready, d0, v0, r0);
    bl_dwc #(.IN_W(A*BITS), .OUT_W(B*BITS)) w0 (ap_clk, ap_rst_n, d0, v0, r0, d1, v1, r1);
    bl_fifo #(.WIDTH(B*BITS), .DEPTH(2)) f1 (ap_clk, ap_rst_n, d1, v1, r1, d2, v2, r2);
    bl_dwc #(.IN_W(B*BITS), .OUT_W(C*BITS)) w1 (ap_clk, ap_rst_n, d2, v2, r2, d3, v3, r3);
    bl_dwc #(.IN_W(C*BITS), .OUT_W(A*BITS)) w2 (ap_clk, ap_rst_n, d3, v3, r3, m_tdata, m_tvalid, m_tready);
endmodule
`default_nettype wire

`timescale 1ns/1ps
`default_nettype none
// bl_tb_uart: bl_uart_tx looped back into bl_uart_rx. `line_low` pulls the line low, so the test can
// break a stop bit (a framing error) or put a glitch on an idle line.
module bl_tb_uart #(
    parameter CLKS_PER_BIT = 25   // clock cycles a bit, on both ends
) (
    input  wire       ap_clk,
    input  wire       ap_rst_n,
    input  wire [7:0] tx_data,
    input  wire       tx_valid,
    output wire       tx_ready,
    input  wire       line_low,
    output wire       line,
    output wire [7:0] rx_data,
    output wire       rx_valid,
    output wire       rx_frame_err
);
    wire tx;
    assign line = tx & ~line_low;
    bl_uart_tx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_tx (
        .clk(ap_clk), .rst_n(ap_rst_n), .data(tx_data), .valid(tx_valid), .ready(tx_ready), .tx(tx));
    bl_uart_rx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_rx (
        .clk(ap_clk), .rst_n(ap_rst_n), .rx(line), .data(rx_data), .valid(rx_valid), .frame_err(rx_frame_err));
endmodule
`default_nettype wire

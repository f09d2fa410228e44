`timescale 1ns/1ps
`default_nettype none
// bl_tb_withdraw: a one-beat register stage that breaks the AXI-Stream rule on purpose: a beat kept
// waiting by back-pressure is withdrawn for one cycle, then offered again. Every beat still arrives
// in order, so only the bench's rule watcher can catch it.
module bl_tb_withdraw #(
    parameter WIDTH = 8   // stream word bits
) (
    input  wire             ap_clk,
    input  wire             ap_rst_n,
    input  wire [WIDTH-1:0] s_tdata,
    input  wire             s_tvalid,
    output wire             s_tready,
    output wire [WIDTH-1:0] m_tdata,
    output wire             m_tvalid,
    input  wire             m_tready
);
    reg [WIDTH-1:0] d;
    reg v, blink;
    assign s_tready = ap_rst_n && !v;
    assign m_tdata = d;
    assign m_tvalid = v && !blink;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            v <= 1'b0;
            blink <= 1'b0;
        end else begin
            blink <= m_tvalid && !m_tready;
            if (s_tvalid && s_tready) begin
                d <= s_tdata;
                v <= 1'b1;
            end else if (m_tvalid && m_tready) begin
                v <= 1'b0;
            end
        end
    end
endmodule
`default_nettype wire

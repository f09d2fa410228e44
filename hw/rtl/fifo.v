`timescale 1ns/1ps
`default_nettype none
// bl_fifo: synchronous FIFO, DEPTH a power of two >= 2. s_tready depends only on the fill level, so
// a FIFO between two units cuts any combinational ready path between them.
module bl_fifo #(
    parameter WIDTH = 8,
    parameter DEPTH = 2
) (
    input  wire              ap_clk,
    input  wire              ap_rst_n,
    input  wire [WIDTH-1:0]  s_tdata,
    input  wire              s_tvalid,
    output wire              s_tready,
    output wire [WIDTH-1:0]  m_tdata,
    output wire              m_tvalid,
    input  wire              m_tready
);
    // illegal parameters stop the simulation at time 0 and yosys at elaboration
    initial begin
        if (WIDTH < 1) begin
            $error("bl_fifo: WIDTH %0d must be at least 1 (instance %m)", WIDTH);
            $finish;
        end
        if (DEPTH < 2 || (DEPTH & (DEPTH - 1)) != 0) begin
            $error("bl_fifo: DEPTH %0d must be a power of two >= 2 (instance %m)", DEPTH);
            $finish;
        end
    end
    localparam AB = $clog2(DEPTH);
    localparam CB = $clog2(DEPTH + 1);
    localparam integer FULL_I = DEPTH;
    localparam [CB-1:0] FULL = FULL_I[CB-1:0];
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    reg [AB-1:0] wp, rp;
    reg [CB-1:0] count;
    assign s_tready = ap_rst_n && (count != FULL);
    assign m_tvalid = (count != {CB{1'b0}});
    assign m_tdata = mem[rp];
    wire push = s_tvalid && s_tready;
    wire pop = m_tvalid && m_tready;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            wp <= {AB{1'b0}};
            rp <= {AB{1'b0}};
            count <= {CB{1'b0}};
        end else begin
            if (push) begin
                mem[wp] <= s_tdata;
                wp <= wp + 1'b1;
            end
            if (pop) rp <= rp + 1'b1;
            count <= count + {{(CB-1){1'b0}}, push} - {{(CB-1){1'b0}}, pop};
        end
    end
endmodule
`default_nettype wire

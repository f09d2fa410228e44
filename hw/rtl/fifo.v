`timescale 1ns/1ps
`default_nettype none
// bl_fifo: synchronous FIFO, DEPTH a power of two >= 2. s_tready depends only on the fill level, so
// a FIFO between two units cuts any combinational ready path between them.
// OUT_REG 1 puts a fabric register after the memory: a deep FIFO lands in a block RAM, whose slow
// clock-to-out would otherwise drive the consumer's logic (and its routing) directly. A beat reaches
// that register from the memory or, when the memory is empty, straight from s_tdata, so the latency
// stays one cycle; the register holds one more beat (DEPTH + 1 in all). The bypass mux in front of
// it also keeps synthesis from folding it into the block RAM as its read register.
// LUTRAM 1 asks synthesis for distributed (LUT) RAM: a block RAM's clock-to-out in front of that
// bypass mux, with the block wherever its column is, was a critical path of its own at 100 MHz.
module bl_fifo #(
    parameter WIDTH = 8,
    parameter DEPTH = 2,
    parameter OUT_REG = 0,
    parameter LUTRAM = 0
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
    reg [AB-1:0] wp, rp;
    reg [CB-1:0] count;
    assign s_tready = ap_rst_n && (count != FULL);
    wire push = s_tvalid && s_tready;
    wire nonempty = (count != {CB{1'b0}});
    wire pop;           // the memory's head leaves it
    wire write;         // s_tdata goes into the memory
    wire [WIDTH-1:0] head;
    generate
        if (LUTRAM != 0) begin : g_lutram
            (* ram_style = "distributed" *) reg [WIDTH-1:0] mem [0:DEPTH-1];
            always @(posedge ap_clk) if (ap_rst_n && write) mem[wp] <= s_tdata;
            assign head = mem[rp];
        end else begin : g_anyram
            reg [WIDTH-1:0] mem [0:DEPTH-1];
            always @(posedge ap_clk) if (ap_rst_n && write) mem[wp] <= s_tdata;
            assign head = mem[rp];
        end
    endgenerate
    generate
        if (OUT_REG != 0) begin : g_oreg
            reg [WIDTH-1:0] q;
            reg qv;
            wire load = !qv || m_tready;
            assign pop = load && nonempty;
            assign write = push && !(load && !nonempty);
            always @(posedge ap_clk) begin
                if (!ap_rst_n) qv <= 1'b0;
                else if (load) qv <= nonempty || push;
                if (load) q <= nonempty ? head : s_tdata;
            end
            assign m_tdata = q;
            assign m_tvalid = qv;
        end else begin : g_direct
            assign pop = nonempty && m_tready;
            assign write = push;
            assign m_tdata = head;
            assign m_tvalid = nonempty;
        end
    endgenerate
    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            wp <= {AB{1'b0}};
            rp <= {AB{1'b0}};
            count <= {CB{1'b0}};
        end else begin
            if (write) wp <= wp + 1'b1;
            if (pop) rp <= rp + 1'b1;
            count <= count + {{(CB-1){1'b0}}, write} - {{(CB-1){1'b0}}, pop};
        end
    end
endmodule
`default_nettype wire

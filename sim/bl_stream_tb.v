`timescale 1ns/1ps
`default_nettype none
// Fast whole-accelerator testbench (sim/tb_fast.py): the clock, the reset, the AXI-Stream source
// and the sink all live here, so the simulator runs free between the few moments Python looks in.
//
// Per chunk: Python writes IN_FILE (one input word per line, $readmemh), sets n_in / n_out and the
// stall levels, then writes a new non-zero chunk number. On the next clock edge the wrapper loads
// the words and streams them into the device; the source idles (tvalid low between beats) when
// 4 LFSR bits are below idle_level and the sink back-pressures (tready low) when 4 other LFSR
// bits are below bp_level (levels out of 16; 0 = never). A beat once offered is held until taken.
// Every output beat is kept, with the cycle at which each image's last beat arrived. DRAIN cycles
// after the n_out-th beat (more beats in that window count as surplus, out_ptr > n_out) the
// wrapper writes OUT_FILE / STAMP_FILE ($writememh) and raises done.
`ifndef BL_DUT
`define BL_DUT bitlens_top
`endif
module bl_stream_tb #(
    parameter IN_W = 8,
    parameter OUT_W = 8,
    parameter IN_DEPTH = 2,          // input words per chunk at most
    parameter OUT_DEPTH = 2,         // output words per chunk at most
    parameter OUT_BEATS = 1,         // output beats per image
    parameter DRAIN = 64,            // cycles watched for surplus beats after the last expected one
    /* verilator lint_off UNUSEDPARAM */
    parameter HALF_PERIOD = 5,       // ns (unused with BL_EXT_CLOCK)
    /* verilator lint_on UNUSEDPARAM */
    parameter IN_FILE = "tb_in.hex",
    parameter OUT_FILE = "tb_out.hex",
    parameter STAMP_FILE = "tb_stamp.hex"
) (
    input  wire [31:0] chunk,        // a new value loads IN_FILE and starts a chunk; 0 = idle
    input  wire [31:0] n_in,
    input  wire [31:0] n_out,
    input  wire [3:0]  idle_level,
    input  wire [3:0]  bp_level,
`ifdef BL_EXT_CLOCK
    input  wire        ap_clk,       // driven by a C++ main (sim/bl_stream_main.cpp)
`else
    output reg         ap_clk,
`endif
    output reg         ap_rst_n,
    output reg         done,
    output reg  [31:0] in_ptr,
    output reg  [31:0] out_ptr,
    output reg  [63:0] cycle,        // clock cycles since reset
    output reg  [63:0] chunk_cycles  // cycles from the chunk's load to its done
);
    localparam IMG_DEPTH = (OUT_DEPTH + OUT_BEATS - 1) / OUT_BEATS < 2 ? 2 : (OUT_DEPTH + OUT_BEATS - 1) / OUT_BEATS;

    reg [IN_W-1:0]  in_mem  [0:IN_DEPTH-1];
    reg [OUT_W-1:0] out_mem [0:OUT_DEPTH-1];
    reg [63:0]      stamp   [0:IMG_DEPTH-1];
    reg [31:0] loaded, obeat, nimg, drain, lfsr;
    reg [63:0] t_load;
    reg [3:0]  rst_cnt;
    reg        held;                 // the source offered a beat that was not taken yet

    initial begin
        ap_rst_n = 1'b0;
        rst_cnt = 4'd0;
    end
`ifndef BL_EXT_CLOCK
    initial ap_clk = 1'b0;
    always #HALF_PERIOD ap_clk = ~ap_clk;
`endif

    wire running = ap_rst_n && (loaded == chunk) && (loaded != 32'd0) && !done;
    wire [IN_W-1:0] s_tdata = in_mem[in_ptr[$clog2(IN_DEPTH)-1:0]];
    wire s_tvalid = running && (in_ptr < n_in) && (held || (lfsr[3:0] >= idle_level));
    wire s_tready;
    wire [OUT_W-1:0] m_tdata;
    wire m_tvalid;
    wire m_tready = running && (lfsr[11:8] >= bp_level);

    `BL_DUT dut (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_axis_0_tdata(s_tdata), .s_axis_0_tvalid(s_tvalid), .s_axis_0_tready(s_tready),
        .m_axis_0_tdata(m_tdata), .m_axis_0_tvalid(m_tvalid), .m_axis_0_tready(m_tready)
    );

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            rst_cnt <= rst_cnt + 4'd1;
            if (rst_cnt == 4'd7) ap_rst_n <= 1'b1;
            in_ptr <= 32'd0;
            out_ptr <= 32'd0;
            obeat <= 32'd0;
            nimg <= 32'd0;
            drain <= 32'd0;
            loaded <= 32'd0;
            done <= 1'b0;
            held <= 1'b0;
            cycle <= 64'd0;
            t_load <= 64'd0;
            chunk_cycles <= 64'd0;
            lfsr <= 32'h1;
        end else begin
            cycle <= cycle + 64'd1;
            lfsr <= {lfsr[30:0], lfsr[31] ^ lfsr[21] ^ lfsr[1] ^ lfsr[0]};
            if (chunk != loaded) begin
                $readmemh(IN_FILE, in_mem);
                loaded <= chunk;
                in_ptr <= 32'd0;
                out_ptr <= 32'd0;
                obeat <= 32'd0;
                nimg <= 32'd0;
                drain <= 32'd0;
                done <= 1'b0;
                held <= 1'b0;
                t_load <= cycle;
            end else if (running) begin
                held <= s_tvalid && !s_tready;
                if (s_tvalid && s_tready) in_ptr <= in_ptr + 32'd1;
                if (m_tvalid && m_tready) begin
                    if (out_ptr < OUT_DEPTH) out_mem[out_ptr[$clog2(OUT_DEPTH)-1:0]] <= m_tdata;
                    out_ptr <= out_ptr + 32'd1;
                    if (obeat == OUT_BEATS - 1) begin
                        obeat <= 32'd0;
                        if (nimg < IMG_DEPTH) stamp[nimg[$clog2(IMG_DEPTH)-1:0]] <= cycle;
                        nimg <= nimg + 32'd1;
                    end else begin
                        obeat <= obeat + 32'd1;
                    end
                end
                if (out_ptr >= n_out) begin
                    if (drain == DRAIN) begin
                        if (n_out != 32'd0) $writememh(OUT_FILE, out_mem, 0, n_out - 1);
                        if (nimg != 32'd0 && nimg <= IMG_DEPTH) $writememh(STAMP_FILE, stamp, 0, nimg - 1);
                        chunk_cycles <= cycle - t_load;
                        done <= 1'b1;
                    end
                    drain <= drain + 32'd1;
                end
            end
        end
    end
endmodule
`default_nettype wire

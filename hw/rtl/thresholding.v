`timescale 1ns/1ps
`default_nettype none
// bl_thresholding: FINN's Thresholding layer on an input stream (the graph's Thresh_in).
// Input: NHWC stream of unsigned IN_BITS elements, C channels, PE elements per beat. Output: per
// element the number of its channel's N_THR sorted thresholds T_k with x >= T_k (OUT_BITS bits),
// PE per beat, one beat per cycle under back-pressure.
// Thresholds are unsigned IN_BITS+1 bits (2^IN_BITS: never passes). Word nf of THRESH_FILE holds
// threshold k of lane p at bit (p*N_THR+k)*(IN_BITS+1): the threshold of channel (nf*PE+p) mod C.
// PE divides C (NF = C/PE words, beat b uses word b mod NF) or C divides PE (one word; a beat holds
// PE/C whole pixels). Like bl_mvau, a beat is only accepted when the output FIFO is sure to have
// room for it (credit counter), so s_tready has no combinational path from m_tready.
module bl_thresholding #(
    parameter C = 1,
    parameter PE = 1,
    parameter N_THR = 1,
    parameter IN_BITS = 8,
    parameter OUT_BITS = 1,
    parameter THRESH_FILE = "",     // empty: no initial contents (lets tools elaborate the defaults)
    parameter OUT_FIFO = 4
) (
    input  wire                     ap_clk,
    input  wire                     ap_rst_n,
    input  wire [PE*IN_BITS-1:0]    s_tdata,
    input  wire                     s_tvalid,
    output wire                     s_tready,
    output wire [PE*OUT_BITS-1:0]   m_tdata,
    output wire                     m_tvalid,
    input  wire                     m_tready
);
    localparam NF = (C >= PE) ? C / PE : 1;
    localparam NFB = NF > 1 ? $clog2(NF) : 1;
    localparam TB = IN_BITS + 1;
    localparam TW = PE * N_THR * TB;
    localparam IW = PE * IN_BITS;
    localparam OW = PE * OUT_BITS;
    localparam CB = $clog2(OUT_FIFO + 1);
    localparam integer NF_LAST_I = NF - 1;
    localparam [NFB-1:0] NF_LAST = NF_LAST_I[NFB-1:0];
    localparam integer CREDITS_I = OUT_FIFO;
    localparam [CB-1:0] CREDITS = CREDITS_I[CB-1:0];

    // ---------------- parameter checks: an unknown module stops every tool at elaboration
    generate
        if (C < 1 || PE < 1 || IN_BITS < 1 || N_THR < 1) begin : g_bad_sizes
            bl_thresholding_error_C_PE_IN_BITS_N_THR_must_be_positive u_err ();
        end
        if ((C % PE != 0) && (PE % C != 0)) begin : g_bad_pe
            bl_thresholding_error_PE_must_divide_C_or_be_a_multiple_of_it u_err ();
        end
        if ((1 << OUT_BITS) - 1 < N_THR) begin : g_bad_out
            bl_thresholding_error_OUT_BITS_cannot_count_N_THR u_err ();
        end
        if (OUT_FIFO < 4 || (OUT_FIFO & (OUT_FIFO - 1)) != 0) begin : g_bad_fifo
            bl_thresholding_error_OUT_FIFO_must_be_a_power_of_two_of_at_least_4 u_err ();
        end
    endgenerate

    // ---------------- threshold memory (registered read)
    reg [TW-1:0] tmem [0:NF-1];
    generate
        if (THRESH_FILE != "") begin : g_tinit
            initial $readmemh(THRESH_FILE, tmem);
        end
    endgenerate

    // ---------------- stage 1: accept, register the beat and its threshold word
    reg [NFB-1:0] nf;
    reg [CB-1:0] credits;            // beats accepted and not yet taken from the output FIFO
    assign s_tready = ap_rst_n && (credits < CREDITS);
    wire acc = s_tvalid && s_tready;
    wire pop = m_tvalid && m_tready;
    reg [IW-1:0] x1;
    reg [TW-1:0] t1;
    reg v1;
    always @(posedge ap_clk) begin
        if (acc) begin
            x1 <= s_tdata;
            t1 <= tmem[nf];
        end
        if (!ap_rst_n) begin
            v1 <= 1'b0;
            nf <= {NFB{1'b0}};
            credits <= {CB{1'b0}};
        end else begin
            v1 <= acc;
            if (acc) nf <= (nf == NF_LAST) ? {NFB{1'b0}} : nf + 1'b1;
            credits <= credits + {{(CB-1){1'b0}}, acc} - {{(CB-1){1'b0}}, pop};
        end
    end

    // ---------------- stage 2: compare and count (thresholds are sorted: a thermometer code)
    function [31:0] ones;
        input [N_THR-1:0] v;
        integer q;
        begin
            ones = 32'd0;
            for (q = 0; q < N_THR; q = q + 1) ones = ones + {31'd0, v[q]};
        end
    endfunction
    wire [OW-1:0] outv;
    genvar gp, gk;
    generate
        for (gp = 0; gp < PE; gp = gp + 1) begin : g_pe
            wire [TB-1:0] xe = {1'b0, x1[gp*IN_BITS +: IN_BITS]};
            wire [N_THR-1:0] ge;
            for (gk = 0; gk < N_THR; gk = gk + 1) begin : g_cmp
                assign ge[gk] = (xe >= t1[(gp*N_THR+gk)*TB +: TB]);
            end
            wire [31:0] cnt = ones(ge);
            assign outv[gp*OUT_BITS +: OUT_BITS] = cnt[OUT_BITS-1:0];
        end
    endgenerate

    // ---------------- output FIFO: the credits above guarantee room, so its s_tready is not needed
    wire fifo_room_unused;
    bl_fifo #(.WIDTH(OW), .DEPTH(OUT_FIFO)) out_fifo (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_tdata(outv), .s_tvalid(v1), .s_tready(fifo_room_unused),
        .m_tdata(m_tdata), .m_tvalid(m_tvalid), .m_tready(m_tready));
endmodule
`default_nettype wire

`timescale 1ns/1ps
// bl_mvau: FINN-style matrix-vector-activation unit.
// Input: SIMD elements of IN_BITS per beat, SF = MW/SIMD beats per vector. Output: PE elements per
// beat, NF = MH/PE beats per vector (beat nf, lane p = channel nf*PE + p).
// The first neuron fold takes the vector from the stream and stores it; the other NF-1 folds reread
// it from the buffer, so a vector costs exactly SF*NF issue cycles. The datapath never stalls:
// an output beat is only issued when the output FIFO is sure to have room for it (credit counter),
// which keeps s_tready free of any combinational path from m_tready.
// MODE 0: XNOR popcount of bits; 1: integer input +/- (weight bit 1 = +1, 0 = -1);
// 2: integer input x signed W_BITS weight. N_THR = 0 streams the accumulators (OUT_BITS must equal
// ACC_BITS then), otherwise out = number of thresholds T_k with acc >= T_k.
// Memories: word nf*SF+sf of WEIGHT_FILE holds lane (p*SIMD+s)*W_BITS; word nf of THRESH_FILE holds
// threshold k of lane p at bit (p*N_THR+k)*ACC_BITS (two's complement).
module bl_mvau #(
    parameter MW = 8,
    parameter MH = 4,
    parameter PE = 1,
    parameter SIMD = 1,
    parameter IN_BITS = 1,
    parameter IN_SIGNED = 0,
    parameter MODE = 0,
    parameter W_BITS = 1,
    parameter ACC_BITS = 8,
    parameter N_THR = 1,
    parameter OUT_BITS = 1,
    parameter WEIGHT_FILE = "",      // empty: no initial contents (lets tools elaborate the defaults)
    parameter THRESH_FILE = "",
    parameter OUT_FIFO = 8
) (
    input  wire                     ap_clk,
    input  wire                     ap_rst_n,
    input  wire [SIMD*IN_BITS-1:0]  s_tdata,
    input  wire                     s_tvalid,
    output wire                     s_tready,
    output wire [PE*OUT_BITS-1:0]   m_tdata,
    output wire                     m_tvalid,
    input  wire                     m_tready
);
    localparam SF = MW / SIMD;
    localparam NF = MH / PE;
    localparam WD = SF * NF;
    localparam SFB = SF > 1 ? $clog2(SF) : 1;
    localparam NFB = NF > 1 ? $clog2(NF) : 1;
    localparam WAB = WD > 1 ? $clog2(WD) : 1;
    localparam IW = SIMD * IN_BITS;
    localparam WW = PE * SIMD * W_BITS;
    localparam NT = N_THR > 0 ? N_THR : 1;
    localparam TW = PE * NT * ACC_BITS;
    localparam OW = PE * OUT_BITS;
    localparam CB = $clog2(OUT_FIFO + 1);
    localparam integer SF_LAST_I = SF - 1;
    localparam [SFB-1:0] SF_LAST = SF_LAST_I[SFB-1:0];
    localparam integer NF_LAST_I = NF - 1;
    localparam [NFB-1:0] NF_LAST = NF_LAST_I[NFB-1:0];
    localparam integer WD_LAST_I = WD - 1;
    localparam [WAB-1:0] WD_LAST = WD_LAST_I[WAB-1:0];
    localparam integer CREDITS_I = OUT_FIFO;
    localparam [CB-1:0] CREDITS = CREDITS_I[CB-1:0];

    // ---------------- issue stage: fold counters and flow control
    reg [SFB-1:0] sf;
    reg [NFB-1:0] nf;
    reg [WAB-1:0] waddr;
    reg [CB-1:0] credits;           // FIFO entries plus output beats in flight
    wire first_nf = (nf == {NFB{1'b0}});
    wire last_sf = (sf == SF_LAST);
    wire can = !last_sf || (credits < CREDITS);
    assign s_tready = ap_rst_n && first_nf && can;
    wire issue = ap_rst_n && can && (!first_nf || s_tvalid);
    wire pop = m_tvalid && m_tready;
    wire out_issue = issue && last_sf;

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            sf <= {SFB{1'b0}};
            nf <= {NFB{1'b0}};
            waddr <= {WAB{1'b0}};
            credits <= {CB{1'b0}};
        end else begin
            if (issue) begin
                sf <= last_sf ? {SFB{1'b0}} : sf + 1'b1;
                if (last_sf) nf <= (nf == NF_LAST) ? {NFB{1'b0}} : nf + 1'b1;
                waddr <= (waddr == WD_LAST) ? {WAB{1'b0}} : waddr + 1'b1;
            end
            credits <= credits + {{(CB-1){1'b0}}, out_issue} - {{(CB-1){1'b0}}, pop};
        end
    end

    // weight memory (registered read so synthesis maps it to block RAM)
    reg [WW-1:0] wmem [0:WD-1];
    generate
        if (WEIGHT_FILE != "") begin : g_winit
            initial $readmemh(WEIGHT_FILE, wmem);
        end
    endgenerate
    reg [WW-1:0] w1;
    always @(posedge ap_clk) if (issue) w1 <= wmem[waddr];

    // input vector buffer, reused by neuron folds 1..NF-1
    reg [IW-1:0] xin1;
    reg from_in1;
    wire [IW-1:0] xbuf1;
    generate
        if (NF > 1) begin : g_buf
            reg [IW-1:0] ibuf [0:SF-1];
            reg [IW-1:0] brd;
            always @(posedge ap_clk) begin
                if (issue && first_nf) ibuf[sf] <= s_tdata;
                if (issue) brd <= ibuf[sf];
            end
            assign xbuf1 = brd;
        end else begin : g_nobuf
            assign xbuf1 = xin1;
        end
    endgenerate

    reg v1, first1, last1;
    reg [NFB-1:0] nf1;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) v1 <= 1'b0;
        else v1 <= issue;
        if (issue) begin
            first1 <= (sf == {SFB{1'b0}});
            last1 <= last_sf;
            nf1 <= nf;
            from_in1 <= first_nf;
            if (first_nf) xin1 <= s_tdata;
        end
    end
    wire [IW-1:0] x1 = from_in1 ? xin1 : xbuf1;

    // ---------------- stage 2: per-PE products and adder tree
    wire [PE*ACC_BITS-1:0] part1;
    genvar gp, gs;
    generate
        for (gp = 0; gp < PE; gp = gp + 1) begin : g_pe
            wire [SIMD*ACC_BITS-1:0] terms;
            for (gs = 0; gs < SIMD; gs = gs + 1) begin : g_simd
                wire [IN_BITS-1:0] xs = x1[gs*IN_BITS +: IN_BITS];
                wire [W_BITS-1:0] ws = w1[(gp*SIMD+gs)*W_BITS +: W_BITS];
                wire [ACC_BITS-1:0] xe = {{(ACC_BITS-IN_BITS){IN_SIGNED != 0 && xs[IN_BITS-1]}}, xs};
                wire [ACC_BITS-1:0] term;
                if (MODE == 0) begin : g_xnor
                    assign term = {{(ACC_BITS-1){1'b0}}, ~(xs[0] ^ ws[0])};
                end else if (MODE == 1) begin : g_pm
                    assign term = ws[0] ? xe : (~xe + 1'b1);
                end else begin : g_mul
                    wire [ACC_BITS-1:0] we = {{(ACC_BITS-W_BITS){ws[W_BITS-1]}}, ws};
                    wire [2*ACC_BITS-1:0] prod = $signed(xe) * $signed(we);
                    assign term = prod[ACC_BITS-1:0];
                end
                assign terms[gs*ACC_BITS +: ACC_BITS] = term;
            end
            bl_addtree #(.N(SIMD), .W(ACC_BITS)) u_tree (.terms(terms), .sum(part1[gp*ACC_BITS +: ACC_BITS]));
        end
    endgenerate

    reg v2, first2, last2;
    reg [NFB-1:0] nf2;
    reg [PE*ACC_BITS-1:0] part2;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) v2 <= 1'b0;
        else v2 <= v1;
        first2 <= first1;
        last2 <= last1;
        nf2 <= nf1;
        part2 <= part1;
    end

    // ---------------- stage 3: accumulate; thresholds read alongside the final beat
    reg [PE*ACC_BITS-1:0] acc;
    reg v3;
    reg [TW-1:0] t3;
    integer i;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) v3 <= 1'b0;
        else v3 <= v2 && last2;
        if (v2)
            for (i = 0; i < PE; i = i + 1)
                acc[i*ACC_BITS +: ACC_BITS] <= (first2 ? {ACC_BITS{1'b0}} : acc[i*ACC_BITS +: ACC_BITS])
                                               + part2[i*ACC_BITS +: ACC_BITS];
    end
    generate
        if (N_THR > 0) begin : g_tmem
            reg [TW-1:0] tmem [0:NF-1];
            if (THRESH_FILE != "") begin : g_tinit
                initial $readmemh(THRESH_FILE, tmem);
            end
            always @(posedge ap_clk) if (v2 && last2) t3 <= tmem[nf2];
        end else begin : g_notmem
            always @(posedge ap_clk) t3 <= {TW{1'b0}};
        end
    endgenerate

    // ---------------- activation
    function [31:0] ones;
        input [NT-1:0] v;
        integer q;
        begin
            ones = 32'd0;
            for (q = 0; q < NT; q = q + 1) ones = ones + {31'd0, v[q]};
        end
    endfunction
    wire [OW-1:0] outv;
    genvar gk;
    generate
        for (gp = 0; gp < PE; gp = gp + 1) begin : g_act
            wire signed [ACC_BITS-1:0] a = acc[gp*ACC_BITS +: ACC_BITS];
            if (N_THR == 0) begin : g_raw
                assign outv[gp*OUT_BITS +: OUT_BITS] = a;
            end else begin : g_thr
                wire [N_THR-1:0] ge;
                for (gk = 0; gk < N_THR; gk = gk + 1) begin : g_cmp
                    wire signed [ACC_BITS-1:0] t = t3[(gp*N_THR+gk)*ACC_BITS +: ACC_BITS];
                    assign ge[gk] = (a >= t);
                end
                // thresholds are sorted, so the count of passed ones is a thermometer code
                wire [31:0] cnt = ones(ge);
                assign outv[gp*OUT_BITS +: OUT_BITS] = cnt[OUT_BITS-1:0];
            end
        end
    endgenerate

    // ---------------- output FIFO: the credits above guarantee room, so its s_tready is not needed
    wire fifo_room_unused;
    bl_fifo #(.WIDTH(OW), .DEPTH(OUT_FIFO)) out_fifo (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_tdata(outv), .s_tvalid(v3), .s_tready(fifo_room_unused),
        .m_tdata(m_tdata), .m_tvalid(m_tvalid), .m_tready(m_tready));
endmodule

// Balanced adder tree over N terms of W bits (two's complement, wraps like the accumulator).
module bl_addtree #(
    parameter N = 4,
    parameter W = 8
) (
    input  wire [N*W-1:0] terms,
    output wire [W-1:0]   sum
);
    generate
        if (N == 1) begin : g_leaf
            assign sum = terms;
        end else begin : g_split
            localparam NL = N / 2;
            wire [W-1:0] sl, sr;
            bl_addtree #(.N(NL), .W(W)) u_l (.terms(terms[NL*W-1:0]), .sum(sl));
            bl_addtree #(.N(N-NL), .W(W)) u_r (.terms(terms[N*W-1:NL*W]), .sum(sr));
            assign sum = sl + sr;
        end
    endgenerate
endmodule

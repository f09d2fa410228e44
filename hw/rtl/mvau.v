`timescale 1ns/1ps
`default_nettype none
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
    parameter OUT_FIFO = 8,
    parameter TREE_PIPE = 2,         // adder-tree levels between pipeline registers (0: none)
    parameter MEM_REG = 1,           // 1: register the weight memory's output and the input vector
                                     // before the products (the block RAM's output register), so
                                     // its clock-to-out is not in front of the tree
    parameter W_BANK_D = 0           // >0: the weight memory is built of banks this deep (block RAMs
                                     // side by side, none cascaded), their outputs registered before
                                     // the bank select, which is two muxes with a register between
                                     // them: two cycles more latency; bank b then reads
                                     // WEIGHT_FILE followed by "_bbb.mem" (three digits).
                                     // 0: one memory (synthesis muxes its blocks after their outputs)
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
    // compressor tree (stage 2): terms of TB bits, TD levels, TS pipeline registers
    localparam TB_I = MODE == 0 ? 1 : (MODE == 1 ? IN_BITS + 1 : IN_BITS + W_BITS);
    localparam TB = TB_I < ACC_BITS ? TB_I : ACC_BITS;
    localparam SGN = MODE == 0 ? 0 : 1;
    localparam TD = SIMD > 1 ? $clog2(SIMD) : 0;
    localparam TS = (TREE_PIPE > 0 && TD > 1) ? (TD - 1) / TREE_PIPE : 0;
    localparam TOW_I = TB + TD;
    localparam TOW = TOW_I < ACC_BITS ? TOW_I : ACC_BITS;
    localparam WBANKS = (W_BANK_D > 0 && WD > W_BANK_D) ? (WD + W_BANK_D - 1) / W_BANK_D : 1;
    localparam MR = WBANKS > 1 ? 3 : (MEM_REG != 0 ? 1 : 0);  // registers after the memory read
    localparam DL = TS + MR;                       // register stages between stage 1 and stage 2
    // output FIFO: at least the credit round trip (issue to pop, DL + 7 cycles) so a fold of
    // one beat per vector still issues every cycle; a power of two
    localparam FD_MIN = OUT_FIFO > DL + 7 ? OUT_FIFO : DL + 7;
    localparam FD = 1 << $clog2(FD_MIN);
    localparam CB = $clog2(FD + 1);
    localparam integer SF_LAST_I = SF - 1;
    localparam [SFB-1:0] SF_LAST = SF_LAST_I[SFB-1:0];
    localparam integer NF_LAST_I = NF - 1;
    localparam [NFB-1:0] NF_LAST = NF_LAST_I[NFB-1:0];
    localparam integer WD_LAST_I = WD - 1;
    localparam [WAB-1:0] WD_LAST = WD_LAST_I[WAB-1:0];
    localparam integer CREDITS_I = FD;
    localparam [CB-1:0] CREDITS = CREDITS_I[CB-1:0];

    // ---------------- parameter checks: an unknown module stops every tool at elaboration
    generate
        if (W_BANK_D > 0 && (W_BANK_D & (W_BANK_D - 1)) != 0) begin : g_bad_bank
            bl_mvau_error_W_BANK_D_must_be_a_power_of_two u_err ();
        end
    endgenerate

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

    // weight memory (registered read so synthesis maps it to block RAM), then MR registers: wq is
    // the word read MR + 1 cycles earlier. The memories are read every cycle, not on issue: a word
    // is taken the cycle after its address, and a read enable would be one more net from the
    // issue logic to every block of a memory that placement spreads over the chip.
    wire [WW-1:0] wq;
    generate
        if (WBANKS == 1) begin : g_wmem
            reg [WW-1:0] wmem [0:WD-1];
            if (WEIGHT_FILE != "") begin : g_winit
                initial $readmemh(WEIGHT_FILE, wmem);
            end
            reg [WW-1:0] w1;
            always @(posedge ap_clk) w1 <= wmem[waddr];
            if (MR != 0) begin : g_wreg
                reg [WW-1:0] wr;
                always @(posedge ap_clk) wr <= w1;
                assign wq = wr;
            end else begin : g_wnoreg
                assign wq = w1;
            end
        end else begin : g_wbanks
            // a deep memory: synthesis would mux its blocks right after their slow outputs, so the
            // banks are explicit and the mux reads registers
            localparam BAB = $clog2(W_BANK_D);
            localparam BSB = $clog2(WBANKS);
            wire [WBANKS*WW-1:0] bq;
            genvar gb;
            for (gb = 0; gb < WBANKS; gb = gb + 1) begin : g_bank
                localparam BD = (gb == WBANKS - 1) ? WD - gb * W_BANK_D : W_BANK_D;
                localparam BDB = BD > 1 ? $clog2(BD) : 1;
                localparam [7:0] D2 = 48 + gb / 100;
                localparam [7:0] D1 = 48 + (gb / 10) % 10;
                localparam [7:0] D0 = 48 + gb % 10;
                reg [WW-1:0] bmem [0:BD-1];
                if (WEIGHT_FILE != "") begin : g_binit
                    initial $readmemh({WEIGHT_FILE, "_", D2, D1, D0, ".mem"}, bmem);
                end
                reg [WW-1:0] q, r;
                always @(posedge ap_clk) begin
                    q <= bmem[waddr[BDB-1:0]];
                    r <= q;
                end
                assign bq[gb*WW +: WW] = r;
            end
            // the select in two steps, groups of BG banks, then the groups, registered between:
            // in one step, the 36 banks of a 73728-word memory were six LUT levels after the
            // routing from a bank across the chip
            localparam BG = 4;
            localparam NG = (WBANKS + BG - 1) / BG;
            localparam GSB = NG > 1 ? $clog2(NG) : 1;
            wire [NG*BG*WW-1:0] bqp;
            if (NG * BG > WBANKS) begin : g_pad
                assign bqp = {{((NG * BG - WBANKS) * WW){1'b0}}, bq};
            end else begin : g_nopad
                assign bqp = bq;
            end
            reg [BSB-1:0] bs1, bs2;
            reg [GSB-1:0] gs3;
            reg [NG*WW-1:0] gq;
            reg [WW-1:0] wm;
            integer g;
            always @(posedge ap_clk) begin
                bs1 <= waddr[WAB-1:BAB];
                bs2 <= bs1;
                for (g = 0; g < NG; g = g + 1)
                    gq[g*WW +: WW] <= bqp[(g * BG + bs2 % BG) * WW +: WW];
                gs3 <= bs2 / BG;
                wm <= gq[gs3*WW +: WW];
            end
            assign wq = wm;
        end
    endgenerate

    // input vector buffer, reused by neuron folds 1..NF-1
    reg [IW-1:0] xin1;
    reg from_in1;
    wire [IW-1:0] xbuf1;
    generate
        if (NF > 1) begin : g_buf
            // read at a fold's address while the first fold writes it, but only used by the
            // others: no collision logic between the ports (no_rw_check)
            (* no_rw_check *) reg [IW-1:0] ibuf [0:SF-1];
            reg [IW-1:0] brd;
            always @(posedge ap_clk) begin
                if (issue && first_nf) ibuf[sf] <= s_tdata;
                brd <= ibuf[sf];
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
    // the input vector alongside wq: both sources registered before their mux (the buffer is a
    // block RAM too), then MR - 1 times more with banked weights
    wire [IW-1:0] x1;
    generate
        if (MR == 0) begin : g_xnoreg
            assign x1 = from_in1 ? xin1 : xbuf1;
        end else begin : g_xreg
            reg [IW-1:0] xa, xb;
            reg fr;
            always @(posedge ap_clk) begin
                xa <= xin1;
                xb <= xbuf1;
                fr <= from_in1;
            end
            wire [IW-1:0] xm = fr ? xa : xb;
            if (MR == 1) begin : g_x1
                assign x1 = xm;
            end else begin : g_x2
                reg [IW-1:0] x2 [0:MR-2];
                integer k;
                always @(posedge ap_clk) begin
                    x2[0] <= xm;
                    for (k = 1; k < MR - 1; k = k + 1) x2[k] <= x2[k-1];
                end
                assign x1 = x2[MR-2];
            end
        end
    endgenerate

    // ---------------- stage 2: per-PE products and compressor tree
    // Terms are TB bits wide (1 for XNOR); tree level h adds pairs at TB+h bits (capped at ACC_BITS,
    // where the sum wraps like the accumulator), with a register after every TREE_PIPE levels
    // below the root: TS extra cycles of latency, none of throughput.
    // MODE 1 negates a term as ~x and owes it the +1 of -x = ~x + 1: each adder of the tree takes
    // one owed bit as its carry-in and the accumulator the last one, so no term needs an adder of
    // its own in front of the tree.
    wire [PE*ACC_BITS-1:0] part1;
    wire [PE-1:0] owe1;
    genvar gp, gs;
    generate
        for (gp = 0; gp < PE; gp = gp + 1) begin : g_pe
            wire [SIMD*TB-1:0] terms;
            wire [SIMD-1:0] owed;
            for (gs = 0; gs < SIMD; gs = gs + 1) begin : g_simd
                wire [IN_BITS-1:0] xs = x1[gs*IN_BITS +: IN_BITS];
                wire [W_BITS-1:0] ws = wq[(gp*SIMD+gs)*W_BITS +: W_BITS];
                wire [TB-1:0] term;
                if (MODE == 0) begin : g_xnor
                    assign term = ~(xs[0] ^ ws[0]);
                    assign owed[gs] = 1'b0;
                end else begin : g_arith
                    localparam XW = IN_BITS + 1;
                    wire [XW-1:0] xe = {IN_SIGNED != 0 && xs[IN_BITS-1], xs};
                    if (MODE == 1) begin : g_pm
                        wire [XW-1:0] t = ws[0] ? xe : ~xe;
                        assign term = t[TB-1:0];
                        assign owed[gs] = !ws[0];
                    end else begin : g_mul
                        localparam MW2 = XW + W_BITS;
                        wire signed [MW2-1:0] xm = {{W_BITS{xe[XW-1]}}, xe};
                        wire signed [MW2-1:0] wm = {{XW{ws[W_BITS-1]}}, ws};
                        wire signed [MW2-1:0] prod = xm * wm;
                        assign term = prod[TB-1:0];
                        assign owed[gs] = 1'b0;
                    end
                end
                assign terms[gs*TB +: TB] = term;
            end
            wire [TOW-1:0] tsum;
            bl_ctree #(.N(SIMD), .H(TD), .W0(TB), .WMAX(ACC_BITS), .SGN(SGN), .PIPE(TREE_PIPE), .TOPH(TD))
                u_tree (.clk(ap_clk), .terms(terms), .owed(owed), .sum(tsum), .owed_up(owe1[gp]));
            if (TOW < ACC_BITS) begin : g_ext
                assign part1[gp*ACC_BITS +: ACC_BITS] = {{(ACC_BITS-TOW){SGN != 0 && tsum[TOW-1]}}, tsum};
            end else begin : g_noext
                assign part1[gp*ACC_BITS +: ACC_BITS] = tsum;
            end
        end
    endgenerate

    // control alongside the memory register and the tree's TS register stages
    localparam CW = NFB + 2;
    wire [DL:0] vch;
    wire [(DL+1)*CW-1:0] cch;
    assign vch[0] = v1;
    assign cch[CW-1:0] = {first1, last1, nf1};
    genvar gd;
    generate
        for (gd = 1; gd <= DL; gd = gd + 1) begin : g_dly
            reg vr;
            reg [CW-1:0] cr;
            always @(posedge ap_clk) begin
                if (!ap_rst_n) vr <= 1'b0;
                else vr <= vch[gd-1];
                cr <= cch[(gd-1)*CW +: CW];
            end
            assign vch[gd] = vr;
            assign cch[gd*CW +: CW] = cr;
        end
    endgenerate
    wire vT = vch[DL];
    wire firstT, lastT;
    wire [NFB-1:0] nfT;
    assign {firstT, lastT, nfT} = cch[DL*CW +: CW];

    reg v2, first2, last2;
    reg [NFB-1:0] nf2;
    reg [PE*ACC_BITS-1:0] part2;
    reg [PE-1:0] owe2;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) v2 <= 1'b0;
        else v2 <= vT;
        first2 <= firstT;
        last2 <= lastT;
        nf2 <= nfT;
        part2 <= part1;
        owe2 <= owe1;
    end

    // ---------------- stage 3: accumulate; thresholds read one stage ahead (every cycle, at the
    // neuron fold of the beat leaving the tree) and registered again beside the final beat (the
    // memory's output register), so the comparison starts from a plain register
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
                                               + part2[i*ACC_BITS +: ACC_BITS] + {{(ACC_BITS-1){1'b0}}, owe2[i]};
    end
    generate
        if (N_THR > 0) begin : g_tmem
            reg [TW-1:0] tmem [0:NF-1];
            if (THRESH_FILE != "") begin : g_tinit
                initial $readmemh(THRESH_FILE, tmem);
            end
            reg [TW-1:0] tq;
            always @(posedge ap_clk) begin
                tq <= tmem[nfT];
                if (v2 && last2) t3 <= tq;
            end
        end else begin : g_notmem
            always @(posedge ap_clk) t3 <= {TW{1'b0}};
        end
    endgenerate

    // ---------------- stage 4: activation (threshold comparisons), registered
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
    reg v4;
    reg [OW-1:0] out4;
    always @(posedge ap_clk) begin
        if (!ap_rst_n) v4 <= 1'b0;
        else v4 <= v3;
        out4 <= outv;
    end

    // ---------------- output FIFO: the credits above guarantee room, so its s_tready is not needed
    wire fifo_room_unused;
    bl_fifo #(.WIDTH(OW), .DEPTH(FD)) out_fifo (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_tdata(out4), .s_tvalid(v4), .s_tready(fifo_room_unused),
        .m_tdata(m_tdata), .m_tvalid(m_tvalid), .m_tready(m_tready));
endmodule

// Compressor (adder) tree over N terms of W0 bits at height H (N <= 2**H): a node at height h sums
// its children at min(W0 + h, WMAX) bits (SGN: two's complement, else unsigned; at WMAX it wraps
// like the accumulator). Nodes at heights h % PIPE == 0, 0 < h < TOPH, are registered: every path
// from a term to the root crosses the same number of registers.
// owed: one bit a term, to be added to the total. An adder takes its left child's owed bit as
// carry-in and passes the right child's up (N - 1 adders, so exactly one bit leaves the root as
// owed_up, in step with sum): sum + owed_up = sum of the terms + sum of owed.
module bl_ctree #(
    parameter N = 4,
    parameter H = 2,
    parameter W0 = 1,
    parameter WMAX = 8,
    parameter SGN = 0,
    parameter PIPE = 2,
    parameter TOPH = 2
) (
    input  wire                 clk,
    input  wire [N*W0-1:0]      terms,
    input  wire [N-1:0]         owed,
    output wire [((W0 + H) < WMAX ? (W0 + H) : WMAX)-1:0] sum,
    output wire                 owed_up
);
    localparam WO = (W0 + H) < WMAX ? (W0 + H) : WMAX;
    generate
        if (H == 0) begin : g_leaf
            assign sum = terms;
            assign owed_up = owed[0];
        end else begin : g_node
            localparam WC = (W0 + H - 1) < WMAX ? (W0 + H - 1) : WMAX;
            localparam HALF = 1 << (H - 1);
            localparam NL = N < HALF ? N : HALF;
            localparam NR = N - NL;
            localparam REG = (PIPE > 0) && (H < TOPH) && (H % (PIPE > 0 ? PIPE : 1) == 0);
            wire [WC-1:0] sl;
            wire ol;
            wire o;
            // keep: stops yosys (alumacc) merging the tree into one $macc, which it maps to LUT
            // logic (~4x the LUTs on ECP5) instead of one carry chain per adder
            (* keep *) wire [WO-1:0] s;
            bl_ctree #(.N(NL), .H(H-1), .W0(W0), .WMAX(WMAX), .SGN(SGN), .PIPE(PIPE), .TOPH(TOPH))
                u_l (.clk(clk), .terms(terms[NL*W0-1:0]), .owed(owed[NL-1:0]), .sum(sl), .owed_up(ol));
            wire [WO-1:0] el;
            if (WO > WC) begin : g_el
                assign el = {SGN != 0 && sl[WC-1], sl};
            end else begin : g_el0
                assign el = sl;
            end
            if (NR > 0) begin : g_r
                wire [WC-1:0] sr;
                wire [WO-1:0] er;
                wire orr;
                bl_ctree #(.N(NR), .H(H-1), .W0(W0), .WMAX(WMAX), .SGN(SGN), .PIPE(PIPE), .TOPH(TOPH))
                    u_r (.clk(clk), .terms(terms[N*W0-1:NL*W0]), .owed(owed[N-1:NL]), .sum(sr), .owed_up(orr));
                if (WO > WC) begin : g_er
                    assign er = {SGN != 0 && sr[WC-1], sr};
                end else begin : g_er0
                    assign er = sr;
                end
                assign s = el + er + {{(WO-1){1'b0}}, ol};
                assign o = orr;
            end else begin : g_pass
                assign s = el;
                assign o = ol;
            end
            if (REG) begin : g_reg
                reg [WO-1:0] q;
                reg oq;
                always @(posedge clk) begin
                    q <= s;
                    oq <= o;
                end
                assign sum = q;
                assign owed_up = oq;
            end else begin : g_comb
                assign sum = s;
                assign owed_up = o;
            end
        end
    endgenerate
endmodule
`default_nettype wire

`timescale 1ns/1ps
`default_nettype none
// bl_swg: sliding-window generator for a K x K convolution with stride S (padding: bl_pad in front).
// Input: NHWC image, IFM_H x IFM_W pixels (default IFM x IFM) of C channels, SIMD channels of BITS
// per beat.
// Output: for each output pixel (row-major) its patch in (kh, kw, c) order, c innermost, SIMD
// channels per beat: the order of qonnx Im2Col. The line buffer holds BUF_ROWS image rows in a
// circular memory; rows are tracked across image boundaries, so the writer fills the next image's
// first rows while the reader is still on the last output row of the current one. Rows no window
// reads (the last (IFM_H-K) mod S rows of an image, and with S > K the S-K rows between two
// windows) are accepted at one beat per cycle and dropped: they take no buffer room and the reader
// never waits for them. The default leaves room for the K rows in use plus all K rows the next
// window (also the next image's first) needs: a producer and consumer of equal rate then never
// wait on each other, at image boundaries either.
module bl_swg #(
    parameter IFM = 8,
    parameter IFM_H = IFM,
    parameter IFM_W = IFM,
    parameter C = 1,
    parameter K = 3,
    parameter S = 1,
    parameter SIMD = 1,
    parameter BITS = 1,
    parameter BUF_ROWS = 2 * K,
    parameter OUT_FIFO = 4
) (
    input  wire                  ap_clk,
    input  wire                  ap_rst_n,
    input  wire [SIMD*BITS-1:0]  s_tdata,
    input  wire                  s_tvalid,
    output wire                  s_tready,
    output wire [SIMD*BITS-1:0]  m_tdata,
    output wire                  m_tvalid,
    input  wire                  m_tready
);
    // illegal parameters stop the simulation at time 0 and yosys at elaboration
    initial begin
        if (K < 1 || S < 1 || K > IFM_H || K > IFM_W) begin
            $error("bl_swg: K %0d and S %0d: need 1 <= K <= IFM_H, IFM_W and S >= 1 (instance %m)", K, S);
            $finish;
        end
        if (SIMD < 1 || C % SIMD != 0) begin
            $error("bl_swg: SIMD %0d must divide C %0d (instance %m)", SIMD, C);
            $finish;
        end
        if (BUF_ROWS < K) begin
            $error("bl_swg: BUF_ROWS %0d must hold the K (%0d) rows of a window (instance %m)", BUF_ROWS, K);
            $finish;
        end
        if (BITS < 1 || OUT_FIFO < 1) begin
            $error("bl_swg: BITS %0d and OUT_FIFO %0d must be at least 1 (instance %m)", BITS, OUT_FIFO);
            $finish;
        end
    end
    localparam CF = C / SIMD;
    localparam OFM_H = (IFM_H - K) / S + 1;
    localparam OFM_W = (IFM_W - K) / S + 1;
    localparam OFM = OFM_H > OFM_W ? OFM_H : OFM_W;
    localparam ROWW = IFM_W * CF;                // words per image row
    localparam DEPTH = BUF_ROWS * ROWW;
    localparam JN = K * CF;                      // words per kernel row of a patch
    localparam REL_MID = S < K ? S : K;          // stored rows freed after an output row (the last: K)
    localparam USED_LAST = (OFM_H - 1) * S + K - 1;  // last image row a window reads
    localparam AB = $clog2(DEPTH + 1);
    localparam MAB = DEPTH > 1 ? $clog2(DEPTH) : 1;      // memory index (addresses stay below DEPTH)
    localparam RB = $clog2(BUF_ROWS + 1);
    localparam HB = $clog2(IFM_H + 1);
    localparam SB = $clog2(S + 1);
    localparam CWB = $clog2(ROWW + 1);
    localparam JB = $clog2(JN + 1);
    localparam KB = $clog2(K + 1);
    localparam OB = $clog2(OFM + 1);
    localparam W = SIMD * BITS;
    localparam CB = $clog2(OUT_FIFO + 1);
    localparam integer DEPTH_A_I = DEPTH;
    localparam [AB-1:0] DEPTH_A = DEPTH_A_I[AB-1:0];
    localparam integer ROWW_A_I = ROWW;
    localparam [AB-1:0] ROWW_A = ROWW_A_I[AB-1:0];
    localparam integer SCF_A_I = S * CF;
    localparam [AB-1:0] SCF_A = SCF_A_I[AB-1:0];
    localparam integer REL_MID_A_I = REL_MID * ROWW;
    localparam [AB-1:0] REL_MID_A = REL_MID_A_I[AB-1:0];
    localparam integer REL_LAST_A_I = K * ROWW;
    localparam [AB-1:0] REL_LAST_A = REL_LAST_A_I[AB-1:0];
    localparam integer BUF_R_I = BUF_ROWS;
    localparam [RB-1:0] BUF_R = BUF_R_I[RB-1:0];
    localparam integer REL_MID_R_I = REL_MID;
    localparam [RB-1:0] REL_MID_R = REL_MID_R_I[RB-1:0];
    localparam integer K_R_I = K;
    localparam [RB-1:0] K_R = K_R_I[RB-1:0];
    localparam integer H_LAST_I = IFM_H - 1;
    localparam [HB-1:0] H_LAST = H_LAST_I[HB-1:0];
    localparam integer USED_LAST_I = USED_LAST;
    localparam [HB-1:0] USED_LAST_H = USED_LAST_I[HB-1:0];
    localparam integer S_LAST_I = S - 1;
    localparam [SB-1:0] S_LAST = S_LAST_I[SB-1:0];
    localparam integer ROWW_LAST_I = ROWW - 1;
    localparam [CWB-1:0] ROWW_LAST = ROWW_LAST_I[CWB-1:0];
    localparam integer J_LAST_I = JN - 1;
    localparam [JB-1:0] J_LAST = J_LAST_I[JB-1:0];
    localparam integer K_LAST_I = K - 1;
    localparam [KB-1:0] K_LAST = K_LAST_I[KB-1:0];
    localparam integer OY_LAST_I = OFM_H - 1;
    localparam [OB-1:0] OY_LAST = OY_LAST_I[OB-1:0];
    localparam integer OX_LAST_I = OFM_W - 1;
    localparam [OB-1:0] OX_LAST = OX_LAST_I[OB-1:0];
    localparam integer CREDITS_I = OUT_FIFO;
    localparam [CB-1:0] CREDITS = CREDITS_I[CB-1:0];

    // ---------------- parameter checks: an unknown module stops every tool at elaboration
    generate
        if (IFM_H < K || IFM_W < K || K < 1 || S < 1) begin : g_bad_sizes
            bl_swg_error_image_smaller_than_kernel_or_bad_K_S u_err ();
        end
        if (C % SIMD != 0) begin : g_bad_simd
            bl_swg_error_SIMD_must_divide_C u_err ();
        end
        if (BUF_ROWS < K) begin : g_bad_buf
            bl_swg_error_BUF_ROWS_must_hold_K_rows u_err ();
        end
    endgenerate

    // the buffer in slices of at most 18 bits: one block RAM a slice in a true dual-port shape, whose
    // output register the ECP5 flow then uses for rdata2 (hw/bram_outreg.py; it leaves the 36-bit
    // pseudo-dual-port shape alone). A read never wants a slot being written (the writer only
    // fills free slots), so synthesis needs no collision logic between the ports (no_rw_check).
    localparam SLW = 18;
    localparam NSL = (W + SLW - 1) / SLW;

    // ---------------- writer
    reg [AB-1:0] waddr;
    reg [CWB-1:0] wcol;
    reg [HB-1:0] wrow;      // image row being written
    reg [SB-1:0] wph;       // its phase in the stride (wrow mod S)
    reg [RB-1:0] held;      // slots in use, counting a row from its first word
    reg [RB-1:0] avail;     // complete rows from the reader's base row on
    // a row is stored when a window reads it; the others are taken and dropped. keep is a register
    // set from the row counters' next values: the comparison is not in front of s_tready and the
    // buffer's write enable
    wire [HB-1:0] wrow_n = (wrow == H_LAST) ? {HB{1'b0}} : wrow + 1'b1;
    wire [SB-1:0] wph_n = (wrow == H_LAST || wph == S_LAST) ? {SB{1'b0}} : wph + 1'b1;
    wire keep_ph_n;         // with S > K, the first K rows of each stride hold windows
    generate
        if (S > K) begin : g_skip
            localparam integer K_S_I = K;
            localparam [SB-1:0] K_S = K_S_I[SB-1:0];
            assign keep_ph_n = (wph_n < K_S);
        end else begin : g_noskip
            assign keep_ph_n = 1'b1;
        end
    endgenerate
    reg keep;               // row 0, phase 0 after reset: kept
    assign s_tready = ap_rst_n && ((wcol != {CWB{1'b0}}) || !keep || (held < BUF_R));
    wire wr = s_tvalid && s_tready;
    wire wst = wr && keep;

    // ---------------- reader
    reg [OB-1:0] oy, ox;
    reg [KB-1:0] kh;
    reg [JB-1:0] j;
    reg [AB-1:0] rbase, rrow, colb;
    reg [CB-1:0] credits;
    wire pop = m_tvalid && m_tready;
    wire last_oy = (oy == OY_LAST);
    wire row_start = (ox == {OB{1'b0}}) && (kh == {KB{1'b0}}) && (j == {JB{1'b0}});
    wire [RB-1:0] rel = last_oy ? K_R : REL_MID_R;
    wire [AB-1:0] rel_a = last_oy ? REL_LAST_A : REL_MID_A;
    wire rd = ap_rst_n && (credits < CREDITS) && (!row_start || (avail >= K_R));
    wire j_end = (j == J_LAST);
    wire kh_end = j_end && (kh == K_LAST);
    wire row_end = kh_end && (ox == OX_LAST);
    wire [AB-1:0] raddr = rrow + colb + {{(AB-JB){1'b0}}, j};
    // address arithmetic modulo DEPTH (all operands are below DEPTH)
    wire [AB:0] nbase_s = {1'b0, rbase} + {1'b0, rel_a};
    wire [AB:0] nbase_w = nbase_s - {1'b0, DEPTH_A};
    wire [AB-1:0] nbase = (nbase_s >= {1'b0, DEPTH_A}) ? nbase_w[AB-1:0] : nbase_s[AB-1:0];
    wire [AB:0] nrow_s = {1'b0, rrow} + {1'b0, ROWW_A};
    wire [AB:0] nrow_w = nrow_s - {1'b0, DEPTH_A};
    wire [AB-1:0] nrow = (nrow_s >= {1'b0, DEPTH_A}) ? nrow_w[AB-1:0] : nrow_s[AB-1:0];

    wire wrow_first = wst && (wcol == {CWB{1'b0}});
    wire wrow_done = wst && (wcol == ROWW_LAST);
    wire release_rows = rd && row_end;

    // the write reaches the buffer a cycle after the handshake, from registers placed by the blocks:
    // the handshake logic (keep, the row counters, s_tready) does not travel to the block RAMs in
    // the accepting cycle. A row counts as available when its last word is in the buffer
    // (wrow_done_q), so a read never wants a word still on its way; slots are written only after
    // their release, so the late write meets no read either.
    reg wst_q, wrow_done_q;
    reg [MAB-1:0] waddr_q;
    reg [W-1:0] wdata_q;
    always @(posedge ap_clk) begin
        waddr_q <= waddr[MAB-1:0];
        wdata_q <= s_tdata;
        if (!ap_rst_n) begin
            wst_q <= 1'b0;
            wrow_done_q <= 1'b0;
        end else begin
            wst_q <= wst;
            wrow_done_q <= wrow_done;
        end
    end

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            waddr <= {AB{1'b0}};
            wcol <= {CWB{1'b0}};
            wrow <= {HB{1'b0}};
            wph <= {SB{1'b0}};
            keep <= 1'b1;
            held <= {RB{1'b0}};
            avail <= {RB{1'b0}};
            oy <= {OB{1'b0}};
            ox <= {OB{1'b0}};
            kh <= {KB{1'b0}};
            j <= {JB{1'b0}};
            rbase <= {AB{1'b0}};
            rrow <= {AB{1'b0}};
            colb <= {AB{1'b0}};
            credits <= {CB{1'b0}};
        end else begin
            if (wst) waddr <= (waddr == DEPTH_A - 1'b1) ? {AB{1'b0}} : waddr + 1'b1;
            if (wr) begin
                wcol <= (wcol == ROWW_LAST) ? {CWB{1'b0}} : wcol + 1'b1;
                if (wcol == ROWW_LAST) begin
                    wrow <= wrow_n;
                    wph <= wph_n;
                    keep <= (wrow_n <= USED_LAST_H) && keep_ph_n;
                end
            end
            held <= held + {{(RB-1){1'b0}}, wrow_first} - (release_rows ? rel : {RB{1'b0}});
            avail <= avail + {{(RB-1){1'b0}}, wrow_done_q} - (release_rows ? rel : {RB{1'b0}});
            if (rd) begin
                j <= j_end ? {JB{1'b0}} : j + 1'b1;
                if (j_end) begin
                    if (kh == K_LAST) begin
                        kh <= {KB{1'b0}};
                        if (ox == OX_LAST) begin
                            ox <= {OB{1'b0}};
                            colb <= {AB{1'b0}};
                            oy <= last_oy ? {OB{1'b0}} : oy + 1'b1;
                            rbase <= nbase;
                            rrow <= nbase;
                        end else begin
                            ox <= ox + 1'b1;
                            colb <= colb + SCF_A;
                            rrow <= rbase;
                        end
                    end else begin
                        kh <= kh + 1'b1;
                        rrow <= nrow;
                    end
                end
            end
            credits <= credits + {{(CB-1){1'b0}}, rd} - {{(CB-1){1'b0}}, pop};
        end
    end

    // the buffer is read every cycle (the word of a read is the one the cycle after rd), then
    // registered once more: a block RAM's slow output does not travel to the FIFO in the same
    // cycle. Four credits still cover the round trip (read, two registers, FIFO), one beat a cycle.
    reg [W-1:0] rdata2;
    wire [W-1:0] rdata;
    genvar gsl;
    generate
        for (gsl = 0; gsl < NSL; gsl = gsl + 1) begin : g_slice
            localparam LO = gsl * SLW;
            localparam SW = (W - LO) < SLW ? (W - LO) : SLW;
            (* no_rw_check *) reg [SW-1:0] mem [0:DEPTH-1];
            reg [SW-1:0] q;
            always @(posedge ap_clk) begin
                if (wst_q) mem[waddr_q] <= wdata_q[LO +: SW];
                q <= mem[raddr[MAB-1:0]];
            end
            assign rdata[LO +: SW] = q;
        end
    endgenerate
    reg rv, rv2;
    always @(posedge ap_clk) begin
        rdata2 <= rdata;
        if (!ap_rst_n) begin
            rv <= 1'b0;
            rv2 <= 1'b0;
        end else begin
            rv <= rd;
            rv2 <= rv;
        end
    end

    // ---------------- output FIFO: the credits above guarantee room, so its s_tready is not needed
    wire fifo_room_unused;
    bl_fifo #(.WIDTH(W), .DEPTH(OUT_FIFO)) out_fifo (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_tdata(rdata2), .s_tvalid(rv2), .s_tready(fifo_room_unused),
        .m_tdata(m_tdata), .m_tvalid(m_tvalid), .m_tready(m_tready));
endmodule
`default_nettype wire

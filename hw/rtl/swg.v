`timescale 1ns/1ps
// bl_swg: sliding-window generator for a K x K convolution with stride S (padding: bl_pad in front).
// Input: NHWC image, IFM_H x IFM_W pixels (default IFM x IFM) of C channels, SIMD channels of BITS
// per beat.
// Output: for each output pixel (row-major) its patch in (kh, kw, c) order, c innermost, SIMD
// channels per beat: the order of qonnx Im2Col. The line buffer holds BUF_ROWS image rows in a
// circular memory; rows are tracked across image boundaries, so the writer fills the next image's
// first rows while the reader is still on the last output row of the current one. The default
// leaves room for all K rows the next image's first window needs: a slow producer then never
// makes the consumer wait at image boundaries.
module bl_swg #(
    parameter IFM = 8,
    parameter IFM_H = IFM,
    parameter IFM_W = IFM,
    parameter C = 1,
    parameter K = 3,
    parameter S = 1,
    parameter SIMD = 1,
    parameter BITS = 1,
    parameter BUF_ROWS = K + (K > S ? K : S),
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
    localparam CF = C / SIMD;
    localparam OFM_H = (IFM_H - K) / S + 1;
    localparam OFM_W = (IFM_W - K) / S + 1;
    localparam OFM = OFM_H > OFM_W ? OFM_H : OFM_W;
    localparam ROWW = IFM_W * CF;                // words per image row
    localparam DEPTH = BUF_ROWS * ROWW;
    localparam JN = K * CF;                      // words per kernel row of a patch
    localparam REL_LAST = IFM_H - (OFM_H - 1) * S;   // rows freed after the last output row
    localparam NEED_MID = K > S ? K : S;
    localparam NEED_LAST = REL_LAST > K ? REL_LAST : K;
    localparam AB = $clog2(DEPTH + 1);
    localparam MAB = DEPTH > 1 ? $clog2(DEPTH) : 1;      // memory index (addresses stay below DEPTH)
    localparam RB = $clog2(BUF_ROWS + 1);
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
    localparam integer REL_MID_A_I = S * ROWW;
    localparam [AB-1:0] REL_MID_A = REL_MID_A_I[AB-1:0];
    localparam integer REL_LAST_A_I = REL_LAST * ROWW;
    localparam [AB-1:0] REL_LAST_A = REL_LAST_A_I[AB-1:0];
    localparam integer BUF_R_I = BUF_ROWS;
    localparam [RB-1:0] BUF_R = BUF_R_I[RB-1:0];
    localparam integer S_R_I = S;
    localparam [RB-1:0] S_R = S_R_I[RB-1:0];
    localparam integer REL_LAST_R_I = REL_LAST;
    localparam [RB-1:0] REL_LAST_R = REL_LAST_R_I[RB-1:0];
    localparam integer NEED_MID_R_I = NEED_MID;
    localparam [RB-1:0] NEED_MID_R = NEED_MID_R_I[RB-1:0];
    localparam integer NEED_LAST_R_I = NEED_LAST;
    localparam [RB-1:0] NEED_LAST_R = NEED_LAST_R_I[RB-1:0];
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
    endgenerate

    reg [W-1:0] mem [0:DEPTH-1];

    // ---------------- writer
    reg [AB-1:0] waddr;
    reg [CWB-1:0] wcol;
    reg [RB-1:0] held;      // slots in use, counting a row from its first word
    reg [RB-1:0] avail;     // complete rows from the reader's base row on
    assign s_tready = ap_rst_n && ((wcol != {CWB{1'b0}}) || (held < BUF_R));
    wire wr = s_tvalid && s_tready;
    always @(posedge ap_clk) if (wr) mem[waddr[MAB-1:0]] <= s_tdata;

    // ---------------- reader
    reg [OB-1:0] oy, ox;
    reg [KB-1:0] kh;
    reg [JB-1:0] j;
    reg [AB-1:0] rbase, rrow, colb;
    reg [CB-1:0] credits;
    wire pop = m_tvalid && m_tready;
    wire last_oy = (oy == OY_LAST);
    wire row_start = (ox == {OB{1'b0}}) && (kh == {KB{1'b0}}) && (j == {JB{1'b0}});
    wire [RB-1:0] need = last_oy ? NEED_LAST_R : NEED_MID_R;
    wire [RB-1:0] rel = last_oy ? REL_LAST_R : S_R;
    wire [AB-1:0] rel_a = last_oy ? REL_LAST_A : REL_MID_A;
    wire rd = ap_rst_n && (credits < CREDITS) && (!row_start || (avail >= need));
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

    wire wrow_first = wr && (wcol == {CWB{1'b0}});
    wire wrow_done = wr && (wcol == ROWW_LAST);
    wire release_rows = rd && row_end;

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            waddr <= {AB{1'b0}};
            wcol <= {CWB{1'b0}};
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
            if (wr) begin
                waddr <= (waddr == DEPTH_A - 1'b1) ? {AB{1'b0}} : waddr + 1'b1;
                wcol <= (wcol == ROWW_LAST) ? {CWB{1'b0}} : wcol + 1'b1;
            end
            held <= held + {{(RB-1){1'b0}}, wrow_first} - (release_rows ? rel : {RB{1'b0}});
            avail <= avail + {{(RB-1){1'b0}}, wrow_done} - (release_rows ? rel : {RB{1'b0}});
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

    reg [W-1:0] rdata;
    reg rv;
    always @(posedge ap_clk) begin
        if (rd) rdata <= mem[raddr[MAB-1:0]];
        if (!ap_rst_n) rv <= 1'b0;
        else rv <= rd;
    end

    // ---------------- output FIFO: the credits above guarantee room, so its s_tready is not needed
    wire fifo_room_unused;
    bl_fifo #(.WIDTH(W), .DEPTH(OUT_FIFO)) out_fifo (
        .ap_clk(ap_clk), .ap_rst_n(ap_rst_n),
        .s_tdata(rdata), .s_tvalid(rv), .s_tready(fifo_room_unused),
        .m_tdata(m_tdata), .m_tvalid(m_tvalid), .m_tready(m_tready));
endmodule

`timescale 1ns/1ps
`default_nettype none
// bl_pad: constant padding of an NHWC image stream (FINN's FMPadding), in front of bl_swg.
// Input: IFM_H x IFM_W pixels of C channels, SIMD channels of BITS per beat. Output: the
// (PAD_T+IFM_H+PAD_B) x (PAD_L+IFM_W+PAD_R) image, border pixels = PAD_VAL in every channel, the
// order and values of qonnx Im2Col's padding (pad_amount [top, left, bottom, right], pad_value).
// One output beat per cycle: a border beat is made up, an interior beat is the next input beat; an
// image starts once its first input beat is there.
module bl_pad #(
    parameter IFM_H = 4,
    parameter IFM_W = 4,
    parameter C = 1,
    parameter SIMD = 1,
    parameter BITS = 1,
    parameter PAD_T = 1,
    parameter PAD_L = 1,
    parameter PAD_B = 1,
    parameter PAD_R = 1,
    parameter PAD_VAL = 0
) (
    input  wire                  ap_clk,
    input  wire                  ap_rst_n,
    input  wire [SIMD*BITS-1:0]  s_tdata,
    input  wire                  s_tvalid,
    output wire                  s_tready,
    output reg  [SIMD*BITS-1:0]  m_tdata,
    output reg                   m_tvalid,
    input  wire                  m_tready
);
    // illegal parameters stop the simulation at time 0 and yosys at elaboration
    initial begin
        if (SIMD < 1 || C % SIMD != 0) begin
            $error("bl_pad: SIMD %0d must divide C %0d (instance %m)", SIMD, C);
            $finish;
        end
        if (PAD_T < 0 || PAD_L < 0 || PAD_B < 0 || PAD_R < 0) begin
            $error("bl_pad: padding amounts must not be negative (instance %m)");
            $finish;
        end
        if (PAD_VAL < 0 || PAD_VAL >= (1 << BITS)) begin
            $error("bl_pad: PAD_VAL %0d does not fit BITS %0d (instance %m)", PAD_VAL, BITS);
            $finish;
        end
    end
    localparam CF = C / SIMD;
    localparam OH = PAD_T + IFM_H + PAD_B;
    localparam OW = PAD_L + IFM_W + PAD_R;
    localparam W = SIMD * BITS;
    localparam YB = $clog2(OH + 1);
    localparam XB = $clog2(OW + 1);
    localparam FB = $clog2(CF + 1);
    localparam integer Y_LAST_I = OH - 1;
    localparam [YB-1:0] Y_LAST = Y_LAST_I[YB-1:0];
    localparam integer X_LAST_I = OW - 1;
    localparam [XB-1:0] X_LAST = X_LAST_I[XB-1:0];
    localparam integer Y_LO_I = PAD_T;
    localparam [YB-1:0] Y_LO = Y_LO_I[YB-1:0];
    localparam integer Y_HI_I = PAD_T + IFM_H;
    localparam [YB-1:0] Y_HI = Y_HI_I[YB-1:0];
    localparam integer X_LO_I = PAD_L;
    localparam [XB-1:0] X_LO = X_LO_I[XB-1:0];
    localparam integer X_HI_I = PAD_L + IFM_W;
    localparam [XB-1:0] X_HI = X_HI_I[XB-1:0];
    localparam integer F_LAST_I = CF - 1;
    localparam [FB-1:0] F_LAST = F_LAST_I[FB-1:0];
    localparam integer PV_I = PAD_VAL;
    localparam [BITS-1:0] PV = PV_I[BITS-1:0];

    // ---------------- parameter checks: an unknown module stops every tool at elaboration
    generate
        if (IFM_H < 1 || IFM_W < 1 || C < 1 || SIMD < 1 || BITS < 1) begin : g_bad_sizes
            bl_pad_error_sizes_must_be_positive u_err ();
        end
        if (C % SIMD != 0) begin : g_bad_simd
            bl_pad_error_SIMD_must_divide_C u_err ();
        end
        if (PAD_T < 0 || PAD_L < 0 || PAD_B < 0 || PAD_R < 0) begin : g_bad_pad
            bl_pad_error_padding_must_not_be_negative u_err ();
        end
        if (PAD_VAL < 0 || PAD_VAL >= (1 << BITS)) begin : g_bad_val
            bl_pad_error_PAD_VAL_must_fit_BITS_unsigned u_err ();
        end
    endgenerate

    reg [YB-1:0] y;
    reg [XB-1:0] x;
    reg [FB-1:0] f;
    wire y_lo_ok, x_lo_ok;          // (y >= 0 is no comparison: lint-clean without top/left padding)
    generate
        if (PAD_T > 0) begin : g_yl
            assign y_lo_ok = (y >= Y_LO);
        end else begin : g_nyl
            assign y_lo_ok = 1'b1;
        end
        if (PAD_L > 0) begin : g_xl
            assign x_lo_ok = (x >= X_LO);
        end else begin : g_nxl
            assign x_lo_ok = 1'b1;
        end
    endgenerate
    wire interior = y_lo_ok && (y < Y_HI) && x_lo_ok && (x < X_HI);
    wire room = !m_tvalid || m_tready;
    assign s_tready = ap_rst_n && interior && room;
    // an image's first beat waits until its first input beat is there: no border is made up for an
    // image that has not started (after the last image the unit falls silent)
    wire first = (y == {YB{1'b0}}) && (x == {XB{1'b0}}) && (f == {FB{1'b0}});
    wire emit = ap_rst_n && room && ((!interior && !first) || s_tvalid);

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            y <= {YB{1'b0}};
            x <= {XB{1'b0}};
            f <= {FB{1'b0}};
            m_tvalid <= 1'b0;
        end else begin
            if (m_tvalid && m_tready) m_tvalid <= 1'b0;
            if (emit) begin
                m_tdata <= interior ? s_tdata : {SIMD{PV}};
                m_tvalid <= 1'b1;
                if (f == F_LAST) begin
                    f <= {FB{1'b0}};
                    if (x == X_LAST) begin
                        x <= {XB{1'b0}};
                        y <= (y == Y_LAST) ? {YB{1'b0}} : y + 1'b1;
                    end else begin
                        x <= x + 1'b1;
                    end
                end else begin
                    f <= f + 1'b1;
                end
            end
        end
    end
endmodule
`default_nettype wire

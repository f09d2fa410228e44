`timescale 1ns/1ps
`default_nettype none
// bl_pool: K x K max-pool with stride K over an NHWC stream of IFM x IFM pixels, C channels,
// PE channels of unsigned BITS per beat (for 1-bit values this is an OR). Rows and columns past
// OFM*K are consumed and dropped (floor mode, as MaxPool). Partial maxima of one output row live
// in a small register file indexed by (ox, channel fold).
module bl_pool #(
    parameter IFM = 4,
    parameter C = 1,
    parameter K = 2,
    parameter PE = 1,
    parameter BITS = 1
) (
    input  wire                ap_clk,
    input  wire                ap_rst_n,
    input  wire [PE*BITS-1:0]  s_tdata,
    input  wire                s_tvalid,
    output wire                s_tready,
    output reg  [PE*BITS-1:0]  m_tdata,
    output reg                 m_tvalid,
    input  wire                m_tready
);
    // illegal parameters stop the simulation at time 0 and yosys at elaboration
    initial begin
        if (K < 1 || IFM < K) begin
            $error("bl_pool: K %0d must be in 1..IFM (%0d) (instance %m)", K, IFM);
            $finish;
        end
        if (PE < 1 || C % PE != 0) begin
            $error("bl_pool: PE %0d must divide C %0d (instance %m)", PE, C);
            $finish;
        end
        if (BITS < 1) begin
            $error("bl_pool: BITS %0d must be at least 1 (instance %m)", BITS);
            $finish;
        end
    end
    localparam CF = C / PE;
    localparam OFM = IFM / K;
    localparam W = PE * BITS;
    localparam NB = OFM * CF;
    localparam XB = $clog2(IFM + 1);
    localparam KB = $clog2(K + 1);
    localparam FB = $clog2(CF + 1);
    localparam AB = $clog2(NB + 1);
    localparam integer X_LAST_I = IFM - 1;
    localparam [XB-1:0] X_LAST = X_LAST_I[XB-1:0];
    localparam integer X_USED_I = OFM * K;
    localparam [XB-1:0] X_USED = X_USED_I[XB-1:0];
    localparam integer K_LAST_I = K - 1;
    localparam [KB-1:0] K_LAST = K_LAST_I[KB-1:0];
    localparam integer CF_LAST_I = CF - 1;
    localparam [FB-1:0] CF_LAST = CF_LAST_I[FB-1:0];
    localparam integer CF_A_I = CF;
    localparam [AB-1:0] CF_A = CF_A_I[AB-1:0];

    reg [W-1:0] rowbuf [0:(1<<AB)-1];   // power-of-two depth: every address value is in range
    reg [XB-1:0] x, y;
    reg [KB-1:0] kx, ky;
    reg [FB-1:0] cf;
    reg [AB-1:0] obase;
    reg [AB-1:0] addr;              // obase + cf, kept in step with both so no adder sits in front of
                                    // the register file's read (its read-modify-write is one cycle)
    assign s_tready = ap_rst_n && (!m_tvalid || m_tready);
    wire acc = s_tvalid && s_tready;
    wire used = (x < X_USED) && (y < X_USED);
    wire first = (kx == {KB{1'b0}}) && (ky == {KB{1'b0}});
    wire last = (kx == K_LAST) && (ky == K_LAST);
    // the register file's write is registered (a cycle late): the accept decision, which the
    // downstream ready and the reset reach combinationally, then drives only registers, not the
    // write enables of every LUT RAM. The next beat may read the address still being written
    // (K > 1 with CF = 1), so a read of that address takes the pending word.
    reg wen;
    reg [AB-1:0] waddr;
    reg [W-1:0] wdata;
    wire [W-1:0] prev = (wen && waddr == addr) ? wdata : rowbuf[addr];
    wire [W-1:0] mx;
    always @(posedge ap_clk) begin
        if (wen) rowbuf[waddr] <= wdata;
        waddr <= addr;
        wdata <= mx;
    end
    genvar g;
    generate
        for (g = 0; g < PE; g = g + 1) begin : g_max
            wire [BITS-1:0] a = prev[g*BITS +: BITS];
            wire [BITS-1:0] b = s_tdata[g*BITS +: BITS];
            assign mx[g*BITS +: BITS] = first ? b : (a > b ? a : b);
        end
    endgenerate

    always @(posedge ap_clk) begin
        if (!ap_rst_n) begin
            x <= {XB{1'b0}};
            y <= {XB{1'b0}};
            kx <= {KB{1'b0}};
            ky <= {KB{1'b0}};
            cf <= {FB{1'b0}};
            obase <= {AB{1'b0}};
            addr <= {AB{1'b0}};
            wen <= 1'b0;
            m_tvalid <= 1'b0;
        end else begin
            if (m_tvalid && m_tready) m_tvalid <= 1'b0;
            wen <= acc && used && !last;
            if (acc) begin
                if (used && last) begin
                    m_tdata <= mx;
                    m_tvalid <= 1'b1;
                end
                if (cf == CF_LAST) begin
                    cf <= {FB{1'b0}};
                    if (x == X_LAST) begin
                        x <= {XB{1'b0}};
                        kx <= {KB{1'b0}};
                        obase <= {AB{1'b0}};
                        addr <= {AB{1'b0}};
                        if (y == X_LAST) begin
                            y <= {XB{1'b0}};
                            ky <= {KB{1'b0}};
                        end else begin
                            y <= y + 1'b1;
                            ky <= (ky == K_LAST) ? {KB{1'b0}} : ky + 1'b1;
                        end
                    end else begin
                        x <= x + 1'b1;
                        kx <= (kx == K_LAST) ? {KB{1'b0}} : kx + 1'b1;
                        if (kx == K_LAST) obase <= obase + CF_A;
                        addr <= (kx == K_LAST) ? obase + CF_A : obase;
                    end
                end else begin
                    cf <= cf + 1'b1;
                    addr <= addr + 1'b1;
                end
            end
        end
    end
endmodule
`default_nettype wire

`timescale 1ns/1ps
`default_nettype none
// bl_dwc: stream width converter between IN_W and OUT_W where one divides the other. Element 0 is
// in the LSBs on both sides, so up-conversion puts the first input beat lowest and down-conversion
// emits the lowest slice first.
module bl_dwc #(
    parameter IN_W = 8,
    parameter OUT_W = 16
) (
    input  wire              ap_clk,
    input  wire              ap_rst_n,
    input  wire [IN_W-1:0]   s_tdata,
    input  wire              s_tvalid,
    output wire              s_tready,
    output wire [OUT_W-1:0]  m_tdata,
    output wire              m_tvalid,
    input  wire              m_tready
);
    // illegal parameters stop the simulation at time 0 and yosys at elaboration
    initial begin
        if (IN_W < 1 || OUT_W < 1) begin
            $error("bl_dwc: widths IN_W %0d, OUT_W %0d must be at least 1 (instance %m)", IN_W, OUT_W);
            $finish;
        end
        if ((IN_W > OUT_W ? IN_W % OUT_W : OUT_W % IN_W) != 0) begin
            $error("bl_dwc: IN_W %0d and OUT_W %0d: one must divide the other (instance %m)", IN_W, OUT_W);
            $finish;
        end
    end
    generate
        if (IN_W == OUT_W) begin : g_pass
            assign m_tdata = s_tdata;
            assign m_tvalid = s_tvalid;
            assign s_tready = m_tready;
        end else if (OUT_W > IN_W) begin : g_up
            localparam N = OUT_W / IN_W;
            localparam NB = $clog2(N);
            localparam integer N_LAST_I = N - 1;
            localparam [NB-1:0] N_LAST = N_LAST_I[NB-1:0];
            reg [OUT_W-1:0] sreg, oreg;
            reg [NB-1:0] cnt;
            reg ov;
            assign s_tready = ap_rst_n && ((cnt != N_LAST) || !ov || m_tready);
            assign m_tdata = oreg;
            assign m_tvalid = ov;
            wire acc = s_tvalid && s_tready;
            wire [OUT_W-1:0] merged = sreg | ({{(OUT_W-IN_W){1'b0}}, s_tdata} << (cnt * IN_W));
            always @(posedge ap_clk) begin
                if (!ap_rst_n) begin
                    cnt <= {NB{1'b0}};
                    ov <= 1'b0;
                    sreg <= {OUT_W{1'b0}};
                end else begin
                    if (ov && m_tready) ov <= 1'b0;
                    if (acc) begin
                        if (cnt == N_LAST) begin
                            cnt <= {NB{1'b0}};
                            sreg <= {OUT_W{1'b0}};
                            oreg <= merged;
                            ov <= 1'b1;
                        end else begin
                            cnt <= cnt + 1'b1;
                            sreg <= merged;
                        end
                    end
                end
            end
        end else begin : g_down
            localparam N = IN_W / OUT_W;
            localparam NB = $clog2(N);
            localparam integer N_LAST_I = N - 1;
            localparam [NB-1:0] N_LAST = N_LAST_I[NB-1:0];
            reg [IN_W-1:0] data;
            reg [NB-1:0] cnt;
            reg v;
            assign m_tvalid = v;
            assign m_tdata = data[OUT_W-1:0];
            assign s_tready = ap_rst_n && (!v || (m_tready && cnt == N_LAST));
            always @(posedge ap_clk) begin
                if (!ap_rst_n) begin
                    v <= 1'b0;
                    cnt <= {NB{1'b0}};
                end else if (s_tvalid && s_tready) begin
                    data <= s_tdata;
                    v <= 1'b1;
                    cnt <= {NB{1'b0}};
                end else if (v && m_tready) begin
                    data <= data >> OUT_W;
                    cnt <= cnt + 1'b1;
                    if (cnt == N_LAST) v <= 1'b0;
                end
            end
        end
    endgenerate
endmodule
`default_nettype wire

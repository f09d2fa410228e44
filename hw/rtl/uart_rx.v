`timescale 1ns/1ps
`default_nettype none
// bl_uart_rx: 8N1 UART receiver. CLKS_PER_BIT = f_clk / baud (the build picks a baud that divides
// the clock exactly, e.g. 25 MHz / 1 Mbaud = 25, which the FTDI chip also generates exactly).
// The line is synchronised with two flops; a start bit is re-checked at its middle so a glitch
// does not start a byte; data bits are sampled at their middles.
module bl_uart_rx #(
    parameter CLKS_PER_BIT = 25
) (
    input  wire       clk,
    input  wire       rst_n,
    input  wire       rx,
    output reg  [7:0] data,
    output reg        valid,      // one-cycle pulse per received byte
    output reg        frame_err   // one-cycle pulse when a stop bit was 0 (byte dropped)
);
    // illegal parameters stop the simulation at time 0 and yosys at elaboration
    initial begin
        if (CLKS_PER_BIT < 4) begin
            $error("bl_uart_rx: CLKS_PER_BIT %0d: need at least 4 clocks a bit to sample a bit's middle (instance %m)", CLKS_PER_BIT);
            $finish;
        end
    end
    localparam CB = $clog2(CLKS_PER_BIT + 1);
    localparam [CB-1:0] FULL = CLKS_PER_BIT - 1;
    localparam [CB-1:0] HALF = (CLKS_PER_BIT - 1) / 2;

    reg rx_m, rx_s;
    always @(posedge clk) begin
        if (!rst_n) begin
            rx_m <= 1'b1;
            rx_s <= 1'b1;
        end else begin
            rx_m <= rx;
            rx_s <= rx_m;
        end
    end

    localparam IDLE = 2'd0, START = 2'd1, BITS = 2'd2, STOP = 2'd3;
    reg [1:0] state;
    reg [CB-1:0] cnt;
    reg [2:0] bitn;
    reg [7:0] shreg;

    always @(posedge clk) begin
        valid <= 1'b0;
        frame_err <= 1'b0;
        if (!rst_n) begin
            state <= IDLE;
            cnt <= 0;
            bitn <= 3'd0;
            shreg <= 8'd0;
            data <= 8'd0;
        end else begin
            case (state)
            IDLE: if (!rx_s) begin
                state <= START;
                cnt <= HALF;
            end
            START: if (cnt == 0) begin
                if (!rx_s) begin
                    state <= BITS;
                    cnt <= FULL;
                    bitn <= 3'd0;
                end else
                    state <= IDLE;
            end else
                cnt <= cnt - 1'b1;
            BITS: if (cnt == 0) begin
                shreg <= {rx_s, shreg[7:1]};
                cnt <= FULL;
                bitn <= bitn + 1'b1;
                if (bitn == 3'd7)
                    state <= STOP;
            end else
                cnt <= cnt - 1'b1;
            STOP: if (cnt == 0) begin
                state <= IDLE;
                if (rx_s) begin
                    data <= shreg;
                    valid <= 1'b1;
                end else
                    frame_err <= 1'b1;
            end else
                cnt <= cnt - 1'b1;
            endcase
        end
    end
endmodule
`default_nettype wire

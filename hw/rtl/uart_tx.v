`timescale 1ns/1ps
`default_nettype none
// bl_uart_tx: 8N1 UART transmitter with a valid/ready byte input (ready while idle).
module bl_uart_tx #(
    parameter CLKS_PER_BIT = 25
) (
    input  wire       clk,
    input  wire       rst_n,
    input  wire [7:0] data,
    input  wire       valid,
    output wire       ready,
    output reg        tx
);
    // illegal parameters stop the simulation at time 0 and yosys at elaboration
    initial begin
        if (CLKS_PER_BIT < 1) begin
            $error("bl_uart_tx: CLKS_PER_BIT %0d must be at least 1 (instance %m)", CLKS_PER_BIT);
            $finish;
        end
    end
    localparam CB = $clog2(CLKS_PER_BIT + 1);
    localparam [CB-1:0] FULL = CLKS_PER_BIT - 1;

    reg busy;
    reg [CB-1:0] cnt;
    reg [3:0] bitn;      // 0 start, 1..8 data, 9 stop
    reg [8:0] shreg;     // {data, start bit}

    assign ready = !busy;

    always @(posedge clk) begin
        if (!rst_n) begin
            busy <= 1'b0;
            tx <= 1'b1;
            cnt <= 0;
            bitn <= 4'd0;
            shreg <= 9'h1ff;
        end else if (!busy) begin
            if (valid) begin
                busy <= 1'b1;
                tx <= 1'b0;
                shreg <= {1'b1, data};
                cnt <= FULL;
                bitn <= 4'd0;
            end
        end else if (cnt != 0) begin
            cnt <= cnt - 1'b1;
        end else if (bitn == 4'd9) begin
            busy <= 1'b0;
        end else begin
            tx <= shreg[0];
            shreg <= {1'b1, shreg[8:1]};
            cnt <= FULL;
            bitn <= bitn + 1'b1;
        end
    end
endmodule
`default_nettype wire

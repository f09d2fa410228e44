`timescale 1ns/1ps
`default_nettype none
// board_top_ecp5: the BitLens accelerator (module bitlens_top) behind a UART, for boards whose
// only link to the host is a USB serial chip (ULX3S: FTDI FT231X; nothing here is ECP5-specific).
//
// Host -> board: an image as the accelerator's input words, IN_WIDTH/8 bytes per beat, least
//   significant byte first (for UINT8 pixels packed FINN-style this is just the image bytes in
//   NHWC order), IN_BEATS beats per image.
// Board -> host: per image, every output element (OUT_BEATS * OUT_EPB of them, in stream order)
//   sign- or zero-extended to whole bytes, little endian, then one byte: the class index, shown on
//   the LEDs too. Without a rank ROM (USE_RANK 0) the class is the index of the largest element;
//   with one it is the index of the largest logit acc_c * scale_c + bias_c: RANK_FILE maps
//   (class, accumulator) to the dense rank of that float logit among all such pairs, so comparing
//   ranks is exact. Ties go to the first index either way, as numpy.argmax.
// Clock: clk is the accelerator's clock (on the ULX3S the PLL output, hw/rtl/pll_ecp5.v); the whole
//   top runs in it, UART included (CLKS_PER_BIT from its frequency), and stays in reset until
//   `locked` (the PLL's LOCK, asynchronous: synchronised here) has been high for 16 cycles.
// Resynchronisation: if the line stays idle for IDLE_CLKS while an image is incomplete, wrapper
//   and accelerator are reset, so a host that died mid-image only costs one timeout.
// led[3:0] last class index, led[6] image in flight, led[7] sticky error (bad stop bit or a byte
// that arrived while both the assembly and the beat register were full).
module board_top_ecp5 #(
    parameter CLKS_PER_BIT = 25,
    parameter IDLE_CLKS = 250000,
    parameter IN_WIDTH = 8,
    parameter IN_BEATS = 1,
    parameter OUT_WIDTH = 16,
    parameter OUT_BEATS = 1,
    parameter OUT_EPB = 1,
    parameter OUT_EB = 16,
    parameter OUT_SIGNED = 1,
    parameter USE_RANK = 0,
    parameter RANK_BITS = 1,
    parameter RANK_FILE = "rank.mem"      // word c * 2^OUT_EB + (accumulator bits) = rank
) (
    input  wire       clk,
    input  wire       locked,
    input  wire       uart_rx,
    output wire       uart_tx,
    output wire [7:0] led
);
    localparam IB = IN_WIDTH / 8;
    localparam IBB = $clog2(IB + 1);
    localparam INB = IN_BEATS > 1 ? $clog2(IN_BEATS) : 1;
    localparam N = OUT_BEATS * OUT_EPB;
    localparam NB = N > 1 ? $clog2(N) : 1;
    localparam OBB = OUT_BEATS > 1 ? $clog2(OUT_BEATS) : 1;
    localparam EBY = (OUT_EB + 7) / 8;
    localparam EBYB = $clog2(EBY + 1);
    localparam IDB = $clog2(IDLE_CLKS + 1);
    localparam [IBB-1:0] IB_LAST = IB - 1;
    localparam [INB-1:0] INB_LAST = IN_BEATS - 1;
    localparam [OBB-1:0] OB_LAST = OUT_BEATS - 1;
    localparam [NB-1:0] N_LAST = N - 1;
    localparam [EBYB-1:0] EBY_N = EBY;
    localparam [IDB-1:0] IDLE_N = IDLE_CLKS;

    // ---------------- resets: PLL lock, then a short pulse whenever the idle timeout fires
    reg [1:0] lock_sync = 2'b00;
    reg [4:0] por = 5'd0;
    reg [3:0] soft = 4'd0;
    reg [IDB-1:0] idle = 0;
    wire por_done = por[4];
    reg rst_n = 1'b0;              // a register: the reset reaches every unit of the accelerator
    wire partial;
    wire rx_valid;

    always @(posedge clk) begin
        rst_n <= por_done && soft == 4'd0;
        lock_sync <= {lock_sync[0], locked};
        if (!lock_sync[1])
            por <= 5'd0;
        else if (!por_done)
            por <= por + 1'b1;
        if (!por_done || rx_valid || !partial)
            idle <= 0;
        else if (idle != IDLE_N)
            idle <= idle + 1'b1;
        if (soft != 4'd0)
            soft <= soft - 1'b1;
        else if (por_done && partial && idle == IDLE_N)
            soft <= 4'hf;
    end

    // ---------------- UART
    wire [7:0] rx_data;
    wire rx_ferr;
    bl_uart_rx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_rx (
        .clk(clk), .rst_n(rst_n), .rx(uart_rx), .data(rx_data), .valid(rx_valid), .frame_err(rx_ferr));

    reg [7:0] tx_data;
    reg tx_valid;
    wire tx_ready;
    bl_uart_tx #(.CLKS_PER_BIT(CLKS_PER_BIT)) u_tx (
        .clk(clk), .rst_n(rst_n), .data(tx_data), .valid(tx_valid), .ready(tx_ready), .tx(uart_tx));

    // ---------------- bytes -> input beats
    reg [IN_WIDTH-1:0] asm_word;
    reg [IBB-1:0] nbytes;
    reg asm_full;                 // a whole beat waits in asm_word for the beat register
    reg [INB-1:0] in_beat;
    reg [IN_WIDTH-1:0] s_tdata;
    reg s_tvalid;
    wire s_tready;
    reg err;

    assign partial = nbytes != 0 || asm_full || in_beat != 0;
    wire beat_free = !s_tvalid || s_tready;
    wire [IN_WIDTH+7:0] asm_next = {rx_data, asm_word} >> 8;

    always @(posedge clk) begin
        if (!rst_n) begin
            asm_word <= 0;
            nbytes <= 0;
            asm_full <= 1'b0;
            in_beat <= 0;
            s_tdata <= 0;
            s_tvalid <= 1'b0;
        end else begin
            if (s_tvalid && s_tready)
                s_tvalid <= 1'b0;
            if (asm_full && beat_free) begin
                s_tdata <= asm_word;
                s_tvalid <= 1'b1;
                asm_full <= 1'b0;
            end
            if (rx_valid && !(asm_full && !beat_free)) begin
                if (nbytes == IB_LAST) begin
                    nbytes <= 0;
                    in_beat <= in_beat == INB_LAST ? {INB{1'b0}} : in_beat + 1'b1;
                    // a completed beat goes straight to the beat register when that is free
                    if (beat_free && !asm_full) begin
                        s_tdata <= asm_next[IN_WIDTH-1:0];
                        s_tvalid <= 1'b1;
                    end else begin
                        asm_word <= asm_next[IN_WIDTH-1:0];
                        asm_full <= 1'b1;
                    end
                end else begin
                    asm_word <= asm_next[IN_WIDTH-1:0];
                    nbytes <= nbytes + 1'b1;
                end
            end
        end
    end

    // ---------------- the accelerator
    wire [OUT_WIDTH-1:0] m_tdata;
    wire m_tvalid;
    reg m_tready;
    bitlens_top u_acc (
        .ap_clk(clk), .ap_rst_n(rst_n),
        .s_axis_0_tdata(s_tdata), .s_axis_0_tvalid(s_tvalid), .s_axis_0_tready(s_tready),
        .m_axis_0_tdata(m_tdata), .m_axis_0_tvalid(m_tvalid), .m_axis_0_tready(m_tready));

    // ---------------- output beats -> bytes, argmax
    localparam COLLECT = 3'd0, LOAD = 3'd1, KEY = 3'd5, CMP = 3'd2, SENDB = 3'd3, SENDC = 3'd4;
    localparam KW = (USE_RANK != 0 ? RANK_BITS : OUT_EB) + 1;
    reg [2:0] state;
    reg [N*OUT_EB-1:0] accbuf;
    reg [OBB-1:0] out_beat;
    reg [NB-1:0] idx;
    reg [EBYB-1:0] bytes_left;
    reg [EBY*8-1:0] txsh;
    reg signed [KW-1:0] best;
    reg signed [KW-1:0] key_r;     // the key registered: the rank ROM's slow output is not compared
    reg signed [KW-1:0] raw_key;
    reg [7:0] best_idx;
    reg [7:0] led_class;
    reg in_flight;

    wire [OUT_EPB*OUT_EB-1:0] beat_elems = m_tdata[OUT_EPB*OUT_EB-1:0];
    wire [N*OUT_EB+OUT_EPB*OUT_EB-1:0] acc_shifted = {beat_elems, accbuf} >> (OUT_EPB * OUT_EB);
    wire [OUT_EB-1:0] cur = accbuf[OUT_EB-1:0];
    wire signed [OUT_EB:0] cur_s = {OUT_SIGNED != 0 ? cur[OUT_EB-1] : 1'b0, cur};
    wire signed [EBY*8:0] cur_w = cur_s;
    wire [EBY*8-1:0] txsh_next = txsh >> 8;

    wire signed [KW-1:0] key;
    generate if (USE_RANK != 0) begin : g_rank
        reg [RANK_BITS-1:0] rmem [0:N*(1<<OUT_EB)-1];
        initial $readmemh(RANK_FILE, rmem);
        reg [RANK_BITS-1:0] rq;
        always @(posedge clk)
            rq <= rmem[{idx, cur}];
        assign key = {1'b0, rq};
    end else begin : g_raw
        assign key = raw_key;
    end endgenerate

    always @(posedge clk) begin
        if (!rst_n) begin
            state <= COLLECT;
            m_tready <= 1'b0;
            accbuf <= 0;
            out_beat <= 0;
            idx <= 0;
            bytes_left <= 0;
            txsh <= 0;
            best <= 0;
            best_idx <= 8'd0;
            tx_valid <= 1'b0;
            tx_data <= 8'd0;
        end else begin
            case (state)
            COLLECT: begin
                m_tready <= 1'b1;
                if (m_tvalid && m_tready) begin
                    accbuf <= acc_shifted[N*OUT_EB-1:0];
                    if (out_beat == OB_LAST) begin
                        out_beat <= 0;
                        m_tready <= 1'b0;
                        idx <= 0;
                        state <= LOAD;
                    end else
                        out_beat <= out_beat + 1'b1;
                end
            end
            LOAD: begin            // the rank ROM reads {idx, cur} on this edge
                txsh <= cur_w[EBY*8-1:0];
                raw_key <= cur_s;
                accbuf <= accbuf >> OUT_EB;
                bytes_left <= EBY_N;
                state <= KEY;
            end
            KEY: begin
                key_r <= key;
                state <= CMP;
            end
            CMP: begin
                if (idx == 0 || key_r > best) begin
                    best <= key_r;
                    best_idx <= idx;
                end
                state <= SENDB;
            end
            SENDB: begin
                tx_valid <= 1'b1;
                tx_data <= txsh[7:0];
                if (tx_valid && tx_ready) begin
                    if (bytes_left == 1) begin
                        tx_valid <= 1'b0;
                        if (idx == N_LAST)
                            state <= SENDC;
                        else begin
                            idx <= idx + 1'b1;
                            state <= LOAD;
                        end
                    end else begin
                        tx_data <= txsh_next[7:0];
                        txsh <= txsh_next;
                    end
                    bytes_left <= bytes_left - 1'b1;
                end
            end
            SENDC: begin
                tx_valid <= 1'b1;
                tx_data <= best_idx;
                if (tx_valid && tx_ready) begin
                    tx_valid <= 1'b0;
                    state <= COLLECT;
                end
            end
            endcase
        end
    end

    // LEDs and the error flag survive the soft reset: only power-on (PLL lock) clears them.
    always @(posedge clk) begin
        if (!por_done) begin
            led_class <= 8'd0;
            err <= 1'b0;
            in_flight <= 1'b0;
        end else begin
            if (state == SENDC && tx_valid && tx_ready)
                led_class <= best_idx;
            if (rx_ferr || (rx_valid && asm_full && !beat_free))
                err <= 1'b1;
            if (rx_valid)
                in_flight <= 1'b1;
            else if (state == SENDC)
                in_flight <= 1'b0;
        end
    end

    assign led = {err, in_flight, 2'b00, led_class[3:0]};
endmodule
`default_nettype wire

// pwconv_bulk: a Verilog-side feeder and collector around pwconv_top, so that a simulation spends
// no Python time per cycle. It runs a list of passes ("segments"); each sets the layer word,
// loads its weights and params (the top accepts them only while idle), streams its pixel beats,
// and waits for its results. Stimulus comes from $readmemh files, results go to a $fwrite file
// in order; random source idles and sink stalls come from xorshift generators. Plusargs:
//   +SEGMENTS=<file> +N_SEGMENTS=<n>   one line per pass: {layer, n_weights, n_params,
//                                      n_pixels, n_results} as one hex word (32 bits each count)
//   +WEIGHTS=<file> +PARAMS=<file> +PIXELS=<file>   all passes' words, concatenated
//   +RESULTS=<file> +CYCLES=<file: each segment's cycles, one decimal line per segment>
//   +IDLE=<0..65535> +STALL=<0..65535> +SEED=<n> +TIMEOUT=<cycles>
// IDLE/STALL are per-cycle probabilities in 1/65536. `done` rises when every segment's results
// were taken, or after TIMEOUT cycles (then `error` is set). `cycles` sums, over segments, the
// cycles from a segment's first pixel offered to its last result taken; `total` counts every
// cycle from reset to done (loads included). A result beyond a segment's count is an error.
module pwconv_bulk #(
    parameter PIX_W = 64, parameter RES_W = 256, parameter WGT_W = 76, parameter PRM_W = 568,
    parameter LAYER_W = 41, parameter MAX_PIXELS = 262144, parameter MAX_WEIGHTS = 65536,
    parameter MAX_PARAMS = 4096, parameter MAX_SEGMENTS = 1024
) (
    input  wire clk,
    input  wire rst,
    output reg  done,
    output reg  error,
    output reg  [63:0] cycles,
    output reg  [63:0] total,
    output reg  [63:0] taken
);
    localparam SEG_W = LAYER_W + 128;
    reg [WGT_W-1:0] weights  [0:MAX_WEIGHTS-1];
    reg [PRM_W-1:0] params   [0:MAX_PARAMS-1];
    reg [PIX_W-1:0] pixels   [0:MAX_PIXELS-1];
    reg [SEG_W-1:0] segments [0:MAX_SEGMENTS-1];
    reg [1023:0] path;
    integer n_segments, idle_p, stall_p, seed, timeout, fd, fd_cycles;

    initial begin
        if (!$value$plusargs("N_SEGMENTS=%d", n_segments)) $fatal(1, "missing +N_SEGMENTS");
        if (n_segments < 1 || n_segments > MAX_SEGMENTS) $fatal(1, "bad +N_SEGMENTS");
        if (!$value$plusargs("IDLE=%d", idle_p)) idle_p = 0;
        if (!$value$plusargs("STALL=%d", stall_p)) stall_p = 0;
        if (!$value$plusargs("SEED=%d", seed)) seed = 1;
        if (!$value$plusargs("TIMEOUT=%d", timeout)) timeout = 1000000000;
        if (!$value$plusargs("SEGMENTS=%s", path)) $fatal(1, "missing +SEGMENTS");
        $readmemh(path, segments, 0, n_segments - 1);
        if ($value$plusargs("WEIGHTS=%s", path)) $readmemh(path, weights);
        if ($value$plusargs("PARAMS=%s", path)) $readmemh(path, params);
        if ($value$plusargs("PIXELS=%s", path)) $readmemh(path, pixels);
        if (!$value$plusargs("RESULTS=%s", path)) $fatal(1, "missing +RESULTS");
        fd = $fopen(path, "w");
        if (!$value$plusargs("CYCLES=%s", path)) $fatal(1, "missing +CYCLES");
        fd_cycles = $fopen(path, "w");
        if (fd == 0 || fd_cycles == 0) $fatal(1, "cannot open the output files");
    end

    wire             i_ready, w_ready, p_ready, o_valid;
    wire [RES_W-1:0] o_payload;
    reg              i_valid, w_valid, p_valid, o_ready;
    reg  [PIX_W-1:0] i_payload;
    reg  [WGT_W-1:0] w_payload;
    reg  [PRM_W-1:0] p_payload;
    reg  [LAYER_W-1:0] layer;

    wire acc_idle;
    // Start only once the accelerator reports idle as a known 1: a 4-state simulator (Icarus)
    // can start some of Yosys's combinational blocks as X at time 0, and an X ready would turn
    // the bench's indices to X for good.
    reg go;

    pwconv_top dut (
        .clk(clk), .rst(rst), .layer(layer), .idle(acc_idle),
        .i__payload(i_payload), .i__valid(i_valid), .i__ready(i_ready),
        .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready),
        .weights__payload(w_payload), .weights__valid(w_valid), .weights__ready(w_ready),
        .params__payload(p_payload), .params__valid(p_valid), .params__ready(p_ready)
    );

    function [31:0] xorshift(input [31:0] s);
        reg [31:0] t;
        begin
            t = s ^ (s << 13);
            t = t ^ (t >> 17);
            xorshift = t ^ (t << 5);
        end
    endfunction

    // The current segment: [w_end, p_end, x_end) bounds into the word arrays, results expected.
    reg [31:0] rng_in, rng_out;
    integer si, wi, pi, xi, w_end, p_end, x_end, r_end;
    reg [SEG_W-1:0] seg;
    reg started;
    reg [63:0] first;
    wire w_fire = w_valid && w_ready, p_fire = p_valid && p_ready, i_fire = i_valid && i_ready;
    wire o_fire = o_valid && o_ready;
    integer wn, pn, xn;     // next-cycle indices (after this cycle's transfers)

    always @* begin
        wn = wi + w_fire;
        pn = pi + p_fire;
        xn = xi + i_fire;
    end

    always @(posedge clk) begin
        if (rst) begin
            si <= 0; wi <= 0; pi <= 0; xi <= 0; started <= 0; first <= 0; go <= 0;
            seg = segments[0];
            layer <= seg[SEG_W-1:128];
            w_end <= seg[127:96]; p_end <= seg[95:64]; x_end <= seg[63:32]; r_end <= seg[31:0];
            w_valid <= 0; p_valid <= 0; i_valid <= 0; o_ready <= 0;
            done <= 0; error <= 0; cycles <= 0; total <= 0; taken <= 0;
            rng_in <= 32'h9E3779B9 ^ seed; rng_out <= 32'h7F4A7C15 ^ (seed * 3 + 1);
        end else if (!go) begin
            go <= acc_idle === 1'b1;
        end else if (!done) begin
            total <= total + 1;
            rng_in <= xorshift(rng_in);
            rng_out <= xorshift(rng_out);
            wi <= wn; pi <= pn; xi <= xn;
            // Weights, then params, then pixels; a beat stays offered until it is taken.
            w_valid <= wn < w_end;
            w_payload <= weights[wn];
            p_valid <= wn >= w_end && pn < p_end;
            p_payload <= params[pn];
            if (!(i_valid && !i_ready)) begin
                if (wn >= w_end && pn >= p_end && xn < x_end && rng_in[15:0] >= idle_p) begin
                    i_valid <= 1;
                    i_payload <= pixels[xn];
                    if (!started) begin started <= 1; first <= total + 1; end
                end else begin
                    i_valid <= 0;
                end
            end
            o_ready <= rng_out[15:0] >= stall_p;
            if (o_fire) begin
                $fwrite(fd, "%h\n", o_payload);
                taken <= taken + 1;
                if (taken >= r_end) begin
                    $display("pwconv_bulk: a result beyond the expected %0d", r_end);
                    done <= 1; error <= 1; $fclose(fd); $fclose(fd_cycles);
                end else if (taken + 1 == r_end) begin
                    // Segment complete: the accelerator is idle, so the next layer may start.
                    cycles <= cycles + (total + 1 - first);
                    $fwrite(fd_cycles, "%0d\n", total + 1 - first);
                    started <= 0;
                    if (si + 1 == n_segments) begin
                        done <= 1; $fclose(fd); $fclose(fd_cycles);
                    end else begin
                        seg = segments[si + 1];
                        si <= si + 1;
                        layer <= seg[SEG_W-1:128];
                        w_end <= w_end + seg[127:96]; p_end <= p_end + seg[95:64];
                        x_end <= x_end + seg[63:32]; r_end <= r_end + seg[31:0];
                    end
                end
            end
            if (total >= timeout) begin
                done <= 1; error <= 1; $fclose(fd); $fclose(fd_cycles);
            end
        end
    end
endmodule

// pwconv_bulk_clocked: the bench with its own clock and reset, for cocotb: the test only waits
// for `done`, so no Python runs while the design simulates (Verilator builds it with --timing).
module pwconv_bulk_clocked #(
    parameter PIX_W = 64, parameter RES_W = 256, parameter WGT_W = 76, parameter PRM_W = 568,
    parameter LAYER_W = 41, parameter MAX_PIXELS = 262144, parameter MAX_WEIGHTS = 65536,
    parameter MAX_PARAMS = 4096, parameter MAX_SEGMENTS = 1024
) (
    output wire done,
    output wire error,
    output wire [63:0] cycles,
    output wire [63:0] total,
    output wire [63:0] taken
);
    reg clk = 0, rst = 1;
    pwconv_bulk #(.PIX_W(PIX_W), .RES_W(RES_W), .WGT_W(WGT_W), .PRM_W(PRM_W),
                  .LAYER_W(LAYER_W), .MAX_PIXELS(MAX_PIXELS), .MAX_WEIGHTS(MAX_WEIGHTS),
                  .MAX_PARAMS(MAX_PARAMS), .MAX_SEGMENTS(MAX_SEGMENTS))
        bench (.clk(clk), .rst(rst), .done(done), .error(error), .cycles(cycles),
               .total(total), .taken(taken));
    initial begin
        repeat (4) @(posedge clk);
        rst = 0;
    end
    always #5 clk = ~clk;
endmodule

// pwconv_bulk_main: pwconv_bulk_clocked (below) for `verilator --binary`, the no-cocotb baseline
// of simulation speed. Prints one PWCONV_DONE line and finishes.
module pwconv_bulk_main #(
    parameter PIX_W = 64, parameter RES_W = 256, parameter WGT_W = 76, parameter PRM_W = 568,
    parameter LAYER_W = 41, parameter MAX_PIXELS = 262144, parameter MAX_WEIGHTS = 65536,
    parameter MAX_PARAMS = 4096, parameter MAX_SEGMENTS = 1024
);
    wire done, error;
    wire [63:0] cycles, total, taken;
    pwconv_bulk_clocked #(.PIX_W(PIX_W), .RES_W(RES_W), .WGT_W(WGT_W), .PRM_W(PRM_W),
                          .LAYER_W(LAYER_W), .MAX_PIXELS(MAX_PIXELS),
                          .MAX_WEIGHTS(MAX_WEIGHTS), .MAX_PARAMS(MAX_PARAMS),
                          .MAX_SEGMENTS(MAX_SEGMENTS))
        clocked (.done(done), .error(error), .cycles(cycles), .total(total), .taken(taken));
    always @(posedge done) begin
        $display("PWCONV_DONE error=%0d cycles=%0d total=%0d taken=%0d", error, cycles,
                 total, taken);
        $finish;
    end
endmodule

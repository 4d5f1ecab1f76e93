// pwconv_bulk: a Verilog-side feeder and collector around pwconv_top, so that a simulation spends
// no Python time per cycle. Stimulus comes from $readmemh files, results go to a $fwrite file;
// random source idles and sink stalls come from LFSRs. Plusargs (all required):
//   +WEIGHTS=<file> +N_WEIGHTS=<n> +PARAMS=<file> +N_PARAMS=<n> +PIXELS=<file> +N_PIXELS=<n>
//   +RESULTS=<file> +EXPECTED=<n> +LAYER=<hex> +IDLE=<0..65535> +STALL=<0..65535> +SEED=<n>
//   +TIMEOUT=<cycles>
// IDLE/STALL are per-cycle probabilities in 1/65536. `done` rises when EXPECTED results were taken
// or TIMEOUT cycles passed (then `error` is set); `cycles` counts from the first pixel offered to
// the last result taken.
module pwconv_bulk #(
    parameter PIX_W = 64, parameter RES_W = 256, parameter WGT_W = 76, parameter PRM_W = 568,
    parameter LAYER_W = 41, parameter MAX_WORDS = 65536
) (
    input  wire clk,
    input  wire rst,
    output reg  done,
    output reg  error,
    output reg  [63:0] cycles,
    output reg  [63:0] taken
);
    reg [WGT_W-1:0] weights [0:MAX_WORDS-1];
    reg [PRM_W-1:0] params  [0:MAX_WORDS-1];
    reg [PIX_W-1:0] pixels  [0:MAX_WORDS-1];
    reg [1023:0] path;
    integer n_weights, n_params, n_pixels, expected, idle_p, stall_p, seed, timeout, fd;
    reg [LAYER_W-1:0] layer;

    initial begin
        if (!$value$plusargs("N_WEIGHTS=%d", n_weights)) $fatal(1, "missing +N_WEIGHTS");
        if (!$value$plusargs("N_PARAMS=%d", n_params)) $fatal(1, "missing +N_PARAMS");
        if (!$value$plusargs("N_PIXELS=%d", n_pixels)) $fatal(1, "missing +N_PIXELS");
        if (!$value$plusargs("EXPECTED=%d", expected)) $fatal(1, "missing +EXPECTED");
        if (!$value$plusargs("LAYER=%h", layer)) $fatal(1, "missing +LAYER");
        if (!$value$plusargs("IDLE=%d", idle_p)) idle_p = 0;
        if (!$value$plusargs("STALL=%d", stall_p)) stall_p = 0;
        if (!$value$plusargs("SEED=%d", seed)) seed = 1;
        if (!$value$plusargs("TIMEOUT=%d", timeout)) timeout = 100000000;
        if (n_weights > MAX_WORDS || n_params > MAX_WORDS || n_pixels > MAX_WORDS)
            $fatal(1, "more than MAX_WORDS=%0d words of stimulus", MAX_WORDS);
        if ($value$plusargs("WEIGHTS=%s", path) && n_weights > 0) $readmemh(path, weights);
        if ($value$plusargs("PARAMS=%s", path) && n_params > 0) $readmemh(path, params);
        if ($value$plusargs("PIXELS=%s", path) && n_pixels > 0) $readmemh(path, pixels);
        if (!$value$plusargs("RESULTS=%s", path)) $fatal(1, "missing +RESULTS");
        fd = $fopen(path, "w");
        if (fd == 0) $fatal(1, "cannot open the results file");
    end

    wire             i_ready, w_ready, p_ready, o_valid;
    wire [RES_W-1:0] o_payload;
    reg              i_valid, w_valid, p_valid, o_ready;
    reg  [PIX_W-1:0] i_payload;
    reg  [WGT_W-1:0] w_payload;
    reg  [PRM_W-1:0] p_payload;

    pwconv_top dut (
        .clk(clk), .rst(rst), .layer(layer), .idle(),
        .i__payload(i_payload), .i__valid(i_valid), .i__ready(i_ready),
        .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready),
        .weights__payload(w_payload), .weights__valid(w_valid), .weights__ready(w_ready),
        .params__payload(p_payload), .params__valid(p_valid), .params__ready(p_ready)
    );

    // Two 32-bit xorshift generators: one for source idles, one for sink stalls.
    reg [31:0] rng_in, rng_out;
    function [31:0] xorshift(input [31:0] s);
        reg [31:0] t;
        begin
            t = s ^ (s << 13);
            t = t ^ (t >> 17);
            xorshift = t ^ (t << 5);
        end
    endfunction

    integer wi, pi, xi;
    reg started;
    reg [63:0] now, first;

    always @(posedge clk) begin
        if (rst) begin
            wi <= 0; pi <= 0; xi <= 0; started <= 0; now <= 0; first <= 0;
            w_valid <= 0; p_valid <= 0; i_valid <= 0; o_ready <= 0;
            done <= 0; error <= 0; cycles <= 0; taken <= 0;
            rng_in <= 32'h9E3779B9 ^ seed; rng_out <= 32'h7F4A7C15 ^ (seed * 3 + 1);
        end else if (!done) begin
            now <= now + 1;
            rng_in <= xorshift(rng_in);
            rng_out <= xorshift(rng_out);
            // Weights, then params, then pixels; a beat stays offered until it is taken.
            if (w_valid && w_ready) wi <= wi + 1;
            if (p_valid && p_ready) pi <= pi + 1;
            if (i_valid && i_ready) xi <= xi + 1;
            w_valid <= (wi + (w_valid && w_ready) < n_weights);
            w_payload <= weights[wi + (w_valid && w_ready)];
            p_valid <= (wi + (w_valid && w_ready) >= n_weights)
                       && (pi + (p_valid && p_ready) < n_params);
            p_payload <= params[pi + (p_valid && p_ready)];
            if (!(i_valid && !i_ready)) begin
                if (wi + (w_valid && w_ready) >= n_weights
                    && pi + (p_valid && p_ready) >= n_params
                    && xi + (i_valid && i_ready) < n_pixels
                    && rng_in[15:0] >= idle_p) begin
                    i_valid <= 1;
                    i_payload <= pixels[xi + (i_valid && i_ready)];
                    if (!started) begin started <= 1; first <= now + 1; end
                end else begin
                    i_valid <= 0;
                end
            end
            o_ready <= rng_out[15:0] >= stall_p;
            if (o_valid && o_ready) begin
                $fwrite(fd, "%h\n", o_payload);
                taken <= taken + 1;
                if (taken + 1 == expected) begin
                    done <= 1; cycles <= now + 1 - first;
                    $fclose(fd);
                end
            end
            if (now >= timeout) begin
                done <= 1; error <= 1; cycles <= now - first;
                $fclose(fd);
            end
        end
    end

endmodule

// pwconv_bulk_main: the same bench with its own clock and reset for `verilator --binary`, the
// no-cocotb baseline of simulation speed. Prints one PWCONV_DONE line and finishes.
module pwconv_bulk_main #(
    parameter PIX_W = 64, parameter RES_W = 256, parameter WGT_W = 76, parameter PRM_W = 568,
    parameter LAYER_W = 41, parameter MAX_WORDS = 65536
);
    reg clk = 0, rst = 1;
    wire done, error;
    wire [63:0] cycles, taken;
    pwconv_bulk #(.PIX_W(PIX_W), .RES_W(RES_W), .WGT_W(WGT_W), .PRM_W(PRM_W),
                  .LAYER_W(LAYER_W), .MAX_WORDS(MAX_WORDS))
        bench (.clk(clk), .rst(rst), .done(done), .error(error), .cycles(cycles),
               .taken(taken));
    initial begin
        repeat (4) @(posedge clk);
        rst = 0;
    end
    always #5 clk = ~clk;
    always @(posedge clk)
        if (done) begin
            $display("PWCONV_DONE error=%0d cycles=%0d taken=%0d", error, cycles, taken);
            $finish;
        end
endmodule

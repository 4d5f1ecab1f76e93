// pwconv_bulk: a Verilog-side feeder and collector around pwconv_top, so that a simulation spends
// no Python time per cycle. It runs a list of passes ("segments") as the host driver does: a
// loader sends each segment's layer word, weights, params and (BANKS=2) commit, an independent
// feeder streams every segment's pixel beats in order, and a collector takes the results. With
// BANKS=2 (double-buffered weights) the loader runs ahead, so the next pass loads while this one
// computes, and only the accelerator's ready signals pace it; with BANKS=1 a segment is loaded
// only once the previous one's results are all in (the accelerator takes loads while idle) and
// its pixels follow its loads. Stimulus comes from $readmemh files, results go to a $fwrite file
// in order; random source idles and sink stalls come from xorshift generators. Plusargs:
//   +SEGMENTS=<file> +N_SEGMENTS=<n>   one line per pass: {layer, n_weights, n_params,
//                                      n_pixels, n_results} as one hex word (32 bits each count)
//   +WEIGHTS=<file> +PARAMS=<file> +PIXELS=<file>   all passes' words, concatenated
//   +RESULTS=<file> +CYCLES=<file: per segment one line "busy span" in decimal>
//   +IDLE=<0..65535> +STALL=<0..65535> +SEED=<n> +TIMEOUT=<cycles>
// Every segment must have pixels. IDLE/STALL are per-cycle probabilities in 1/65536 (IDLE
// withholds pixel beats). `done` rises when every segment's results were taken, or after TIMEOUT
// cycles (then `error` is set). A segment's `busy` cycles run from its first pixel beat taken
// to its last result taken; its `span` from the previous segment's last result (the first: from
// the start) to its own, so spans add up to the whole run, loads included. `cycles` sums busy
// cycles, `total` counts every cycle from the start (WARMUP cycles after reset) to done. A
// result beyond the expected count is an error.
module pwconv_bulk #(
    parameter PIX_W = 64, parameter RES_W = 256, parameter WGT_W = 76, parameter PRM_W = 568,
    parameter LAYER_W = 41, parameter MAX_PIXELS = 262144, parameter MAX_WEIGHTS = 65536,
    parameter MAX_PARAMS = 4096, parameter MAX_SEGMENTS = 1024, parameter BANKS = 2
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
    // Per segment: where its words end in each array (exclusive), cumulative results.
    integer w_end [0:MAX_SEGMENTS-1];
    integer p_end [0:MAX_SEGMENTS-1];
    integer x_end [0:MAX_SEGMENTS-1];
    integer r_end [0:MAX_SEGMENTS-1];
    reg [1023:0] path;
    integer n_segments, idle_p, stall_p, seed, timeout, fd, fd_cycles, k;

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
        for (k = 0; k < n_segments; k = k + 1) begin
            w_end[k] = (k ? w_end[k - 1] : 0) + segments[k][127:96];
            p_end[k] = (k ? p_end[k - 1] : 0) + segments[k][95:64];
            x_end[k] = (k ? x_end[k - 1] : 0) + segments[k][63:32];
            r_end[k] = (k ? r_end[k - 1] : 0) + segments[k][31:0];
        end
    end

    wire             i_ready, w_ready, p_ready, c_ready, o_valid;
    wire [RES_W-1:0] o_payload;
    reg              i_valid, w_valid, p_valid, c_valid, o_ready;
    reg  [PIX_W-1:0] i_payload;
    reg  [WGT_W-1:0] w_payload;
    reg  [PRM_W-1:0] p_payload;
    reg  [31:0]      c_payload;
    reg  [LAYER_W-1:0] layer;

    // The single-bank top has no commit port. A preprocessor switch, not a generate branch,
    // since the simulator checks the pins of every generate branch's instances, taken or
    // not (PINNOTFOUND); bulk.py defines PWCONV_ONE_BANK for BANKS=1 builds.
`ifndef PWCONV_ONE_BANK
    generate
        if (1) begin : banked
            pwconv_top dut (
                .clk(clk), .rst(rst), .layer(layer), .idle(),
                .i__payload(i_payload), .i__valid(i_valid), .i__ready(i_ready),
                .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready),
                .weights__payload(w_payload), .weights__valid(w_valid),
                .weights__ready(w_ready),
                .params__payload(p_payload), .params__valid(p_valid), .params__ready(p_ready),
                .commit__payload(c_payload), .commit__valid(c_valid), .commit__ready(c_ready)
            );
        end
    endgenerate
`else
    generate
        if (1) begin : single
            pwconv_top dut (
                .clk(clk), .rst(rst), .layer(layer), .idle(),
                .i__payload(i_payload), .i__valid(i_valid), .i__ready(i_ready),
                .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready),
                .weights__payload(w_payload), .weights__valid(w_valid),
                .weights__ready(w_ready),
                .params__payload(p_payload), .params__valid(p_valid), .params__ready(p_ready)
            );
            assign c_ready = 1'b1;
        end
    endgenerate
`endif

    function [31:0] xorshift(input [31:0] s);
        reg [31:0] t;
        begin
            t = s ^ (s << 13);
            t = t ^ (t >> 17);
            xorshift = t ^ (t << 5);
        end
    endfunction

    // ls: the segment being loaded (committed: its commit was taken); xs: the segment of the
    // next pixel beat (every segment has pixels: the driver leaves out passes without any);
    // rs: the segment whose last result is awaited.
    reg [31:0] rng_in, rng_out;
    integer ls, xs, rs, wi, pi, xi, wn, pn, xn, lsn, xsn;
    reg committed, committed_n, may_load;
    reg [63:0] first_at [0:MAX_SEGMENTS-1];
    reg [63:0] previous;
    // Icarus evaluates the exported `always @*` blocks only when one of their inputs changes, so
    // some pipeline registers hold X through reset and for a pipeline's length after it; the
    // bench waits WARMUP cycles after reset, with every input idle, before it starts.
    localparam WARMUP = 128;
    reg [7:0] warm;
    wire w_fire = w_valid && w_ready, p_fire = p_valid && p_ready, i_fire = i_valid && i_ready;
    wire c_fire = c_valid && c_ready, o_fire = o_valid && o_ready;

    always @* begin
        wn = wi + w_fire;
        pn = pi + p_fire;
        xn = xi + i_fire;
        // The loader moves on once the segment's weights, params and commit are in.
        lsn = ls;
        committed_n = committed || c_fire;
        if (ls < n_segments && wn >= w_end[ls] && pn >= p_end[ls]
                && (BANKS == 1 || committed_n)) begin
            lsn = ls + 1;
            committed_n = 0;
        end
        // BANKS=1: a segment loads once the previous one's results are all in (idle).
        may_load = lsn < n_segments && (BANKS == 2 || lsn == 0 || taken >= r_end[lsn - 1]);
        xsn = xs + (xs < n_segments && xn >= x_end[xs]);
    end

    always @(posedge clk) begin
        if (rst) begin
            ls <= 0; xs <= 0; rs <= 0; wi <= 0; pi <= 0; xi <= 0; committed <= 0;
            previous <= 0; warm <= 0;
            layer <= segments[0][SEG_W-1:128];
            w_valid <= 0; p_valid <= 0; c_valid <= 0; i_valid <= 0; o_ready <= 0;
            c_payload <= 0;
            done <= 0; error <= 0; cycles <= 0; total <= 0; taken <= 0;
            rng_in <= 32'h9E3779B9 ^ seed; rng_out <= 32'h7F4A7C15 ^ (seed * 3 + 1);
        end else if (warm != WARMUP) begin
            warm <= warm + 1;
        end else if (!done) begin
            total <= total + 1;
            rng_in <= xorshift(rng_in);
            rng_out <= xorshift(rng_out);
            wi <= wn; pi <= pn; xi <= xn; xs <= xsn; ls <= lsn; committed <= committed_n;
            // Loader: the segment's layer word, weights, then params, then its commit. A word
            // offered stays offered until taken (the conditions only change on a transfer).
            if (may_load) layer <= segments[lsn][SEG_W-1:128];
            w_valid <= may_load && wn < w_end[lsn];
            w_payload <= weights[wn];
            p_valid <= may_load && wn >= w_end[lsn] && pn < p_end[lsn];
            p_payload <= params[pn];
            c_valid <= BANKS == 2 && may_load && wn >= w_end[lsn] && pn >= p_end[lsn]
                       && !committed_n;
            c_payload <= x_end[lsn < n_segments ? lsn : 0]
                         - (lsn > 0 && lsn < n_segments ? x_end[lsn - 1] : 0);
            // Feeder: BANKS=1 sends a segment's pixels once it is loaded.
            if (!(i_valid && !i_ready)) begin
                if (xsn < n_segments && (BANKS == 2 || lsn > xsn) && rng_in[15:0] >= idle_p) begin
                    i_valid <= 1;
                    i_payload <= pixels[xn];
                end else begin
                    i_valid <= 0;
                end
            end
            if (i_fire && xi == (xs ? x_end[xs - 1] : 0)) first_at[xs] <= total;
            o_ready <= rng_out[15:0] >= stall_p;
            if (o_fire) begin
                $fwrite(fd, "%h\n", o_payload);
                taken <= taken + 1;
                if (taken >= r_end[n_segments - 1]) begin
                    $display("pwconv_bulk: a result beyond the expected %0d",
                             r_end[n_segments - 1]);
                    done <= 1; error <= 1; $fclose(fd); $fclose(fd_cycles);
                end else if (taken + 1 == r_end[rs]) begin
                    // Segment complete.
                    cycles <= cycles + (total + 1 - first_at[rs]);
                    $fwrite(fd_cycles, "%0d %0d\n", total + 1 - first_at[rs],
                            total + 1 - previous);
                    previous <= total + 1;
                    rs <= rs + 1;
                    if (rs + 1 == n_segments) begin
                        done <= 1; $fclose(fd); $fclose(fd_cycles);
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
    parameter MAX_PARAMS = 4096, parameter MAX_SEGMENTS = 1024, parameter BANKS = 2
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
                  .MAX_PARAMS(MAX_PARAMS), .MAX_SEGMENTS(MAX_SEGMENTS), .BANKS(BANKS))
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
    parameter MAX_PARAMS = 4096, parameter MAX_SEGMENTS = 1024, parameter BANKS = 2
);
    wire done, error;
    wire [63:0] cycles, total, taken;
    pwconv_bulk_clocked #(.PIX_W(PIX_W), .RES_W(RES_W), .WGT_W(WGT_W), .PRM_W(PRM_W),
                          .LAYER_W(LAYER_W), .MAX_PIXELS(MAX_PIXELS),
                          .MAX_WEIGHTS(MAX_WEIGHTS), .MAX_PARAMS(MAX_PARAMS),
                          .MAX_SEGMENTS(MAX_SEGMENTS), .BANKS(BANKS))
        clocked (.done(done), .error(error), .cycles(cycles), .total(total), .taken(taken));
    always @(posedge done) begin
        $display("PWCONV_DONE error=%0d cycles=%0d total=%0d taken=%0d", error, cycles,
                 total, taken);
        $finish;
    end
endmodule

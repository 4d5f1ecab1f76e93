// pwconv_soak: one layer streamed through pwconv_top for millions of beats under random and
// bursty input idles and output stalls, with no Python per cycle (verilator --binary).
// Loads the layer's weights and params, streams every pixel beat of +PIXELS, writes every
// result vector to +RESULTS in order, and checks the output stream rule on every cycle: a
// vector offered and not taken must stay offered, unchanged, the next cycle.
// With BANKED=1 and -DPWCONV_BANKED (a double-buffered top, weight_banks=2) the pixels are split into passes of
// +PASS_BEATS beats; before each pass its weights, params and a commit word (its beats) go in
// while the previous passes compute, and passes alternate between two programs (+WEIGHTS and
// +PARAMS hold program 0's words, then program 1's), so a pixel computed with the other bank's
// weights gives a wrong result. Pixels are offered from the start (they wait for their pass).
//   +LAYER=<hex word> +WEIGHTS=<file> +N_WEIGHTS=<n> +PARAMS=<file> +N_PARAMS=<n>
//   +PIXELS=<file> +N_PIXELS=<beats> +N_RESULTS=<vectors> +RESULTS=<file>
//   +IDLE=<p> +STALL=<p>: per-cycle probabilities in 1/65536 of an input idle, output stall
//   +BURST=<p> +BURST_MAX=<n>: per-cycle probability (1/65536) that a burst starts, on each
//   side, holding the input idle (or the output stalled) for 1..BURST_MAX cycles
//   +SEED=<n> +TIMEOUT=<cycles> +PASS_BEATS=<beats> (BANKED=1 only; default all pixels)
// Prints one line: PWCONV_SOAK beats=.. vectors=.. cycles=.. stalled=.. idle=..
// hold_errors=.. extra=.. timeout=..
module pwconv_soak #(
    parameter PIX_W = 64, parameter RES_W = 256, parameter WGT_W = 76, parameter PRM_W = 568,
    parameter LAYER_W = 41, parameter MAX_PIXELS = 1 << 21, parameter MAX_WEIGHTS = 1 << 16,
    parameter MAX_PARAMS = 1 << 12, parameter BANKED = 0
) ();
    reg clk = 0, rst = 1;
    always #5 clk = ~clk;

    reg [WGT_W-1:0] weights [0:MAX_WEIGHTS-1];
    reg [PRM_W-1:0] params  [0:MAX_PARAMS-1];
    reg [PIX_W-1:0] pixels  [0:MAX_PIXELS-1];
    reg [1023:0] path;
    reg [LAYER_W-1:0] layer;
    integer n_weights, n_params, n_pixels, n_results, idle_p, stall_p, burst_p, burst_max;
    integer seed, timeout, fd, pass_beats, per_pass, n_passes, n_loads;

    initial begin
        if (!$value$plusargs("LAYER=%h", layer)) $fatal(1, "missing +LAYER");
        if (!$value$plusargs("N_WEIGHTS=%d", n_weights)) $fatal(1, "missing +N_WEIGHTS");
        if (!$value$plusargs("N_PARAMS=%d", n_params)) $fatal(1, "missing +N_PARAMS");
        if (!$value$plusargs("N_PIXELS=%d", n_pixels)) $fatal(1, "missing +N_PIXELS");
        if (!$value$plusargs("N_RESULTS=%d", n_results)) $fatal(1, "missing +N_RESULTS");
        if (!$value$plusargs("IDLE=%d", idle_p)) idle_p = 0;
        if (!$value$plusargs("STALL=%d", stall_p)) stall_p = 0;
        if (!$value$plusargs("BURST=%d", burst_p)) burst_p = 0;
        if (!$value$plusargs("BURST_MAX=%d", burst_max)) burst_max = 1;
        if (!$value$plusargs("SEED=%d", seed)) seed = 1;
        if (!$value$plusargs("TIMEOUT=%d", timeout)) timeout = 2000000000;
        if (!BANKED || !$value$plusargs("PASS_BEATS=%d", pass_beats)) pass_beats = n_pixels;
        per_pass = n_weights + n_params + BANKED;
        n_passes = (n_pixels + pass_beats - 1) / pass_beats;
        n_loads = per_pass * n_passes;
        if ($value$plusargs("WEIGHTS=%s", path)) $readmemh(path, weights, 0, n_weights - 1);
        if ($value$plusargs("PARAMS=%s", path)) $readmemh(path, params, 0, n_params - 1);
        if ($value$plusargs("PIXELS=%s", path)) $readmemh(path, pixels, 0, n_pixels - 1);
        if (!$value$plusargs("RESULTS=%s", path)) $fatal(1, "missing +RESULTS");
        fd = $fopen(path, "w");
        if (fd == 0) $fatal(1, "cannot open the results file");
        repeat (4) @(posedge clk);
        rst = 0;
    end

    wire             i_ready, w_ready, p_ready, o_valid;
    wire [RES_W-1:0] o_payload;
    reg              i_valid, w_valid, p_valid, o_ready;
    reg  [PIX_W-1:0] i_payload;
    reg  [WGT_W-1:0] w_payload;
    reg  [PRM_W-1:0] p_payload;
    wire             c_ready;
    reg              c_valid;
    reg       [31:0] c_payload;

    // The commit port exists only on a double-buffered top (built with -DPWCONV_BANKED).
`ifdef PWCONV_BANKED
    pwconv_top dut (
        .clk(clk), .rst(rst), .layer(layer), .idle(),
        .i__payload(i_payload), .i__valid(i_valid), .i__ready(i_ready),
        .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready),
        .weights__payload(w_payload), .weights__valid(w_valid), .weights__ready(w_ready),
        .params__payload(p_payload), .params__valid(p_valid), .params__ready(p_ready),
        .commit__payload(c_payload), .commit__valid(c_valid), .commit__ready(c_ready)
    );
`else
    assign c_ready = 0;
    pwconv_top dut (
        .clk(clk), .rst(rst), .layer(layer), .idle(),
        .i__payload(i_payload), .i__valid(i_valid), .i__ready(i_ready),
        .o__payload(o_payload), .o__valid(o_valid), .o__ready(o_ready),
        .weights__payload(w_payload), .weights__valid(w_valid), .weights__ready(w_ready),
        .params__payload(p_payload), .params__valid(p_valid), .params__ready(p_ready)
    );
`endif

    function [31:0] xorshift(input [31:0] s);
        reg [31:0] t;
        begin
            t = s ^ (s << 13);
            t = t ^ (t >> 17);
            xorshift = t ^ (t << 5);
        end
    endfunction

    reg [31:0] rng_in, rng_out, rng_bin, rng_bout;
    integer li, xi, burst_in, burst_out;
    reg [63:0] cycles, taken, stalled, idled, hold_errors, extra, started_at, tail;
    reg started, done, held_valid;
    reg [RES_W-1:0] held;
    wire w_fire = w_valid && w_ready, p_fire = p_valid && p_ready, i_fire = i_valid && i_ready;
    wire o_fire = o_valid && o_ready, c_fire = c_valid && c_ready;
    // Loads: item ln of pass ln / per_pass is weight k, param k - n_weights or the commit.
    integer ln, lpass, lk, xn;
    reg block_in, block_out, loaded;

    always @* begin
        ln = li + (w_fire || p_fire || c_fire);
        lpass = ln / per_pass;
        lk = ln % per_pass;
        loaded = ln >= n_loads;
        xn = xi + i_fire;
        block_in = burst_in != 0 || rng_in[15:0] < idle_p;
        block_out = burst_out != 0 || rng_out[15:0] < stall_p;
    end

    always @(posedge clk) begin
        if (rst) begin
            li <= 0; xi <= 0; started <= 0; done <= 0;
            w_valid <= 0; p_valid <= 0; c_valid <= 0; i_valid <= 0; o_ready <= 0;
            cycles <= 0; taken <= 0; stalled <= 0; idled <= 0; hold_errors <= 0; extra <= 0;
            burst_in <= 0; burst_out <= 0; held_valid <= 0; tail <= 0;
            rng_in <= 32'h9E3779B9 ^ seed; rng_out <= 32'h7F4A7C15 ^ (seed * 3 + 1);
            rng_bin <= 32'h2545F491 ^ (seed * 5 + 2); rng_bout <= 32'h6C8E9CF5 ^ (seed * 7 + 3);
        end else if (!done) begin
            rng_in <= xorshift(rng_in); rng_out <= xorshift(rng_out);
            rng_bin <= xorshift(rng_bin); rng_bout <= xorshift(rng_bout);
            li <= ln; xi <= xn;
            w_valid <= !loaded && lk < n_weights;
            w_payload <= weights[(BANKED ? lpass % 2 : 0) * n_weights + lk];
            p_valid <= !loaded && lk >= n_weights && lk < n_weights + n_params;
            p_payload <= params[(BANKED ? lpass % 2 : 0) * n_params + lk - n_weights];
            c_valid <= BANKED && !loaded && lk == n_weights + n_params;
            c_payload <= n_pixels - lpass * pass_beats < pass_beats
                         ? n_pixels - lpass * pass_beats : pass_beats;
            // Bursts: start with probability burst_p, last 1..burst_max cycles.
            if (burst_in != 0) burst_in <= burst_in - 1;
            else if (rng_bin[15:0] < burst_p) burst_in <= 1 + rng_bin[31:16] % burst_max;
            if (burst_out != 0) burst_out <= burst_out - 1;
            else if (rng_bout[15:0] < burst_p) burst_out <= 1 + rng_bout[31:16] % burst_max;
            // A beat stays offered, unchanged, until taken.
            if (!(i_valid && !i_ready)) begin
                if ((BANKED || loaded) && xn < n_pixels && !block_in) begin
                    i_valid <= 1;
                    i_payload <= pixels[xn];
                end else begin
                    i_valid <= 0;
                end
            end
            if ((BANKED || loaded) && !started) begin
                started <= 1; started_at <= cycles;
            end
            if (started) begin
                if (!i_valid && xi < n_pixels) idled <= idled + 1;
                if (o_valid && !o_ready) stalled <= stalled + 1;
            end
            o_ready <= !block_out;
            // The stream rule: what was offered and not taken is offered again, unchanged.
            if (held_valid && (!o_valid || o_payload != held)) hold_errors <= hold_errors + 1;
            held_valid <= o_valid && !o_ready;
            held <= o_payload;
            cycles <= cycles + 1;
            if (o_fire) begin
                if (taken < n_results) $fwrite(fd, "%h\n", o_payload);
                else extra <= extra + 1;
                taken <= taken + 1;
            end
            // After the last expected vector, 256 more cycles watch for an extra one.
            if (taken >= n_results) begin
                tail <= tail + 1;
                if (tail == 255) done <= 1;
            end
            if (cycles >= timeout) done <= 1;
        end
    end

    always @(posedge done) begin
        $fclose(fd);
        $write("PWCONV_SOAK beats=%0d vectors=%0d cycles=%0d stalled=%0d idle=%0d ", xi,
               taken - extra, cycles - started_at - 256, stalled, idled);
        $display("hold_errors=%0d extra=%0d timeout=%0d", hold_errors, extra,
                 cycles >= timeout);
        $finish;
    end
endmodule

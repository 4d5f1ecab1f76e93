// sdram_model: a behavioural, timing-checked SDR SDRAM chip (16-bit, 4 banks), Verilator + Icarus.
//
// Written for pwconv (issue 24) from the command truth tables, state rules and timing tables of
// the ULX3S's SDRAM datasheets (Micron MT48LC16M16A2, ISSI IS42S16160G, Alliance AS4C32M16SB);
// the per-part numbers and their conversion to the cycle parameters below are in
// sim/sdram/parts.py (`model_parameters(part, clock_hz)`). Plain Verilog-2005 plus `$fatal`
// (SystemVerilog; Icarus accepts it with -g2012, which cocotb's runner passes) and a `final`
// block for the end-of-simulation dump (leave it out with `define SDRAM_MODEL_NO_FINAL).
//
// Clocking (the integrator's contract)
//   * One clock, `clk`: the SDRAM's CLK. Every input (cke, cs_n, ras_n, cas_n, we_n, ba, a,
//     dqm, dq_i, dq_oe) is sampled at the rising edge; drive them from registers of the same
//     clock (zero-delay RTL: they change just after an edge and are sampled at the next one).
//   * Write data has zero latency: the data and DQM sampled with the WRITE command are its
//     first element, then one element per edge.
//   * Read data: a READ sampled at edge k presents its first element for the controller to
//     sample at edge k+CL: dq_o/dq_o_en change just after edge k+CL-1 (nonblocking) and hold
//     until just after edge k+CL, one element per edge after that. DQM masks read data with a
//     2-cycle latency (DQM sampled at edge n blanks the element sampled at edge n+2: the byte's
//     dq_o is 0 and, in sdram_model_inout, high-Z); it masks write data at once. A WRITE
//     interrupting a READ drops the read data not yet out; the element due at the WRITE's
//     edge needs DQM two edges earlier.
//   * CKE has a 1-cycle latency: when CKE is low at edge n, edge n+1 is suspended (clock
//     suspend during a burst: outputs hold; power-down when idle); the command at a suspended
//     edge is ignored. AUTO REFRESH with CKE low enters SELF REFRESH; CKE high leaves it.
//   * Auto precharge: after a READ burst the bank precharges from the edge after its last
//     element, after a WRITE burst T_WR edges after its last data (a burst cut short by
//     another bank's READ/WRITE, a BURST TERMINATE or a PRECHARGE: from the cut), but never
//     before tRAS from the ACTIVE (the datasheets: where an explicit PRECHARGE could have been
//     issued at the earliest without violating tRAS(MIN)); tRP runs from there.
//   * Time for the checks is counted in edges of clk (`cyc`, from 0 at the first edge), so the
//     parameters are cycles at the frequency they were computed for.
//
// Storage: 2**(ROW_BITS+2+COL_BITS) 16-bit words (32 MB by default; STORE_BITS=N keeps only
// 2**N words, the word address taken modulo that, for quick test builds), word address
// {row, bank, column}: LiteDRAM's ROW_BANK_COL mapping, so a word address of the controller's
// native port is the same word here. Backdoor plusargs (both simulators):
//   +sdram_load=FILE   at time 0, little-endian 16-bit words from word address 0 upward
//                      (so the file is the memory's byte image: byte 2w is word w's DQ[7:0];
//                      a 32 MB load takes seconds in Verilator, longer in Icarus)
//   +sdram_dump=FILE   at the end of the simulation (`final`), or when `dump_memory` is
//                      called / the `dump_request` register toggles; +sdram_dump_words=N
//                      limits it to the first N words (default: all)
// Runtime overrides of check parameters, so that one build serves short tests:
//   +sdram_init_cycles=N  +sdram_refresh_count=N (<= REFRESH_COUNT)  +sdram_refresh_window=N
//   +sdram_t_rc=N  (tRC; the datasheets' tRC = tRAS + tRP leaves no sequence that breaks tRC
//   alone, so the test of that check raises it)
//   +sdram_warn_only      (violations are counted in `violations` and printed, no stop)
//
// Checks: every violation prints one line
//   "sdram_model: <rule> violated: <what> at cycle <n> (<time>)"
// and then stops the simulation with $fatal (exit status nonzero) unless CHECKS_FATAL is 0
// or +sdram_warn_only is given. Rules:
//   power-up       the wait (T_INIT edges from the first one), PRECHARGE ALL, then at least
//                  INIT_REFRESHES AUTO REFRESH and a LOAD MODE REGISTER (either order) before
//                  the first ACTIVE
//   tRCD tRP tRAS  tRAS max, tRC, tRRD, tCCD, tWR (before PRECHARGE; an auto precharge
//   ...            waits for it and for tRAS by itself), tRFC, tMRD, tXSR
//   bank state     READ/WRITE to an idle bank or one in auto precharge, ACTIVE to an open
//                  bank, AUTO REFRESH / LOAD MODE REGISTER / SELF REFRESH with a bank open
//   mode register  ACTIVE/READ/WRITE while the last LOAD MODE REGISTER held a reserved code or
//                  a CAS latency the part cannot run at this clock (the load itself only
//                  prints a note: LiteDRAM's SDR init loads a reserved mode, then a valid one)
//   bus conflict   dq_oe while the model drives DQ
//   write data     an unmasked write element without dq_oe
//   command        X/Z on cs_n or the command pins after the power-up wait (Icarus)
//   refresh        fewer than REFRESH_COUNT AUTO REFRESH in a window of REFRESH_WINDOW cycles,
//                  checked on every edge: the REFRESH_COUNT-th most recent refresh must be
//                  less than REFRESH_WINDOW cycles old

// The parameter defaults are MT48LC16M16A2-6A at 133 MHz; take them from
// sim/sdram/parts.py for the part and clock simulated.
module sdram_model #(
    parameter integer ROW_BITS       = 13,      // row address bits (8192 rows)
    parameter integer COL_BITS       = 9,       // column bits: 9 (512) or 10 (AS4C32M16SB)
    parameter integer T_INIT         = 13300,   // power-up wait (100 us at 133 MHz)
    parameter integer INIT_REFRESHES = 2,       // AUTO REFRESH commands the power-up needs
    parameter integer T_RCD          = 3,       // ACTIVE to READ/WRITE
    parameter integer T_RP           = 3,       // PRECHARGE to ACTIVE/REFRESH/LMR
    parameter integer T_RAS          = 6,       // ACTIVE to PRECHARGE, min
    parameter integer T_RAS_MAX      = 15960,   // ACTIVE to PRECHARGE, max (120 us)
    parameter integer T_RC           = 8,       // ACTIVE to ACTIVE, same bank
    parameter integer T_RRD          = 2,       // ACTIVE to ACTIVE, another bank
    parameter integer T_CCD          = 1,       // READ/WRITE to READ/WRITE
    parameter integer T_WR           = 2,       // last write data to PRECHARGE (tWR, tDPL)
    parameter integer T_RFC          = 8,       // AUTO REFRESH to any command
    parameter integer T_MRD          = 2,       // LOAD MODE REGISTER to any command
    parameter integer T_XSR          = 9,       // SELF REFRESH exit to any command
    parameter integer CL2_OK         = 1,       // the part runs CAS latency 2 at this clock
    parameter integer CL3_OK         = 1,       // ... CAS latency 3
    parameter integer REFRESH_COUNT  = 8192,    // AUTO REFRESH commands per window, at least
    parameter integer REFRESH_WINDOW = 8512000, // window in cycles (64 ms at 133 MHz)
    parameter integer CHECKS_FATAL   = 1,       // 0: count violations instead of stopping
    parameter integer STORE_BITS     = 0        // 0: store every word; N: store 2**N words,
                                                // word addresses wrap (quick test builds)
) (
    input             clk,
    input             cke,
    input             cs_n,
    input             ras_n,
    input             cas_n,
    input             we_n,
    input      [1:0]  ba,
    input      [12:0] a,
    input      [1:0]  dqm,
    input      [15:0] dq_i,     // data the controller drives
    input             dq_oe,    // the controller drives dq this cycle
    output reg [15:0] dq_o,     // data the model drives (reads)
    output reg        dq_o_en   // the model drives dq this cycle
);

    localparam integer ADDR_BITS = ROW_BITS + 2 + COL_BITS;
    localparam integer STORE_LOG = (STORE_BITS > 0 && STORE_BITS < ADDR_BITS) ? STORE_BITS
                                                                              : ADDR_BITS;
    localparam integer WORDS = 1 << STORE_LOG;
    localparam integer PAGE = 1 << COL_BITS;
    localparam signed [63:0] NEVER = -64'sd1000000000000;
    // the timing parameters as 64-bit cycle counts (the time arithmetic's width)
    localparam signed [63:0] RCD_C = {32'd0, T_RCD};
    localparam signed [63:0] RP_C = {32'd0, T_RP};
    localparam signed [63:0] RAS_C = {32'd0, T_RAS};
    localparam signed [63:0] RAS_MAX_C = {32'd0, T_RAS_MAX};
    localparam signed [63:0] RC_C = {32'd0, T_RC};
    localparam signed [63:0] RRD_C = {32'd0, T_RRD};
    localparam signed [63:0] CCD_C = {32'd0, T_CCD};
    localparam signed [63:0] WR_C = {32'd0, T_WR};
    localparam signed [63:0] RFC_C = {32'd0, T_RFC};
    localparam signed [63:0] MRD_C = {32'd0, T_MRD};
    localparam signed [63:0] XSR_C = {32'd0, T_XSR};

    // Commands: {ras_n, cas_n, we_n} with cs_n low.
    localparam [2:0] C_LMR = 3'b000, C_REF = 3'b001, C_PRE = 3'b010, C_ACT = 3'b011,
                     C_WRITE = 3'b100, C_READ = 3'b101, C_BST = 3'b110, C_NOP = 3'b111;

    // ---------------------------------------------------------------- state
    reg [15:0] mem [0:WORDS-1];

    reg signed [63:0] cyc;                    // index of the edge being processed
    reg [1:0]  dq_byte_en;                    // per byte: the model drives it (inout wrapper)
    integer    violations;                    // counted (CHECKS_FATAL 0 / +sdram_warn_only)
    reg        fatal_mode;
    reg        cke_prev;
    reg        in_self_refresh;

    // runtime copies of the check parameters (plusargs may override them)
    integer refresh_count, arg;
    reg signed [63:0] rc_cycles;                // T_RC (+sdram_t_rc=N overrides it)
    reg signed [63:0] init_cycles, refresh_window;

    // power-up: 0 waiting for PRECHARGE ALL, 1 refreshes and mode register, 2 done
    integer init_state, init_refreshes;
    reg     mode_set;
    reg     mode_bad;                         // the last LOAD MODE REGISTER held a reserved code
    reg [8*40-1:0] mode_reason;
    reg signed [63:0] t_mode;

    // mode register
    integer cas_latency;                      // 2 or 3
    reg [2:0] bl_code;                        // 0:1 1:2 2:4 3:8 7:full page
    reg     interleaved;
    reg     write_single;                     // A9: writes are single-location

    // banks
    reg               bank_open [0:3];
    reg [12:0]        bank_row  [0:3];
    reg signed [63:0] t_act     [0:3];        // last ACTIVE
    reg signed [63:0] t_pre     [0:3];        // last precharge start (command or auto)
    reg signed [63:0] t_wdata   [0:3];        // last unmasked write data
    reg               ras_max_said [0:3];
    integer           ap_state  [0:3];        // 0 none, 1 burst with auto precharge running,
                                              // 2 auto precharge scheduled at ap_time
    reg signed [63:0] ap_time   [0:3];
    reg signed [63:0] t_lmr, t_ref, t_xsr_exit, t_rw;

    // bursts
    reg               rd_on, wr_on, rd_ap, wr_ap, rd_full, wr_full;
    reg [1:0]         rd_bank, wr_bank;
    reg [COL_BITS-1:0] rd_start, wr_start;
    integer           rd_idx, wr_idx, rd_len, wr_len;

    // read output pipeline: element issued one and two edges ago
    reg        p1_v, p2_v;
    reg [15:0] p1_d, p2_d;
    reg [1:0]  dqm_d1;

    // refresh window: ring of the last refresh_count refresh times
    reg signed [63:0] ref_ring [0:REFRESH_COUNT-1];
    integer ref_ptr, ref_n;
    reg signed [63:0] ref_base;
    reg ref_said;

    // backdoor
    reg [8*1024-1:0] load_file, dump_file;
    reg     dump_request;                     // toggle (e.g. from cocotb) to dump now
    reg     dump_request_seen;
    integer dump_words;

    // per-edge scratch
    reg [2:0]  cmd;
    reg        is_cmd;
    reg        el_v;
    reg [15:0] el_d;
    reg        out_v;
    reg [15:0] out_d;
    reg [COL_BITS-1:0] col;
    reg [STORE_LOG-1:0] idx;
    reg signed [63:0] oldest;
    integer b, fd, got, i, extra;

    // ---------------------------------------------------------------- helpers
    function [8*20-1:0] cmd_name(input [2:0] c);
        case (c)
            C_LMR: cmd_name = "LOAD MODE REGISTER";
            C_REF: cmd_name = "AUTO REFRESH";
            C_PRE: cmd_name = "PRECHARGE";
            C_ACT: cmd_name = "ACTIVE";
            C_WRITE: cmd_name = "WRITE";
            C_READ: cmd_name = "READ";
            C_BST: cmd_name = "BURST TERMINATE";
            default: cmd_name = "NOP";
        endcase
    endfunction

    // Column of element `n` of a burst from `start` (sequential or interleaved; full page
    // wraps within the page).
    function [COL_BITS-1:0] burst_col(input [COL_BITS-1:0] start, input integer n,
                                      input full);
        reg [COL_BITS-1:0] mask, step;
        begin
            step = n[COL_BITS-1:0];
            if (full) mask = {COL_BITS{1'b1}};
            else mask = (1 << bl_code) - 1;
            if (interleaved && !full)
                burst_col = (start & ~mask) | ((start ^ step) & mask);
            else
                burst_col = (start & ~mask) | ((start + step) & mask);
        end
    endfunction

    function [STORE_LOG-1:0] word_addr(input [1:0] bank, input [12:0] row,
                                       input [COL_BITS-1:0] column);
        reg [ADDR_BITS-1:0] full;
        begin
            full = {row[ROW_BITS-1:0], bank, column};
            word_addr = full[STORE_LOG-1:0];
        end
    endfunction

    // One violation was printed: stop, or count it.
    task violated;
        begin
            violations = violations + 1;
            if (fatal_mode) begin
                $fflush;
                $fatal(1, "sdram_model: stopping on the violation above");
            end
        end
    endtask

    task dump_memory;
        input [8*1024-1:0] name;
        integer f, w, n;
        begin
            f = $fopen(name, "wb");
            if (f == 0) begin
                $display("sdram_model: cannot open the dump file %0s", name);
            end else begin
                n = (dump_words > 0 && dump_words < WORDS) ? dump_words : WORDS;
                for (w = 0; w < n; w = w + 1)
                    $fwrite(f, "%c%c", mem[w][7:0], mem[w][15:8]);
                $fclose(f);
                $display("sdram_model: dumped %0d words to %0s", n, name);
            end
        end
    endtask

    // Precharge start of an auto-precharge burst cut short at this edge (by another bank's
    // READ/WRITE, a BURST TERMINATE or a PRECHARGE): now for a read, write recovery after the
    // last data for a write.
    task cut_read;
        begin
            if (rd_on && rd_ap) begin
                ap_state[rd_bank] = 2;
                ap_time[rd_bank] = cyc;
            end
            rd_on = 0;
        end
    endtask

    task cut_write;
        begin
            if (wr_on && wr_ap) begin
                ap_state[wr_bank] = 2;
                ap_time[wr_bank] = (t_wdata[wr_bank] + WR_C > cyc) ? t_wdata[wr_bank] + WR_C
                                                                    : cyc;
            end
            wr_on = 0;
        end
    endtask

    // ---------------------------------------------------------------- time 0
    initial begin
        cyc = 0;
        violations = 0;
        fatal_mode = (CHECKS_FATAL != 0);
        if ($test$plusargs("sdram_warn_only")) fatal_mode = 0;
        init_cycles = {32'd0, T_INIT};
        refresh_count = REFRESH_COUNT;
        refresh_window = {32'd0, REFRESH_WINDOW};
        if ($value$plusargs("sdram_init_cycles=%d", arg)) init_cycles = {32'd0, arg};
        if ($value$plusargs("sdram_refresh_count=%d", arg)) refresh_count = arg;
        if ($value$plusargs("sdram_refresh_window=%d", arg)) refresh_window = {32'd0, arg};
        rc_cycles = RC_C;
        if ($value$plusargs("sdram_t_rc=%d", arg)) rc_cycles = {32'd0, arg};
        if (refresh_count < 1 || refresh_count > REFRESH_COUNT) begin
            $display("sdram_model: +sdram_refresh_count=%0d is outside ", refresh_count,
                     "1..%0d (REFRESH_COUNT)", REFRESH_COUNT);
            refresh_count = REFRESH_COUNT;
        end
        cke_prev = 0;
        in_self_refresh = 0;
        init_state = 0;
        init_refreshes = 0;
        mode_set = 0;
        mode_bad = 0;
        mode_reason = 0;
        t_mode = NEVER;
        cas_latency = 2;
        bl_code = 0;
        interleaved = 0;
        write_single = 0;
        for (b = 0; b < 4; b = b + 1) begin
            bank_open[b] = 0;
            bank_row[b] = 0;
            t_act[b] = NEVER;
            t_pre[b] = NEVER;
            t_wdata[b] = NEVER;
            ras_max_said[b] = 0;
            ap_state[b] = 0;
            ap_time[b] = NEVER;
        end
        t_lmr = NEVER;
        t_ref = NEVER;
        t_xsr_exit = NEVER;
        t_rw = NEVER;
        rd_on = 0; wr_on = 0; rd_ap = 0; wr_ap = 0; rd_full = 0; wr_full = 0;
        rd_bank = 0; wr_bank = 0; rd_start = 0; wr_start = 0;
        rd_idx = 0; wr_idx = 0; rd_len = 1; wr_len = 1;
        p1_v = 0; p2_v = 0; p1_d = 0; p2_d = 0; dqm_d1 = 0;
        ref_ptr = 0; ref_n = 0; ref_base = 0; ref_said = 0;
        dq_o = 0;
        dq_o_en = 0;
        dq_byte_en = 0;
        dump_request = 0;
        dump_request_seen = 0;
        dump_words = 0;
        if ($value$plusargs("sdram_dump_words=%d", dump_words)) ;
        dump_file = 0;
        if ($value$plusargs("sdram_dump=%s", dump_file)) ;
        if (ROW_BITS < 1 || ROW_BITS > 13 || COL_BITS < 1 || COL_BITS > 10) begin
            $display("sdram_model: ROW_BITS must be 1..13 and COL_BITS 1..10, not %0d ", ROW_BITS,
                     "and %0d", COL_BITS);
            $fatal(1, "sdram_model: bad geometry");
        end
        if ($value$plusargs("sdram_load=%s", load_file)) begin
            fd = $fopen(load_file, "rb");
            if (fd == 0) begin
                $display("sdram_model: cannot open +sdram_load file %0s", load_file);
                $fatal(1, "sdram_model: bad +sdram_load");
            end
            got = $fread(mem, fd);          // big-endian per word: swapped below
            extra = $fgetc(fd);
            $fclose(fd);
            if (extra != -1) begin
                $display("sdram_model: +sdram_load file %0s is larger than the memory ", load_file,
                         "(%0d bytes)", 2 * WORDS);
                $fatal(1, "sdram_model: bad +sdram_load");
            end
            for (i = 0; i < (got + 1) / 2; i = i + 1)
                mem[i] = {mem[i][7:0], mem[i][15:8]};
            $display("sdram_model: loaded %0d bytes from %0s", got, load_file);
        end
    end

`ifndef SDRAM_MODEL_NO_FINAL
    // (Icarus lets no task be called from a final block: dump_memory's body again.)
    integer final_fd, final_w, final_n;
    final begin
        if (dump_file != 0) begin
            final_fd = $fopen(dump_file, "wb");
            if (final_fd == 0) begin
                $display("sdram_model: cannot open the dump file %0s", dump_file);
            end else begin
                final_n = (dump_words > 0 && dump_words < WORDS) ? dump_words : WORDS;
                for (final_w = 0; final_w < final_n; final_w = final_w + 1)
                    $fwrite(final_fd, "%c%c", mem[final_w][7:0], mem[final_w][15:8]);
                $fclose(final_fd);
                $display("sdram_model: dumped %0d words to %0s", final_n, dump_file);
            end
        end
        if (violations != 0)
            $display("sdram_model: %0d timing violations counted", violations);
    end
`endif

    // ---------------------------------------------------------------- every edge
    always @(posedge clk) begin
        el_v = 0;
        el_d = 0;

        if (dump_request !== dump_request_seen) begin
            dump_request_seen = dump_request;
            if (dump_file != 0) dump_memory(dump_file);
            else $display("sdram_model: dump requested without +sdram_dump=FILE");
        end

        // Bus conflict: what both sides drive in the cycle that ends at this edge.
        if (dq_oe === 1'b1 && dq_o_en) begin
            $display("sdram_model: bus conflict violated: the controller (dq_oe) and the model ",
                     "both drive DQ at cycle %0d (%0t)", cyc, $time);
            violated;
        end

        // Auto precharges that start now (or started at an earlier edge). The datasheets
        // place an auto precharge's start where an explicit PRECHARGE could have been issued
        // at the earliest without violating tRAS(MIN): never before tRAS.
        for (b = 0; b < 4; b = b + 1)
            if (ap_state[b] == 2 && (ap_time[b] - t_act[b] < RAS_C ? t_act[b] + RAS_C
                                                                   : ap_time[b]) <= cyc) begin
                if (ap_time[b] - t_act[b] < RAS_C) ap_time[b] = t_act[b] + RAS_C;
                bank_open[b] = 0;
                t_pre[b] = ap_time[b];
                ap_state[b] = 0;
            end

        // tRAS max: a row open too long.
        for (b = 0; b < 4; b = b + 1)
            if (bank_open[b] && !ras_max_said[b] && cyc - t_act[b] > RAS_MAX_C) begin
                ras_max_said[b] = 1;
                $display("sdram_model: tRAS max violated: bank %0d row %0d open ", b, bank_row[b],
                         "%0d cycles (max %0d) at cycle %0d ", cyc - t_act[b], RAS_MAX_C, cyc,
                         "(%0t)", $time);
                violated;
            end

        if (in_self_refresh) begin
            if (cke === 1'b1) begin
                in_self_refresh = 0;
                t_xsr_exit = cyc;
                ref_n = 0;                  // the device refreshed itself: a new window
                ref_base = cyc;
                ref_said = 0;
            end
        end else if (cke_prev !== 1'b1) begin
            // suspended edge (clock suspend / power-down): nothing moves, outputs hold
        end else begin
            // ------------------------------------------------ decode
            is_cmd = 0;
            cmd = C_NOP;
            if (cs_n === 1'b0) begin
                cmd = {ras_n, cas_n, we_n};
                is_cmd = (cmd != C_NOP);
            end
            if (cyc >= init_cycles && (cs_n !== 1'b0 && cs_n !== 1'b1
                                       || cs_n === 1'b0 && ^{ras_n, cas_n, we_n} === 1'bx)) begin
                $display("sdram_model: command violated: X or Z on cs_n/ras_n/cas_n/we_n at ",
                         "cycle %0d (%0t)", cyc, $time);
                violated;
                is_cmd = 0;
            end

            // ------------------------------------------------ power-up sequence
            if (is_cmd && init_state == 0) begin
                if (cyc < init_cycles) begin
                    $display("sdram_model: power-up violated: %0s at cycle ", cmd_name(cmd),
                             "%0d, before the power-up wait of %0d cycles is ", cyc, init_cycles,
                             "over (%0t)", $time);
                    violated;
                end else if (!(cmd == C_PRE && a[10])) begin
                    $display("sdram_model: power-up violated: %0s before ", cmd_name(cmd),
                             "PRECHARGE ALL at cycle %0d (%0t)", cyc, $time);
                    violated;
                end
            end
            if (is_cmd && init_state == 1 && cmd == C_ACT) begin
                if (init_refreshes < INIT_REFRESHES) begin
                    $display("sdram_model: power-up violated: ACTIVE after %0d ", init_refreshes,
                             "AUTO REFRESH (needs %0d) at cycle %0d ", INIT_REFRESHES, cyc,
                             "(%0t)", $time);
                    violated;
                end else if (!mode_set) begin
                    $display("sdram_model: power-up violated: ACTIVE before LOAD MODE REGISTER ",
                             "at cycle %0d (%0t)", cyc, $time);
                    violated;
                end
            end

            // ------------------------------------------------ command-to-command times
            if (is_cmd && cyc - t_lmr < MRD_C) begin
                $display("sdram_model: tMRD violated: %0s %0d cycles ", cmd_name(cmd), cyc - t_lmr,
                         "after LOAD MODE REGISTER (needs %0d) at cycle %0d ", MRD_C, cyc,
                         "(%0t)", $time);
                violated;
            end
            if (is_cmd && cyc - t_ref < RFC_C) begin
                $display("sdram_model: tRFC violated: %0s %0d cycles ", cmd_name(cmd), cyc - t_ref,
                         "after AUTO REFRESH (needs %0d) at cycle %0d (%0t)", RFC_C, cyc, $time);
                violated;
            end
            if (is_cmd && cyc - t_xsr_exit < XSR_C) begin
                $display("sdram_model: tXSR violated: %0s %0d ", cmd_name(cmd), cyc - t_xsr_exit,
                         "cycles after leaving SELF REFRESH (needs %0d) at cycle %0d ", XSR_C, cyc,
                         "(%0t)", $time);
                violated;
            end

            // ------------------------------------------------ the command
            if (is_cmd) case (cmd)
            C_ACT, C_READ, C_WRITE: if (mode_bad) begin
                $display("sdram_model: mode register violated: %0s while the mode ", cmd_name(cmd),
                         "register holds %0s (LOAD MODE REGISTER at cycle ", mode_reason,
                         "%0d) at cycle %0d (%0t)", t_mode, cyc, $time);
                violated;
            end
            default: ;
            endcase

            if (is_cmd) case (cmd)
            C_ACT: begin
                if (bank_open[ba] || ap_state[ba] != 0) begin
                    $display("sdram_model: bank state violated: ACTIVE to bank %0d, which ", ba,
                             "has row %0d open, at cycle %0d (%0t)", bank_row[ba], cyc, $time);
                    violated;
                end
                if (cyc - t_pre[ba] < RP_C) begin
                    $display("sdram_model: tRP violated: ACTIVE to bank %0d ", ba,
                             "%0d cycles after its precharge (needs %0d) ", cyc - t_pre[ba], RP_C,
                             "at cycle %0d (%0t)", cyc, $time);
                    violated;
                end
                if (cyc - t_act[ba] < rc_cycles) begin
                    $display("sdram_model: tRC violated: ACTIVE to bank %0d ", ba,
                             "%0d cycles after its last ACTIVE (needs ", cyc - t_act[ba],
                             "%0d) at cycle %0d (%0t)", rc_cycles, cyc, $time);
                    violated;
                end
                for (b = 0; b < 4; b = b + 1)
                    if (b[1:0] != ba && cyc - t_act[b] < RRD_C) begin
                        $display("sdram_model: tRRD violated: ACTIVE to bank %0d ", ba,
                                 "%0d cycles after ACTIVE to bank %0d (needs ", cyc - t_act[b], b,
                                 "%0d) at cycle %0d (%0t)", RRD_C, cyc, $time);
                        violated;
                    end
                if (ROW_BITS < 13 && (a >> ROW_BITS) != 0) begin
                    $display("sdram_model: address violated: ACTIVE to bank %0d row %0d, ", ba, a,
                             "beyond the %0d rows at cycle %0d (%0t)", 1 << ROW_BITS, cyc, $time);
                    violated;
                end
                bank_open[ba] = 1;
                bank_row[ba] = a;
                t_act[ba] = cyc;
                ras_max_said[ba] = 0;
            end
            C_READ, C_WRITE: begin
                if (ap_state[ba] != 0) begin
                    $display("sdram_model: bank state violated: %0s to bank ", cmd_name(cmd),
                             "%0d during its auto precharge at cycle %0d (%0t)", ba, cyc, $time);
                    violated;
                end else if (!bank_open[ba]) begin
                    $display("sdram_model: bank state violated: %0s to bank ", cmd_name(cmd),
                             "%0d, which is idle (no row open), at cycle %0d ", ba, cyc,
                             "(%0t)", $time);
                    violated;
                end else if (cyc - t_act[ba] < RCD_C) begin
                    $display("sdram_model: tRCD violated: %0s to bank %0d ", cmd_name(cmd), ba,
                             "%0d cycles after ACTIVE (needs %0d) at ", cyc - t_act[ba], RCD_C,
                             "cycle %0d (%0t)", cyc, $time);
                    violated;
                end
                if (cyc - t_rw < CCD_C) begin
                    $display("sdram_model: tCCD violated: %0s %0d ", cmd_name(cmd), cyc - t_rw,
                             "cycles after the last READ/WRITE (needs %0d) at cycle ", CCD_C,
                             "%0d (%0t)", cyc, $time);
                    violated;
                end
                t_rw = cyc;
                cut_read;                   // a new READ/WRITE interrupts any burst
                cut_write;
                if (bank_open[ba] && ap_state[ba] == 0) begin
                    if (cmd == C_READ) begin
                        rd_on = 1;
                        rd_bank = ba;
                        rd_start = a[COL_BITS-1:0];
                        rd_idx = 0;
                        rd_full = (bl_code == 7);
                        rd_len = 1 << bl_code;
                        rd_ap = a[10];
                    end else begin
                        wr_on = 1;
                        wr_bank = ba;
                        wr_start = a[COL_BITS-1:0];
                        wr_idx = 0;
                        wr_full = (bl_code == 7) && !write_single;
                        wr_len = write_single ? 1 : 1 << bl_code;
                        wr_ap = a[10];
                    end
                    if (a[10]) ap_state[ba] = 1;
                end
            end
            C_BST: begin
                cut_read;
                cut_write;
            end
            C_PRE: begin
                if (init_state == 0 && cyc >= init_cycles && a[10]) begin
                    init_state = 1;
                    init_refreshes = 0;
                end
                for (b = 0; b < 4; b = b + 1)
                    if ((a[10] || b[1:0] == ba) && bank_open[b] && ap_state[b] == 0) begin
                        if (cyc - t_act[b] < RAS_C) begin
                            $display("sdram_model: tRAS violated: PRECHARGE to bank %0d row ", b,
                                     "%0d %0d cycles after ACTIVE ", bank_row[b], cyc - t_act[b],
                                     "(needs %0d) at cycle %0d (%0t)", RAS_C, cyc, $time);
                            violated;
                        end
                        if (cyc - t_wdata[b] < WR_C) begin
                            $display("sdram_model: tWR violated: PRECHARGE to bank %0d ", b,
                                     "%0d cycles after its last write data ", cyc - t_wdata[b],
                                     "(needs %0d) at cycle %0d (%0t)", WR_C, cyc, $time);
                            violated;
                        end
                        if (rd_on && rd_bank == b[1:0]) cut_read;
                        if (wr_on && wr_bank == b[1:0]) cut_write;
                        bank_open[b] = 0;
                        t_pre[b] = cyc;
                    end
            end
            C_REF, C_LMR: begin
                for (b = 0; b < 4; b = b + 1) begin
                    if (bank_open[b] || ap_state[b] != 0) begin
                        $display("sdram_model: bank state violated: %0s with bank %0d open ",
                                 (cmd == C_REF && cke !== 1'b1) ? "SELF REFRESH" : cmd_name(cmd), b,
                                 "(row %0d) at cycle %0d (%0t)", bank_row[b], cyc, $time);
                        violated;
                    end else if (cyc - t_pre[b] < RP_C) begin
                        $display("sdram_model: tRP violated: %0s ", cmd_name(cmd),
                                 "%0d cycles after the precharge of bank %0d ", cyc - t_pre[b], b,
                                 "(needs %0d) at cycle %0d (%0t)", RP_C, cyc, $time);
                        violated;
                    end
                end
                if (cmd == C_LMR) begin
                    // A reserved code is not itself a violation (LiteDRAM's SDR init loads
                    // A8 = 1, DDR's "DLL reset", and then a valid mode): the mode register is
                    // invalid until the next LOAD MODE REGISTER, and an ACTIVE, READ or WRITE
                    // meanwhile is the violation.
                    mode_bad = 1;
                    if (a[2:0] == 3'd4 || a[2:0] == 3'd5 || a[2:0] == 3'd6
                            || a[2:0] == 3'd7 && a[3])
                        mode_reason = "a reserved burst length code";
                    else if (a[6:4] != 3'd2 && a[6:4] != 3'd3)
                        mode_reason = "a reserved CAS latency code";
                    else if (a[6:4] == 3'd2 && CL2_OK == 0 || a[6:4] == 3'd3 && CL3_OK == 0)
                        mode_reason = "a CAS latency too short for this clock";
                    else if (a[8:7] != 2'd0)
                        mode_reason = "a reserved operating mode (A8:A7)";
                    else
                        mode_bad = 0;
                    if (mode_bad)
                        $display("sdram_model: note: LOAD MODE REGISTER %h at cycle %0d ", a, cyc,
                                 "holds %0s; it must be loaded again before an ", mode_reason,
                                 "ACTIVE (%0t)", $time);
                    t_mode = cyc;
                    bl_code = a[2:0];
                    interleaved = a[3];
                    cas_latency = (a[6:4] == 3'd3) ? 3 : 2;
                    write_single = a[9];
                    mode_set = 1;
                    t_lmr = cyc;
                end else if (cke !== 1'b1) begin
                    in_self_refresh = 1;    // SELF REFRESH entry
                end else begin
                    t_ref = cyc;
                    if (init_state == 1) init_refreshes = init_refreshes + 1;
                    ref_ring[ref_ptr] = cyc;
                    ref_ptr = (ref_ptr + 1 == refresh_count) ? 0 : ref_ptr + 1;
                    if (ref_n < refresh_count) ref_n = ref_n + 1;
                    ref_said = 0;
                end
            end
            default: ;
            endcase

            if (init_state == 1 && mode_set && init_refreshes >= INIT_REFRESHES) begin
                init_state = 2;
                ref_base = cyc;
            end

            // ------------------------------------------------ this edge's burst elements
            if (wr_on) begin
                col = burst_col(wr_start, wr_idx, wr_full);
                idx = word_addr(wr_bank, bank_row[wr_bank], col);
                if (dqm != 2'b11) begin
                    if (dq_oe !== 1'b1) begin
                        $display("sdram_model: write data violated: WRITE burst element ",
                                 "%0d to bank %0d column %0d with dq_oe ", wr_idx, wr_bank, col,
                                 "low at cycle %0d (%0t)", cyc, $time);
                        violated;
                    end
                    if (!dqm[0]) mem[idx][7:0] = dq_i[7:0];
                    if (!dqm[1]) mem[idx][15:8] = dq_i[15:8];
                    t_wdata[wr_bank] = cyc;
                end
                wr_idx = wr_idx + 1;
                if (!wr_full && wr_idx == wr_len) begin
                    if (wr_ap) begin
                        ap_state[wr_bank] = 2;
                        ap_time[wr_bank] = cyc + WR_C;
                    end
                    wr_on = 0;
                end
            end
            if (rd_on) begin
                col = burst_col(rd_start, rd_idx, rd_full);
                el_v = 1;
                el_d = mem[word_addr(rd_bank, bank_row[rd_bank], col)];
                rd_idx = rd_idx + 1;
                if (!rd_full && rd_idx == rd_len) begin
                    if (rd_ap) begin
                        ap_state[rd_bank] = 2;
                        ap_time[rd_bank] = cyc + 1;
                    end
                    rd_on = 0;
                end
            end

            // ------------------------------------------------ read data out
            out_v = (cas_latency == 2) ? p1_v : p2_v;
            out_d = (cas_latency == 2) ? p1_d : p2_d;
            p2_v = p1_v;
            p2_d = p1_d;
            p1_v = el_v;
            p1_d = el_d;
            if (is_cmd && cmd == C_WRITE) begin
                // A WRITE turns the outputs off: read data still in flight is dropped (the
                // element due at the WRITE's own edge must have been blanked by DQM 2 edges
                // before, or the bus conflict check fires).
                out_v = 0;
                p2_v = 0;
            end
            dq_o <= out_v ? out_d & ~{{8{dqm_d1[1]}}, {8{dqm_d1[0]}}} : 16'h0000;
            dq_byte_en <= out_v ? ~dqm_d1 : 2'b00;
            dq_o_en <= out_v && dqm_d1 != 2'b11;
            dqm_d1 = dqm;
        end

        // ------------------------------------------------ refresh window
        if (init_state == 2 && !in_self_refresh) begin
            oldest = (ref_n >= refresh_count) ? ref_ring[ref_ptr] : ref_base;
            if (!ref_said && cyc - oldest >= refresh_window) begin
                ref_said = 1;
                $display("sdram_model: refresh violated: fewer than %0d AUTO ", refresh_count,
                         "REFRESH in the window of %0d cycles ending at cycle ", refresh_window,
                         "%0d (%0t)", cyc, $time);
                violated;
            end
        end

        cke_prev = cke;
        cyc = cyc + 1;
    end
endmodule


// sdram_model_inout: sdram_model with one bidirectional DQ bus, for designs that have one
// (Icarus; Verilator takes no tristate at its top level, so keep such a bus inside the
// simulated design). The controller's drive is seen as any non-Z bit on dq.
module sdram_model_inout #(
    parameter integer ROW_BITS       = 13,
    parameter integer COL_BITS       = 9,
    parameter integer T_INIT         = 13300,
    parameter integer INIT_REFRESHES = 2,
    parameter integer T_RCD          = 3,
    parameter integer T_RP           = 3,
    parameter integer T_RAS          = 6,
    parameter integer T_RAS_MAX      = 15960,
    parameter integer T_RC           = 8,
    parameter integer T_RRD          = 2,
    parameter integer T_CCD          = 1,
    parameter integer T_WR           = 2,
    parameter integer T_RFC          = 8,
    parameter integer T_MRD          = 2,
    parameter integer T_XSR          = 9,
    parameter integer CL2_OK         = 1,
    parameter integer CL3_OK         = 1,
    parameter integer REFRESH_COUNT  = 8192,
    parameter integer REFRESH_WINDOW = 8512000,
    parameter integer CHECKS_FATAL   = 1,
    parameter integer STORE_BITS     = 0
) (
    input         clk,
    input         cke,
    input         cs_n,
    input         ras_n,
    input         cas_n,
    input         we_n,
    input  [1:0]  ba,
    input  [12:0] a,
    input  [1:0]  dqm,
    inout  [15:0] dq
);
    wire [15:0] dq_o;
    wire        dq_o_en;
    wire        dq_oe = controller_drives(dq, dq_o, u.dq_byte_en);

    // The controller drives dq if a bit the model leaves alone is not Z, or a bit the model
    // drives (with a known value) resolves to X.
    function controller_drives(input [15:0] bus, input [15:0] own, input [1:0] byte_en);
        integer n;
        begin
            controller_drives = 0;
            for (n = 0; n < 16; n = n + 1)
                if (byte_en[n / 8] ? (bus[n] === 1'bx && own[n] !== 1'bx) : bus[n] !== 1'bz)
                    controller_drives = 1;
        end
    endfunction

    sdram_model #(
        .ROW_BITS(ROW_BITS), .COL_BITS(COL_BITS), .T_INIT(T_INIT),
        .INIT_REFRESHES(INIT_REFRESHES), .T_RCD(T_RCD), .T_RP(T_RP), .T_RAS(T_RAS),
        .T_RAS_MAX(T_RAS_MAX), .T_RC(T_RC), .T_RRD(T_RRD), .T_CCD(T_CCD), .T_WR(T_WR),
        .T_RFC(T_RFC), .T_MRD(T_MRD), .T_XSR(T_XSR), .CL2_OK(CL2_OK), .CL3_OK(CL3_OK),
        .REFRESH_COUNT(REFRESH_COUNT), .REFRESH_WINDOW(REFRESH_WINDOW),
        .CHECKS_FATAL(CHECKS_FATAL), .STORE_BITS(STORE_BITS)
    ) u (
        .clk(clk), .cke(cke), .cs_n(cs_n), .ras_n(ras_n), .cas_n(cas_n), .we_n(we_n),
        .ba(ba), .a(a), .dqm(dqm), .dq_i(dq), .dq_oe(dq_oe), .dq_o(dq_o), .dq_o_en(dq_o_en)
    );

    assign dq[7:0]  = u.dq_byte_en[0] ? dq_o[7:0]  : 8'hzz;
    assign dq[15:8] = u.dq_byte_en[1] ? dq_o[15:8] : 8'hzz;
endmodule

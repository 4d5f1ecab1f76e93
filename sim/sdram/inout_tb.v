// inout_tb: Icarus bench of sdram_model_inout (one bidirectional dq): init, a 4-word burst write,
// a burst read back through the shared bus (with a tristate controller), then a planted bus
// fight; prints "inout_tb: PASS" / "inout_tb: FAIL ..." (tests/test_sim_sdram_model.py).
`timescale 1ns / 1ps
module inout_tb;
    reg clk = 0;
    always #5 clk = !clk;

    reg cke = 1, cs_n = 1, ras_n = 1, cas_n = 1, we_n = 1;
    reg [1:0] ba = 0, dqm = 0;
    reg [12:0] a = 0;
    reg [15:0] drive = 0;
    reg oe = 0;
    wire [15:0] dq;
    assign dq = oe ? drive : 16'hzzzz;

    sdram_model_inout #(.T_INIT(20), .T_RCD(2), .T_RP(2), .T_RAS(5), .T_RC(7), .T_RFC(7),
                        .STORE_BITS(16)) sdram (
        .clk(clk), .cke(cke), .cs_n(cs_n), .ras_n(ras_n), .cas_n(cas_n), .we_n(we_n), .ba(ba),
        .a(a), .dqm(dqm), .dq(dq));

    integer i, errors = 0;
    reg [15:0] got [0:3];

    // one command per edge: set at the falling edge, sampled at the next rising one
    task cmd(input [2:0] rcw, input [1:0] bank, input [12:0] addr);
        begin
            @(negedge clk);
            cs_n = 0; {ras_n, cas_n, we_n} = rcw; ba = bank; a = addr;
        end
    endtask
    task nop(input integer n);
        integer k;
        for (k = 0; k < n; k = k + 1) cmd(3'b111, 0, 0);
    endtask

    initial begin
        nop(25);
        cmd(3'b010, 0, 13'h400);                      // PRECHARGE ALL
        nop(2);
        cmd(3'b001, 0, 0); nop(7);                    // AUTO REFRESH x2
        cmd(3'b001, 0, 0); nop(7);
        cmd(3'b000, 0, 13'h022);                      // LMR: CL 2, burst 4
        nop(2);
        cmd(3'b011, 1, 13'd77);                       // ACTIVE bank 1 row 77
        nop(1);
        cmd(3'b100, 1, 13'd4);                        // WRITE col 4
        oe = 1; drive = 16'hA000;
        for (i = 1; i < 4; i = i + 1) begin
            @(negedge clk); cs_n = 0; {ras_n, cas_n, we_n} = 3'b111; drive = 16'hA000 + i;
        end
        @(negedge clk); oe = 0; {ras_n, cas_n, we_n} = 3'b111;
        nop(2);
        cmd(3'b101, 1, 13'd4);                        // READ col 4 (CL 2)
        @(negedge clk); {ras_n, cas_n, we_n} = 3'b111;
        // just after edge READ+1+i: element i, which a controller samples at edge READ+2+i
        for (i = 0; i < 4; i = i + 1) begin
            @(posedge clk); #1 got[i] = dq;
        end
        for (i = 0; i < 4; i = i + 1)
            if (got[i] !== 16'hA000 + i) begin
                $display("inout_tb: FAIL word %0d read %h", i, got[i]);
                errors = errors + 1;
            end
        nop(4);
        if (errors == 0) $display("inout_tb: PASS");
        // planted: drive dq while the model drives a read
        cmd(3'b101, 1, 13'd4);
        nop(2);
        @(negedge clk); oe = 1; drive = 16'h0F0F;
        nop(4);
        $display("inout_tb: FAIL the bus fight was not caught");
        $finish;
    end
endmodule

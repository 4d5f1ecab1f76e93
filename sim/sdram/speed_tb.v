// speed_tb: the SDRAM model driven by a fixed legal command pattern in Verilog (no Python), to
// measure its simulation speed with every check on (tests/test_sim_sdram_model.py runs it short).
//
// Per 32-cycle slot (defaults: MT48LC16M16A2-6A at 133 MHz): ACTIVE at 0, WRITE (burst 1) at
// 3, READ at 5 (its word checked 2 edges later, CL 2), PRECHARGE at 8, AUTO REFRESH at 12; the
// bank and row rotate. `CYCLES` edges in all (plusarg +cycles=N), then it prints the errors.
`timescale 1ns / 1ps
module speed_tb;
    reg clk = 0;
    always #5 clk = !clk;

    reg [2:0] rcw = 3'b111;
    reg [1:0] ba = 0;
    reg [12:0] a = 0;
    reg [15:0] wdata = 0;
    reg oe = 0;
    wire [15:0] dq_o;
    wire dq_o_en;

    sdram_model #(.T_INIT(100), .STORE_BITS(20)) sdram (
        .clk(clk), .cke(1'b1), .cs_n(1'b0), .ras_n(rcw[2]), .cas_n(rcw[1]), .we_n(rcw[0]),
        .ba(ba), .a(a), .dqm(2'b00), .dq_i(wdata), .dq_oe(oe), .dq_o(dq_o), .dq_o_en(dq_o_en));

    integer cycles = 1000000, n = 0, slot = 0, errors = 0, reads = 0;
    reg [15:0] want;
    always @(posedge clk) begin
        n <= n + 1;
        if (n == 0) begin
            if ($value$plusargs("cycles=%d", cycles)) ;
        end
        // what the controller samples at this edge: the READ of 2 edges ago (CL 2)
        if (n >= 200 && (n - 200) % 32 == 7) begin
            reads <= reads + 1;
            if (!dq_o_en || dq_o !== want) errors <= errors + 1;
        end
        rcw <= 3'b111; oe <= 0;
        if (n == 100) begin rcw <= 3'b010; a <= 13'h400; end       // PRECHARGE ALL
        else if (n == 104 || n == 114) rcw <= 3'b001;              // AUTO REFRESH x2
        else if (n == 124) begin rcw <= 3'b000; a <= 13'h020; end   // LMR: CL 2, burst 1
        else if (n >= 199) begin
            case ((n - 199) % 32)
            0: begin rcw <= 3'b011; ba <= slot[1:0]; a <= slot[14:2]; end
            3: begin
                rcw <= 3'b100; a <= {4'd0, slot[10:2]}; wdata <= slot[15:0] ^ 16'h5A5A; oe <= 1;
            end
            5: begin rcw <= 3'b101; a <= {4'd0, slot[10:2]}; want <= slot[15:0] ^ 16'h5A5A; end
            8: rcw <= 3'b010;
            12: rcw <= 3'b001;
            31: slot <= slot + 1;
            default: ;
            endcase
        end
        if (n == cycles) begin
            $display("speed_tb: %0d cycles, %0d reads checked, %0d errors", n, reads, errors);
            $finish;
        end
    end
endmodule

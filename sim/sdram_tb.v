// sdram_tb: the SDRAM controller (Amaranth export pwconv_sdram: LiteDRAM + init sequencer) on the
// timing-checked chip model sim/sdram/sdram_model.v, for the cocotb tests of sim/cocotb_sdram.py.
//
// Clocking: the model's clock is the controller's clock inverted, as the board's SDRAM clock pin
// is (hw/memory/sdram.py): the SDRAM samples a command half a cycle after the FPGA's output
// register launched it (rising edge E0, taken at E0.5), and read data the model sets just after
// its edge (E0.5 + CL - 1, zero delay) is captured by the FPGA's input register half a cycle
// later, at E0 + CL: GENSDRPHY's cycle count (measured: with the model clocked in phase, every
// read came back one word late, the first being the idle bus). The native port's fields are
// split out for cocotb.
module sdram_tb #(
    parameter integer ROW_BITS       = 13,
    parameter integer COL_BITS       = 9,
    parameter integer T_INIT         = 10000,
    parameter integer INIT_REFRESHES = 2,
    parameter integer T_RCD          = 2,
    parameter integer T_RP           = 2,
    parameter integer T_RAS          = 5,
    parameter integer T_RAS_MAX      = 12000,
    parameter integer T_RC           = 6,
    parameter integer T_RRD          = 2,
    parameter integer T_CCD          = 1,
    parameter integer T_WR           = 2,
    parameter integer T_RFC          = 6,
    parameter integer T_MRD          = 2,
    parameter integer T_XSR          = 7,
    parameter integer CL2_OK         = 1,
    parameter integer CL3_OK         = 1,
    parameter integer REFRESH_COUNT  = 8192,
    parameter integer REFRESH_WINDOW = 6400000,
    parameter integer CHECKS_FATAL   = 1
) (
    input         clk,
`ifdef TWO_CLOCKS
    input         clk_mem,      // the controller's and the SDRAM's own domain (behind a CDC)
`endif
    input         rst,
    input         cmd_valid,
    output        cmd_ready,
    input         cmd_we,
    input  [23:0] cmd_addr,
    input         wdata_valid,
    output        wdata_ready,
    input  [15:0] wdata_data,
    input  [1:0]  wdata_mask,
    output        rdata_valid,
    input         rdata_ready,
    output [15:0] rdata_data,
    output        init_done,
    output        init_error,
    output reg [31:0] refreshes,        // AUTO REFRESH commands the chip took (CKE high)
    output reg [31:0] mem_cycles        // edges of the chip's clock
);
    wire        cke, cs_n, ras_n, cas_n, we_n, dq_oe, dq_o_en;
    wire [1:0]  ba, dqm;
    wire [12:0] a;
    wire [15:0] dq_ctrl, dq_chip;

`ifdef TWO_CLOCKS
    wire clk_sdram = clk_mem;
`else
    wire clk_sdram = clk;
`endif
    pwconv_sdram ctrl (
        .clk(clk), .rst(rst),
`ifdef TWO_CLOCKS
        .clk_mem(clk_mem),
`endif
        .user__cmd__valid(cmd_valid), .user__cmd__ready(cmd_ready),
        .user__cmd__payload({cmd_we, cmd_addr}),
        .user__wdata__valid(wdata_valid), .user__wdata__ready(wdata_ready),
        .user__wdata__payload({wdata_mask, wdata_data}),
        .user__rdata__valid(rdata_valid), .user__rdata__ready(rdata_ready),
        .user__rdata__payload(rdata_data),
        .init_done(init_done), .init_error(init_error),
        .pins__cke(cke), .pins__cs_n(cs_n), .pins__ras_n(ras_n), .pins__cas_n(cas_n),
        .pins__we_n(we_n), .pins__ba(ba), .pins__a(a), .pins__dqm(dqm),
        .pins__dq_o(dq_ctrl), .pins__dq_oe(dq_oe), .pins__dq_i(dq_chip)
    );

    wire [15:0] dq_model;
    sdram_model #(
        .ROW_BITS(ROW_BITS), .COL_BITS(COL_BITS), .T_INIT(T_INIT),
        .INIT_REFRESHES(INIT_REFRESHES), .T_RCD(T_RCD), .T_RP(T_RP), .T_RAS(T_RAS),
        .T_RAS_MAX(T_RAS_MAX), .T_RC(T_RC), .T_RRD(T_RRD), .T_CCD(T_CCD), .T_WR(T_WR),
        .T_RFC(T_RFC), .T_MRD(T_MRD), .T_XSR(T_XSR), .CL2_OK(CL2_OK), .CL3_OK(CL3_OK),
        .REFRESH_COUNT(REFRESH_COUNT), .REFRESH_WINDOW(REFRESH_WINDOW),
        .CHECKS_FATAL(CHECKS_FATAL)
    ) chip (
        .clk(~clk_sdram), .cke(cke), .cs_n(cs_n), .ras_n(ras_n), .cas_n(cas_n), .we_n(we_n),
        .ba(ba), .a(a), .dqm(dqm), .dq_i(dq_ctrl), .dq_oe(dq_oe),
        .dq_o(dq_model), .dq_o_en(dq_o_en)
    );
    initial begin
        refreshes = 0;
        mem_cycles = 0;
    end
    always @(posedge clk_sdram) begin
        mem_cycles <= mem_cycles + 1;
        if (cke && !cs_n && !ras_n && !cas_n && we_n) refreshes <= refreshes + 1;
    end
    // What the controller's input registers see: the chip's data while it drives, else a
    // pattern (a real bus would float).
    assign dq_chip = dq_o_en ? dq_model : 16'hdead;
endmodule

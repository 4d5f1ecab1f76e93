# amaranth: UnusedElaboratable=no
"""The ULX3S build's SDRAM: the PLL's extra outputs, the report's SDRAM part and clock choice,
BoardMemory's parameter checks, the iCEBreaker left without memory (fast, no place and route)."""

import json

import pytest

from pwconv.hw.memory.board_memory import BoardMemory
from pwconv.synth.boards import BOARDS
from pwconv.synth.clocks import ecp5_pll_params
from pwconv.synth.flow import REPO, SCRIPT_AFTER_READ, _board_record, tool_path
from pwconv.synth.report import _sdram, markdown


def test_boards_memory():
    assert BOARDS["ulx3s"].sdram_clk_freq == 50_000_000
    assert BOARDS["icebreaker"].sdram_clk_freq is None
    # The iCEBreaker's build stamp is what it was before the field (its builds stay valid).
    assert "sdram_clk_freq" not in _board_record(BOARDS["icebreaker"])
    assert _board_record(BOARDS["ulx3s"])["sdram_clk_freq"] == 50_000_000


def test_inout_ports_not_split():
    assert SCRIPT_AFTER_READ.endswith("splitnets -ports w:* x:* %d")


def test_ecp5_pll_secondary_outputs():
    tool = tool_path("yowasp-ecppll")
    if tool is None:
        pytest.skip("yowasp-ecppll not installed")
    work = REPO / "build" / "test-synth" / "pll-sdram"
    params, attrs = ecp5_pll_params(25e6, 100e6, work_dir=work, tool=tool,
                                    secondary=((50e6, 0), (50e6, 180)))
    vco = 25 * params["CLKFB_DIV"] * params["CLKOP_DIV"] / params["CLKI_DIV"]
    assert vco / params["CLKOP_DIV"] == 100
    assert vco / params["CLKOS_DIV"] == vco / params["CLKOS2_DIV"] == 50
    # 180 degrees at CLKOS2: its coarse phase is half its divider beyond CLKOS's.
    assert params["CLKOS2_CPHASE"] - params["CLKOS_CPHASE"] == params["CLKOS2_DIV"] // 2
    assert attrs["FREQUENCY_PIN_CLKOS2"] == "50"
    with pytest.raises(ValueError, match=r"^The ECP5 PLL cannot make 33\.3 MHz"):
        ecp5_pll_params(25e6, 100e6, work_dir=work, tool=tool, secondary=((33.3e6, 0),))


def test_report_sdram(tmp_path):
    netlist = tmp_path / "n.json"
    cells = {"memory.ctrl.litedram.a": {"type": "LUT4"}, "memory.ctrl.litedram.b":
             {"type": "TRELLIS_FF"}, "memory.cdc.c": {"type": "LUT4"},
             "core.x": {"type": "LUT4"}}
    netlist.write_text(json.dumps({"modules": {"top": {"attributes": {"top": "1"},
                                                       "cells": cells}}}))
    clocks = {"clk100": {"achieved": 101.0, "constraint": 100.0},
              "clk50": {"achieved": 48.0, "constraint": 50.0}}
    sd = _sdram(BOARDS["ulx3s"], clocks, netlist)
    assert (sd["clock_mhz"], sd["fmax_mhz"], sd["timing_met"], sd["peak_mb_s"]) == \
        (50.0, 48.0, False, 100.0)
    assert sd["litedram_cells"]["lut4"] == 1 and sd["litedram_cells"]["ff"] == 1
    assert sd["board_memory_cells"]["lut4"] == 2
    assert _sdram(BOARDS["icebreaker"], clocks, netlist) is None


def test_markdown_sdram_rows():
    resources = {key: {"used": 1, "available": 2} for key in
                 ("logic", "dsp", "bram", "lutram", "io", "ff", "lut4")}
    cells = {"lut4": 10, "ff": 5, "ccu2c": 1, "dpram16x4": 2, "dp16kd": 0}
    report = {
        "board": "ulx3s", "device": "LFE5U-85F", "family": "ecp5", "design": "d",
        "config": {"max_channels": 8, "max_filters": 8, "weight_depth": 8, "cols": 1},
        "array": "2x1", "macs": 2, "mac_style": "ecp5_mult18", "clock_mhz": 100.0,
        "fmax_mhz": 101.0, "timing_met": True, "slack_ns": 0.1, "resources": resources,
        "dsp_array": 2, "dsp_requant": 0, "macs_per_dsp": 1, "peak_gmacs": 0.2,
        "peak_gmacs_at_fmax": 0.2, "baud": 2_000_000, "why": "because",
        "times": {"total_s": 60, "synth_s": 30, "pnr_s": 20}, "bitstream": "b.bit",
        "bitstream_bytes": 10, "critical_path": None, "dsp_timing": None, "seed": 1,
        "tools": {"amaranth": "0.5.10"},
        "sdram": {"clock_mhz": 50.0, "fmax_mhz": 61.5, "timing_met": True, "peak_mb_s": 100.0,
                  "measured": {"streams": [{"stream": "sequential read", "mb_s": 96.1,
                                            "share": 0.961}]},
                  "litedram_cells": cells, "board_memory_cells": cells},
    }
    text = markdown(report)
    assert "| SDRAM clock | 50 MHz (PLL; the pin from its 180-degree output), Fmax 61.50 MHz: " \
           "met |" in text
    assert "| SDRAM measured (make bench-memory) | sequential read 96.1 MB/s (96.1%) |" in text
    assert "| LiteDRAM core | 10 LUT4, 5 FF, 1 CCU2C, 2 DPR16X4, 0 DP16KD |" in text


def test_board_memory_rejects():
    with pytest.raises(TypeError, match=r"^Controller must be an SDRAMController, not 3$"):
        BoardMemory(3)

"""Synthesis, place and route of BoardTop on both boards with the YoWASP tools; report checks."""

import json

import pytest

from pwconv.synth.boards import BOARDS, array_dsps, requant_dsps
from pwconv.synth.flow import REPO, build_bitstream, missing_tools

#: Builds go below the repository (YoWASP tools cannot see pytest's /tmp); reports too, so the
#: committed reports/ are left alone.
OUT = REPO / "build" / "test-synth"

#: The builds: each board's default (what `make bitstream` ships) and a small ULX3S array that
#: exercises the ECP5 flow in about two minutes. The default ULX3S build takes longer: slow.
BUILDS = {
    "icebreaker": BOARDS["icebreaker"],
    "ulx3s-2x2": BOARDS["ulx3s"].with_config(rows=2, cols=2, max_channels=256, max_filters=256,
                                            weight_depth=256),
    "ulx3s": BOARDS["ulx3s"],
}
PARAMS = [pytest.param("icebreaker"), pytest.param("ulx3s-2x2"),
          pytest.param("ulx3s", marks=pytest.mark.slow)]

#: Minutes per build: started first under `make test`'s two workers (tests/conftest.py).
pytestmark = pytest.mark.long

_reports = {}


def _build(key):
    """Build ``BUILDS[key]`` once per test session; skip only if its tools are absent."""
    board = BUILDS[key]
    missing = missing_tools(board.family)
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (pip install -e '.[synth]')")
    if key not in _reports:
        _reports[key] = build_bitstream(board, build_dir=OUT / key, report_dir=OUT / key,
                                        check_timing=False)
    return board, _reports[key]


@pytest.mark.parametrize("key", PARAMS)
def test_meets_timing(key):
    board, report = _build(key)
    assert report["clock_mhz"] == board.clk_freq / 1e6
    assert report["timing_met"], report["summary"]
    assert report["fmax_mhz"] >= report["clock_mhz"]


@pytest.mark.parametrize("key", PARAMS)
def test_dsp_count(key):
    board, report = _build(key)
    cfg = board.config
    expected = array_dsps(board, cfg) + requant_dsps(board, cfg)
    assert report["resources"]["dsp"]["used"] == expected
    assert report["resources"]["dsp"]["used"] <= report["resources"]["dsp"]["available"]
    if board.family == "ice40":
        # 16 MACs in 8 SB_MAC16 (2 x 8x8 mode); the serial requantizer multiplies in fabric.
        assert (cfg.macs, report["resources"]["dsp"]["used"], report["macs_per_dsp"]) == (16, 8, 2)


@pytest.mark.parametrize("key", PARAMS)
def test_fits(key):
    _, report = _build(key)
    for name, entry in report["resources"].items():
        if entry["available"]:
            assert entry["used"] <= entry["available"], name


@pytest.mark.parametrize("key", PARAMS)
def test_bitstream_and_report_files(key):
    board, report = _build(key)
    suffix = ".bin" if board.family == "ice40" else ".bit"
    bitstream = OUT / key / f"pwconv_{board.name}{suffix}"
    assert bitstream.stat().st_size > 10_000
    assert report["bitstream_bytes"] == bitstream.stat().st_size
    saved = json.loads((OUT / key / f"{board.name}.json").read_text())
    assert saved["fmax_mhz"] == report["fmax_mhz"]
    text = (OUT / key / f"{board.name}.md").read_text()
    assert f"| Array (rows x cols) | {board.config.rows}x{board.config.cols} = " in text
    assert report["peak_gmacs"] == round(board.config.macs * board.clk_freq / 1e9, 4)


def test_ice40_dsp_paths_are_timed():
    """nextpnr-ice40 does not time through a combinational SB_MAC16 (it cuts such a path at the
    cell, and the report then gives what is left of the period for the cell itself). The
    iCEBreaker's cells register their operands and products, so every path into and out of
    them is timed on the sync clock and no path is left cut."""
    _, report = _build("icebreaker")
    assert report["dsp_timing"] is None

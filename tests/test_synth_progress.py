"""synth.progress: the phase of a running build, read from Yosys's and nextpnr's logs."""

import time

from pwconv.synth.progress import BuildMonitor, build_phase

YOSYS = """
2. Executing SYNTH_ECP5 pass.
2.1. Executing Verilog-2005 frontend: /usr/share/yosys/ecp5/cells_sim.v
2.47. Executing ABC9 pass.
"""
PACK = "Info: Logic utilisation before packing:\nInfo: Packing IOs..\n"
PLACE = PACK + "Info: Creating initial analytic placement for 41234 cells, random placement " \
    "wirelen = 123.\n"
ROUTE = PLACE + """Info: Routing..
Info: Setting up routing queue.
Info: Routing 456789 arcs.
Info:            |   (re-)routed arcs  |   delta    | remaining|       time spent     |
Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|
Info:       1000 |        0       1000 |    0  1000 |    455789|       0.50       0.50|
Info:      90000 |     1234      88766 |   12   988 |     12345|       1.23     612.34|
"""


def test_phases_in_order():
    assert build_phase(None, None) == "starting"
    assert build_phase("", "") == "starting"
    assert build_phase(YOSYS, None) == "synthesis (Yosys: ABC9)"
    assert build_phase(YOSYS, PACK) == "packing"
    assert build_phase(YOSYS, PLACE) == "placement"
    assert build_phase(YOSYS, ROUTE) == "routing: 12,345 of 456,789 arcs left"
    assert build_phase(YOSYS, ROUTE.split("Info:            |")[0]) == "routing: 456,789 arcs"
    assert build_phase(YOSYS, ROUTE + "Info: Routing complete.\n") == "timing analysis"
    assert build_phase(YOSYS, ROUTE + "Info: Routing complete.\nInfo: Program finished "
                       "normally.\n") == "done"


def test_static_placer_marker():
    assert build_phase("", PACK + "Info: ⌁ bel grid 126x95, placer grid 126x95...\n") == \
        "placement"


def test_monitor_says_each_phase_as_the_logs_grow(tmp_path):
    lines = []
    with BuildMonitor(tmp_path, "b", lines.append, prefix="ulx3s: ", poll=0.02, interval=60):
        for rpt, tim in ((YOSYS, None), (YOSYS, PLACE), (YOSYS, ROUTE)):
            (tmp_path / "b.rpt").write_text(rpt)
            if tim:
                (tmp_path / "b.tim").write_text(tim)
            time.sleep(0.3)
    phases = [line.split(" (")[0] for line in lines]
    assert phases == ["ulx3s: synthesis", "ulx3s: placement",
                      "ulx3s: routing: 12,345 of 456,789 arcs left"]
    assert all(line.endswith(" s)") for line in lines)

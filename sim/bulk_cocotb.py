"""cocotb test for pwconv_bulk: start the clock, reset, and wait for `done`; no Python per cycle."""

import json
import os
import time

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

__all__ = ["test_bulk"]


@cocotb.test()
async def test_bulk(dut):
    """Run the Verilog-side feeder to completion and report cycles and simulation speed.

    ``pwconv_bulk_clocked`` makes its own clock and reset: the test just waits for ``done``.
    ``pwconv_bulk`` gets cocotb's clock (a GPI clock, no Python per edge either).
    """
    clocked = not hasattr(dut, "clk")
    if not clocked:
        Clock(dut.clk, 10, unit="ns").start()
        dut.rst.value = 1
        await ClockCycles(dut.clk, 4)
        dut.rst.value = 0
    start = time.perf_counter()
    await RisingEdge(dut.done)
    wall = time.perf_counter() - start
    await Timer(30, unit="ns")    # the bench is frozen once done; let the results file close
    error, taken = int(dut.error.value), int(dut.taken.value)
    with open(os.environ["PWCONV_RESULT"], "w") as f:
        json.dump({"error": error, "cycles": int(dut.cycles.value), "total": int(dut.total.value),
                   "taken": taken, "wall_s": wall}, f)
    assert not error, f"timeout or extra result after {taken} results (see the log)"

"""cocotb testbench of the exported DepthwiseEngine: loads, start, pixel stream, result monitor."""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

# The array's stream drivers (cocotbext-axi style: a pause withholds only the next beat).
from cocotb_pwconv import CLOCK_NS, StreamMonitor, StreamSink, StreamSource, random_pause

__all__ = ["test_depthwise"]


async def _run(dut, clock, drivers, samplers, until, deadline, what):
    """Clock loop: drive after each edge, sample in ReadOnly, until ``until()`` holds."""
    edge, read_only = RisingEdge(dut.clk), ReadOnly()
    while not until():
        await edge
        clock[0] += 1
        for drive in drivers:
            drive(clock[0])
        if clock[0] >= deadline:
            raise AssertionError(f"Timeout while {what()}")
        await read_only
        for sample in samplers:
            sample()


@cocotb.test()
async def test_depthwise(dut):
    """Run every layer of the job (``PWCONV_DW_JOB``) back to back; write the output beats and
    cycle counts to ``PWCONV_DW_RESULT``."""
    with open(os.environ["PWCONV_DW_JOB"]) as f:
        layers = json.load(f)["layers"]
    result = {"passed": False, "layers": []}
    dut.rst.value = 1
    dut.start.value = 0
    for name in ("i", "weights", "params"):
        getattr(dut, f"{name}__valid").value = 0
    dut.o__ready.value = 0
    Clock(dut.clk, CLOCK_NS, unit="ns").start()
    edge = RisingEdge(dut.clk)
    clock = [0]
    for _ in range(4):
        await edge
    dut.rst.value = 0
    for _ in range(32):         # Icarus: let the exported always @* blocks settle
        await edge
    try:
        for index, layer in enumerate(layers):
            await edge                  # out of the last ReadOnly phase before writing
            seed = int(layer["seed"]) + index
            rng = random.Random(seed)
            weights = StreamSource(dut, "weights")
            params = StreamSource(dut, "params", after=weights)
            weights.send(int(w, 16) for w in layer["weight_words"])
            params.send(int(w, 16) for w in layer["param_words"])
            await _run(dut, clock, (weights.drive, params.drive),
                       (weights.sample, params.sample),
                       lambda: weights.idle and params.idle, clock[0] + 100000,
                       lambda: "loading")
            await edge
            dut.layer.value = int(layer["layer_word"], 16)
            dut.start.value = 1
            await edge
            dut.start.value = 0
            first = clock[0] = clock[0] + 2
            pixels = StreamSource(dut, "i", pause=random_pause(rng, layer["in_idle"]))
            pixels.send(int(w, 16) for w in layer["pixel_words"])
            sink = StreamSink(dut, "o", pause=random_pause(rng, layer["out_stall"]))
            monitor = StreamMonitor(dut, "o", expected=layer["expected"])
            drivers = (monitor.drive, pixels.drive, sink.drive)
            samplers = (pixels.sample, monitor.sample)

            def finished():
                return (monitor.count >= layer["expected"] and pixels.idle
                        and int(dut.busy.value) == 0)

            await _run(dut, clock, drivers, samplers, finished, first + layer["timeout"],
                       lambda: f"running: {monitor.count} of {layer['expected']} output beats, "
                               f"{pixels.sent} of {len(layer['pixel_words'])} input beats")
            cycles = monitor.cycles[-1] - first if monitor.cycles else 0
            sink.pause = None           # drain with ready high: an extra beat shows at once
            drain = [clock[0] + 16]
            await _run(dut, clock, drivers, samplers, lambda: clock[0] >= drain[0],
                       drain[0] + 1, lambda: "draining")
            assert int(dut.busy.value) == 0 and int(dut.o__valid.value) == 0, \
                "engine not idle after its last output beat"
            result["layers"].append({"output_words": [f"{w:x}" for w in monitor.words],
                                     "cycles": cycles})
        result["passed"] = True
    finally:
        with open(os.environ["PWCONV_DW_RESULT"], "w") as f:
            json.dump(result, f)

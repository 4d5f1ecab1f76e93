"""cocotb testbench of pwconv_top: stream source, sink and monitor run by one clock loop."""

import json
import os
import random
import time
from collections import deque

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamSource", "StreamSink", "StreamMonitor", "Testbench", "random_pause",
           "read_job", "test_pwconv"]

#: Clock period of the testbench, in ns.
CLOCK_NS = 10


def random_pause(rng, probability):
    """Pause generator: yields True (hold back this cycle) with ``probability``; None if 0."""
    if not probability:
        return None

    def generate():
        draw = rng.random
        while True:
            yield draw() < probability
    return generate()


class StreamSource:
    """Drives ``<prefix>__payload``/``__valid`` from a queue of words, honouring ``__ready``.

    Like cocotbext-axi's sources, a pause (from ``pause``, a generator of bools) only withholds
    the *next* beat: once ``valid`` is high it stays high, with the payload unchanged, until the
    beat is accepted. ``after`` is another source that must be idle before this one offers
    anything (the load order weights, params, pixels).

    The clock loop calls :meth:`drive` after each rising edge and :meth:`sample` in the
    ReadOnly phase before the next one; a beat is taken when ``valid & ready`` at that edge.
    """

    def __init__(self, dut, prefix, *, pause=None, after=None):
        self.name = prefix
        self._payload = getattr(dut, f"{prefix}__payload")
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._pause = pause
        self._after = after
        self._queue = deque()
        self._driving = False
        self._fire = False
        self._written = None
        self.sent = 0
        self.active_cycle = None
        self._valid.value = 0

    def send(self, words):
        """Queue ``words`` (ints) for transmission."""
        self._queue.extend(words)

    @property
    def idle(self):
        """Nothing queued and nothing on the bus."""
        return not self._queue and not self._driving

    def drive(self, cycle):
        """After a rising edge: retire the accepted beat, then offer the next (or not)."""
        if self._fire:
            self._fire = False
            self._queue.popleft()
            self.sent += 1
        elif self._driving:
            return  # beat still waiting for ready: hold valid and payload
        offer = False
        if self._queue and (self._after is None or self._after.idle):
            if self.active_cycle is None:
                self.active_cycle = cycle
            offer = self._pause is None or not next(self._pause)
        if offer:
            word = self._queue[0]
            if word != self._written:
                self._payload.value = word
                self._written = word
            if not self._driving:
                self._valid.value = 1
        elif self._driving:
            self._valid.value = 0
        self._driving = offer

    def sample(self):
        """In ReadOnly: will the beat on the bus be taken at the next edge?"""
        if self._driving:
            self._fire = int(self._ready.value) == 1


class StreamSink:
    """Drives ``<prefix>__ready``, withheld in cycles where ``pause`` yields True."""

    def __init__(self, dut, prefix, *, pause=None):
        self.name = prefix
        self._ready = getattr(dut, f"{prefix}__ready")
        self.pause = pause
        self._ready_now = None

    def drive(self, cycle):
        """After a rising edge: drive ``ready`` for the coming cycle."""
        ready = 1 if self.pause is None or not next(self.pause) else 0
        if ready != self._ready_now:
            self._ready.value = ready
            self._ready_now = ready


class StreamMonitor:
    """Records every transfer on a stream (``valid & ready`` at a rising edge), passively.

    ``expected`` is how many transfers may happen at all: one more fails the test (an extra or
    duplicated result), as does an X/Z payload on a transfer.
    """

    def __init__(self, dut, prefix, *, expected):
        self.name = prefix
        self._payload = getattr(dut, f"{prefix}__payload")
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self.expected = expected
        self.words = []
        self.cycles = []
        self._pending = None

    def drive(self, cycle):
        """After a rising edge: commit the transfer seen before it, if any."""
        if self._pending is not None:
            assert len(self.words) < self.expected, (
                f"Extra transfer on {self.name} at cycle {cycle}: {len(self.words) + 1} > "
                f"{self.expected} expected, payload {self._pending:#x}")
            self.words.append(self._pending)
            self.cycles.append(cycle)
            self._pending = None

    def sample(self):
        """In ReadOnly: latch the payload if a transfer happens at the next edge."""
        if int(self._valid.value) == 1 and int(self._ready.value) == 1:
            self._pending = self._payload.value.to_unsigned()

    @property
    def count(self):
        return len(self.words)


class Testbench:
    """pwconv_top with a source per input stream, a sink and monitor on ``o``, one clock loop.

    All drivers share a single coroutine: per cycle one ``await RisingEdge`` (commit transfers,
    drive the next values) and one ``await ReadOnly`` (sample handshakes), which keeps the
    Python work per simulated cycle small.
    """

    def __init__(self, dut, *, expected, in_idle=0.0, out_stall=0.0, seed=0):
        self.dut = dut
        self.log = dut._log
        self.seed = seed
        self.in_seed, self.out_seed = 2 * seed, 2 * seed + 1
        in_pause = random_pause(random.Random(self.in_seed), in_idle)
        self.out_pause = random_pause(random.Random(self.out_seed), out_stall)
        self.weights = StreamSource(dut, "weights")
        self.params = StreamSource(dut, "params", after=self.weights)
        self.pixels = StreamSource(dut, "i", pause=in_pause, after=self.params)
        self.sink = StreamSink(dut, "o", pause=self.out_pause)
        self.monitor = StreamMonitor(dut, "o", expected=expected)
        self.cycle = 0
        self.wall = 0.0
        dut.rst.value = 1
        dut.o__ready.value = 0

    async def reset(self, layer_word, cycles=4):
        """Start the clock, hold ``rst`` for ``cycles`` cycles and apply the layer settings."""
        Clock(self.dut.clk, CLOCK_NS, unit="ns").start()
        self.dut.layer.value = layer_word
        edge = RisingEdge(self.dut.clk)
        for _ in range(cycles):
            await edge
        self.dut.rst.value = 0

    async def run(self, *, timeout, drain):
        """Run until all expected results arrived plus ``drain`` quiet cycles; return cycles.

        The returned count runs from the first cycle a pixel beat could be offered to the edge
        that took the last result. Fails after ``timeout`` cycles without all results.
        """
        clk_edge, read_only = RisingEdge(self.dut.clk), ReadOnly()
        drivers = (self.monitor.drive, self.weights.drive, self.params.drive,
                   self.pixels.drive, self.sink.drive)
        samplers = (self.weights.sample, self.params.sample, self.pixels.sample,
                    self.monitor.sample)
        monitor, expected = self.monitor, self.monitor.expected
        done = None
        cycle = self.cycle
        start = time.perf_counter()
        while True:
            await clk_edge
            cycle += 1
            for drive in drivers:
                drive(cycle)
            if done is None:
                if monitor.count >= expected and self.pixels.idle:
                    done = cycle
                    self.sink.pause = None  # drain with ready high: extras show at once
                elif cycle >= timeout:
                    self.cycle = cycle
                    raise AssertionError(
                        f"Timeout after {cycle} cycles: {monitor.count} of {expected} result "
                        f"vectors, {self.pixels.sent} pixel beats sent "
                        f"({len(self.pixels._queue)} left), weights "
                        f"{self.weights.sent}, params {self.params.sent}")
            elif cycle - done >= drain:
                break
            await read_only
            for sample in samplers:
                sample()
        self.wall = time.perf_counter() - start
        self.cycle = cycle
        if not monitor.cycles or self.pixels.active_cycle is None:
            return 0
        return monitor.cycles[-1] - self.pixels.active_cycle


def read_job(path):
    """The job the runner wrote: words as ints, settings as Python scalars."""
    with np.load(path, allow_pickle=False) as npz:
        job = {key: npz[key] for key in npz.files}
    out = {}
    for key in ("weight_words", "param_words", "pixel_words"):
        out[key] = [int(word, 16) for word in job[key].tolist()]
    out["layer_word"] = int(str(job["layer_word"]), 16)
    for key in ("expected", "seed", "timeout", "drain"):
        out[key] = int(job[key])
    for key in ("in_idle", "out_stall"):
        out[key] = float(job[key])
    return out


@cocotb.test()
async def test_pwconv(dut):
    """Load a layer, stream the job's pixels, collect every result vector and write them out."""
    job = read_job(os.environ["PWCONV_JOB"])
    result_path = os.environ["PWCONV_RESULT"]
    tb = Testbench(dut, expected=job["expected"], in_idle=job["in_idle"],
                   out_stall=job["out_stall"], seed=job["seed"])
    dut._log.info("seed %d (source idle seed %d p=%.2f, sink stall seed %d p=%.2f); "
                  "%d weight, %d param, %d pixel words; %d results expected",
                  tb.seed, tb.in_seed, job["in_idle"], tb.out_seed, job["out_stall"],
                  len(job["weight_words"]), len(job["param_words"]),
                  len(job["pixel_words"]), job["expected"])
    await tb.reset(job["layer_word"])
    tb.weights.send(job["weight_words"])
    tb.params.send(job["param_words"])
    tb.pixels.send(job["pixel_words"])
    result = {"seed": job["seed"], "passed": False}
    try:
        cycles = await tb.run(timeout=job["timeout"], drain=job["drain"])
        rate = tb.cycle / tb.wall if tb.wall else 0.0
        dut._log.info("%d results in %d cycles; %d cycles simulated in %.3f s: %.0f cycles/s",
                      tb.monitor.count, cycles, tb.cycle, tb.wall, rate)
        assert int(dut.idle.value) == 1, "Accelerator not idle after the last result"
        assert int(dut.o__valid.value) == 0, "o.valid still high after the last result"
        result.update(passed=True, cycles=cycles, sim_cycles=tb.cycle, wall_s=tb.wall,
                      cycles_per_s=rate)
    finally:
        result["result_words"] = [f"{word:x}" for word in tb.monitor.words]
        with open(result_path, "w") as f:
            json.dump(result, f)

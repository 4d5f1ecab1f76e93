"""cocotb testbench of pwconv_top: stream source, sink and monitor run by one clock loop."""

import json
import os
import random
import time
from collections import deque

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
    ``driving`` tells whether ``valid`` is high this cycle.
    """

    def __init__(self, dut, prefix, *, pause=None, after=None):
        self.name = prefix
        self._payload = getattr(dut, f"{prefix}__payload")
        self._valid = getattr(dut, f"{prefix}__valid")
        self._ready = getattr(dut, f"{prefix}__ready")
        self._pause = pause
        self._after = after
        self._queue = deque()
        self.driving = False
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
        return not self._queue and not self.driving

    def drive(self, cycle):
        """After a rising edge: retire the accepted beat, then offer the next (or not)."""
        if self._fire:
            self._fire = False
            self._queue.popleft()
            self.sent += 1
        elif self.driving:
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
            if not self.driving:
                self._valid.value = 1
        elif self.driving:
            self._valid.value = 0
        self.driving = offer

    def sample(self):
        """In ReadOnly: will the beat on the bus be taken at the next edge?"""
        if self.driving:
            self._fire = int(self._ready.value) == 1


class StreamSink:
    """Drives ``<prefix>__ready`` (also kept in ``ready``), low in cycles ``pause`` says so."""

    def __init__(self, dut, prefix, *, pause=None):
        self.name = prefix
        self._ready = getattr(dut, f"{prefix}__ready")
        self.pause = pause
        self.ready = None

    def drive(self, cycle):
        """After a rising edge: drive ``ready`` for the coming cycle."""
        ready = 1 if self.pause is None or not next(self.pause) else 0
        if ready != self.ready:
            self._ready.value = ready
            self.ready = ready


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
            if len(self.words) >= self.expected:
                raise AssertionError(
                    f"Extra transfer on {self.name} at cycle {cycle}: {len(self.words) + 1} > "
                    f"{self.expected} expected, payload {self._pending:#x}")
            self.words.append(self._pending)
            self.cycles.append(cycle)
            self._pending = None

    def sample(self):
        """In ReadOnly: latch the payload if a transfer happens at the next edge."""
        if int(self._valid.value) == 1 and int(self._ready.value) == 1:
            value = self._payload.value
            try:
                self._pending = value.to_unsigned()  # (is_resolvable costs 30x more)
            except ValueError:
                raise AssertionError(f"Unresolved (X/Z) payload on {self.name}: {value}") from None

    @property
    def count(self):
        """Transfers recorded so far."""
        return len(self.words)


class Testbench:
    """pwconv_top with a source per input stream, a sink and monitor on ``o``, one clock loop.

    All drivers share a single coroutine: per cycle one ``await RisingEdge`` (commit transfers,
    drive the next values) and, when a transfer is possible, one ``await ReadOnly`` (sample
    handshakes), which keeps the Python work per simulated cycle small. Layers run back to
    back without a reset: each waits for the previous one to drain, then changes ``layer``
    while the accelerator is idle.
    """

    def __init__(self, dut):
        self.dut = dut
        self.log = dut._log
        self.cycle = 0
        dut.rst.value = 1
        # A double-buffered build (weight_banks=2) takes a commit after each pass's loads.
        self.banked = hasattr(dut, "commit__valid")
        for name in ("i", "weights", "params") + (("commit",) if self.banked else ()):
            getattr(dut, f"{name}__valid").value = 0
        dut.o__ready.value = 0

    async def reset(self, cycles=4, warmup=128):
        """Start the clock, hold ``rst`` for ``cycles`` cycles, then idle ``warmup`` cycles:
        Icarus evaluates the exported ``always @*`` blocks only once an input changes, so some
        pipeline registers hold X through reset and for a pipeline's length after it."""
        Clock(self.dut.clk, CLOCK_NS, unit="ns").start()
        edge = RisingEdge(self.dut.clk)
        for _ in range(cycles):
            await edge
            self.cycle += 1
        self.dut.rst.value = 0
        for _ in range(warmup):
            await edge
            self.cycle += 1

    async def run_layer(self, layer):
        """Load and run one layer of the job; return ``(result_words, cycles, stats)``.

        ``cycles`` runs from the first cycle a pixel beat could be offered to the edge that took
        the last result. Fails (an AssertionError) after ``layer["timeout"]`` cycles without all
        results, on any result beyond ``layer["expected"]`` (watched for ``layer["drain"]``
        cycles after the last one) or if the accelerator is not idle at the end.
        """
        dut, seed = self.dut, layer["seed"]
        in_seed, out_seed = 2 * seed, 2 * seed + 1
        expected = layer["expected"]
        self.log.info("seed %d (source idle seed %d p=%.2f, sink stall seed %d p=%.2f); "
                      "%d weight, %d param, %d pixel words; %d results expected",
                      seed, in_seed, layer["in_idle"], out_seed, layer["out_stall"],
                      len(layer["weight_words"]), len(layer["param_words"]),
                      len(layer["pixel_words"]), expected)
        dut.layer.value = layer["layer_word"]
        in_rng = random.Random(in_seed)  # the sources take turns, so they share one stream
        weights = StreamSource(dut, "weights", pause=random_pause(in_rng, layer["in_idle"]))
        params = StreamSource(dut, "params", after=weights,
                              pause=random_pause(in_rng, layer["in_idle"]))
        loads = [weights, params]
        if self.banked:
            commit = StreamSource(dut, "commit", after=params)
            commit.send([len(layer["pixel_words"])])
            loads.append(commit)
        pixels = StreamSource(dut, "i", after=loads[-1],
                              pause=random_pause(in_rng, layer["in_idle"]))
        sink = StreamSink(dut, "o",
                          pause=random_pause(random.Random(out_seed), layer["out_stall"]))
        monitor = StreamMonitor(dut, "o", expected=expected)
        weights.send(layer["weight_words"])
        params.send(layer["param_words"])
        pixels.send(layer["pixel_words"])
        self.monitor = monitor

        clk_edge, read_only = RisingEdge(dut.clk), ReadOnly()
        drivers = (monitor.drive, *(load.drive for load in loads), pixels.drive, sink.drive)
        samplers = (*(load.sample for load in loads), pixels.sample, monitor.sample)
        loading = True
        first = cycle = self.cycle
        deadline, drain = first + layer["timeout"], layer["drain"]
        done = None
        start, start_cpu = time.perf_counter(), time.process_time()
        while True:
            await clk_edge
            cycle += 1
            for drive in drivers:
                drive(cycle)
            if loading and all(load.idle for load in loads):
                loading = False  # weights and params are in: drop their drivers
                drivers = (monitor.drive, pixels.drive, sink.drive)
                samplers = (pixels.sample, monitor.sample)
            if done is None:
                if monitor.count >= expected and pixels.idle:
                    done = cycle
                    sink.pause = None  # drain with ready high: extra results show at once
                elif cycle >= deadline:
                    self.cycle = cycle
                    raise AssertionError(
                        f"Timeout after {cycle - first} cycles: {monitor.count} of {expected} "
                        f"result vectors, {pixels.sent} of {len(layer['pixel_words'])} pixel "
                        f"beats, {weights.sent} of {len(layer['weight_words'])} weight and "
                        f"{params.sent} of {len(layer['param_words'])} param words taken")
            elif cycle - done >= drain:
                break
            if loading or pixels.driving or sink.ready:
                # Sample only when a transfer can happen at the next edge (saves ~30% of the
                # per-cycle time in stalled cycles).
                await read_only
                for sample in samplers:
                    sample()
        wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
        self.cycle = cycle
        if int(dut.idle.value) != 1 or int(dut.o__valid.value) != 0:
            raise AssertionError(f"Not quiet {drain} cycles after the last result: idle="
                                 f"{dut.idle.value}, o.valid={dut.o__valid.value}")
        if monitor.cycles and pixels.active_cycle is not None:
            cycles = monitor.cycles[-1] - pixels.active_cycle
        else:
            cycles = 0
        simulated = cycle - first
        stats = {"cycles": cycles, "sim_cycles": simulated, "wall_s": wall, "cpu_s": cpu,
                 "cycles_per_s": simulated / wall if wall else 0.0}
        self.log.info("%d results in %d cycles; %d cycles simulated in %.3f s (%.3f s CPU): "
                      "%.0f cycles/s", monitor.count, cycles, simulated, wall, cpu,
                      stats["cycles_per_s"])
        return monitor.words, cycles, stats


def _words(values):
    return [int(value, 16) if isinstance(value, str) else int(value) for value in values]


def read_job(path):
    """The job the runner wrote (``.json``, or ``.npz`` of one layer): a list of layer dicts.

    Words are hex strings (or ints); each layer has ``layer_word``, ``weight_words``,
    ``param_words``, ``pixel_words``, ``expected``, ``seed``, ``in_idle``, ``out_stall``,
    ``timeout`` and ``drain``.
    """
    if str(path).endswith(".npz"):
        import numpy as np  # only for .npz jobs: numpy adds ~0.4 s to every simulator start
        with np.load(path, allow_pickle=False) as npz:
            layers = [{key: npz[key].tolist() for key in npz.files}]
    else:
        with open(path) as f:
            layers = json.load(f)["layers"]
    out = []
    for raw in layers:
        layer = {key: _words(raw[key]) for key in ("weight_words", "param_words", "pixel_words")}
        layer["layer_word"] = _words([raw["layer_word"]])[0]
        for key in ("expected", "seed", "timeout", "drain"):
            layer[key] = int(raw[key])
        for key in ("in_idle", "out_stall"):
            layer[key] = float(raw[key])
        out.append(layer)
    return out


@cocotb.test()
async def test_pwconv(dut):
    """Run every layer of the job in turn; write the result vectors and cycle counts out."""
    layers = read_job(os.environ["PWCONV_JOB"])
    result = {"passed": False, "layers": []}
    tb = Testbench(dut)
    try:
        await tb.reset()
        for index, layer in enumerate(layers):
            if len(layers) > 1:
                dut._log.info("layer %d of %d", index + 1, len(layers))
            tb.monitor = None
            try:
                words, cycles, stats = await tb.run_layer(layer)
            except BaseException:
                partial = tb.monitor.words if tb.monitor is not None else []
                result["layers"].append({"result_words": [f"{w:x}" for w in partial]})
                raise
            stats["result_words"] = [f"{word:x}" for word in words]
            result["layers"].append(stats)
        result["passed"] = True
    finally:
        with open(os.environ["PWCONV_RESULT"], "w") as f:
            json.dump(result, f)

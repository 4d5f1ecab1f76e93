"""Drive DMA readers and writers (alone or arbitrated) against NativeMemory in amaranth.sim."""

import numpy as np
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from pwconv.hw.memory.arbiter import PortArbiter
from pwconv.hw.memory.dma import DMAReader, DMAWriter
from .native_memory import NativeMemory

__all__ = ["ReadJob", "WriteJob", "expected_beats", "write_beats", "apply_writes", "run_dma"]


class ReadJob:
    """Requests for one :class:`DMAReader`: ``requests`` are ``(addr, length, count, stride)``."""

    def __init__(self, requests, *, lanes, depth=16):
        self.requests = list(requests)
        self.lanes = lanes
        self.depth = depth
        self.beats = []          # (bytes tuple, count, row_last, last) as taken from o
        self.bytes_moved = self.cycles_busy = self.busy = None   # the engine's, at the end


class WriteJob:
    """Requests for one :class:`DMAWriter` and the byte rows to write (one uint8 array per row)."""

    def __init__(self, requests, rows, *, lanes, seed=0):
        self.requests = list(requests)
        self.rows = rows
        self.lanes = lanes
        self.beats = write_beats(rows, lanes, np.random.default_rng(seed))
        self.done_cycles = []    # cycle of each done beat
        self.accepted_at_done = []   # write commands the port had accepted at each done
        self.bytes_moved = self.cycles_busy = self.busy = None


def _rows(request, size):
    addr, length, count, stride = request
    if length == 0 or count == 0:
        return []
    return [(addr + r * stride) % size for r in range(count)], length


def expected_beats(requests, memory, lanes):
    """The beats a reader gives for ``requests`` over ``memory`` (a uint8 array of the whole
    byte address space): each row from lane 0, zeros past ``count``."""
    size = memory.size
    beats = []
    for request in requests:
        addr, length, count, stride = request
        if length == 0 or count == 0:
            continue
        for r in range(count):
            start = (addr + r * stride) % size
            row = memory[(start + np.arange(length)) % size]
            for b in range(0, length, lanes):
                chunk = [int(x) for x in row[b:b + lanes]]
                row_last = b + lanes >= length
                beats.append((tuple(chunk + [0] * (lanes - len(chunk))), len(chunk),
                              int(row_last), int(row_last and r == count - 1)))
    return beats


def write_beats(rows, lanes, rng):
    """Input beats for a writer: each row from lane 0, its final beat padded with random bytes
    (which the writer must not write)."""
    beats = []
    for row in rows:
        for b in range(0, len(row), lanes):
            chunk = [int(x) for x in row[b:b + lanes]]
            pad = [int(x) for x in rng.integers(0, 256, lanes - len(chunk))]
            beats.append(chunk + pad)
    return beats


def apply_writes(memory, requests, rows):
    """NumPy reference: write ``rows`` (in order) at the rows of ``requests`` into ``memory``."""
    size = memory.size
    it = iter(rows)
    for addr, length, count, stride in requests:
        if length == 0 or count == 0:
            continue
        for r in range(count):
            start = (addr + r * stride) % size
            memory[(start + np.arange(length)) % size] = next(it)
    return memory


async def _until(ctx, signal):
    """Tick until ``signal`` is high at a clock edge. (Plain ticks: a testbench left inside
    ``tick().until()`` when a contract error stops the simulation warns when collected.)"""
    while True:
        _, _, seen = await ctx.tick().sample(signal)
        if seen:
            return


async def _read_counters(ctx, eng, job):
    """After a job's last beat: its engine's counters once they have settled (two cycles)."""
    await ctx.tick()
    await ctx.tick()
    job.bytes_moved = ctx.get(eng.bytes_moved)
    job.cycles_busy = ctx.get(eng.cycles_busy)
    job.busy = ctx.get(eng.busy)


def _pack(values, width):
    out = 0
    for i, v in enumerate(values):
        out |= int(v) << (width * i)
    return out


def run_dma(port, jobs, memory, *, seed=0, req_idle=0.0, in_idle=0.0, out_stall=0.0,
            done_stall=0.0, mem_kwargs=None, arbiter=None, timeout=200_000, engines_out=None):
    """Run ``jobs`` (:class:`ReadJob` / :class:`WriteJob`, each on its own engine; more than one,
    or ``arbiter=True``, share the memory through a :class:`PortArbiter`) over a
    :class:`NativeMemory` holding ``memory``. Fills each job's results and returns
    ``(mem, cycles, engines)`` with ``cycles`` the clock cycles until every job finished."""
    rng = np.random.default_rng(seed)
    m = Module()
    m.domains.sync = ClockDomain()
    engines = []
    for k, job in enumerate(jobs):
        if isinstance(job, ReadJob):
            eng = DMAReader(port, lanes=job.lanes, depth=job.depth)
        else:
            eng = DMAWriter(port, lanes=job.lanes)
        m.submodules[f"dma{k}"] = eng
        engines.append(eng)
    if arbiter or len(jobs) > 1:
        m.submodules.arbiter = arb = PortArbiter(port, masters=len(jobs))
        from amaranth.lib import wiring
        for k, eng in enumerate(engines):
            wiring.connect(m, eng.bus, arb.masters[k])
        bus = arb.bus
    else:
        bus = engines[0].bus
    mem = NativeMemory(bus, size=memory.size, data=memory, seed=seed + 1,
                       **(mem_kwargs or {}))
    clock = {"now": 0, "accepted": 0}
    finished = []

    async def counter(ctx):
        while True:
            _, _, v, r, we = await ctx.tick().sample(bus.cmd.valid, bus.cmd.ready,
                                                     bus.cmd.payload.we)
            clock["now"] += 1
            if v and r and we:
                clock["accepted"] += 1
            if clock["now"] > timeout:
                raise AssertionError(f"DMA run did not finish in {timeout} cycles")

    def send(stream, items, idle, pack):
        async def bench(ctx):
            for item in items:
                while idle and rng.random() < idle:
                    await ctx.tick()
                ctx.set(stream.payload.as_value(), pack(item))
                ctx.set(stream.valid, 1)
                await _until(ctx, stream.ready)
                ctx.set(stream.valid, 0)
        return bench

    def request_packer(eng):
        layout = eng.req.payload.shape()
        def pack(req):
            out = 0
            for name, value in zip(("addr", "length", "count", "stride"), req):
                field = layout[name]
                out |= (value % (1 << field.width)) << field.offset
            return out
        return pack

    def collect(eng, job, expect):
        layout = eng.o.payload.shape()
        lanes = job.lanes
        def decode(value):
            raw = value >> layout["data"].offset
            data = tuple((raw >> (8 * i)) & 0xff for i in range(lanes))
            count = value >> layout["count"].offset & ((1 << layout["count"].width) - 1)
            return (data, count, value >> layout["row_last"].offset & 1,
                    value >> layout["last"].offset & 1)

        async def bench(ctx):
            held = None
            while len(job.beats) < expect:
                ready = int(not (out_stall and rng.random() < out_stall))
                ctx.set(eng.o.ready, ready)
                _, _, valid, value = await ctx.tick().sample(eng.o.valid,
                                                             eng.o.payload.as_value())
                if held is not None:
                    assert valid and value == held, "reader o changed while stalled"
                held = None
                if valid and ready:
                    job.beats.append(decode(value))
                elif valid:
                    held = value
            ctx.set(eng.o.ready, 0)
            finished.append(clock["now"])
            await _read_counters(ctx, eng, job)
        return bench

    def take_done(eng, job, expect):
        async def bench(ctx):
            while len(job.done_cycles) < expect:
                ready = int(not (done_stall and rng.random() < done_stall))
                ctx.set(eng.done.ready, ready)
                _, _, valid = await ctx.tick().sample(eng.done.valid)
                if valid and ready:
                    job.done_cycles.append(clock["now"])
                    job.accepted_at_done.append(clock["accepted"])
            ctx.set(eng.done.ready, 0)
            finished.append(clock["now"])
            await _read_counters(ctx, eng, job)
        return bench

    sim = Simulator(m)
    sim.add_clock(1e-8)
    mem.add_to(sim)
    sim.add_process(counter)
    for eng, job in zip(engines, jobs):
        sim.add_testbench(send(eng.req, job.requests, req_idle, request_packer(eng)))
        nonzero = [r for r in job.requests if r[1] and r[2]]
        if isinstance(job, ReadJob):
            expect = sum(-(-r[1] // job.lanes) * r[2] for r in nonzero)
            sim.add_testbench(collect(eng, job, expect))
        else:
            sim.add_testbench(send(eng.i, job.beats, in_idle,
                                   lambda beat: _pack(beat, 8)))
            sim.add_testbench(take_done(eng, job, len(nonzero)))
    sim.run()
    if engines_out is not None:
        engines_out.extend(engines)
    return mem, max(finished, default=0), engines

"""StreamRegister in Amaranth's simulator: random valid and ready, every payload once, in order,
held while stalled, one per cycle when never stalled, and i.ready a register."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pwconv.hw.stream_register import StreamRegister


def _run(count, in_idle, out_stall, seed):
    dut = StreamRegister(16)
    rng = np.random.default_rng(seed)
    sent = [int(v) for v in rng.integers(0, 1 << 16, count)]
    got, cycles = [], [0]

    async def source(ctx):
        for value in sent:
            while rng.random() < in_idle:
                await ctx.tick()
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, value)
            await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)

    async def sink(ctx):
        held = None
        while len(got) < count:
            ready = int(rng.random() >= out_stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            cycles[0] += 1
            if held is not None:        # what was offered and not taken is offered again
                assert valid and payload == held
            held = None
            if valid and ready:
                got.append(payload)
            elif valid:
                held = payload

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(source)
    sim.add_testbench(sink)
    sim.run()
    return sent, got, cycles[0]


@pytest.mark.parametrize("in_idle, out_stall", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.6, 0.6)])
def test_every_payload_once_in_order(in_idle, out_stall):
    sent, got, _ = _run(300, in_idle, out_stall, seed=int(10 * in_idle + 100 * out_stall))
    assert got == sent


def test_full_throughput():
    """Never idle, never stalled: one payload per cycle (plus the register's one cycle)."""
    sent, got, cycles = _run(200, 0.0, 0.0, seed=1)
    assert got == sent
    assert cycles <= 200 + 2


def test_ready_is_registered():
    """i.ready does not follow o.ready in the same cycle (no path from the consumer back)."""
    dut = StreamRegister(8)

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 1)
        ctx.set(dut.o.ready, 0)
        await ctx.tick().repeat(3)           # output full, skid full: not ready
        assert not ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)              # the consumer frees a slot...
        assert not ctx.get(dut.i.ready)      # ...which the producer sees next cycle only
        await ctx.tick()
        assert ctx.get(dut.i.ready)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

# amaranth: UnusedElaboratable=no
"""hw/memory/bram.py: the block-RAM native-port memory against a byte array, with backpressure."""

import random

import pytest
from amaranth.sim import Simulator

from pwconv.hw.memory.bram import BlockRAMMemory


def test_init_wrong_depth():
    with pytest.raises(TypeError, match=r"^Depth must be a positive integer, not 0$"):
        BlockRAMMemory(depth=0, data_width=16)


def test_init_wrong_data_width():
    with pytest.raises(TypeError, match=r"^Data width must be a positive multiple of 8, "
                                        r"not 12$"):
        BlockRAMMemory(depth=4, data_width=12)


def test_sim_matches_reference():
    """Random masked writes and reads (issued back to back, read data taken with random
    stalls) against a Python list; every read returns the word as written before it."""
    depth, width = 24, 16
    dut = BlockRAMMemory(depth=depth, data_width=width)
    assert dut.size == 48 and len(dut.bus.cmd.payload.addr) == 5
    rng = random.Random(2)
    ref = [0] * depth
    ops, expected = [], []
    for _ in range(300):
        addr = rng.randrange(depth)
        if rng.random() < 0.5:
            data, mask = rng.getrandbits(width), rng.randrange(4)
            ops.append((addr, 1, data, mask))
            for i in range(2):
                if mask >> i & 1:
                    ref[addr] = ref[addr] & ~(0xFF << 8 * i) | data & (0xFF << 8 * i)
        else:
            ops.append((addr, 0, 0, 0))
            expected.append(ref[addr])
    got = []

    async def master(ctx):
        for addr, we, data, mask in ops:
            ctx.set(dut.bus.cmd.payload.addr, addr)
            ctx.set(dut.bus.cmd.payload.we, we)
            ctx.set(dut.bus.cmd.valid, 1)
            ctx.set(dut.bus.wdata.payload.data, data)
            ctx.set(dut.bus.wdata.payload.mask, mask)
            ctx.set(dut.bus.wdata.valid, we)
            await ctx.tick().until(dut.bus.cmd.ready)
            ctx.set(dut.bus.cmd.valid, 0)
            ctx.set(dut.bus.wdata.valid, 0)

    async def reader(ctx):
        for _ in range(20 * len(ops)):      # bounded: a lost read word fails, not hangs
            if len(got) == len(expected):
                break
            ready = rng.random() < 0.6
            ctx.set(dut.bus.rdata.ready, ready)
            _, _, valid, data = await ctx.tick().sample(dut.bus.rdata.valid,
                                                        dut.bus.rdata.payload)
            if valid and ready:
                got.append(data)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    async def done(ctx):
        await ctx.tick().repeat(20 * len(ops) + 10)

    sim.add_testbench(master)
    sim.add_testbench(done)
    sim.add_testbench(reader, background=True)
    sim.run()
    assert got == expected

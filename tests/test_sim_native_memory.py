"""NativeMemory (sim/native_memory.py) driven by scripted masters: storage and masks, read
latency, the bound on reads in flight, and each contract violation caught with its message."""

import numpy as np
import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from pwconv.hw.memory.port import NativePortSignature
from pwconv.sim.native_memory import NativeMemory, NativeMemoryError


def _setup(size=128, **kwargs):
    port = NativePortSignature(addr_width=6, data_width=16).create()
    mem = NativeMemory(port, size=size, **kwargs)
    m = Module()
    m.domains.sync = ClockDomain()
    sim = Simulator(m)
    sim.add_clock(1e-8)
    mem.add_to(sim)
    return port, mem, sim


# Plain ticks, not tick().until()/repeat(): a testbench left waiting inside those async
# generators when a contract error stops the simulation warns on garbage collection.
async def _until(ctx, signal, value=1):
    while True:
        _, _, seen = await ctx.tick().sample(signal)
        if seen == value:
            return


async def _ticks(ctx, n):
    for _ in range(n):
        await ctx.tick()


async def _command(ctx, port, addr, we):
    ctx.set(port.cmd.payload, {"addr": addr, "we": we})
    ctx.set(port.cmd.valid, 1)
    await _until(ctx, port.cmd.ready)
    ctx.set(port.cmd.valid, 0)


async def _wdata(ctx, port, value, mask):
    ctx.set(port.wdata.payload, {"data": value, "mask": mask})
    ctx.set(port.wdata.valid, 1)
    await _until(ctx, port.wdata.ready)
    ctx.set(port.wdata.valid, 0)


def test_sim_write_masks_and_read_back():
    """Masked writes (data before, with and after the command) land little-endian; reads return
    the words in order, ``read_latency`` cycles after the command is taken."""
    port, mem, sim = _setup(read_latency=3)
    got, issued, arrived = [], [], []

    async def master(ctx):
        await _wdata(ctx, port, 0xaabb, 0b01)       # data first
        await _command(ctx, port, 5, 1)
        await _command(ctx, port, 6, 1)             # then the command first
        await _wdata(ctx, port, 0xccdd, 0b11)
        ctx.set(port.rdata.ready, 1)
        for addr in (5, 6, 7):
            await _command(ctx, port, addr, 0)
            issued.append(mem.cycles)
        while len(got) < 3:
            _, _, valid, value = await ctx.tick().sample(port.rdata.valid, port.rdata.payload)
            if valid:
                got.append(value)
                arrived.append(mem.cycles)

    sim.add_testbench(master)
    sim.run()
    assert got == [0x00bb, 0xccdd, 0]
    assert list(mem.data[10:14]) == [0xbb, 0, 0xdd, 0xcc]
    assert mem.reads == 3 and mem.writes == 2
    mem.check_idle()
    # the last read was taken at edge issued[-1]; its word is offered from read_latency later
    assert arrived[-1] - issued[-1] == 3


def test_sim_reads_in_flight_bounded():
    """With rdata never taken, the memory takes max_reads + cmd_depth reads and stops."""
    port, mem, sim = _setup(max_reads=3, cmd_depth=2, read_latency=1)
    taken = []

    async def master(ctx):
        ctx.set(port.cmd.valid, 1)
        ctx.set(port.cmd.payload, {"addr": 1, "we": 0})
        for _ in range(30):
            _, _, ready = await ctx.tick().sample(port.cmd.ready)
            taken.append(ready)

    sim.add_testbench(master)
    sim.run()
    assert sum(taken) == 5 and mem.peak_reads == 3
    with pytest.raises(NativeMemoryError, match=r"read never executed"):
        mem.check_idle()


def _violation(script, **kwargs):
    port, mem, sim = _setup(**kwargs)

    async def master(ctx):
        await script(ctx, port)
        await _ticks(ctx, 5)

    sim.add_testbench(master)
    sim.run()
    mem.check_idle()


async def _drop_valid(ctx, port):
    ctx.set(port.cmd.payload, {"addr": 1, "we": 0})
    ctx.set(port.cmd.valid, 1)
    await _until(ctx, port.cmd.ready, 0)
    ctx.set(port.cmd.valid, 0)


async def _change_payload(ctx, port):
    ctx.set(port.wdata.payload, {"data": 1, "mask": 3})
    ctx.set(port.wdata.valid, 1)
    await _until(ctx, port.wdata.ready, 0)
    ctx.set(port.wdata.payload, {"data": 2, "mask": 3})


async def _beyond(ctx, port):
    await _command(ctx, port, 31, 1)                    # word 31 is the last: fine
    await _wdata(ctx, port, 0, 0)
    ctx.set(port.cmd.payload, {"addr": 32, "we": 0})    # 64 bytes: 32 of the 64 words
    ctx.set(port.cmd.valid, 1)


async def _no_wdata(ctx, port):
    await _command(ctx, port, 2, 1)


async def _slow_wdata(ctx, port):
    await _command(ctx, port, 2, 1)
    await _ticks(ctx, 40)


async def _stray_wdata(ctx, port):
    await _wdata(ctx, port, 7, 1)


async def _untaken(ctx, port):
    await _command(ctx, port, 2, 0)


async def _not_at_once(ctx, port):
    ctx.set(port.rdata.ready, 0)
    await _command(ctx, port, 2, 0)
    await _ticks(ctx, 5)


VIOLATIONS = [
    (_drop_valid, dict(cmd_stall=[1, 1, 0]),
     r"cmd\.valid dropped or cmd\.payload changed before cmd\.ready took it"),
    (_change_payload, dict(wdata_stall=[1, 1, 0]),
     r"wdata\.valid dropped or wdata\.payload changed before wdata\.ready took it"),
    (_beyond, dict(size=64), r"read command to word 0x20, beyond the memory's 0x20 words"),
    (_no_wdata, {}, r"1 command\(s\) left; the first, to word 0x2 \(cycle \d+\): write "
                    r"command never got its wdata beat"),
    (_slow_wdata, dict(patience=20), r"write command to word 0x2 accepted at cycle \d+ never "
                                     r"got its wdata beat \(20 cycles\)"),
    (_stray_wdata, {}, r"1 wdata beat\(s\) taken with no write command for them"),
    (_untaken, {}, r"1 read word\(s\) never taken by the master"),
    (_not_at_once, dict(strict_rdata=True), r"rdata offered and not taken \(rdata\.ready low\)"),
]


@pytest.mark.parametrize("script, kwargs, message", VIOLATIONS,
                         ids=[v[0].__name__.strip("_") for v in VIOLATIONS])
def test_sim_contract_violation_caught(script, kwargs, message):
    with pytest.raises(NativeMemoryError, match=r"^native memory, cycle \d+: " + message):
        _violation(script, **kwargs)


def test_init_wrong_params():
    port = NativePortSignature(addr_width=6, data_width=16).create()
    with pytest.raises(ValueError, match=r"^Size must be a positive multiple of 2 bytes, at "
                                         r"most 128, not 129$"):
        NativeMemory(port, size=129)
    with pytest.raises(ValueError, match=r"^Read latency must be an integer >= 1, not 0$"):
        NativeMemory(port, size=128, read_latency=0)
    with pytest.raises(ValueError, match=r"^cmd_stall must be a probability in \[0, 1\) or a "
                                         r"0/1 pattern, not 1\.0$"):
        NativeMemory(port, size=128, cmd_stall=1.0)
    with pytest.raises(ValueError, match=r"^rdata_stall pattern must be non-empty and not stall "
                                         r"every cycle, not \[1\]$"):
        NativeMemory(port, size=128, rdata_stall=[1])
    with pytest.raises(ValueError, match=r"^Initial data has 3 bytes, the memory 128$"):
        NativeMemory(port, size=128, data=np.zeros(3))

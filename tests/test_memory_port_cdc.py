# amaranth: UnusedElaboratable=no
"""NativePortCDC: a native memory port across two clock domains, against sim/native_memory.py."""

import random

import pytest
from amaranth.hdl import ClockDomain, Module
from amaranth.sim import Simulator

from pwconv.hw.memory.port_cdc import NativePortCDC
from pwconv.sim.native_memory import NativeMemory


def test_init_wrong_domains():
    with pytest.raises(ValueError, match=r"^Master and memory domains must differ, not both "
                                         r"'sync'$"):
        NativePortCDC(addr_width=8, data_width=16, memory_domain="sync")
    with pytest.raises(TypeError, match=r"^Memory domain must be a non-empty string, not 3$"):
        NativePortCDC(addr_width=8, data_width=16, memory_domain=3)


def test_init_wrong_depth():
    with pytest.raises(ValueError, match=r"^FIFO depth must be an integer of at least 4, "
                                         r"not 2$"):
        NativePortCDC(addr_width=8, data_width=16, depth=2)


def _run(master_period, memory_period, *, seed, stall=0.3, n=120):
    """Write ``n`` random words (random byte masks after a full pass), read them back, both with
    random stalls on every stream and in the memory; return (reads, expected, memory)."""
    rng = random.Random(seed)
    dut = NativePortCDC(addr_width=10, data_width=16)
    m = Module()
    m.domains.sdram = ClockDomain()
    m.submodules.dut = dut
    mem = NativeMemory(dut.memory, size=2048, read_latency=3, max_reads=6, cmd_stall=stall,
                       wdata_stall=stall, rdata_stall=stall, seed=seed, domain="sdram")
    addrs = rng.sample(range(1024), n)
    ref = {}
    cmds = []
    for a in addrs:
        cmds.append((1, a, rng.randrange(1 << 16), 3))
    for a in rng.sample(addrs, n // 2):
        cmds.append((1, a, rng.randrange(1 << 16), rng.randrange(4)))
    cmds += [(0, a, 0, 0) for a in addrs]
    expected = []
    for we, a, d, mask in cmds:
        if we:
            old = ref.get(a, 0)
            keep = (0 if mask & 1 else 0xff) | (0 if mask & 2 else 0xff00)
            ref[a] = (old & keep) | (d & ~keep & 0xffff)
        else:
            expected.append(ref[a])
    writes = [(d, mask) for we, a, d, mask in cmds if we]
    reads = []
    sim = Simulator(m)
    sim.add_clock(master_period, domain="sync")
    sim.add_clock(memory_period, domain="sdram")
    mem.add_to(sim)
    p = dut.master

    async def master(ctx):
        ci = wi = 0
        cv = wv = False
        for _ in range(20000):
            (_, _, cr, wr, rv, rr, rpay) = await ctx.tick("sync").sample(
                p.cmd.ready, p.wdata.ready, p.rdata.valid, p.rdata.ready, p.rdata.payload)
            if cv and cr:
                ci, cv = ci + 1, False
            if wv and wr:
                wi, wv = wi + 1, False
            if rv and rr:
                reads.append(rpay)
            if len(reads) == len(expected) and ci == len(cmds):
                return
            if not cv and ci < len(cmds) and rng.random() >= stall:
                we, a, _, _ = cmds[ci]
                ctx.set(p.cmd.payload, {"addr": a, "we": we})
                cv = True
            ctx.set(p.cmd.valid, cv)
            if not wv and wi < len(writes) and rng.random() >= stall:
                d, mask = writes[wi]
                ctx.set(p.wdata.payload, {"data": d, "mask": mask})
                wv = True
            ctx.set(p.wdata.valid, wv)
            ctx.set(p.rdata.ready, rng.random() >= stall)
        raise AssertionError(f"timed out: {ci} commands, {wi} writes, {len(reads)} reads")

    sim.add_testbench(master)
    sim.run()
    return reads, expected, mem


@pytest.mark.parametrize("master_period, memory_period", [(10e-9, 17e-9), (17e-9, 10e-9)])
def test_sim_matches_reference(master_period, memory_period):
    reads, expected, mem = _run(master_period, memory_period, seed=7)
    assert reads == expected
    mem.check_idle()


def test_sim_no_stalls_full_rate():
    """Without stalls both ways, the whole job's reads come back intact at equal clocks."""
    reads, expected, mem = _run(10e-9, 10e-9, seed=3, stall=0.0)
    assert reads == expected
    mem.check_idle()

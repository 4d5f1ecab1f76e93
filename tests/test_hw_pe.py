"""ProcessingElement in Amaranth's simulator: weight memory, MAC, one-cycle latency."""

import random

import pytest
from amaranth.hdl import Fragment, signed
from amaranth.sim import Simulator

from pwconv.hw.pe import ProcessingElement


def test_init_wrong_depth():
    with pytest.raises(ValueError, match=r"^Weight depth must be a positive integer, not 0$"):
        ProcessingElement(depth=0, psum_in_shape=None, psum_out_shape=signed(16))


def test_init_no_memory_needs_external_product():
    with pytest.raises(ValueError, match=r"^A PE without a weight memory needs "
                                         r"external_product=True$"):
        ProcessingElement(depth=4, psum_in_shape=None, psum_out_shape=signed(16),
                          weight_memory=False)


def test_init_no_memory_has_no_weight_ports():
    pe = ProcessingElement(depth=4, psum_in_shape=None, psum_out_shape=signed(16),
                           external_product=True, weight_memory=False)
    members = set(pe.signature.members.keys())
    assert {"w_addr", "w_data", "w_en", "weight"}.isdisjoint(members)
    assert {"addr_in", "x_in", "product", "psum_out"} <= members
    Fragment.get(pe, None)      # elaborates (and so is used) without a memory


def test_sim_mac_matches_products():
    dut = ProcessingElement(depth=8, psum_in_shape=signed(20), psum_out_shape=signed(21))
    rng = random.Random(1)
    weights = [rng.randint(-128, 127) for _ in range(8)]
    weights[0], weights[1] = -128, 127
    cases = [(0, -128, 5), (1, -128, -(1 << 19))] + [
        (rng.randrange(8), rng.randint(-128, 127), rng.randint(-(1 << 19), (1 << 19) - 1))
        for _ in range(60)]

    async def bench(ctx):
        for addr, w in enumerate(weights):
            ctx.set(dut.w_addr, addr)
            ctx.set(dut.w_data, w)
            ctx.set(dut.w_en, 1)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        previous = None
        for addr, x, psum in cases + [(0, 0, 0)]:
            # The address leads x by one cycle: present it, then x and psum on the next cycle.
            ctx.set(dut.addr_in, addr)
            await ctx.tick()
            if previous is not None:
                p_addr, p_x, p_psum = previous
                assert ctx.get(dut.psum_out) == p_psum + p_x * weights[p_addr]
                assert ctx.get(dut.x_out) == p_x
            ctx.set(dut.x_in, x)
            ctx.set(dut.psum_in, psum)
            assert ctx.get(dut.addr_out) == addr
            previous = (addr, x, psum)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

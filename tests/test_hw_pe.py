"""ProcessingElement in Amaranth's simulator: weight memory, MAC, one-cycle latency."""

import random

import pytest
from amaranth.hdl import Fragment, Module, Signal, signed
from amaranth.sim import Simulator

from pwconv.hw.pe import ProcessingElement


def test_init_wrong_depth():
    with pytest.raises(ValueError, match=r"^Weight depth must be a positive integer, not 0$"):
        ProcessingElement(depth=0, psum_in_shape=None, psum_out_shape=signed(16))


def test_init_no_memory_takes_its_weight():
    """Without a memory or an outside product the PE takes its weight on ``w_in``."""
    pe = ProcessingElement(depth=4, psum_in_shape=None, psum_out_shape=signed(16),
                           weight_memory=False, mac_latency=2)
    members = set(pe.signature.members.keys())
    assert {"w_addr", "w_data", "w_en", "weight", "product"}.isdisjoint(members)
    assert {"addr_in", "x_in", "w_in", "psum_out"} <= members
    Fragment.get(pe, None)


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


def test_init_wrong_mac_latency():
    with pytest.raises(ValueError, match=r"^MAC latency must be 0, 2, 3 or 4, not 1$"):
        ProcessingElement(depth=4, psum_in_shape=None, psum_out_shape=signed(16),
                          mac_latency=1)


def test_init_fabric_multiplier_needs_latency_3_or_4():
    with pytest.raises(ValueError, match=r"^A fabric multiplier needs mac_latency 3 or 4$"):
        ProcessingElement(depth=4, psum_in_shape=None, psum_out_shape=signed(16),
                          mac_latency=2, fabric_multiplier=True)


@pytest.mark.parametrize("mac_latency, fabric",
                         [(2, False), (3, False), (3, True), (4, False), (4, True)])
def test_sim_pipelined_mac_matches_products(mac_latency, fabric):
    """A stream of (addr, x, psum) one per cycle, psum ``mac_latency`` cycles after its x;
    every psum_out is psum + x * w[addr], one cycle after psum, and x_out one after x (a DSP
    product with 2 or 3 registers or on a registered multiplier cell, a fabric one cut by one
    or two registers)."""
    dut = ProcessingElement(depth=8, psum_in_shape=signed(20), psum_out_shape=signed(21),
                            mac_latency=mac_latency, fabric_multiplier=fabric)
    rng = random.Random(2 + mac_latency + fabric)
    weights = [rng.randint(-128, 127) for _ in range(8)]
    weights[0], weights[1] = -128, 127
    cases = [(0, -128, 5), (1, -128, -(1 << 19))] + [
        (rng.randrange(8), rng.randint(-128, 127), rng.randint(-(1 << 19), (1 << 19) - 1))
        for _ in range(60)]
    stream = cases + [(0, 0, 0)] * 5
    lat = mac_latency

    async def bench(ctx):
        for addr, w in enumerate(weights):
            ctx.set(dut.w_addr, addr)
            ctx.set(dut.w_data, w)
            ctx.set(dut.w_en, 1)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        for t in range(len(stream) + 1):
            # Cycle t: address of case t, x of case t-1, psum of case t-1-lat.
            ctx.set(dut.addr_in, stream[t][0] if t < len(stream) else 0)
            if t >= 1:
                ctx.set(dut.x_in, stream[t - 1][1])
            if t >= 1 + lat:
                ctx.set(dut.psum_in, stream[t - 1 - lat][2])
            if t >= 2 + lat:
                addr, x, psum = stream[t - 2 - lat]
                assert ctx.get(dut.psum_out) == psum + x * weights[addr], t
            if t >= 2:
                assert ctx.get(dut.x_out) == stream[t - 2][1]
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("registered_levels", [0, 1, 2])
def test_fabric_product_is_exact(registered_levels):
    """All 65536 int8 pairs through :func:`fabric_product` (the LUT multiplier) in Amaranth's
    simulator, against Python's product; with registered levels, each product that many
    cycles after its operands while the next pairs go in."""
    from pwconv.hw.pe import fabric_product
    m = Module()
    x, w = Signal(signed(8)), Signal(signed(8))
    p = Signal(signed(16))
    m.d.comb += p.eq(fabric_product(m, x, w, registered_levels=registered_levels))

    async def bench(ctx):
        history = []
        for a in range(-128, 128):
            for b in range(-128, 128):
                ctx.set(x, a)
                ctx.set(w, b)
                if not registered_levels:
                    assert ctx.get(p) == a * b, (a, b)
                    continue
                # The inputs are already the next pair's: the product is that of the pair
                # `registered_levels` cycles back.
                if len(history) >= registered_levels:
                    pair = history[-registered_levels]
                    assert ctx.get(p) == pair[0] * pair[1], pair
                history.append((a, b))
                await ctx.tick()

    sim = Simulator(m)
    if registered_levels:
        sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()


def test_fabric_product_rejects_three_registered_levels():
    from pwconv.hw.pe import fabric_product
    m = Module()
    with pytest.raises(ValueError, match=r"^Registered levels must be 0, 1 or 2, not 3$"):
        fabric_product(m, Signal(signed(8)), Signal(signed(8)), registered_levels=3)
    Fragment.get(m, None)       # the module is used (no UnusedElaboratable warning)

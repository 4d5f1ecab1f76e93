"""Drive the PointwiseConv top in Amaranth's simulator: load a layer, stream pixels, collect."""

import random

from amaranth.sim import Simulator

from pwconv.hw.top import PointwiseConv

__all__ = ["run_top"]


def run_top(cfg, program, pixel_words, *, seed=0, in_idle=0.0, out_stall=0.0, vcd=None,
            timeout=None, on_result=None):
    """Run ``program`` over ``pixel_words`` on a fresh PointwiseConv in Amaranth's simulator.

    ``in_idle`` and ``out_stall`` are probabilities of the source withholding a beat and the sink
    refusing a result in a given cycle. Returns ``(result_words, cycles)`` where ``cycles`` counts
    from the first pixel beat offered to the last result taken. ``on_result(n)``, if given, is
    called with the number of result vectors taken so far after each one (progress display).
    """
    dut = PointwiseConv(cfg)
    rng = random.Random(seed)
    expected = len(pixel_words) // program.beats * program.tiles
    results = []
    stats = {}
    limit = timeout or (50 * (len(pixel_words) * program.tiles + 1) + 20 * dut.latency + 2000)

    async def send(ctx, stream, words, idle=0.0):
        for word in words:
            while idle and rng.random() < idle:
                ctx.set(stream.valid, 0)
                await ctx.tick()
            ctx.set(stream.payload.as_value(), word)
            ctx.set(stream.valid, 1)
            await ctx.tick().until(stream.ready)
        ctx.set(stream.valid, 0)

    clock = {"now": 0}

    async def testbench(ctx):
        ctx.set(dut.layer.as_value(), program.layer_word)
        await send(ctx, dut.weights, program.weight_words)
        await send(ctx, dut.params, program.param_words)
        start = clock["now"]
        await send(ctx, dut.i, pixel_words, in_idle)
        while len(results) < expected:
            await ctx.tick()
        stats["cycles"] = clock["now"] - start

    async def sink(ctx):
        while True:
            ready = not (out_stall and rng.random() < out_stall)
            ctx.set(dut.o.ready, ready)
            _, _, valid, payload = await ctx.tick().sample(
                dut.o.valid, dut.o.payload.as_value())
            clock["now"] += 1
            if ready and valid:
                results.append(payload)
                if on_result is not None:
                    on_result(len(results))

    async def watchdog(ctx):
        for _ in range(limit):
            await ctx.tick()
        raise TimeoutError(f"No completion within {limit} cycles: got {len(results)} of "
                           f"{expected} result vectors")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.add_testbench(sink, background=True)
    sim.add_testbench(watchdog, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    return results, stats["cycles"]

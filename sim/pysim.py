"""Drive the PointwiseConv top in Amaranth's simulator: load passes, stream pixels, collect."""

import random

from amaranth.sim import Simulator

from pwconv.hw.top import PointwiseConv

__all__ = ["run_top", "run_passes_top"]


def run_top(cfg, program, pixel_words, *, seed=0, in_idle=0.0, out_stall=0.0, vcd=None,
            timeout=None, on_result=None):
    """Run ``program`` over ``pixel_words`` on a fresh PointwiseConv in Amaranth's simulator.

    ``in_idle`` and ``out_stall`` are probabilities of the source withholding a beat and the sink
    refusing a result in a given cycle. Returns ``(result_words, cycles)`` where ``cycles`` counts
    from the first pixel beat taken to the last result taken. ``on_result(n)``, if given, is
    called with the number of result vectors taken so far after each one (progress display).
    """
    [(words, cycles, _)] = run_passes_top(cfg, [(program, pixel_words)], seed=seed,
                                          in_idle=in_idle, out_stall=out_stall, vcd=vcd,
                                          timeout=timeout, on_result=on_result)
    return words, cycles


def run_passes_top(cfg, passes, *, seed=0, in_idle=0.0, out_stall=0.0, vcd=None,
                   timeout=None, on_result=None):
    """Run ``passes``, a list of ``(LayerProgram, pixel_words)``, back to back on one
    PointwiseConv, as the host driver does.

    With ``cfg.weight_banks == 2`` a loader sends each pass's layer word, weights, params and
    commit as soon as the accelerator takes them, while an independent feeder streams every
    pass's pixels in order (so loads overlap compute). With one bank each pass is loaded, run
    and drained in turn. Returns ``[(result_words, cycles, span)]`` per pass: ``cycles`` from
    the pass's first pixel beat taken to its last result taken, ``span`` from the previous
    pass's last result (the first pass: from the first cycle) to its last result.
    """
    dut = PointwiseConv(cfg)
    rng = random.Random(seed)
    expected = [len(words) // program.beats * program.tiles for program, words in passes]
    results = []
    clock = {"now": 0}
    first_pixel = [None] * len(passes)
    last_result = [None] * len(passes)
    banked = cfg.weight_banks == 2
    limit = timeout or (50 * sum((len(words) // program.beats + 1) * program.tiles
                                 * cfg.tile_cycles(program.channels)
                                 + cfg.load_cycles(program.channels, program.filters)
                                 for program, words in passes) + 20 * dut.latency + 2000)

    async def send(ctx, stream, words, idle=0.0, index=None):
        for word in words:
            while idle and rng.random() < idle:
                ctx.set(stream.valid, 0)
                await ctx.tick()
            ctx.set(stream.payload.as_value(), word)
            ctx.set(stream.valid, 1)
            while True:
                now = clock["now"]
                _, _, ready = await ctx.tick().sample(stream.ready)
                if ready:
                    break
            if index is not None and first_pixel[index] is None:
                first_pixel[index] = now     # the cycle the pass's first beat was taken
        ctx.set(stream.valid, 0)

    async def load(ctx, program, words):
        ctx.set(dut.layer.as_value(), program.layer_word)
        await send(ctx, dut.weights, program.weight_words)
        await send(ctx, dut.params, program.param_words)
        if banked:
            await send(ctx, dut.commit, [len(words)])

    async def testbench(ctx):
        for index, (program, words) in enumerate(passes):
            await load(ctx, program, words)
            if not banked:
                await send(ctx, dut.i, words, in_idle, index)
                while len(results) < sum(expected[:index + 1]) or not ctx.get(dut.idle):
                    await ctx.tick()
        while len(results) < sum(expected):
            await ctx.tick()

    async def feeder(ctx):
        for index, (_, words) in enumerate(passes):
            await send(ctx, dut.i, words, in_idle, index)

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
                done = len(results)
                for index in range(len(passes)):
                    if sum(expected[:index + 1]) == done:
                        last_result[index] = clock["now"]

    async def watchdog(ctx):
        for _ in range(limit):
            await ctx.tick()
        raise TimeoutError(f"No completion within {limit} cycles: got {len(results)} of "
                           f"{sum(expected)} result vectors")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    if banked:
        sim.add_testbench(feeder, background=True)
    sim.add_testbench(sink, background=True)
    sim.add_testbench(watchdog, background=True)
    if vcd:
        with sim.write_vcd(vcd):
            sim.run()
    else:
        sim.run()
    out, at, previous = [], 0, 0
    for index, count in enumerate(expected):
        end = last_result[index] if count else previous
        start = first_pixel[index] if first_pixel[index] is not None else end
        out.append((results[at:at + count], end - start, end - previous))
        at, previous = at + count, end
    return out

"""SystolicArray in Amaranth's simulator: folded dot products against golden, and latency."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.host.program import compile_layer
from pwconv.hw.array import SystolicArray


def test_init_wrong_config():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not None$"):
        SystolicArray(None)


def _run(cfg, x, w, gaps):
    """Feed the beat schedule of x [P, C] against w [C, F]; return (sums [P, F], sum cycles)."""
    dut = SystolicArray(cfg)
    channels, filters = w.shape
    program = compile_layer(cfg, w, np.zeros(filters, np.int32), np.zeros(filters, np.int32),
                            np.zeros(filters, np.int32), raw=True)
    beats, tiles = program.beats, program.tiles
    padded = np.zeros((len(x), beats * cfg.rows), np.int64)
    padded[:, :channels] = x
    out, when = [], []

    async def bench(ctx):
        for word in program.weight_words:
            ctx.set(dut.weight.as_value(), word)
            ctx.set(dut.weight_en, 1)
            await ctx.tick()
        ctx.set(dut.weight_en, 0)
        cycle = 0
        schedule = [(p, t, b) for p in range(len(x)) for t in range(tiles) for b in range(beats)]
        for step in range(len(schedule) + sum(gaps) + dut.latency + 2):
            idle = gaps[step] if step < len(gaps) else 0
            if schedule and not idle:
                p, t, b = schedule.pop(0)
                for r in range(cfg.rows):
                    ctx.set(dut.beat.x[r], int(padded[p, b * cfg.rows + r]))
                ctx.set(dut.beat.addr, t * beats + b)
                ctx.set(dut.beat.tile, t)
                ctx.set(dut.beat.first, b == 0)
                ctx.set(dut.beat.last, b == beats - 1)
                ctx.set(dut.beat_valid, 1)
            else:
                ctx.set(dut.beat_valid, 0)
            _, _, valid, sums, tile = await ctx.tick().sample(
                dut.sums_valid, dut.sums.acc, dut.sums.tile)
            cycle += 1
            if valid:
                out.append(([sums[c] for c in range(cfg.cols)], tile))
                when.append(cycle)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    tiles_seen = [tile for _, tile in out]
    assert tiles_seen == [t for _ in range(len(x)) for t in range(tiles)]
    flat = np.array([vec for vec, _ in out], np.int64).reshape(len(x), tiles * cfg.cols)
    return flat[:, :filters], when, dut.latency


@pytest.mark.parametrize("rows, cols, channels, filters", [
    (4, 4, 4, 4), (4, 4, 1, 1), (4, 4, 3, 5), (4, 3, 17, 7), (2, 5, 9, 11), (1, 1, 3, 2)])
def test_matches_golden(rows, cols, channels, filters):
    cfg = ArrayConfig(rows=rows, cols=cols, max_channels=32, max_filters=32, weight_depth=64)
    rng = np.random.default_rng(rows * 100 + channels)
    x = rng.integers(-128, 128, size=(5, channels), dtype=np.int8)
    w = rng.integers(-128, 128, size=(channels, filters), dtype=np.int8)
    gaps = rng.choice([0, 0, 1], size=60).tolist()
    got, _, _ = _run(cfg, x, w, gaps)
    np.testing.assert_array_equal(got, golden.conv1x1_acc(x, w, np.zeros(filters, np.int32), 0))


def test_extremes_do_not_overflow():
    """All-extreme values at the largest C the accumulators are sized for."""
    cfg = ArrayConfig(rows=4, cols=2, max_channels=4096, max_filters=2, weight_depth=1024)
    for value in (-128, 127):
        x = np.full((1, cfg.max_channels), -128, np.int8)
        w = np.full((cfg.max_channels, 2), value, np.int8)
        got, _, _ = _run(cfg, x, w, [])
        assert got.tolist() == [[-128 * value * cfg.max_channels] * 2]


def test_latency():
    cfg = ArrayConfig(rows=3, cols=4, max_channels=8, max_filters=8, weight_depth=8)
    x = np.ones((1, 3), np.int8)
    w = np.ones((3, 4), np.int8)
    got, when, latency = _run(cfg, x, w, [])
    assert got.tolist() == [[3, 3, 3, 3]]
    assert latency == cfg.array_latency == cfg.rows + cfg.cols + 1 + 2     # pipelined PEs
    assert when == [1 + latency]    # beat entered before tick 1, sums sampled after tick 1+L


@pytest.mark.parametrize("mac_style, lut_macs, deeper", [
    ("infer", 5, 1), ("infer", 12, 1), ("ecp5_mult18", 0, 2), ("ecp5_mult18", 5, 2),
    ("ecp5_mult18", 12, 2)])
def test_fabric_multipliers_match_golden(mac_style, lut_macs, deeper):
    """Some (or all) PEs with fabric multipliers (``lut_macs``), the others on inferred DSPs
    or on the ECP5 cell's model with its own registers: same sums; every PE ``deeper``
    pipeline stages deeper (the fabric multiply cut by one register, or by two beside the
    registered cell), so that many cycles more."""
    cfg = ArrayConfig(rows=4, cols=3, max_channels=32, max_filters=32, weight_depth=64,
                      mac_style=mac_style, lut_macs=lut_macs)
    rng = np.random.default_rng(lut_macs + len(mac_style))
    x = rng.integers(-128, 128, size=(5, 17), dtype=np.int8)
    w = rng.integers(-128, 128, size=(17, 7), dtype=np.int8)
    x[0, :], w[:, 0] = -128, -128
    got, _, latency = _run(cfg, x, w, rng.choice([0, 0, 1], size=60).tolist())
    np.testing.assert_array_equal(got, golden.conv1x1_acc(x, w, np.zeros(7, np.int32), 0))
    assert latency == cfg.array_latency == ArrayConfig(rows=4, cols=3).array_latency + deeper


@pytest.mark.parametrize("mac_style", ["infer", "ice40_dual8x8"])
def test_writes_and_beats_keep_their_order(mac_style):
    """A layer's beats, then at once (the next cycle) the next layer's weights written over the
    same addresses of the same bank, then at once its beats: every beat reads the weights
    written before it and none written after it, in every row. (Writes that reached all rows
    in one cycle would change the weights under the first layer's beats still in the skew.)
    ``ice40_dual8x8`` writes every row at once and keeps the documented rule instead: a bank
    is written only while no beat that reads it is inside, so it gets a gap."""
    cfg = ArrayConfig(rows=4, cols=4, max_channels=16, max_filters=16, weight_depth=16,
                      mac_style=mac_style)
    rng = np.random.default_rng(7)
    x = rng.integers(-128, 128, size=(3, 8), dtype=np.int8)
    layers = [rng.integers(-128, 128, size=(8, 4), dtype=np.int8) for _ in range(2)]
    zeros = np.zeros(4, np.int32)
    programs = [compile_layer(cfg, w, zeros, zeros, zeros, raw=True) for w in layers]
    gap = 0 if mac_style == "infer" else cfg.array_latency
    dut = SystolicArray(cfg)
    out = []

    async def bench(ctx):
        def idle():
            ctx.set(dut.weight_en, 0)
            ctx.set(dut.beat_valid, 0)

        async def tick():
            _, _, valid, sums = await ctx.tick().sample(dut.sums_valid, dut.sums.acc)
            if valid:
                out.append([sums[c] for c in range(cfg.cols)])

        for program in programs:
            for _ in range(gap):
                idle()
                await tick()
            for word in reversed(program.weight_words):     # the last row's first
                ctx.set(dut.beat_valid, 0)
                ctx.set(dut.weight.as_value(), word)
                ctx.set(dut.weight_en, 1)
                await tick()
            ctx.set(dut.weight_en, 0)
            for p in range(len(x)):
                for b in range(program.beats):
                    for r in range(cfg.rows):
                        ctx.set(dut.beat.x[r], int(x[p, b * cfg.rows + r]))
                    ctx.set(dut.beat.addr, b)
                    ctx.set(dut.beat.tile, 0)
                    ctx.set(dut.beat.first, b == 0)
                    ctx.set(dut.beat.last, b == program.beats - 1)
                    ctx.set(dut.beat_valid, 1)
                    await tick()
        idle()
        for _ in range(dut.latency + 2):
            await tick()

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    want = [golden.conv1x1_acc(x, w, zeros, 0) for w in layers]
    np.testing.assert_array_equal(np.array(out, np.int64), np.concatenate(want))

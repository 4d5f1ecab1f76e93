"""Requantizer in Amaranth's simulator against the golden TFLite arithmetic, incl. extremes."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.hw.requant import Requantizer
from pwconv.hw.requant_serial import SerialRequantizer

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
CFG = ArrayConfig(rows=2, cols=4, max_channels=4096, max_filters=16, weight_depth=8)
#: Every requantizer: parallel, and serial with each multiply step count.
CONFIGS = [CFG, ArrayConfig(rows=2, cols=4, max_channels=4096, max_filters=16, weight_depth=8,
                            requant_multiply="fabric")] + [
    ArrayConfig(rows=2, cols=4, max_channels=4096, max_filters=16, weight_depth=8,
                requantizer="serial", requant_steps=steps) for steps in (1, 2, 4, 8)]
CONFIG_IDS = ["parallel", "parallel_fabric"] + [f"serial{steps}" for steps in (1, 2, 4, 8)]


def test_init_wrong_config():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not 3$"):
        Requantizer(3)


def _cases(rng, count):
    """Column sums, and per-tile parameters, biased towards the corners of every range."""
    lim = golden.INT32_MAX
    sums = rng.integers(-(1 << 26), 1 << 26, size=(count, CFG.cols))
    sums[:8] = rng.choice([-(1 << 26), (1 << 26) - 1, 0, 1, -1], size=(8, CFG.cols))
    sums[0] = 0     # with tile 0: acc = INT32_MIN against multiplier INT32_MIN, saturating
    tiles = CFG.max_tiles
    bias = rng.integers(INT32_MIN, INT32_MAX, size=(tiles, CFG.cols), endpoint=True)
    bias[0] = [INT32_MIN, INT32_MAX, 0, -1]
    bias[1] = 0
    mult = rng.integers(1 << 30, lim, size=(tiles, CFG.cols), endpoint=True)
    mult[0] = [INT32_MIN, INT32_MAX, 1 << 30, 0]
    mult[2] = rng.integers(INT32_MIN, INT32_MAX, size=CFG.cols, endpoint=True)
    shift = rng.integers(-31, 8, size=(tiles, CFG.cols))
    shift[0] = [-31, 7, 0, -1]
    shift[1] = [30, 31, -31, 1]
    # Tile 3 makes SRDHM the identity (for small sums) and RoundingDivideByPOT meet exact ties:
    # -5/2 = -2.5 -> -3, -6/4 = -1.5 -> -2, 5/2 = 2.5 -> 3, 6/4 = 1.5 -> 2 (away from zero).
    bias[3], mult[3], shift[3] = 0, INT32_MAX, [-1, -2, -3, -4]
    sums[12] = [-5, -6, -12, -24]
    sums[14] = [5, 6, 12, 24]
    return sums, bias, mult, shift


def test_init_serial_needs_serial_config():
    with pytest.raises(ValueError, match=r"^SerialRequantizer needs requantizer='serial', "
                                         r"not 'parallel'$"):
        SerialRequantizer(CFG)


async def _load(ctx, dut, cfg, bias, mult, shift, *, zp, lo, hi, raw):
    """Layer settings, then every tile's parameter word through the stream handshake both
    requantizers have (the parallel one takes a word per cycle, the serial one `cols`)."""
    ctx.set(dut.config.output_zero_point, zp)
    ctx.set(dut.config.activation_min, lo)
    ctx.set(dut.config.activation_max, hi)
    ctx.set(dut.config.raw, raw)
    for tile in range(cfg.max_tiles):
        ctx.set(dut.param.addr, tile)
        for c in range(cfg.cols):
            ctx.set(dut.param.bias[c], int(bias[tile, c]))
            ctx.set(dut.param.multiplier[c], int(mult[tile, c]))
            ctx.set(dut.param.shift[c], int(shift[tile, c]))
        ctx.set(dut.param_valid, 1)
        await ctx.tick().until(dut.param_ready)
    ctx.set(dut.param_valid, 0)


def _run(sums, tile_of, bias, mult, shift, *, zp, lo, hi, raw, cfg=CFG):
    if cfg.requantizer == "serial":
        return _run_serial(cfg, sums, tile_of, bias, mult, shift, zp=zp, lo=lo, hi=hi, raw=raw)
    dut = Requantizer(CFG)
    out = []

    async def bench(ctx):
        await _load(ctx, dut, CFG, bias, mult, shift, zp=zp, lo=lo, hi=hi, raw=raw)
        for index in range(len(sums) + Requantizer.latency_of(CFG) + 1):
            if index < len(sums):
                for c in range(CFG.cols):
                    ctx.set(dut.sums.acc[c], int(sums[index, c]))
                ctx.set(dut.sums.tile, int(tile_of[index]))
            ctx.set(dut.sums_valid, index < len(sums) and index % 3 != 1)
            _, _, valid, result = await ctx.tick().sample(dut.result_valid, dut.result)
            if valid:
                out.append([result[c] for c in range(CFG.cols)])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return np.array(out, dtype=np.int64)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("seed, zp, lo, hi", [(0, 0, -128, 127), (1, -128, -128, 127),
                                              (2, 5, 5, 127), (3, 127, -100, 40)])
def test_matches_golden(cfg, seed, zp, lo, hi):
    rng = np.random.default_rng(seed)
    sums, bias, mult, shift = _cases(rng, 96)
    tile_of = rng.integers(0, CFG.max_tiles, size=len(sums))
    tile_of[:12] = np.arange(12) % 3
    tile_of[12] = tile_of[14] = 3
    got = _run(sums, tile_of, bias, mult, shift, zp=zp, lo=lo, hi=hi, raw=False, cfg=cfg)
    kept = np.arange(len(sums)) % 3 != 1        # the cycles with sums_valid high
    acc = golden.wrap_int32(sums + bias[tile_of])
    # golden.requantize takes shifts up to 30; the hardware also handles 31: compare those
    # lanes with the formula-level function, which takes any shift.
    want = np.empty_like(acc)
    for row in range(len(acc)):
        t = tile_of[row]
        scaled = golden.multiply_by_quantized_multiplier(
            acc[row], mult[t], np.minimum(shift[t], 30))
        scaled = np.where(shift[t] == 31, _mbqm31(acc[row], mult[t]), scaled)
        want[row] = np.clip(golden.wrap_int32(scaled.astype(np.int64) + zp), lo, hi)
    np.testing.assert_array_equal(got, want[kept])


def _run_serial(cfg, sums, tile_of, bias, mult, shift, *, zp, lo, hi, raw):
    """The same inputs through a SerialRequantizer: parameters through its stream handshake,
    vectors at its pace (skipping one slot in three, as above), columns regrouped."""
    dut = SerialRequantizer(cfg)
    columns = []

    async def bench(ctx):
        await _load(ctx, dut, cfg, bias, mult, shift, zp=zp, lo=lo, hi=hi, raw=raw)
        for index in range(len(sums)):
            # As the array gives them: column c c cycles after column 0, each valid only then.
            for c in range(cfg.tile_interval):
                if c < cfg.cols:
                    ctx.set(dut.sums.acc.as_value(), 0)
                    ctx.set(dut.sums.acc[c], int(sums[index, c]))
                    ctx.set(dut.sums.tile, int(tile_of[index]) if c == 0 else 0)
                    ctx.set(dut.column_done, (index % 3 != 1) << c)
                else:
                    ctx.set(dut.column_done, 0)
                await ctx.tick()
            ctx.set(dut.column_done, 0)
        await ctx.tick().repeat(dut.latency + 2)
        assert not ctx.get(dut.busy)

    async def collect(ctx):
        async for _, _, valid, result in ctx.tick().sample(dut.result_valid, dut.result):
            if valid:
                columns.append(result)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(collect, background=True)
    sim.run()
    return np.array(columns, dtype=np.int64).reshape(-1, cfg.cols)


def _mbqm31(acc, mult):
    """MultiplyByQuantizedMultiplier with shift 31, written out from the C formula."""
    out = []
    for a, m in zip(acc.tolist(), mult.tolist()):
        a = ((a << 31) + (1 << 31)) % (1 << 32) - (1 << 31)          # int32 wrap
        out.append(int(golden.saturating_rounding_doubling_high_mul(a, m)))
    return np.array(out)


@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_raw_mode_returns_biased_sums(cfg):
    rng = np.random.default_rng(7)
    sums, bias, mult, shift = _cases(rng, 40)
    tile_of = rng.integers(0, CFG.max_tiles, size=len(sums))
    tile_of[0] = 0
    got = _run(sums, tile_of, bias, mult, shift, zp=3, lo=-128, hi=127, raw=True, cfg=cfg)
    kept = np.arange(len(sums)) % 3 != 1
    np.testing.assert_array_equal(got, golden.wrap_int32(sums + bias[tile_of])[kept])

"""RequantLane in Amaranth's simulator: every rounding mode against golden, ties, extremes."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pwconv import golden
from pwconv.config import ROUNDINGS
from pwconv.hw.requant_lane import RequantLane

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1


def test_init_wrong_divide():
    with pytest.raises(ValueError, match=r"^Divide form must be 'compare' or 'add', not 'up'$"):
        RequantLane(sum_shape=32, divide="up")


@pytest.mark.parametrize("roundings", [(), ("nearest",), ["double"], ("ruy", "ruy")])
def test_init_wrong_roundings(roundings):
    with pytest.raises(ValueError, match=r"^Roundings must be a non-empty tuple of distinct "
                                         r"modes from double, single, ruy, float, not "):
        RequantLane(sum_shape=32, roundings=roundings)


@pytest.mark.parametrize("steps", [0, 3, 16, "2"])
def test_init_wrong_steps(steps):
    with pytest.raises(ValueError, match=r"^Multiply steps must be one of 1, 2, 4, 8, not "):
        RequantLane(sum_shape=32, steps=steps)


def _inputs(rng, rounding, count):
    """Accumulators and parameters biased towards each mode's corner cases."""
    acc = rng.integers(INT32_MIN, INT32_MAX, size=count, endpoint=True)
    small = rng.integers(-3000, 3000, size=count)
    acc = np.where(rng.random(count) < 0.5, small, acc)
    acc[:8] = [INT32_MIN, INT32_MAX, 0, -1, 1, INT32_MIN + 1, 1 << 24, -(1 << 24) - 1]
    if rounding == "float":
        scale = np.exp2(rng.uniform(-40, 4, size=count)).astype(np.float32)
        # Powers of two make exact ties of the final rounding; acc near 2^24 exercises the
        # int32 -> float32 rounding.
        scale[8:40] = np.exp2(-rng.integers(1, 6, size=32)).astype(np.float32)
        acc[40:60] = (1 << 24) + rng.integers(-5, 6, size=20) * rng.choice([1, 7, 255], 20)
        scale[60:64] = [np.float32(2.0 ** -126), np.float32(2.0 ** 127), 1.0, 3.4e38]
        mult = scale.view(np.int32).astype(np.int64)
        shift = np.zeros(count, np.int64)
    else:
        mult = rng.integers(1 << 30, INT32_MAX, size=count, endpoint=True)
        shift = rng.integers(-31, 8, size=count)
        mult[8:40], shift[8:40] = 1 << 30, -rng.integers(1, 5, size=32)   # ties
        acc[8:40] = rng.integers(-40, 40, size=32)
        shift[40:48] = [30, 29, 1, 0, -31, -30, 7, 12]
        if rounding != "single":    # multipliers < 0 and INT32_MIN are fine but for single
            mult[48:52] = [INT32_MIN, INT32_MIN, -1, 0]
            acc[48:50] = INT32_MIN
            shift[48:50] = 0
        scale = None
    return acc.astype(np.int64), mult.astype(np.int64), shift.astype(np.int64), scale


def _golden(rounding, acc, mult, shift, scale, zp, lo, hi):
    a = acc.reshape(-1, 1).astype(np.int32)
    out = np.empty(acc.size, np.int64)
    for i in range(acc.size):
        if rounding == "float":
            y = golden.requantize(a[i], None, None, zp, lo, hi, rounding="float",
                                  scale=scale[i:i + 1])
        else:
            y = golden.requantize(a[i], mult[i:i + 1], shift[i:i + 1], zp, lo, hi,
                                  rounding=rounding)
        out[i] = int(y[0])
    return out


def _run(lane, rounding, acc, mult, shift, *, zp, lo, hi, raw=False, gap=0):
    out = []

    async def bench(ctx):
        ctx.set(lane.rounding, ROUNDINGS.index(rounding))
        ctx.set(lane.output_zero_point, zp)
        ctx.set(lane.activation_min, lo)
        ctx.set(lane.activation_max, hi)
        ctx.set(lane.raw, raw)
        for i in range(acc.size):
            # The sum and bias split acc two ways (the lane adds them modulo 2^32).
            bias = (int(acc[i]) * 3) % (1 << 32) - (1 << 31)
            ctx.set(lane.sum, _wrap(int(acc[i]) - bias))
            ctx.set(lane.bias, bias)
            ctx.set(lane.multiplier, int(mult[i]))
            ctx.set(lane.shift, int(shift[i]))
            ctx.set(lane.valid, 1)
            await ctx.tick()
            ctx.set(lane.valid, 0)
            if lane.steps - 1 + gap:
                await ctx.tick().repeat(lane.steps - 1 + gap)
        await ctx.tick().repeat(lane.latency + 1)
        assert not ctx.get(lane.busy)

    async def collect(ctx):
        async for _, _, valid, result in ctx.tick().sample(lane.result_valid, lane.result):
            if valid:
                out.append(result)

    sim = Simulator(lane)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.add_testbench(collect, background=True)
    sim.run()
    return np.array(out, dtype=np.int64)


def _wrap(v):
    return (v + (1 << 31)) % (1 << 32) - (1 << 31)


LANES = [(steps, roundings, divide, multiply)
         for steps, divide, multiply in ((1, "compare", "dsp"), (1, "compare", "fabric"),
                                         (4, "add", "fabric"), (8, "compare", "fabric"),
                                         (2, "add", "fabric"))
         for roundings in (ROUNDINGS, ("double",), ("float", "ruy"))]


@pytest.mark.parametrize("steps, roundings, divide, multiply", LANES)
def test_matches_golden(steps, roundings, divide, multiply):
    rng = np.random.default_rng(steps * 7 + len(roundings))
    lane = RequantLane(sum_shape=32, steps=steps, roundings=roundings, divide=divide,
                       multiply=multiply)
    for index, rounding in enumerate(roundings):
        zp, lo, hi = [(0, -128, 127), (-9, -9, 127), (100, -128, 110), (-128, -128, 127)][
            index % 4]
        acc, mult, shift, scale = _inputs(rng, rounding, 160)
        got = _run(lane, rounding, acc, mult, shift, zp=zp, lo=lo, hi=hi)
        want = _golden(rounding, acc, mult, shift, scale, zp, lo, hi)
        np.testing.assert_array_equal(got, want, err_msg=f"rounding={rounding}")


@pytest.mark.parametrize("steps, multiply", [(1, "dsp"), (1, "fabric"), (4, "fabric")])
def test_raw_mode_every_rounding(steps, multiply):
    rng = np.random.default_rng(3)
    lane = RequantLane(sum_shape=32, steps=steps, roundings=ROUNDINGS, multiply=multiply)
    for rounding in ROUNDINGS:
        acc, mult, shift, _ = _inputs(rng, rounding, 80)
        got = _run(lane, rounding, acc, mult, shift, zp=5, lo=-128, hi=127, raw=True)
        np.testing.assert_array_equal(got, acc)


def test_missing_mode_computes_as_the_first():
    """A layer asking for a mode the lane leaves out gets the lane's first mode (the host and
    the board refuse such layers before they reach it)."""
    rng = np.random.default_rng(5)
    lane = RequantLane(sum_shape=32, roundings=("ruy", "float"))
    acc, mult, shift, _ = _inputs(rng, "ruy", 60)
    got = _run(lane, "double", acc, mult, shift, zp=0, lo=-128, hi=127)
    np.testing.assert_array_equal(got, _golden("ruy", acc, mult, shift, None, 0, -128, 127))


def test_init_wrong_multiply():
    with pytest.raises(ValueError, match=r"^Multiply must be one of 'dsp', 'fabric', not 'lut'$"):
        RequantLane(sum_shape=32, multiply="lut")


def test_latency_formula():
    assert RequantLane.latency_of(1, ("double",)) == 9
    assert RequantLane.latency_of(1, ("double",), "fabric") == 11
    assert RequantLane.latency_of(4, ROUNDINGS) == 14
    assert RequantLane.latency_of(2, ("double",)) == 11
    assert RequantLane.latency_of(8, ("double",)) == 15
    lane = RequantLane(sum_shape=32, steps=4, multiply="dsp")
    assert lane.multiply == "fabric"     # more than one step is always in fabric
    Simulator(lane)


@pytest.mark.parametrize("steps, roundings, multiply", [
    (1, ("double",), "dsp"), (1, ("double",), "fabric"), (1, ROUNDINGS, "fabric"),
    (2, ("double",), "fabric"), (4, ROUNDINGS, "fabric"), (8, ("ruy",), "fabric")])
def test_result_comes_latency_cycles_after_valid(steps, roundings, multiply):
    """The lane's result_valid rises exactly ``latency`` cycles after its one input (what the
    requantizers and the top's output queue are sized by)."""
    lane = RequantLane(sum_shape=32, steps=steps, roundings=roundings, multiply=multiply)
    seen = []

    async def bench(ctx):
        ctx.set(lane.multiplier, 1 << 30)
        ctx.set(lane.sum, 1000)
        ctx.set(lane.activation_min, -128)
        ctx.set(lane.activation_max, 127)
        ctx.set(lane.valid, 1)
        await ctx.tick()
        ctx.set(lane.valid, 0)
        for cycle in range(1, lane.latency + 4):
            if ctx.get(lane.result_valid):
                seen.append(cycle)
            await ctx.tick()

    sim = Simulator(lane)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [lane.latency]

# amaranth: UnusedElaboratable=no
"""MeanUnit against golden.ops.mean (LiteRT's reference MEAN over H and W) in Amaranth's
simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pwconv.config import ArrayConfig
from pwconv.golden import ops
from pwconv.hw.engine.mean import MeanUnit, mean_config, mean_layout

CFG = ArrayConfig(rows=2, cols=2, max_channels=64, max_filters=64, weight_depth=64)


def _unit(**kwargs):
    params = dict(lanes=4, max_channels=16, max_pixels=64)
    params.update(kwargs)
    unit = MeanUnit(CFG, **params)
    unit._MustUse__silence = True       # tests of its parameters never elaborate it
    return unit


def test_init():
    unit = _unit()
    assert (unit.lanes, unit.max_channels, unit.max_pixels, unit.max_groups) == (4, 16, 64, 4)


@pytest.mark.parametrize("kwargs, error, message", [
    ({"lanes": 0}, ValueError, r"^Lane count must be between 1 and 64, not 0$"),
    ({"max_pixels": 1 << 25}, ValueError,
     r"^Maximum pixel count must be between 1 and 16777216, not 33554432$"),
    ({"max_channels": None}, TypeError,
     r"^Maximum channel count must be a positive integer, not None$"),
])
def test_init_wrong(kwargs, error, message):
    with pytest.raises(error, match=message):
        _unit(**kwargs)


@pytest.mark.parametrize("kwargs, message", [
    ({"pixels": 65}, r"^pixels must be an integer between 1 and 64, not 65$"),
    ({"channels": 0}, r"^channels must be an integer between 1 and 16, not 0$"),
    ({"input_zero_point": -129},
     r"^input_zero_point must be an integer between -128 and 127, not -129$"),
])
def test_mean_config_wrong(kwargs, message):
    args = dict(pixels=4, channels=4, input_scale=0.1, input_zero_point=0, output_scale=0.1,
                output_zero_point=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        mean_config(_unit(), **args)


def simulate(unit, tensors, *, seed=0, idle=0.0, stall=0.0):
    """Run MEANs of ``(x [H, W, C], config)`` back to back; returns each output [C]."""
    rng = np.random.default_rng(seed)
    lanes = unit.lanes
    results = []

    def pack(row):
        padded = np.zeros(lanes, np.int64)
        padded[:len(row)] = row
        return sum((int(v) & 0xff) << (8 * i) for i, v in enumerate(padded))

    async def bench(ctx):
        for x, config in tensors:
            h, w, c = x.shape
            groups = config["groups"]
            beats = [pack(x[p // w, p % w, g * lanes:(g + 1) * lanes]) for p in range(h * w)
                     for g in range(groups)]
            ctx.set(unit.layer, mean_layout(unit).const(config))
            ctx.set(unit.start, 1)
            await ctx.tick()
            ctx.set(unit.start, 0)
            out, sent = [], 0
            for _ in range(20 * len(beats) + 200):
                offer = sent < len(beats) and rng.random() >= idle
                ctx.set(unit.i.valid, offer)
                if offer:
                    ctx.set(unit.i.payload.as_value(), beats[sent])
                ready = bool(rng.random() >= stall)
                ctx.set(unit.o.ready, ready)
                if offer and ctx.get(unit.i.ready):
                    sent += 1
                if ready and ctx.get(unit.o.valid):
                    out.append(ctx.get(unit.o.payload.as_value()))
                await ctx.tick()
                if len(out) == groups and not ctx.get(unit.busy):
                    break
            ctx.set(unit.i.valid, 0)
            assert sent == len(beats) and len(out) == groups, (sent, len(out))
            values = np.array([[(v >> (8 * i)) & 0xff for i in range(lanes)] for v in out])
            values = np.where(values >= 128, values - 256, values).astype(np.int8)
            results.append(values.reshape(-1)[:c])

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_sim_matches_golden():
    """MEANs back to back: one-beat pixels, partial last groups, a lone pixel, scales that
    fold differently, random stalls."""
    unit = _unit()
    rng = np.random.default_rng(27)
    cases = []
    for h, w, c in ((3, 4, 3), (7, 7, 16), (1, 1, 5), (5, 3, 9), (8, 8, 4)):
        x = rng.integers(-128, 128, size=(h, w, c), dtype=np.int8)
        settings = dict(input_scale=float(rng.uniform(0.01, 0.1)),
                        input_zero_point=int(rng.integers(-128, 128)),
                        output_scale=float(rng.uniform(0.005, 0.1)),
                        output_zero_point=int(rng.integers(-20, 20)))
        y = ops.mean(x[None], (1, 2), keep_dims=False, **settings)[0]
        cases.append((x, mean_config(unit, pixels=h * w, channels=c, **settings), y))
    outs = simulate(unit, [(x, config) for x, config, _ in cases], seed=3, idle=0.3,
                    stall=0.5)
    for (x, _, y), out in zip(cases, outs):
        np.testing.assert_array_equal(out, y, err_msg=f"shape {x.shape}")

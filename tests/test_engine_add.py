# amaranth: UnusedElaboratable=no
"""AddUnit against golden.ops.add (TFLite's reference ADD) in Amaranth's simulator."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pwconv.config import ArrayConfig
from pwconv.golden import ops
from pwconv.hw.engine.add import AddUnit, add_config, add_layout

CFG = ArrayConfig(rows=2, cols=2, max_channels=64, max_filters=64, weight_depth=64)


def _unit(**kwargs):
    unit = AddUnit(kwargs.pop("cfg", CFG), **kwargs)
    unit._MustUse__silence = True       # tests of its parameters never elaborate it
    return unit


def test_init():
    unit = _unit(lanes=3)
    assert unit.lanes == 3
    assert unit.fifo_depth == unit.latency + 2


@pytest.mark.parametrize("lanes, error, message", [
    (0, ValueError, r"^Lane count must be between 1 and 64, not 0$"),
    ("4", TypeError, r"^Lane count must be a positive integer, not '4'$"),
])
def test_init_wrong_lanes(lanes, error, message):
    with pytest.raises(error, match=message):
        _unit(lanes=lanes)


def test_init_wrong_cfg():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not None$"):
        AddUnit(None)


@pytest.mark.parametrize("kwargs, message", [
    ({"output_zero_point": 200},
     r"^output_zero_point must be an integer between -128 and 127, not 200$"),
    ({"zero_points": (0, -129)},
     r"^input zero point must be an integer between -128 and 127, not -129$"),
    ({"activation_min": 3, "activation_max": 2}, r"^activation_min 3 is above activation_max 2$"),
])
def test_add_config_wrong(kwargs, message):
    args = dict(scales=(0.1, 0.2), zero_points=(0, 0), output_scale=0.3, output_zero_point=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        add_config(**args)


def random_add(rng, pixels, channels):
    """Two int8 tensors, TFLite-style scales and zero points, and golden's ADD of them."""
    x1 = rng.integers(-128, 128, size=(pixels, channels), dtype=np.int8)
    x2 = rng.integers(-128, 128, size=(pixels, channels), dtype=np.int8)
    scales = tuple(float(s) for s in rng.uniform(0.01, 0.2, size=2))
    zero_points = tuple(int(z) for z in rng.integers(-128, 128, size=2))
    output_scale = float(rng.uniform(0.5, 2.0) * max(scales))
    zp_out = int(rng.integers(-30, 30))
    lo, hi = (-128, 127) if rng.random() < 0.5 else (int(rng.integers(-128, -40)),
                                                       int(rng.integers(40, 128)))
    settings = dict(scales=scales, zero_points=zero_points, output_scale=output_scale,
                    output_zero_point=zp_out, activation_min=lo, activation_max=hi)
    y = ops.add(x1, x2, **settings)
    return x1, x2, add_config(**settings), y


def _pack(row, lanes):
    padded = np.zeros(lanes, np.int64)
    padded[:len(row)] = row
    return sum((int(v) & 0xff) << (8 * i) for i, v in enumerate(padded))


def simulate(unit, x1, x2, config, *, seed=0, idle=0.0, stall=0.0):
    """Stream x1, x2 ([P, C], C split in beats of ``lanes``) through ``unit``; returns the
    output [P, C] and the cycles from the first offer to the last output."""
    lanes = unit.lanes
    pixels, channels = x1.shape
    groups = -(-channels // lanes)
    beats = [[_pack(x[p, g * lanes:(g + 1) * lanes], lanes) for p in range(pixels)
              for g in range(groups)] for x in (x1, x2)]
    rng = np.random.default_rng(seed)
    out, cycles = [], [0]

    async def bench(ctx):
        ctx.set(unit.layer, add_layout().const(config))
        sent = [0, 0]
        for _ in range(20 * len(beats[0]) + 200):
            for k, port in enumerate((unit.a, unit.b)):
                offer = sent[k] < len(beats[k]) and rng.random() >= idle
                ctx.set(port.valid, offer)
                if offer:
                    ctx.set(port.payload.as_value(), beats[k][sent[k]])
            ready = bool(rng.random() >= stall)
            ctx.set(unit.o.ready, ready)
            for k, port in enumerate((unit.a, unit.b)):
                if ctx.get(port.valid) and ctx.get(port.ready):
                    sent[k] += 1
            if ready and ctx.get(unit.o.valid):
                out.append(ctx.get(unit.o.payload.as_value()))
            await ctx.tick()
            cycles[0] += 1
            if len(out) == len(beats[0]) and not ctx.get(unit.busy):
                break
        assert sent == [len(beats[0])] * 2 and len(out) == len(beats[0]), (sent, len(out))
        ctx.set(unit.o.ready, 1)
        for _ in range(5):
            await ctx.tick()
            assert not ctx.get(unit.o.valid), "an extra output beat"

    sim = Simulator(unit)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    values = np.array([[(w >> (8 * i)) & 0xff for i in range(lanes)] for w in out], np.int64)
    values = np.where(values >= 128, values - 256, values).astype(np.int8)
    return values.reshape(pixels, groups * lanes)[:, :channels], cycles[0]


@pytest.mark.parametrize("lanes, pixels, channels, idle, stall", [
    (4, 12, 7, 0.3, 0.3),
    (2, 30, 2, 0.0, 0.0),
    (3, 20, 9, 0.1, 0.8),
])
def test_sim_matches_golden(lanes, pixels, channels, idle, stall):
    rng = np.random.default_rng(lanes * 100 + channels)
    x1, x2, config, y = random_add(rng, pixels, channels)
    out, cycles = simulate(_unit(lanes=lanes), x1, x2, config, seed=lanes, idle=idle,
                           stall=stall)
    np.testing.assert_array_equal(out, y)
    if not idle and not stall:      # a beat per cycle
        assert cycles <= pixels * -(-channels // lanes) + _unit(lanes=lanes).latency + 2


def test_sim_extremes():
    """Every int8 value of one input against every fifth of the other, zero points at the
    ends, scales far apart."""
    grid = np.arange(-128, 128, dtype=np.int64)
    x1 = np.repeat(grid, 52).astype(np.int8).reshape(-1, 16)
    x2 = np.tile(grid[::5], 256).astype(np.int8).reshape(-1, 16)
    settings = dict(scales=(0.003, 0.9), zero_points=(-128, 127), output_scale=0.5,
                    output_zero_point=-5)
    y = ops.add(x1, x2, **settings)
    out, _ = simulate(_unit(lanes=16), x1, x2, add_config(**settings))
    np.testing.assert_array_equal(out, y)

# amaranth: UnusedElaboratable=no
"""DepthwiseEngine against golden.ops.depthwise_conv2d: Amaranth simulator and cocotb."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.golden import ops
from pwconv.golden.xnnpack import depthwise_conv2d_acc
from pwconv.hw.engine import depthwise as dw
from pwconv.hw.engine.depthwise import DepthwiseEngine

CFG = ArrayConfig(rows=2, cols=2, max_channels=64, max_filters=64, weight_depth=64)


def _engine(**kwargs):
    cfg = kwargs.pop("cfg", CFG)
    params = dict(lanes=4, max_width=9, max_height=9, max_channels=12, max_kernel=5)
    params.update(kwargs)
    engine = DepthwiseEngine(cfg, **params)
    engine._MustUse__silence = True     # tests of its parameters never elaborate it
    return engine


# Elaboration parameters.

def test_init():
    engine = _engine()
    assert (engine.lanes, engine.max_width, engine.max_height, engine.max_channels,
            engine.max_kernel, engine.max_groups, engine.row_slots) == (4, 9, 9, 12, 5, 3, 7)
    assert engine.macs == 4
    assert engine.line_buffer_bytes == 7 * 9 * 3 * 4


def test_init_wrong_cfg():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not 3$"):
        DepthwiseEngine(3)


@pytest.mark.parametrize("lanes", [0, 65])
def test_init_wrong_lanes(lanes):
    with pytest.raises(ValueError, match=rf"^Lane count must be between 1 and 64, not {lanes}$"):
        _engine(lanes=lanes)


@pytest.mark.parametrize("name, label", [("lanes", "Lane count"), ("max_width", "Maximum width"),
                                         ("max_height", "Maximum height"),
                                         ("max_channels", "Maximum channel count")])
def test_init_wrong_type(name, label):
    with pytest.raises(TypeError, match=rf"^{label} must be a positive integer, not '4'$"):
        _engine(**{name: "4"})


def test_init_wrong_size():
    with pytest.raises(ValueError, match=r"^Maximum width must be between 1 and 8192, not 0$"):
        _engine(max_width=0)
    with pytest.raises(ValueError, match=r"^Maximum channel count must be between 1 and 65536, "
                                         r"not 65537$"):
        _engine(max_channels=65537)


def test_init_wrong_row_bytes():
    with pytest.raises(ValueError, match=r"^Maximum row bytes must be a multiple of 4 \(lanes\) "
                                         r"between 4 and 108 \(max_width \* max_channels, "
                                         r"rounded up to whole lanes\), not 110$"):
        _engine(max_row_bytes=110)
    with pytest.raises(TypeError, match=r"^Maximum row bytes must be a positive integer, "
                                        r"not 1.5$"):
        _engine(max_row_bytes=1.5)


@pytest.mark.parametrize("requant_lanes", [0, 3, 8, 1.0])
def test_init_wrong_requant_lanes(requant_lanes):
    with pytest.raises(ValueError, match=r"^Requantization lanes must divide the 4 lanes into "
                                         r"at most 9 slices \(a 3x3 output beat every 9 "
                                         r"cycles\), not "):
        _engine(requant_lanes=requant_lanes)


def test_init_requant_lanes_default():
    assert [_engine(lanes=n).requant_lanes for n in (1, 4, 9, 16, 18, 32)] == [1, 1, 1, 2, 2, 4]
    assert _engine(lanes=16).requant_slices == 8


@pytest.mark.parametrize("kernel", [1, 4, 7, True, "3"])
def test_init_wrong_kernel(kernel):
    with pytest.raises(ValueError, match=r"^Maximum kernel must be 3 or 5, not "):
        _engine(max_kernel=kernel)


# Run-time configuration.

def _layer(engine, **kwargs):
    args = dict(height=5, width=5, channels=6, kernel=3, stride=1, padding="SAME",
                input_zero_point=0, output_zero_point=0)
    args.update(kwargs)
    return dw.layer_config(engine, **args)


def test_layer_config():
    engine = _engine()
    config = _layer(engine, height=7, width=6, kernel=5, stride=2)
    assert (config["out_height"], config["out_width"], config["pad_top"],
            config["pad_left"], config["groups"]) == (4, 3, 2, 1, 2)
    assert dw.layer_layout(engine).const(config)["out_height"] == 4


@pytest.mark.parametrize("kwargs, message", [
    ({"op": "min_pool"}, r"^op must be one of conv, max_pool, average_pool, not 'min_pool'$"),
    ({"op": "max_pool", "kernel": 0}, r"^pool kernel must be a positive integer, not 0$"),
    ({"op": "max_pool", "kernel": 6}, r"^kernel 6 is larger than the engine's maximum, 5$"),
    ({"width": 10}, r"^width must be between 1 and 9, not 10$"),
    ({"channels": 13}, r"^channels must be between 1 and 12, not 13$"),
    ({"kernel": 7}, r"^kernel must be 3 or 5, not 7$"),
    ({"stride": 3}, r"^stride must be 1 or 2, not 3$"),
    ({"padding": "FULL"}, r"^padding must be SAME or VALID, not 'FULL'$"),
    ({"input_zero_point": 128}, r"^input_zero_point must be between -128 and 127, not 128$"),
    ({"activation_min": 5, "activation_max": 4},
     r"^activation_min 5 is above activation_max 4$"),
    ({"height": 2, "padding": "VALID"},
     r"^input 2x5 is smaller than the 3x3 filter with VALID padding$"),
])
def test_layer_config_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _layer(_engine(), **kwargs)


def test_layer_config_wrong_row_bytes():
    with pytest.raises(ValueError, match=r"^a row of 5 x 6 channels takes 40 bytes of line "
                                         r"buffer, more than the engine's 36$"):
        _layer(_engine(max_row_bytes=36), width=5, channels=6)


def test_layer_config_wrong_kernel_for_build():
    with pytest.raises(ValueError, match=r"^kernel 5 is larger than the engine's maximum, 3$"):
        _layer(_engine(max_kernel=3), kernel=5)


def test_layer_config_wrong_rounding():
    engine = _engine(cfg=ArrayConfig(roundings=("double",)))
    with pytest.raises(ValueError, match=r"^rounding 'float' is not in this build \(double\)$"):
        _layer(engine, rounding="float")


# Simulation against golden.

def random_layer(rng, *, height, width, channels, kernel, stride, padding, rounding):
    """A TFLite-quantized random depthwise layer and its golden output."""
    x = rng.integers(-128, 128, size=(height, width, channels), dtype=np.int8)
    w = rng.integers(-127, 128, size=(1, kernel, kernel, channels), dtype=np.int8)
    bias = rng.integers(-20000, 20000, size=channels).astype(np.int32)
    zp_in, zp_out = (int(v) for v in rng.integers(-20, 20, size=2))
    lo, hi = (-128, 127) if rng.random() < 0.5 else (int(rng.integers(-128, -60)),
                                                       int(rng.integers(60, 128)))
    input_scale, output_scale = 0.05, float(rng.uniform(0.05, 0.3))
    weight_scales = rng.uniform(0.002, 0.02, size=channels)
    mult, shift, scale = golden.layer_requant_params(input_scale, weight_scales, output_scale,
                                                     rounding)
    common = dict(stride=(stride, stride), padding=padding)
    if rounding == "double":     # TFLite's reference kernel itself
        y = ops.depthwise_conv2d(x[None], w, bias, input_zero_point=zp_in,
                                 output_zero_point=zp_out, multiplier=mult, shift=shift,
                                 activation_min=lo, activation_max=hi, **common)[0]
    else:
        acc = depthwise_conv2d_acc(x[None], w, bias, input_zero_point=zp_in, **common)[0]
        y = golden.requantize(acc, mult, shift, zp_out, lo, hi, rounding=rounding, scale=scale)
    if rounding == "float":
        mult = np.asarray(scale, np.float32).view(np.int32)
        shift = np.zeros(channels, np.int64)
    return {
        "x": x, "w": w, "bias": bias, "mult": mult, "shift": shift, "y": y,
        "settings": dict(height=height, width=width, channels=channels, kernel=kernel,
                         stride=stride, padding=padding, input_zero_point=zp_in,
                         output_zero_point=zp_out, activation_min=lo, activation_max=hi,
                         rounding=rounding),
    }


def simulate(engine, layers, *, seed=0, in_idle=0.0, out_stall=0.0, extra=None):
    """Run ``layers`` back to back on ``engine`` in Amaranth's simulator; returns each layer's
    output tensor and cycle count (from start to the last output taken). ``extra``: another
    testbench to run beside it."""
    rng = np.random.default_rng(seed)
    results = []

    async def bench(ctx):
        for layer in layers:
            config = dw.layer_config(engine, **layer["settings"])
            for port, words in ((engine.weights, dw.weight_words(engine, layer["w"])),
                                (engine.params, dw.param_words(engine, layer["bias"],
                                                               layer["mult"], layer["shift"]))):
                ctx.set(port.valid, 1)
                for word in words:
                    ctx.set(port.payload.as_value(), word)
                    assert ctx.get(port.ready)
                    await ctx.tick()
                ctx.set(port.valid, 0)
            ctx.set(engine.layer, dw.layer_layout(engine).const(config))
            ctx.set(engine.start, 1)
            await ctx.tick()
            ctx.set(engine.start, 0)
            beats = dw.input_beats(engine, layer["x"])
            expected = config["out_height"] * config["out_width"] * config["groups"]
            out, fed, cycles = [], 0, 0
            limit = 20 * (dw.layer_cycles(engine, config) + len(beats)) + 500
            while len(out) < expected or ctx.get(engine.busy):
                assert not (ctx.get(engine.weights.ready) or ctx.get(engine.params.ready)) \
                    or not ctx.get(engine.busy), "a load port is ready during a layer"
                offer = fed < len(beats) and rng.random() >= in_idle
                ctx.set(engine.i.valid, offer)
                if offer:
                    ctx.set(engine.i.payload.as_value(), beats[fed])
                ready = bool(rng.random() >= out_stall)
                ctx.set(engine.o.ready, ready)
                if offer and ctx.get(engine.i.ready):
                    fed += 1
                if ready and ctx.get(engine.o.valid):
                    out.append(ctx.get(engine.o.payload.as_value()))
                    assert len(out) <= expected, "more output beats than the layer has"
                await ctx.tick()
                cycles += 1
                assert cycles < limit, f"timeout: {len(out)} of {expected} beats, {fed} fed"
            ctx.set(engine.i.valid, 0)
            ctx.set(engine.o.ready, 0)
            assert fed == len(beats)
            results.append((dw.output_tensor(engine, out, config["out_height"],
                                             config["out_width"],
                                             layer["settings"]["channels"]), cycles))

    sim = Simulator(engine)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    if extra is not None:
        sim.add_testbench(extra, background=True)
    sim.run()
    return results


def _check(engine, layers, **kwargs):
    for index, (layer, (y, _)) in enumerate(zip(layers, simulate(engine, layers, **kwargs))):
        mismatch = np.argwhere(y != layer["y"])
        assert not mismatch.size, (f"layer {index} {layer['settings']}: {len(mismatch)} of "
                                   f"{y.size} outputs differ, first at {mismatch[0].tolist()}: "
                                   f"{y[tuple(mismatch[0])]} != {layer['y'][tuple(mismatch[0])]}")


# (kernel, stride, padding, rounding, height, width, channels): every kernel, stride and
# padding, each rounding mode, channel counts that fill and do not fill the last group.
CASES = [
    (3, 1, "SAME", "double", 5, 6, 6),
    (3, 2, "VALID", "single", 7, 5, 4),
    (5, 1, "VALID", "ruy", 6, 7, 5),
    (5, 2, "SAME", "float", 6, 5, 8),
    (3, 2, "SAME", "double", 6, 7, 3),
    (5, 1, "SAME", "double", 5, 4, 7),
]


def test_sim_matches_golden():
    """Every case back to back in one simulation, with random stalls on input and output."""
    rng = np.random.default_rng(26)
    layers = [random_layer(rng, height=h, width=w, channels=c, kernel=k, stride=s, padding=p,
                           rounding=r) for k, s, p, r, h, w, c in CASES]
    _check(_engine(), layers, seed=1, in_idle=0.3, out_stall=0.3)



def test_sim_throughput():
    """Without stalls a layer takes its taps (a cycle each), plus the first rows' load and the
    pipeline: input and compute overlap."""
    engine = _engine()
    rng = np.random.default_rng(7)
    layers = [random_layer(rng, height=h, width=w, channels=8, kernel=k, stride=s, padding=p,
                           rounding="double")
              for k, s, p, h, w in ((3, 1, "SAME", 8, 8), (5, 2, "SAME", 9, 9),
                                    (3, 2, "VALID", 8, 8))]
    for layer, (y, cycles) in zip(layers, simulate(engine, layers)):
        np.testing.assert_array_equal(y, layer["y"])
        config = dw.layer_config(engine, **layer["settings"])
        taps = dw.layer_cycles(engine, config)
        first_rows = (config["kernel"] - config["pad_top"]) * config["width"] * config["groups"]
        assert taps < cycles <= taps + first_rows + engine.result_latency + 12, \
            (layer["settings"], cycles, taps, first_rows)


@pytest.mark.parametrize("requant_lanes", [2, 4])
def test_sim_requant_lanes(requant_lanes):
    """More requantization lanes (fewer slices per beat), a conv beside a 1x1 max pool (a beat
    per cycle, the lanes bypassed)."""
    rng = np.random.default_rng(40 + requant_lanes)
    layers = [random_layer(rng, height=5, width=4, channels=7, kernel=3, stride=1,
                           padding="SAME", rounding="float"),
              random_pool(rng, op="max_pool", height=3, width=4, channels=8, kernel=1,
                          stride=1, padding="VALID")]
    _check(_engine(requant_lanes=requant_lanes), layers, seed=5, in_idle=0.2, out_stall=0.2)


def test_sim_fabric_macs():
    """Products and pool dividers from fabric adders; pools smaller than the 4 slices a beat
    takes through the shared lane (1x1 and 2x2: the window walk waits for the lane)."""
    rng = np.random.default_rng(44)
    layers = [random_layer(rng, height=5, width=5, channels=6, kernel=5, stride=1,
                           padding="SAME", rounding="single"),
              random_pool(rng, op="average_pool", height=5, width=4, channels=6, kernel=2,
                          stride=1, padding="SAME"),
              random_pool(rng, op="max_pool", height=3, width=3, channels=5, kernel=1,
                          stride=1, padding="VALID")]
    _check(_engine(fabric_macs=True), layers, seed=6, in_idle=0.1, out_stall=0.1)


def test_init_wrong_fabric_macs():
    with pytest.raises(TypeError, match=r"^fabric_macs must be True or False, not 1$"):
        _engine(fabric_macs=1)


def test_sim_one_rounding_fabric_tight_rows():
    """A build with one rounding mode, fabric multiplies and a line buffer exactly one row of
    the layer wide; the output stalled most of the time."""
    cfg = ArrayConfig(roundings=("ruy",), requant_multiply="fabric")
    engine = _engine(cfg=cfg, max_row_bytes=6 * 8)
    rng = np.random.default_rng(8)
    layers = [random_layer(rng, height=7, width=6, channels=7, kernel=3, stride=1,
                           padding="SAME", rounding="ruy"),
              random_layer(rng, height=6, width=6, channels=5, kernel=5, stride=2,
                           padding="SAME", rounding="ruy")]
    _check(engine, layers, seed=2, in_idle=0.1, out_stall=0.85)


def test_sim_start_ignored_while_busy():
    """A second start pulse during a layer changes nothing."""
    engine = _engine()
    rng = np.random.default_rng(9)
    layer = random_layer(rng, height=5, width=5, channels=4, kernel=3, stride=1,
                         padding="VALID", rounding="double")
    results = []

    async def poke(ctx):
        await ctx.tick().until(engine.busy)
        for _ in range(40):
            await ctx.tick()
        ctx.set(engine.start, 1)
        await ctx.tick()
        ctx.set(engine.start, 0)

    (y, _), = simulate(engine, [layer], extra=poke)
    np.testing.assert_array_equal(y, layer["y"])


def random_pool(rng, *, op, height, width, channels, kernel, stride, padding, low_share=0.0):
    """A random MAX_POOL_2D or AVERAGE_POOL_2D layer and golden's output; ``low_share`` of
    the inputs -128 (windows whose in-image taps are all -128)."""
    x = rng.integers(-128, 128, size=(height, width, channels), dtype=np.int8)
    x[rng.random(x.shape) < low_share] = -128
    lo, hi = (-128, 127) if rng.random() < 0.5 else (int(rng.integers(-128, -60)),
                                                       int(rng.integers(60, 128)))
    pool = ops.max_pool2d if op == "max_pool" else ops.average_pool2d
    y = pool(x[None], (kernel, kernel), stride=(stride, stride), padding=padding,
             activation_min=lo, activation_max=hi)[0]
    zeros = np.zeros(channels, np.int64)
    return {
        "x": x, "w": np.zeros((1, kernel, kernel, channels), np.int8), "bias": zeros,
        "mult": zeros, "shift": zeros, "y": y,
        "settings": dict(height=height, width=width, channels=channels, kernel=kernel,
                         stride=stride, padding=padding, activation_min=lo, activation_max=hi,
                         op=op),
    }


def test_sim_pools_match_golden():
    """MAX_POOL_2D and AVERAGE_POOL_2D on the same window walk, between depthwise layers:
    2x2/2 and 3x3/2 (ResNet's), SAME windows cut by the edges (the average divides by the
    in-image taps), a 5x5 average, random stalls."""
    rng = np.random.default_rng(31)
    layers = [
        random_pool(rng, op="max_pool", height=6, width=7, channels=6, kernel=2, stride=2,
                    padding="VALID"),
        random_layer(rng, height=5, width=5, channels=4, kernel=3, stride=1, padding="SAME",
                     rounding="double"),
        random_pool(rng, op="max_pool", height=7, width=6, channels=5, kernel=3, stride=2,
                    padding="SAME", low_share=0.9),
        random_pool(rng, op="average_pool", height=6, width=5, channels=7, kernel=3,
                    stride=1, padding="SAME"),
        random_pool(rng, op="average_pool", height=7, width=7, channels=4, kernel=5,
                    stride=2, padding="SAME"),
        random_pool(rng, op="average_pool", height=5, width=6, channels=3, kernel=2,
                    stride=1, padding="VALID"),
    ]
    _check(_engine(), layers, seed=4, in_idle=0.2, out_stall=0.3)


def test_reciprocals_exact():
    """The average pool's reciprocal table divides exactly up to 7x7 windows (checked for
    every sum when the table is built)."""
    bits, table = dw._reciprocals(49)
    assert table[1] == 1 << 20 and bits == 21
    assert table[3] == 349526


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(8))
def test_sim_random_layers(seed):
    """Random shapes, kernels, strides, paddings and modes, then pools, random stalls (slow:
    make test-engine)."""
    rng = np.random.default_rng(1000 + seed)
    engine = _engine(max_width=11, max_height=11, max_channels=13)
    layers = []
    for index in range(5):
        op = "conv" if index < 3 else str(rng.choice(["max_pool", "average_pool"]))
        kernel = int(rng.choice([3, 5]) if op == "conv" else rng.integers(1, 6))
        stride, padding = int(rng.choice([1, 2])), str(rng.choice(["SAME", "VALID"]))
        low = kernel if padding == "VALID" else 1
        shape = dict(height=int(rng.integers(low, 12)), width=int(rng.integers(low, 12)),
                     channels=int(rng.integers(1, 14)), kernel=kernel, stride=stride,
                     padding=padding)
        if op == "conv":
            layers.append(random_layer(rng, rounding=str(rng.choice(CFG.roundings)), **shape))
        else:
            layers.append(random_pool(rng, op=op, low_share=float(rng.uniform(0, 0.5)),
                                      **shape))
    _check(engine, layers, seed=seed, in_idle=float(rng.uniform(0, 0.6)),
           out_stall=float(rng.uniform(0, 0.6)))


# The exported Verilog under cocotb.

COCOTB_PARAMS = dict(lanes=4, max_width=8, max_height=8, max_channels=8, max_kernel=5)


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_cocotb_matches_golden(simulator):
    from pwconv.sim import depthwise_runner
    cfg = ArrayConfig(roundings=("double", "float"))
    engine = DepthwiseEngine(cfg, **COCOTB_PARAMS)
    engine._MustUse__silence = True     # the runner exports its own copy
    rng = np.random.default_rng(260)
    layers = [random_layer(rng, height=6, width=5, channels=6, kernel=3, stride=1,
                           padding="SAME", rounding="double"),
              random_layer(rng, height=7, width=8, channels=8, kernel=5, stride=2,
                           padding="VALID", rounding="float"),
              random_pool(rng, op="average_pool", height=5, width=6, channels=5, kernel=3,
                          stride=2, padding="SAME")]
    jobs = [{"layer": dw.layer_config(engine, **layer["settings"]),
             "weight_words": dw.weight_words(engine, layer["w"]),
             "param_words": dw.param_words(engine, layer["bias"], layer["mult"],
                                           layer["shift"]),
             "input_words": dw.input_beats(engine, layer["x"])} for layer in layers]
    out = depthwise_runner.run_layers(cfg, COCOTB_PARAMS, jobs, simulator=simulator, seed=3,
                                      in_idle=0.25, out_stall=0.25)
    for layer, job, (words, cycles) in zip(layers, jobs, out):
        config = job["layer"]
        y = dw.output_tensor(engine, words, config["out_height"], config["out_width"],
                             layer["settings"]["channels"])
        np.testing.assert_array_equal(y, layer["y"])
        assert cycles >= dw.layer_cycles(engine, config)


@pytest.mark.slow
def test_cocotb_mobilenet_layers():
    """Two of MobileNetV2 1.0/224's depthwise layers at 16 lanes on Verilator, no stalls
    (slow: make test-engine): bit-exact, and the stride-1 layer within 2% of a tap per cycle
    (measured 43,034 cycles for 42,336 taps: 15.7 MACs/cycle)."""
    from pwconv.sim import depthwise_runner
    cfg = ArrayConfig(roundings=("double", "ruy", "float"))
    params = dict(lanes=16, max_width=14, max_height=14, max_channels=576, max_kernel=3)
    engine = DepthwiseEngine(cfg, **params)
    engine._MustUse__silence = True     # the runner exports its own copy
    rng = np.random.default_rng(1)
    layers = [random_layer(rng, height=14, width=14, channels=384, kernel=3, stride=1,
                           padding="SAME", rounding="double"),
              random_layer(rng, height=14, width=14, channels=576, kernel=3, stride=2,
                           padding="SAME", rounding="double")]
    jobs = [{"layer": dw.layer_config(engine, **layer["settings"]),
             "weight_words": dw.weight_words(engine, layer["w"]),
             "param_words": dw.param_words(engine, layer["bias"], layer["mult"],
                                           layer["shift"]),
             "input_words": dw.input_beats(engine, layer["x"])} for layer in layers]
    out = depthwise_runner.run_layers(cfg, params, jobs, simulator="verilator")
    for layer, job, (words, cycles) in zip(layers, jobs, out):
        config = job["layer"]
        y = dw.output_tensor(engine, words, config["out_height"], config["out_width"],
                             layer["settings"]["channels"])
        np.testing.assert_array_equal(y, layer["y"])
        taps = dw.layer_cycles(engine, config)
        first_rows = (config["kernel"] - config["pad_top"]) * config["width"] * config["groups"]
        assert taps < cycles <= taps + first_rows + 100
    assert out[0][1] <= 1.02 * dw.layer_cycles(engine, jobs[0]["layer"])

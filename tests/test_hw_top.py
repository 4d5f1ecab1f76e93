"""PointwiseConv top in Amaranth's simulator: bit-exact vs golden under backpressure, throughput."""

import numpy as np
import pytest

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.host.layer import golden_output, random_layer
from pwconv.host.program import compile_layer, pack_pixels, unpack_results
from pwconv.hw.top import PointwiseConv, top_latency
from pwconv.sim.pysim import run_passes_top, run_top

CFG = ArrayConfig(rows=4, cols=3, max_channels=32, max_filters=32, weight_depth=32)
#: The same array with one shared requantizer (2-cycle fabric multiply: a tile every 6 cycles)
#: and iCE40 dual-8x8 multipliers, as on the iCEBreaker.
SERIAL = ArrayConfig(rows=4, cols=3, max_channels=32, max_filters=32, weight_depth=32,
                     mac_style="ice40_dual8x8", requantizer="serial", requant_steps=2)
#: The ULX3S's mapping: every requantizer lane's multiply in fabric, a third of the PEs'
#: products from fabric adders, three of the four rounding modes.
FABRIC = ArrayConfig(rows=4, cols=3, max_channels=32, max_filters=32, weight_depth=32,
                     requant_multiply="fabric", lut_macs=4, roundings=("double", "ruy", "float"),
                     weight_banks=1)
CONFIGS = pytest.mark.parametrize("cfg", [CFG, SERIAL, FABRIC],
                                  ids=["parallel", "serial", "fabric"])


def test_init_wrong_config():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not 'big'$"):
        PointwiseConv("big")


def _layer_run(channels, filters, pixels, *, seed, in_idle=0.0, out_stall=0.0, relu=False,
               raw=False, cfg=CFG):
    x, layer = random_layer((1, pixels, channels), filters, seed=seed, relu=relu)
    q = layer.quant
    x = x.reshape(pixels, channels)
    folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
    program = compile_layer(cfg, layer.w, folded, q.output_multiplier, q.output_shift,
                            output_zero_point=q.output_zero_point,
                            activation_min=q.activation_min, activation_max=q.activation_max,
                            raw=raw)
    words, cycles = run_top(cfg, program, pack_pixels(cfg, x), seed=seed, in_idle=in_idle,
                            out_stall=out_stall)
    got = unpack_results(cfg, words, pixels, filters)
    if raw:
        want = golden.conv1x1_acc(x, layer.w, layer.bias, q.input_zero_point)
    else:
        want = golden_output(x, layer)
    return got, want, cycles, program


@CONFIGS
@pytest.mark.parametrize("channels, filters", [(1, 1), (3, 2), (4, 3), (5, 4), (17, 11)])
@pytest.mark.parametrize("in_idle, out_stall", [(0.0, 0.0), (0.3, 0.6)])
def test_matches_golden(cfg, channels, filters, in_idle, out_stall):
    got, want, _, _ = _layer_run(channels, filters, 7, seed=channels * 31 + filters,
                                 in_idle=in_idle, out_stall=out_stall, relu=filters % 2 == 0,
                                 cfg=cfg)
    np.testing.assert_array_equal(got, want)


@CONFIGS
def test_raw_mode_matches_golden_accumulators(cfg):
    got, want, _, _ = _layer_run(9, 5, 6, seed=5, out_stall=0.5, raw=True, cfg=cfg)
    np.testing.assert_array_equal(got, want)


@CONFIGS
@pytest.mark.parametrize("channels", [9, 29])
def test_full_throughput_without_stalls(cfg, channels):
    """With a free-flowing source and sink, one beat enters the array every cycle, or, while a
    pixel has fewer beats than a serial requantizer's pace, one column tile per its interval."""
    pixels = 24
    got, want, cycles, program = _layer_run(channels, 7, pixels, seed=11, cfg=cfg)
    np.testing.assert_array_equal(got, want)
    busy = pixels * cfg.tile_cycles(channels) * program.tiles
    assert cycles <= busy + top_latency(cfg) + program.beats + 2
    # ...and no faster than that schedule allows (the pace is not a loose upper bound).
    assert cycles >= busy


@CONFIGS
def test_latency_is_top_latency(cfg):
    """One 1-beat pixel: its first result leaves ``top_latency`` cycles after its beat (run_top
    counts 2 more: the cycle the beat is offered and the one in which the result is seen)."""
    _, _, cycles, _ = _layer_run(3, 2, 1, seed=3, cfg=cfg)
    assert cycles == top_latency(cfg) + 2


@CONFIGS
def test_long_output_stall_loses_nothing(cfg):
    """The sink refuses almost every cycle: the queue fills, credits stop the array, no loss."""
    got, want, _, _ = _layer_run(4, 6, 30, seed=13, out_stall=0.95, cfg=cfg)
    np.testing.assert_array_equal(got, want)


#: Double-buffered configurations (the default weight_banks=2) and a single-bank one.
WIDE = ArrayConfig(rows=4, cols=3, max_channels=32, max_filters=32, weight_depth=24,
                   load_width=2)
ONE_BANK = ArrayConfig(rows=4, cols=3, max_channels=32, max_filters=32, weight_depth=32,
                       weight_banks=1)
PASS_CONFIGS = pytest.mark.parametrize("cfg", [CFG, SERIAL, WIDE, ONE_BANK],
                                       ids=["parallel", "serial", "load_width2", "one_bank"])


def _pass(cfg, channels, filters, pixels, *, seed, relu=False, raw=False):
    x, layer = random_layer((1, pixels, channels), filters, seed=seed, relu=relu)
    q = layer.quant
    x = x.reshape(pixels, channels)
    folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
    program = compile_layer(cfg, layer.w, folded, q.output_multiplier, q.output_shift,
                            output_zero_point=q.output_zero_point,
                            activation_min=q.activation_min, activation_max=q.activation_max,
                            raw=raw)
    if raw:
        want = golden.conv1x1_acc(x, layer.w, layer.bias, q.input_zero_point)
    else:
        want = golden_output(x, layer)
    return program, pack_pixels(cfg, x), want


@PASS_CONFIGS
@pytest.mark.parametrize("in_idle, out_stall", [(0.0, 0.0), (0.3, 0.5)])
def test_passes_back_to_back_match_golden(cfg, in_idle, out_stall):
    """Passes of different shapes and output settings (raw, relu, zero points), one of them
    without pixels, run back to back with their loads overlapping the previous pass: each
    bit-exact with golden, none mixed with another's weights or settings."""
    shapes = [(9, 7, 5, False, False), (3, 2, 1, True, False), (17, 11, 4, False, True),
              (5, 4, 0, False, False), (8, 6, 6, True, False), (8, 6, 3, True, False)]
    runs = [_pass(cfg, c, f, p, seed=10 + i, relu=relu, raw=raw)
            for i, (c, f, p, relu, raw) in enumerate(shapes)]
    out = run_passes_top(cfg, [(program, words) for program, words, _ in runs], seed=7,
                         in_idle=in_idle, out_stall=out_stall)
    for (program, words, want), (got, _, _), (c, f, p, _, _) in zip(runs, out, shapes):
        np.testing.assert_array_equal(unpack_results(cfg, got, p, f), want)


def _filter_passes(cfg, channels, filters, pixels, count, seed):
    """One layer split into ``count`` passes of ``filters`` each (as the host tiles F): the
    passes share their output settings but not their weights."""
    x, layer = random_layer((1, pixels, channels), filters * count, seed=seed)
    q = layer.quant
    x = x.reshape(pixels, channels)
    folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
    want = golden_output(x, layer)
    runs = []
    for k in range(count):
        part = slice(k * filters, (k + 1) * filters)
        program = compile_layer(cfg, layer.w[:, part], folded[part], q.output_multiplier[part],
                                q.output_shift[part], output_zero_point=q.output_zero_point,
                                activation_min=q.activation_min,
                                activation_max=q.activation_max)
        runs.append((program, pack_pixels(cfg, x), want[:, part]))
    return runs


def test_loads_overlap_compute():
    """Two banks: passes of one layer cost their compute cycles only, once the first pass is
    loaded (each later pass loads while its predecessor computes); one bank adds every load."""
    def total(cfg):
        runs = _filter_passes(cfg, 16, 12, 12, 4, seed=3)
        out = run_passes_top(cfg, [(program, words) for program, words, _ in runs])
        for (program, words, want), (got, _, _) in zip(runs, out):
            np.testing.assert_array_equal(unpack_results(cfg, got, 12, 12), want)
        return sum(span for _, _, span in out)

    compute = 4 * 12 * CFG.beats(16) * CFG.tiles(12)
    load = CFG.load_cycles(16, 12)
    assert compute > 3 * load      # compute-bound passes: every later load can hide
    overlapped = total(CFG)
    assert overlapped <= load + compute + top_latency(CFG) + 8
    assert total(ONE_BANK) >= 4 * load + compute + 3 * top_latency(ONE_BANK)


def test_load_bound_passes_cost_their_loads():
    """One-pixel passes (as MobileNetV2's logits layer): the load port is the bottleneck, so
    the passes take their load cycles back to back, each computed while the next loads."""
    runs = _filter_passes(CFG, 32, 12, 1, 5, seed=4)
    out = run_passes_top(CFG, [(program, words) for program, words, _ in runs])
    for (program, words, want), (got, _, _) in zip(runs, out):
        np.testing.assert_array_equal(unpack_results(CFG, got, 1, 12), want)
    load = CFG.load_cycles(32, 12)
    compute = CFG.beats(32) * CFG.tiles(12)
    assert load > compute + top_latency(CFG)
    assert sum(span for _, _, span in out) <= 5 * (load + 2) + compute + top_latency(CFG) + 4


@pytest.mark.parametrize("cfg", [ONE_BANK, FABRIC, SERIAL.single_bank()],
                         ids=["parallel", "fabric", "serial"])
def test_one_bank_loads_never_meet_pixels(cfg):
    """One bank, pixels, weights and params offered at random in the same cycles: a weight or
    parameter word is taken only in a cycle that is idle and follows an idle cycle that took no
    pixel beat, and no pixel beat is taken in a cycle that takes a load; every offered word
    and pixel is eventually taken (no deadlock) and every pixel's results come out."""
    from amaranth.sim import Simulator
    program, words, _ = _pass(cfg, cfg.rows + 1, cfg.cols + 1, 1, seed=9)
    dut = PointwiseConv(cfg)
    rng = np.random.default_rng(5)
    pixels, loads = 40, 60
    seen = {"pixels": 0, "loads": 0, "results": 0, "load_cycles_after_pixel": 0}

    async def bench(ctx):
        ctx.set(dut.layer.as_value(), program.layer_word)
        ctx.set(dut.o.ready, 1)
        beats_left = pixels * program.beats
        loads_left = loads
        previous_idle, previous_pixel = False, True
        for _ in range(20000):
            offer_pixel = beats_left > 0 and rng.random() < 0.7
            offer_weight = loads_left > 0 and rng.random() < 0.3
            offer_param = loads_left > 0 and not offer_weight and rng.random() < 0.3
            ctx.set(dut.i.valid, offer_pixel)
            ctx.set(dut.i.payload.as_value(), words[beats_left % len(words)])
            ctx.set(dut.weights.valid, offer_weight)
            ctx.set(dut.weights.payload.as_value(), program.weight_words[0])
            ctx.set(dut.params.valid, offer_param)
            ctx.set(dut.params.payload.as_value(), program.param_words[0])
            idle = ctx.get(dut.idle)
            took_pixel = offer_pixel and ctx.get(dut.i.ready)
            took_load = ((offer_weight and ctx.get(dut.weights.ready))
                         or (offer_param and ctx.get(dut.params.ready)))
            if took_load:
                assert idle and previous_idle and not previous_pixel
                assert not took_pixel
                loads_left -= 1
                seen["loads"] += 1
            beats_left -= took_pixel
            seen["pixels"] += took_pixel
            seen["results"] += ctx.get(dut.o.valid)
            previous_idle, previous_pixel = idle, took_pixel
            await ctx.tick()
            if not beats_left and not loads_left and seen["results"] == pixels * program.tiles:
                break
        assert (beats_left, loads_left) == (0, 0), "a stream was never taken"
        assert seen["results"] == pixels * program.tiles

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()

"""PointwiseConv top in Amaranth's simulator: bit-exact vs golden under backpressure, throughput."""

import numpy as np
import pytest

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.host.layer import random_layer
from pwconv.host.program import compile_layer, pack_pixels, unpack_results
from pwconv.hw.top import PointwiseConv, top_latency
from pwconv.sim.pysim import run_top

CFG = ArrayConfig(rows=4, cols=3, max_channels=32, max_filters=32, weight_depth=32)


def test_init_wrong_config():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not 'big'$"):
        PointwiseConv("big")


def _layer_run(channels, filters, pixels, *, seed, in_idle=0.0, out_stall=0.0, relu=False,
               raw=False):
    x, layer = random_layer((1, pixels, channels), filters, seed=seed, relu=relu)
    q = layer.quant
    x = x.reshape(pixels, channels)
    folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
    program = compile_layer(CFG, layer.w, folded, q.output_multiplier, q.output_shift,
                            output_zero_point=q.output_zero_point,
                            activation_min=q.activation_min, activation_max=q.activation_max,
                            raw=raw)
    words, cycles = run_top(CFG, program, pack_pixels(CFG, x), seed=seed, in_idle=in_idle,
                            out_stall=out_stall)
    got = unpack_results(CFG, words, pixels, filters)
    if raw:
        want = golden.conv1x1_acc(x, layer.w, layer.bias, q.input_zero_point)
    else:
        want = golden.conv1x1(x, layer.w, layer.bias, input_zero_point=q.input_zero_point,
                              output_zero_point=q.output_zero_point,
                              output_multiplier=q.output_multiplier,
                              output_shift=q.output_shift, activation_min=q.activation_min,
                              activation_max=q.activation_max)
    return got, want, cycles, program


@pytest.mark.parametrize("channels, filters", [(1, 1), (3, 2), (4, 3), (5, 4), (17, 11)])
@pytest.mark.parametrize("in_idle, out_stall", [(0.0, 0.0), (0.3, 0.6)])
def test_matches_golden(channels, filters, in_idle, out_stall):
    got, want, _, _ = _layer_run(channels, filters, 7, seed=channels * 31 + filters,
                                 in_idle=in_idle, out_stall=out_stall, relu=filters % 2 == 0)
    np.testing.assert_array_equal(got, want)


def test_raw_mode_matches_golden_accumulators():
    got, want, _, _ = _layer_run(9, 5, 6, seed=5, out_stall=0.5, raw=True)
    np.testing.assert_array_equal(got, want)


def test_full_throughput_without_stalls():
    """With a free-flowing source and sink, one beat enters the array every cycle."""
    pixels = 24
    got, want, cycles, program = _layer_run(9, 7, pixels, seed=11)
    np.testing.assert_array_equal(got, want)
    busy = pixels * program.beats * program.tiles
    assert cycles <= busy + top_latency(CFG) + program.beats + 2


def test_long_output_stall_loses_nothing():
    """The sink refuses almost every cycle: the queue fills, credits stop the array, no loss."""
    got, want, _, _ = _layer_run(4, 6, 30, seed=13, out_stall=0.95)
    np.testing.assert_array_equal(got, want)

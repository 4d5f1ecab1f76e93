"""Tests of pwconv.golden.conv against a naive per-pixel Python-int TFLite ConvPerChannel loop."""

import re

import numpy as np
import pytest

from pwconv.golden import (
    conv1x1,
    conv1x1_acc,
    fold_input_zero_point,
    per_channel_multipliers,
    requantize,
)

I32_MIN = -(2**31)
I32_MAX = 2**31 - 1


# --------------------------------------------------------------------------------------------
# Reference: tensorflow/lite/kernels/internal/reference/integer_ops/conv.h (ConvPerChannel),
# restricted to a 1x1 filter, stride 1, no padding, written with Python ints. Every int32
# operation of the C code goes through i32() (two's-complement wrap). No golden code is used.
# --------------------------------------------------------------------------------------------


def i32(v):
    """Wrap a Python int to int32 like a C int32_t operation on a two's-complement machine."""
    return (v + 2**31) % 2**32 - 2**31


def srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul."""
    if a == I32_MIN and b == I32_MIN:
        return I32_MAX
    ab = a * b
    num = ab + (2**30 if ab >= 0 else 1 - 2**30)
    quot = abs(num) // 2**31  # C '/' truncates toward zero
    return quot if num >= 0 else -quot


def rdbpot(x, exponent):
    """gemmlowp RoundingDivideByPOT."""
    mask = 2**exponent - 1
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + ((x & mask) > threshold)


def mbqm(x, m, shift):
    """tflite::MultiplyByQuantizedMultiplier (double rounding)."""
    left, right = (shift, 0) if shift > 0 else (0, -shift)
    return rdbpot(srdhm(i32(x * (1 << left)), m), right)


def ref_conv(x, w, bias, izp, ozp, mult, shift, act_min=-128, act_max=127, acc_only=False):
    """Naive per-pixel ConvPerChannel; returns nested Python lists shaped [..., F]."""
    x = np.asarray(x)
    lead = x.shape[:-1]
    depth = x.shape[-1]
    w = np.asarray(w).tolist()
    bias = [int(b) for b in bias]
    n_out = len(bias)
    mult = np.broadcast_to(mult, (n_out,)).tolist()
    shift = np.broadcast_to(shift, (n_out,)).tolist()
    input_offset = -izp
    pixels = x.reshape(-1, depth).tolist()
    out = []
    for px in pixels:
        row = []
        for f in range(n_out):
            acc = 0
            for c in range(depth):
                acc = i32(acc + i32(w[c][f] * (px[c] + input_offset)))
            acc = i32(acc + bias[f])
            if acc_only:
                row.append(acc)
                continue
            acc = mbqm(acc, mult[f], shift[f])
            acc = i32(acc + ozp)
            acc = max(acc, act_min)
            acc = min(acc, act_max)
            row.append(acc)
        out.append(row)
    return np.array(out, dtype=np.int64).reshape(*lead, n_out).tolist()


def hw_acc(x, w, folded_bias):
    """The hardware formulation: plain int8 x int8 MACs onto the folded bias, int32 wrap."""
    pixels = np.asarray(x).reshape(-1, np.asarray(x).shape[-1]).tolist()
    w = np.asarray(w).tolist()
    out = []
    for px in pixels:
        out.append([i32(int(b) + sum(px[c] * w[c][f] for c in range(len(px))))
                    for f, b in enumerate(folded_bias)])
    return out


# --------------------------------------------------------------------------------------------
# Random layer generators.
# --------------------------------------------------------------------------------------------


def realistic_layer(rng, lead, depth, n_out):
    """A layer with TFLite-like scales whose outputs spread over the int8 range."""
    x = rng.integers(-128, 128, size=(*lead, depth), dtype=np.int8)
    w = rng.integers(-127, 128, size=(depth, n_out), dtype=np.int8)
    izp = int(rng.integers(-128, 128))
    ozp = int(rng.integers(-30, 31))
    # like a trained layer, the bias roughly cancels the input zero point's contribution
    col_sums = w.astype(np.int64).sum(axis=0)
    bias = (izp * col_sums + rng.integers(-5000, 5000, size=n_out)).astype(np.int32)
    # std of one product ~ 74 * 73; aim for an output std of ~40 LSB
    target = 40.0 / (5400.0 * np.sqrt(depth))
    s_in = 0.02
    ws = target * rng.uniform(0.5, 2.0, size=n_out) / s_in * 0.1
    mult, shift = per_channel_multipliers(s_in, ws, 0.1)
    return x, w, bias, izp, ozp, mult, shift


def extreme_layer(rng, lead, depth, n_out):
    """A layer exercising wrap-around, saturation, any shift and extreme zero points."""
    x = rng.choice(np.array([-128, -127, -1, 0, 1, 126, 127], np.int8), size=(*lead, depth))
    x[..., ::2] = rng.integers(-128, 128, size=x[..., ::2].shape, dtype=np.int8)
    w = rng.choice(np.array([-128, -127, -1, 0, 1, 127], np.int8), size=(depth, n_out))
    bias = rng.choice(np.array([I32_MIN, I32_MIN + 1, -1, 0, I32_MAX - 1000, I32_MAX],
                               np.int64), size=n_out).astype(np.int32)
    izp = int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
    ozp = int(rng.choice([-128, 127, 0, int(rng.integers(-128, 128))]))
    mult = rng.choice(np.array([2**30, I32_MAX, 1, 1518500250, int(rng.integers(2**30, 2**31))],
                               np.int64), size=n_out).astype(np.int32)
    shift = rng.integers(-31, 31, size=n_out, dtype=np.int32)
    return x, w, bias, izp, ozp, mult, shift


LEADS = [(), (5,), (3, 4), (2, 2, 3)]


# --------------------------------------------------------------------------------------------
# Hand-worked cases.
# --------------------------------------------------------------------------------------------

# One pixel, C = 2, F = 2, input_zero_point = -1 so x - zp = [11, -19].
HAND_X = np.array([[10, -20]], dtype=np.int8)
HAND_W = np.array([[2, -3], [4, 5]], dtype=np.int8)
HAND_B = np.array([100, -50], dtype=np.int32)


def test_hand_worked_accumulators():
    # f0: 100 + 11*2 + (-19)*4 = 100 + 22 - 76 = 46
    # f1: -50 + 11*(-3) + (-19)*5 = -50 - 33 - 95 = -178
    acc = conv1x1_acc(HAND_X, HAND_W, HAND_B, input_zero_point=-1)
    assert acc.dtype == np.int32
    assert acc.tolist() == [[46, -178]]


def test_hand_worked_fold():
    # column sums of w: [2 + 4, -3 + 5] = [6, 2]; bias' = bias - (-1) * sums = [106, -48]
    folded = fold_input_zero_point(HAND_W, HAND_B, -1)
    assert folded.dtype == np.int32
    assert folded.tolist() == [106, -48]
    # hardware: 106 + 10*2 + (-20)*4 = 46 ; -48 + 10*(-3) + (-20)*5 = -178
    assert conv1x1_acc(HAND_X, HAND_W, folded, 0).tolist() == [[46, -178]]


def test_hand_worked_output():
    # f0: M = 2**30 (0.5), shift -1: SRDHM(46, 2**30) = trunc(23.5) = 23; RDBPOT(23, 1) = 12
    #     (46 * 0.25 = 11.5 -> 12); + output zp 5 = 17
    # f1: M = 2**30, shift +1: -178 * 2 = -356; SRDHM(-356, 2**30) = trunc(-178.5 + 2**-31)
    #     = -178; + 5 = -173 -> clamped to -128
    kwargs = dict(input_zero_point=-1, output_zero_point=5,
                  output_multiplier=np.array([2**30, 2**30], np.int32),
                  output_shift=np.array([-1, 1], np.int32))
    y = conv1x1(HAND_X, HAND_W, HAND_B, **kwargs)
    assert y.dtype == np.int8
    assert y.tolist() == [[17, -128]]
    # with a fused activation range [-100, 15]: 17 -> 15, -173 -> -100
    y = conv1x1(HAND_X, HAND_W, HAND_B, activation_min=-100, activation_max=15, **kwargs)
    assert y.tolist() == [[15, -100]]
    assert ref_conv(HAND_X, HAND_W, HAND_B, -1, 5, [2**30] * 2, [-1, 1], -100, 15) == [[15, -100]]


def test_hand_worked_accumulator_wraps():
    # x - zp = 127 - (-128) = 255; 255 * 127 = 32385; (2**31 - 1) + 32385 = 2**31 + 32384
    # wraps to -2**31 + 32384 = -2147451264
    acc = conv1x1_acc(np.array([127], np.int8), np.array([[127]], np.int8),
                      np.array([I32_MAX], np.int32), -128)
    assert acc.tolist() == [-2147451264]


def test_hand_worked_output_zero_point_add_wraps():
    # MBQM(2**31 - 1, 2**31 - 1, 0) = 2**31 - 2 (SRDHM: (2**62 - 2**32 + 1 + 2**30) / 2**31
    # truncated). + 127 = 2**31 + 125 wraps (int32 add in C) to -2**31 + 125 -> clamp -128.
    # With output zero point 0 there is no wrap: 2**31 - 2 -> clamp 127.
    acc = np.array([I32_MAX], np.int32)
    m = np.array([I32_MAX], np.int32)
    assert requantize(acc, m, np.array([0], np.int32), 127).tolist() == [-128]
    assert requantize(acc, m, np.array([0], np.int32), 0).tolist() == [127]


def test_hand_worked_requantize_rounding():
    # acc [-6, -5, 5, 6] * 0.25 via M = 2**30, shift -1:
    # SRDHM(-6, 2**30) = trunc((-6*2**30 + 1 - 2**30) / 2**31) = trunc(-3.5 + 2**-31) = -3;
    #   RDBPOT(-3, 1) = -1.5 -> -2
    # SRDHM(-5, 2**30) = trunc(-3 + 2**-31) = -2 (-2.5 rounds toward +inf); RDBPOT(-2, 1) = -1
    # SRDHM(5, 2**30) = trunc(3) = 3 (2.5 -> 3); RDBPOT(3, 1) = 1.5 -> 2
    # SRDHM(6, 2**30) = trunc(3.5) = 3; RDBPOT(3, 1) = 2
    # Note -5 * 0.25 = -1.25 -> -1 and 5 * 0.25 = 1.25 -> 2 (double rounding, as TFLite does)
    y = requantize(np.array([-6, -5, 5, 6], np.int32), 2**30, -1, 0)
    assert y.tolist() == [-2, -1, 2, 2]


# --------------------------------------------------------------------------------------------
# Random comparisons with the naive loop.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_conv1x1_matches_naive_loop_realistic(seed):
    rng = np.random.default_rng(seed)
    lead = LEADS[seed % len(LEADS)]
    depth, n_out = int(rng.integers(1, 24)), int(rng.integers(1, 9))
    x, w, bias, izp, ozp, mult, shift = realistic_layer(rng, lead, depth, n_out)
    y = conv1x1(x, w, bias, input_zero_point=izp, output_zero_point=ozp,
                output_multiplier=mult, output_shift=shift)
    assert y.dtype == np.int8 and y.shape == (*lead, n_out)
    assert y.tolist() == ref_conv(x, w, bias, izp, ozp, mult, shift)
    acc = conv1x1_acc(x, w, bias, izp)
    assert acc.dtype == np.int32
    assert acc.tolist() == ref_conv(x, w, bias, izp, ozp, mult, shift, acc_only=True)


def test_realistic_layers_are_not_degenerate():
    # Guard for the test above: the outputs must not all be clamped/constant.
    rng = np.random.default_rng(100)
    x, w, bias, izp, ozp, mult, shift = realistic_layer(rng, (8, 8), 16, 8)
    y = conv1x1(x, w, bias, input_zero_point=izp, output_zero_point=ozp,
                output_multiplier=mult, output_shift=shift)
    assert len(np.unique(y)) > 40
    assert np.mean((y == -128) | (y == 127)) < 0.2


@pytest.mark.parametrize("seed", range(12))
def test_conv1x1_matches_naive_loop_extreme(seed):
    rng = np.random.default_rng(1000 + seed)
    lead = LEADS[seed % len(LEADS)]
    depth, n_out = int(rng.integers(1, 20)), int(rng.integers(1, 9))
    x, w, bias, izp, ozp, mult, shift = extreme_layer(rng, lead, depth, n_out)
    amin = int(rng.integers(-128, 128))
    amax = int(rng.integers(amin, 128))
    y = conv1x1(x, w, bias, input_zero_point=izp, output_zero_point=ozp,
                output_multiplier=mult, output_shift=shift,
                activation_min=amin, activation_max=amax)
    assert y.tolist() == ref_conv(x, w, bias, izp, ozp, mult, shift, amin, amax)


def test_conv1x1_long_reduction_wraps_without_bias():
    # 68600 products of 255 * 127 = 32385 sum to 2221611000 > 2**31 - 1 (plus 1400 zero
    # products): the accumulator itself wraps, not just the bias addition.
    depth = 70000
    x = np.full((1, depth), 127, np.int8)
    x[0, ::50] = -128
    w = np.stack([np.full(depth, 127, np.int8), np.full(depth, -128, np.int8)], axis=1)
    bias = np.array([0, 12345], np.int32)
    acc = conv1x1_acc(x, w, bias, -128)
    assert acc.tolist() == ref_conv(x, w, bias, -128, 0, [0, 0], [0, 0], acc_only=True)
    true_sum = int(((x.astype(np.int64) + 128) * 127).sum())
    assert true_sum > I32_MAX and acc[0, 0] == i32(true_sum)


def test_conv1x1_scalar_multiplier_and_shift_broadcast():
    rng = np.random.default_rng(3)
    x, w, bias, izp, ozp, _, _ = realistic_layer(rng, (4,), 8, 5)
    y = conv1x1(x, w, bias, input_zero_point=izp, output_zero_point=ozp,
                output_multiplier=1518500250, output_shift=-12)
    assert y.tolist() == ref_conv(x, w, bias, izp, ozp, 1518500250, -12)


def test_conv1x1_accepts_any_integer_dtype_and_lists():
    y1 = conv1x1(HAND_X.tolist(), HAND_W.astype(np.int16), HAND_B.astype(np.int64),
                 input_zero_point=np.int8(-1), output_zero_point=5,
                 output_multiplier=[2**30, 2**30], output_shift=[-1, 1])
    assert y1.dtype == np.int8 and y1.tolist() == [[17, -128]]


# --------------------------------------------------------------------------------------------
# Zero-point folding.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(16))
def test_fold_input_zero_point_is_exact(seed):
    rng = np.random.default_rng(2000 + seed)
    lead = LEADS[seed % len(LEADS)]
    depth, n_out = int(rng.integers(1, 40)), int(rng.integers(1, 9))
    if seed % 2:
        x, w, bias, izp, ozp, mult, shift = extreme_layer(rng, lead, depth, n_out)
    else:
        x, w, bias, izp, ozp, mult, shift = realistic_layer(rng, lead, depth, n_out)
    izp = [-128, 127, 0, izp][seed % 4]
    folded = fold_input_zero_point(w, bias, izp)
    assert folded.dtype == np.int32 and folded.shape == (n_out,)
    # independent formula with Python ints
    col_sums = [sum(int(w[c, f]) for c in range(depth)) for f in range(n_out)]
    assert folded.tolist() == [i32(int(bias[f]) - izp * col_sums[f]) for f in range(n_out)]
    # accumulators: golden fold path == golden direct path == naive hardware == naive TFLite
    acc_direct = conv1x1_acc(x, w, bias, izp)
    acc_fold = conv1x1_acc(x, w, folded, 0)
    assert np.array_equal(acc_fold, acc_direct)
    hw = hw_acc(x, w, folded.tolist())
    ref = ref_conv(x, w, bias, izp, ozp, mult, shift, acc_only=True)
    assert np.asarray(hw).reshape(acc_direct.shape).tolist() == ref == acc_direct.tolist()
    # requantized outputs are bit-exact too
    y_fold = requantize(acc_fold, mult, shift, ozp)
    y_direct = conv1x1(x, w, bias, input_zero_point=izp, output_zero_point=ozp,
                       output_multiplier=mult, output_shift=shift)
    assert y_fold.dtype == np.int8
    assert np.array_equal(y_fold, y_direct)


def test_fold_wraps_biases_near_int32_limits():
    # bias - zp * sum(w) leaves the int32 range and must wrap:
    # f0: (2**31 - 1) - (-128) * (127 * 4) = 2**31 - 1 + 65024 -> -2**31 + 65023
    # f1: -2**31 - 127 * (127 * 4) = -2**31 - 64516 -> 2**31 - 64516
    w = np.array([[127, 127]] * 4, np.int8)
    f0 = fold_input_zero_point(w, np.array([I32_MAX, 0], np.int32), -128)[0]
    f1 = fold_input_zero_point(w, np.array([0, I32_MIN], np.int32), 127)[1]
    assert (int(f0), int(f1)) == (-(2**31) + 65023, 2**31 - 64516)
    x = np.array([[-128, 127, 0, 5], [127, 127, 127, 127]], np.int8)
    bias = np.array([I32_MAX, I32_MIN], np.int32)
    for zp in (-128, 127):
        folded = fold_input_zero_point(w, bias, zp)
        assert np.array_equal(conv1x1_acc(x, w, folded, 0), conv1x1_acc(x, w, bias, zp))


# --------------------------------------------------------------------------------------------
# Validation.
# --------------------------------------------------------------------------------------------

GOOD = dict(input_zero_point=0, output_zero_point=0,
            output_multiplier=np.full(4, 2**30, np.int32), output_shift=np.zeros(4, np.int32))
X16 = np.zeros((2, 16), np.int8)
W16 = np.zeros((16, 4), np.int8)
B4 = np.zeros(4, np.int32)


def conv_kwargs(**overrides):
    return {**GOOD, **overrides}


@pytest.mark.parametrize(
    ("args", "kwargs", "exc", "message"),
    [
        ((X16, np.zeros((8, 4), np.int8), B4), {}, ValueError,
         "w must have shape [C, F] with C == x.shape[-1] == 16, got (8, 4)"),
        ((X16, np.zeros((16, 4, 1), np.int8), B4), {}, ValueError,
         "w must have shape [C, F] with C == x.shape[-1] == 16, got (16, 4, 1)"),
        ((X16, W16, np.zeros(3, np.int32)), {}, ValueError,
         "bias must have shape [F] with F == w.shape[1] == 4, got (3,)"),
        ((np.int8(3), W16, B4), {}, ValueError,
         "x must have shape [..., C] (at least 1 dimension), got ()"),
        ((X16.astype(np.float32), W16, B4), {}, TypeError,
         "x must have an integer dtype, got float32"),
        ((np.array([[-5, 200] * 8], np.int16), W16, B4), {}, ValueError,
         "x values must be in [-128, 127], got range [-5, 200]"),
        ((X16, W16 - np.int16(129), B4), {}, ValueError,
         "w values must be in [-128, 127], got range [-129, -129]"),
        ((X16, W16, np.array([0, 0, 0, 2**31], np.int64)), {}, ValueError,
         "bias values must be in [-2147483648, 2147483647], got range [0, 2147483648]"),
        ((X16, W16, B4), {"input_zero_point": 128}, ValueError,
         "input_zero_point must be in [-128, 127], got 128"),
        ((X16, W16, B4), {"output_zero_point": -129}, ValueError,
         "output_zero_point must be in [-128, 127], got -129"),
        ((X16, W16, B4), {"input_zero_point": 1.5}, TypeError,
         "input_zero_point must be an integer, got float 1.5"),
        ((X16, W16, B4), {"output_zero_point": True}, TypeError,
         "output_zero_point must be an integer, got bool True"),
        ((X16, W16, B4), {"input_zero_point": [1, 2]}, ValueError,
         "input_zero_point must be a scalar, got shape (2,)"),
        ((X16, W16, B4), {"output_shift": np.array([0, 31, 0, 0])}, ValueError,
         "output_shift values must be in [-31, 30], got range [0, 31]"),
        ((X16, W16, B4), {"output_shift": np.array([0, -32, 0, 0])}, ValueError,
         "output_shift values must be in [-31, 30], got range [-32, 0]"),
        ((X16, W16, B4), {"output_multiplier": np.full(3, 2**30)}, ValueError,
         "output_multiplier must be a scalar or have shape [F] with F == w.shape[1] == 4, "
         "got (3,)"),
        ((X16, W16, B4), {"output_multiplier": np.full(4, 2**31)}, ValueError,
         "output_multiplier values must be in [-2147483648, 2147483647], "
         "got range [2147483648, 2147483648]"),
        ((X16, W16, B4), {"output_multiplier": np.full(4, 0.5)}, TypeError,
         "output_multiplier must have an integer dtype, got float64"),
        ((X16, W16, B4), {"activation_min": 10, "activation_max": 5}, ValueError,
         "activation_min must be <= activation_max, got 10 > 5"),
        ((X16, W16, B4), {"activation_max": 200}, ValueError,
         "activation_max must be in [-128, 127], got 200"),
        ((X16, W16, B4), {"activation_min": -129}, ValueError,
         "activation_min must be in [-128, 127], got -129"),
    ],
)
def test_conv1x1_validation(args, kwargs, exc, message):
    with pytest.raises(exc, match=re.escape(message) + "$"):
        conv1x1(*args, **conv_kwargs(**kwargs))


def test_other_entry_points_validate():
    with pytest.raises(ValueError, match=re.escape(
            "w must have shape [C, F] with C == x.shape[-1] == 16, got (8, 4)") + "$"):
        conv1x1_acc(X16, np.zeros((8, 4), np.int8), B4, 0)
    with pytest.raises(ValueError, match=re.escape("w must have shape [C, F], got (8,)") + "$"):
        fold_input_zero_point(np.zeros(8, np.int8), B4, 0)
    with pytest.raises(ValueError, match=re.escape(
            "input_zero_point must be in [-128, 127], got -200") + "$"):
        fold_input_zero_point(W16, B4, -200)
    with pytest.raises(ValueError, match=re.escape(
            "shift must be a scalar or have shape [F] with F == acc.shape[-1] == 4, got (2,)")
            + "$"):
        requantize(np.zeros((3, 4), np.int32), 2**30, [0, 0], 0)
    with pytest.raises(ValueError, match=re.escape(
            "acc must have shape [..., F] (at least 1 dimension), got ()") + "$"):
        requantize(np.int32(5), 2**30, 0, 0)
    with pytest.raises(ValueError, match=re.escape(
            "acc values must be in [-2147483648, 2147483647], got range [0, 2147483648]") + "$"):
        requantize(np.array([0, 2**31]), 2**30, 0, 0)
    with pytest.raises(ValueError, match=re.escape(
            "activation_min must be <= activation_max, got 0 > -1") + "$"):
        requantize(np.zeros(4, np.int32), 2**30, 0, 0, 0, -1)

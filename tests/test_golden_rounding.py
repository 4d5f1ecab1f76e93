"""The requantization rounding modes of golden/ against independent formulations and real runtimes.

Each fixed-point mode is checked against a scalar transliteration of its C source with Python
ints and against exact rational arithmetic; the float mode against an integer-only emulation of
IEEE-754 binary32 (the algorithm the hardware lane implements) on millions of (acc, scale) pairs;
and every mode end to end against the runtime it matches (ai-edge-litert's three kernel paths and
ONNX Runtime) on random one-layer models, including layers built to make ties common.
"""

import math
import random
import re
from fractions import Fraction

import numpy as np
import pytest

from pwconv import golden
from pwconv.golden import multiply_by_quantized_multiplier as mbqm

from test_golden_requant import EXTREMES, c_int32, c_mbqm, random_int32s

I32_MIN, I32_MAX = -(2**31), 2**31 - 1


# --------------------------------------------------------------------------------------------
# Independent formulations.
# --------------------------------------------------------------------------------------------


def c_mbqm_single(x, m, shift):
    """tensorflow/lite/kernels/internal/common.cc, TFLITE_SINGLE_ROUNDING branch."""
    total_shift = 31 - shift
    rnd = 1 << (total_shift - 1)
    result = (x * m + rnd) >> total_shift
    return c_int32(result)                    # static_cast<int32_t>


def c_mbqm_ruy(x, m, shift):
    """ruy/kernel_avx2_fma.cc, Kernel8bitAvx2: apply_multiplier + rounding_right_shift, with
    the 64-bit lanes' unsigned offset trick written out."""
    left = max(shift, 0)
    right = max(-shift, 0)
    shifted = c_int32(x << left)                                  # _mm256_sllv_epi32
    u = (shifted * m + (1 << 30) + (1 << 63)) % (1 << 64)         # + offset_vector, as u64
    results = c_int32(u >> 31)                                    # srlv 31, low 32 bits
    nudge = (1 << (right - 1)) if right > 0 else 0
    if results > 0x7FFFFFFF - nudge:                              # the overflow lane
        return 1 << (31 - right)
    return c_int32(results + nudge) >> right                      # _mm256_srav_epi32


def math_single(x, m, shift):
    """x * m / 2**(31 - shift) rounded to nearest, ties toward +infinity (exact)."""
    return math.floor(Fraction(x * m, 2 ** (31 - shift)) + Fraction(1, 2))


# --------------------------------------------------------------------------------------------
# Fixed-point modes.
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rounding", "acc", "mult", "shift", "expected"), [
    # acc * 2^30 / 2^31 = acc / 2 at shift 0, acc / 4 at shift -1: ties in every mode.
    ("double", 5, 1 << 30, -1, 2),       # 1.25 -> 2: SRDHM rounds 2.5 to 3, then 1.5 -> 2
    ("single", 5, 1 << 30, -1, 1),       # 1.25 -> 1: one rounding
    ("ruy", 5, 1 << 30, -1, 2),          # as double: 3, then (3 + 1) >> 1
    ("double", 6, 1 << 30, -1, 2),       # 1.5: SRDHM gives 3 exactly, RDBPOT(3, 1) = 2 (away)
    ("double", -6, 1 << 30, -1, -2),     # -1.5 -> -2 (away from zero)
    ("single", -6, 1 << 30, -1, -1),     # -1.5 -> -1 (toward +inf)
    ("ruy", -6, 1 << 30, -1, -1),        # -1.5 -> -1 (toward +inf)
    ("double", -1, 1 << 30, 0, 0),       # -0.5: SRDHM ties toward +inf -> 0
    ("single", -1, 1 << 30, 0, 0),
    ("ruy", -1, 1 << 30, 0, 0),
    # double rounding vs single: 0.5 + 2^-31 -> SRDHM gives 1 at shift 0 ...
    ("double", 3, 3 << 29, -1, 1),       # SRDHM: 2.25 -> 2, RDBPOT(2, 1) = 1
    ("double", 1, (1 << 30) + 1, -1, 1),  # SRDHM: 0.5 + 2^-31 -> 1, RDBPOT(1, 1): tie -> 1
    ("single", 1, (1 << 30) + 1, -1, 0),  # one rounding: 0.25 + 2^-32 -> 0
    # Saturation: INT32_MIN * INT32_MIN.
    ("double", I32_MIN, I32_MIN, 0, I32_MAX),
    ("ruy", I32_MIN, I32_MIN, 0, I32_MIN),   # ruy's x86 kernels wrap
    # Left shifts: double and ruy wrap acc << shift at 32 bits, single does not.
    ("double", 1 << 20, 1 << 30, 12, 0),     # (2^32 wraps to 0) * 0.5
    ("ruy", 1 << 20, 1 << 30, 12, 0),
    ("single", 1 << 20, 1 << 30, 11, 1 << 30),
])
def test_fixed_point_hand_worked(rounding, acc, mult, shift, expected):
    assert int(mbqm(acc, mult, shift, rounding=rounding)) == expected


def test_single_matches_c_source_and_exact_math():
    rng = random.Random(11)
    xs = random_int32s(rng, 400)
    cases = [(x, rng.randrange(1 << 31) if i % 3 else rng.choice([0, 1, 1 << 30, I32_MAX]),
              rng.randint(-31, 0 if i % 5 else 30)) for i, x in enumerate(xs)]
    x, m, s = (np.array(v, dtype=np.int64) for v in zip(*cases))
    got = mbqm(x, m, s, rounding="single")
    for (xi, mi, si), g in zip(cases, got.tolist()):
        want = c_mbqm_single(xi, mi, si)
        assert g == want, (xi, mi, si)
        exact = math_single(xi, mi, si)
        if I32_MIN <= exact <= I32_MAX:
            assert g == exact, (xi, mi, si)


def test_ruy_matches_c_source():
    rng = random.Random(12)
    xs = random_int32s(rng, 600)
    cases = [(x, rng.randint(I32_MIN, I32_MAX) if i % 2 else rng.randrange(1 << 31),
              rng.randint(-31, 30)) for i, x in enumerate(xs)]
    cases += [(x, m, s) for x in EXTREMES for m in (I32_MIN, -1, 0, 1 << 30, I32_MAX)
              for s in (-31, -30, -1, 0, 1, 30)]
    x, m, s = (np.array(v, dtype=np.int64) for v in zip(*cases))
    got = mbqm(x, m, s, rounding="ruy")
    for (xi, mi, si), g in zip(cases, got.tolist()):
        assert g == c_mbqm_ruy(xi, mi, si), (xi, mi, si)


def test_modes_differ_only_where_they_should():
    """double and ruy share SRDHM up to saturation; they differ only on negative ties of the
    right shift. Checks the modes are really distinct functions (a mode wired to another's
    arithmetic fails here)."""
    rng = np.random.default_rng(3)
    x = rng.integers(I32_MIN, I32_MAX, size=200_000, dtype=np.int64)
    m = rng.integers(1 << 30, 1 << 31, size=x.size, dtype=np.int64)
    s = rng.integers(-12, 1, size=x.size, dtype=np.int64)
    d = mbqm(x, m, s, rounding="double").astype(np.int64)
    r = mbqm(x, m, s, rounding="ruy").astype(np.int64)
    g = mbqm(x, m, s, rounding="single").astype(np.int64)
    assert (d != r).any() and (d != g).any() and (r != g).any()
    assert (np.abs(d - r) <= 1).all() and (np.abs(d - g) <= 1).all()
    # Where double and ruy differ, the value was negative and a tie of the final shift.
    differ = d != r
    assert (d[differ] < 0).all() and (r[differ] == d[differ] + 1).all()
    # Against the scalar double-rounding source as well, on a sample.
    for i in np.flatnonzero(differ)[:50]:
        assert d[i] == c_mbqm(int(x[i]), int(m[i]), int(s[i]))


def test_rejects_unknown_rounding():
    with pytest.raises(ValueError,
                       match=r"^rounding must be one of double, single, ruy, not .float.$"):
        mbqm(1, 1, 0, rounding="float")
    with pytest.raises(ValueError, match=r"^rounding must be one of double, single, ruy, float, "
                                         r"not 'nearest'$"):
        golden.requantize(np.zeros((1, 2), np.int32), [1, 1], [0, 0], 0, rounding="nearest")


# --------------------------------------------------------------------------------------------
# The float mode: NumPy float32 arithmetic vs an integer-only IEEE-754 emulation.
# --------------------------------------------------------------------------------------------


def _round_even_shift(v, s):
    """v >> s (v >= 0, s >= 1) rounded to nearest, ties to even."""
    q = v >> s
    half = (v >> (s - 1)) & 1
    sticky = (v & ((np.int64(1) << (s - 1)) - 1)) != 0
    return q + (half & (sticky | (q & 1)))


def fp32_requant_integer(acc, scale, zp, lo, hi):
    """round_half_even(float32(acc) * scale) + zp, clamped, with integers only.

    float32(acc): normalize |acc| so its top bit is bit 31, round to 24 bits (ties to even) ->
    mantissa ma * 2**ea. scale = ms * 2**es (ms with its hidden bit). The exact product
    ma * ms lies in [2**46, 2**48): round it to 24 bits (the float32 multiply) -> m * 2**e,
    then round m * 2**e to an integer (ties to even), apply the sign, add zp and clamp.
    """
    acc = np.asarray(acc, np.int64)
    bits = np.asarray(scale, np.float32).view(np.uint32).astype(np.int64)
    ms = (bits & 0x7FFFFF) | 0x800000
    es = ((bits >> 23) & 0xFF) - 127 - 23
    mag = np.abs(acc)
    zero = mag == 0
    msb = np.where(zero, 0, np.floor(np.log2(np.maximum(mag, 1))).astype(np.int64))
    # log2 in float64 is exact enough for bit_length of values < 2^32, but fix any off-by-one.
    msb = np.where((mag >> msb) == 0, msb - 1, msb)
    msb = np.where((mag >> msb) > 1, msb + 1, msb)
    norm = mag << (31 - msb)                              # top bit at 31
    ma = _round_even_shift(norm, 8)                       # 24 bits, maybe 2^24
    ea = msb - 23
    carry = ma >> 24
    ma, ea = ma >> carry, ea + carry
    p = ma * ms                                           # [2^46, 2^48)
    top = p >> 47
    k = 23 + top
    m = _round_even_shift(p, k)                           # [2^23, 2^24]
    e = ea + es + k                                       # |product| = m * 2^e
    s = -e
    big = np.int64(1) << 30
    r = np.where(s <= 0, big,
                 np.where(s >= 26, 0, _round_even_shift(m, np.clip(s, 1, 62))))
    r = np.where(zero, 0, np.where(acc < 0, -r, r))
    return np.clip(r + zp, lo, hi).astype(np.int8)


def _random_scales(rng, n, lo_exp=-40, hi_exp=4):
    return np.exp2(rng.uniform(lo_exp, hi_exp, size=n)).astype(np.float32)


def test_float_matches_integer_emulation_millions():
    rng = np.random.default_rng(5)
    n = 1_000_000
    # Accumulators: uniform int32, log-uniform magnitudes (many above 2^24), extremes.
    acc = np.concatenate([
        rng.integers(I32_MIN, I32_MAX, size=n // 2, dtype=np.int64),
        (np.exp2(rng.uniform(0, 31, size=n // 2)).astype(np.int64)
         * rng.choice([-1, 1], size=n // 2)),
        np.array(EXTREMES, np.int64)])
    scale = _random_scales(rng, acc.size)
    for zp, lo, hi in ((0, -128, 127), (-37, -37, 127), (12, -128, 60)):
        ref = fp32_requant_integer(acc, scale, zp, lo, hi)
        gold = _float_elementwise(acc, scale, zp, lo, hi)
        np.testing.assert_array_equal(gold, ref)


def _float_elementwise(acc, scale, zp, lo, hi):
    """golden's float mode with one scale per element (F = 1 per row)."""
    out = np.empty(acc.size, np.int8)
    # requantize takes per-channel scales: lay the pairs out as channels, in chunks.
    chunk = 4096
    for i in range(0, acc.size, chunk):
        a = acc[i:i + chunk].astype(np.int32).reshape(1, -1)
        out[i:i + chunk] = golden.requantize(a, None, None, zp, lo, hi, rounding="float",
                                             scale=scale[i:i + chunk])[0]
    return out


def test_float_exact_ties_round_to_even():
    # scale 2^-k makes acc * scale a tie whenever acc's low k bits are 100..0.
    k = np.arange(1, 20)
    scale = np.exp2(-k.astype(np.float64)).astype(np.float32)
    for q in (0, 1, 2, 3, 6, 7, -1, -2, -3, -8):
        acc = (2 * q + 1) * (1 << (k - 1))                 # (q + 0.5) * 2^k
        got = _float_elementwise(acc.astype(np.int64), scale, 0, -128, 127)
        want = np.full(k.size, _even(q))
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(fp32_requant_integer(acc, scale, 0, -128, 127), want)


def _even(q):
    """The even one of q and q + 1 (round half to even of q + 0.5)."""
    return q if q % 2 == 0 else q + 1


def test_float_large_acc_rounds_to_float32_first():
    # 2^24 + 1 is not a float32: it becomes 2^24 (ties to even) before the multiply.
    acc = np.array([(1 << 24) + 1, (1 << 24) + 3, -(1 << 25) - 2], np.int64)
    scale = np.full(3, 2.0 ** -24, np.float32)
    got = _float_elementwise(acc, scale, 0, -128, 127)
    # (2^24 + 3) -> 2^24 + 4 -> 1.00000024 -> 1; -(2^25 + 2) -> -2^25 (tie to even) -> -2.
    np.testing.assert_array_equal(got, [1, 1, -2])
    # The same values computed in float64 would differ for a scale that exposes the rounding:
    acc = np.array([(1 << 24) + 1], np.int64)
    scale = np.array([2.0 ** -1 * 1.5], np.float32)
    v32 = float(np.float32(float(np.float32(acc[0])) * float(scale[0])))
    assert v32 != acc[0] * float(scale[0])


def test_float_rejects_bad_scales():
    acc = np.zeros((1, 2), np.int32)
    for bad, text in ((np.array([1.0, np.nan], np.float32), "nan"),
                      (np.array([1.0, 0.0], np.float32), "0.0"),
                      (np.array([1.0, -2.0], np.float32), "-2.0"),
                      (np.array([1.0, 1e-40], np.float32), r"9\.99994610111476e-41$")):
        with pytest.raises(ValueError, match=r"^scale must be finite, positive and normal "
                                             r"float32 values, got " + text):
            golden.requantize(acc, None, None, 0, rounding="float", scale=bad)
    with pytest.raises(TypeError, match=r"^scale must have dtype float32, got float64$"):
        golden.requantize(acc, None, None, 0, rounding="float", scale=np.ones(2))
    with pytest.raises(ValueError, match=r"^scale is required with rounding='float'$"):
        golden.requantize(acc, None, None, 0, rounding="float")
    with pytest.raises(ValueError, match=r"^multiplier and shift are required with "
                                         r"rounding='ruy'$"):
        golden.requantize(acc, None, None, 0, rounding="ruy")


def test_float32_scales_are_float32_arithmetic():
    rng = np.random.default_rng(8)
    s_in = np.float32(0.0235)
    s_w = rng.uniform(0.001, 0.05, size=20000).astype(np.float32)
    s_out = np.float32(0.1372)
    got = golden.float32_scales(s_in, s_w, s_out)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, (s_in * s_w) / s_out)
    # Deriving in float64 and rounding once differs for some channels: why the order matters.
    once = (np.float64(s_in) * s_w.astype(np.float64) / np.float64(s_out)).astype(np.float32)
    assert (once != got).any()


def test_layer_requant_params_per_mode():
    m, s, sc = golden.layer_requant_params(0.05, np.array([0.01, 0.02]), 0.1, "double")
    assert sc is None and m.dtype == np.int32 and s.dtype == np.int32
    m2, s2, _ = golden.layer_requant_params(0.05, np.array([0.01, 0.02]), 0.1, "ruy")
    np.testing.assert_array_equal(m, m2)
    # single: QuantizeMultiplier saturates shifts above 30 (TFLITE_SINGLE_ROUNDING).
    m3, s3, _ = golden.layer_requant_params(1.0, np.array([2.0 ** 31, 0.5]), 1.0, "single")
    assert list(s3) == [30, 0] and list(m3) == [I32_MAX, 1 << 30]
    _, s4, _ = golden.layer_requant_params(1.0, np.array([2.0 ** 31]), 1.0, "double")
    assert list(s4) == [32]
    m5, s5, sc5 = golden.layer_requant_params(0.05, np.array([0.01]), 0.1, "float")
    assert m5 is None and s5 is None and sc5.dtype == np.float32
    with pytest.raises(ValueError, match=r"^rounding must be one of double, single, ruy, "
                                         r"float, not 'x'$"):
        golden.layer_requant_params(1.0, [1.0], 1.0, "x")


# --------------------------------------------------------------------------------------------
# End to end against the real runtimes.
# --------------------------------------------------------------------------------------------


def _golden(layer, rounding):
    """golden's output for a :func:`~pwconv.host.runtimes.random_runtime_layer` layer."""
    x, w, bias, scales, zi, zo = layer
    m, s, sc = golden.layer_requant_params(*scales, rounding)
    return golden.conv1x1(x, w, bias, input_zero_point=zi, output_zero_point=zo,
                          output_multiplier=m, output_shift=s, rounding=rounding, scale=sc)


@pytest.mark.parametrize("runtime", ["tflite-reference", "tflite-ruy", "tflite-xnnpack",
                                     "onnxruntime"])
def test_matches_runtime(runtime):
    """60 random layers, half tie-heavy: the runtime's mode matches it everywhere, and every
    other mode differs from it somewhere."""
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    from pwconv.host.runtimes import random_runtime_layer, run_runtime

    rng = np.random.default_rng(0)
    differ = dict.fromkeys(golden.ROUNDINGS, 0)
    for index in range(60):
        layer = random_runtime_layer(rng, ties=index % 2 == 1)
        y = run_runtime(runtime, *layer)
        for rounding in golden.ROUNDINGS:
            differ[rounding] += int((_golden(layer, rounding) != y).sum())
    mode = golden.RUNTIME_ROUNDING[runtime]
    assert differ[mode] == 0, differ
    assert all(differ[r] > 0 for r in golden.ROUNDINGS if r != mode), differ


def test_single_and_float_differ_on_ties():
    """single rounds ties toward +infinity, float to even: tie-heavy layers tell them apart,
    so the runtime tests above can tell XNNPACK's arithmetic from single rounding."""
    from pwconv.host.runtimes import random_runtime_layer

    layer = random_runtime_layer(np.random.default_rng(4), ties=True)
    assert (_golden(layer, "single") != _golden(layer, "float")).any()

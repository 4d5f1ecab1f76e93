"""Tests of pwconv.golden.requant against scalar C-literal and exact-math reference models."""

import math
import random
import re
from fractions import Fraction

import numpy as np
import pytest

from pwconv.golden import (
    multiply_by_quantized_multiplier,
    per_channel_multipliers,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

I32_MIN = -(2**31)
I32_MAX = 2**31 - 1


# --------------------------------------------------------------------------------------------
# Reference 1: transliteration of the C/C++ sources with Python ints (no NumPy, no golden code).
# --------------------------------------------------------------------------------------------


def c_int32(v):
    """Reinterpret the low 32 bits of a Python int as a C int32_t (two's complement)."""
    v &= 0xFFFFFFFF
    return v - 0x100000000 if v & 0x80000000 else v


def c_div(n, d):
    """C99 integer division: the quotient is truncated toward zero."""
    q = abs(n) // abs(d)
    return q if (n < 0) == (d < 0) else -q


def c_srdhm(a, b):
    """gemmlowp SaturatingRoundingDoublingHighMul(int32 a, int32 b)."""
    overflow = a == b and a == I32_MIN
    ab_64 = a * b
    nudge = (1 << 30) if ab_64 >= 0 else (1 - (1 << 30))
    ab_x2_high32 = c_div(ab_64 + nudge, 1 << 31)
    return I32_MAX if overflow else ab_x2_high32


def c_rdbpot(x, exponent):
    """gemmlowp RoundingDivideByPOT(int32 x, int exponent); Python >> is arithmetic."""
    assert 0 <= exponent <= 31
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def c_mbqm(x, quantized_multiplier, shift):
    """tflite::MultiplyByQuantizedMultiplier, non-TFLITE_SINGLE_ROUNDING variant."""
    left_shift = shift if shift > 0 else 0
    right_shift = 0 if shift > 0 else -shift
    return c_rdbpot(c_srdhm(c_int32(x * (1 << left_shift)), quantized_multiplier), right_shift)


def c_round(v):
    """C round()/TfLiteRound on a double: half away from zero, computed exactly."""
    f = Fraction(v)
    mag = math.floor(abs(f) + Fraction(1, 2))
    return -mag if f < 0 else mag


def c_quantize_multiplier(double_multiplier):
    """tflite::QuantizeMultiplier (quantization_util.cc), returning (q, shift)."""
    if double_multiplier == 0.0:
        return 0, 0
    q, shift = math.frexp(double_multiplier)
    q_fixed = c_round(q * (1 << 31))
    assert q_fixed <= (1 << 31)
    if q_fixed == (1 << 31):
        q_fixed = c_div(q_fixed, 2)
        shift += 1
    assert q_fixed <= I32_MAX
    if shift < -31:
        shift = 0
        q_fixed = 0
    return q_fixed, shift


# --------------------------------------------------------------------------------------------
# Reference 2: what the operations mean mathematically, via exact rationals.
# --------------------------------------------------------------------------------------------


def math_srdhm(a, b):
    """floor(a*b / 2**31 + 1/2) (round half toward +inf), saturated to int32."""
    return min(math.floor(Fraction(a * b, 2**31) + Fraction(1, 2)), I32_MAX)


def math_rdbpot(x, exponent):
    """x / 2**exponent rounded to nearest, ties away from zero."""
    q = Fraction(x, 2**exponent)
    mag = math.floor(abs(q) + Fraction(1, 2))
    return -mag if q < 0 else mag


# --------------------------------------------------------------------------------------------
# Test vectors.
# --------------------------------------------------------------------------------------------

EXTREMES = [
    I32_MIN, I32_MIN + 1, I32_MIN + 2, -(2**30) - 1, -(2**30), -(2**30) + 1, -65537, -65536,
    -32768, -255, -3, -2, -1, 0, 1, 2, 3, 255, 32767, 65536, 2**30 - 1, 2**30, 2**30 + 1,
    I32_MAX - 1, I32_MAX,
]


def random_int32s(rng, n):
    """Mix of uniform int32s, log-uniform magnitudes of both signs and the extremes."""
    out = list(EXTREMES)
    while len(out) < n:
        kind = rng.randrange(3)
        if kind == 0:
            out.append(rng.randint(I32_MIN, I32_MAX))
        elif kind == 1:
            mag = rng.randrange(1 << rng.randrange(1, 32))
            out.append(mag if rng.random() < 0.5 else -mag - 1)
        else:
            out.append(rng.choice(EXTREMES) + rng.randint(-2, 2))
            out[-1] = min(max(out[-1], I32_MIN), I32_MAX)
    return out


# --------------------------------------------------------------------------------------------
# SaturatingRoundingDoublingHighMul
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        # a == b == -2**31: the only overflow; -1.0 * -1.0 = +1.0 saturates to 2**31 - 1.
        (I32_MIN, I32_MIN, I32_MAX),
        # (-2**31) * (2**31 - 1) = -2**62 + 2**31; nudge 1 - 2**30;
        # (-2**62 + 2**31 - 2**30 + 1) / 2**31 = -2**31 + 1 - (2**30 - 1) / 2**31
        # -> trunc -2**31 + 1
        (I32_MIN, I32_MAX, I32_MIN + 1),
        # (2**31 - 1)**2 = 2**62 - 2**32 + 1; + 2**30 over 2**31 = 2**31 - 2 + (2**30 + 1) / 2**31
        # -> trunc 2**31 - 2
        (I32_MAX, I32_MAX, I32_MAX - 1),
        # positive tie: 1 * 2**30 = 0.5 * 2**31; (2**30 + 2**30) / 2**31 = 1 -> 0.5 rounds up to 1
        (1, 2**30, 1),
        # negative tie: -2**30 + 1 - 2**30 = -2**31 + 1; / 2**31 = -0.99.. -> trunc 0 (-0.5 -> 0)
        (-1, 2**30, 0),
        # tiny negative product: -1 + 1 - 2**30 = -2**30 -> -0.5 truncates to 0 (floor would be -1)
        (-1, 1, 0),
        # -3 * 2**30 = -1.5 * 2**31; -3*2**30 + 1 - 2**30 = -2**32 + 1 -> -1.99.. -> trunc -1
        # (a floor-division implementation would give -2)
        (-3, 2**30, -1),
        # 3 * 2**30 = 1.5 * 2**31; (3*2**30 + 2**30) / 2**31 = 2 exactly -> 2
        (3, 2**30, 2),
        # -5 * 2**30 = -2.5 * 2**31; -6*2**30 + 1 = -3 * 2**31 + 1 -> -2.99.. -> trunc -2
        (-5, 2**30, -2),
        # 46 * 2**30 = 23 * 2**31; + 2**30 -> 23.5 -> trunc 23
        (46, 2**30, 23),
        # -7 * -(2**31 - 1) = 7 * 2**31 - 7; + 2**30 -> 7.49.. -> 7
        (-7, -I32_MAX, 7),
        # 0 times anything: (0 + 2**30) / 2**31 = 0.5 -> trunc 0
        (0, I32_MIN, 0),
    ],
)
def test_srdhm_hand_worked(a, b, expected):
    assert c_srdhm(a, b) == expected  # the reference agrees with the hand working
    got = saturating_rounding_doubling_high_mul(np.int32(a), np.int32(b))
    assert got.dtype == np.int32
    assert int(got) == expected


def test_srdhm_matches_references_random_and_extremes():
    rng = random.Random(1234)
    a = random_int32s(rng, 6000)
    b = random_int32s(rng, 6000)
    rng.shuffle(b)
    # all pairs of extremes as well
    a += [p for p in EXTREMES for _ in EXTREMES]
    b += [q for _ in EXTREMES for q in EXTREMES]
    got = saturating_rounding_doubling_high_mul(np.array(a, np.int32), np.array(b, np.int32))
    assert got.dtype == np.int32 and got.shape == (len(a),)
    expected = [c_srdhm(x, y) for x, y in zip(a, b)]
    assert got.tolist() == expected
    assert expected == [math_srdhm(x, y) for x, y in zip(a, b)]


def test_srdhm_broadcasts():
    a = np.array([[1], [-1], [I32_MIN]], dtype=np.int32)
    b = np.array([2**30, I32_MIN], dtype=np.int32)
    got = saturating_rounding_doubling_high_mul(a, b)
    assert got.shape == (3, 2)
    assert got.tolist() == [[c_srdhm(x, y) for y in (2**30, I32_MIN)] for x in (1, -1, I32_MIN)]


# --------------------------------------------------------------------------------------------
# RoundingDivideByPOT
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "exponent", "expected"),
    [
        # 5/2 = 2.5: mask 1, remainder 1, threshold 0; (5 >> 1) + (1 > 0) = 2 + 1 = 3
        (5, 1, 3),
        # -5/2 = -2.5: remainder = -5 & 1 = 1, threshold 0 + 1 = 1; (-5 >> 1) = -3; 1 > 1 no -> -3
        (-5, 1, -3),
        # 6/4 = 1.5: remainder 2, threshold 1; 1 + 1 = 2
        (6, 2, 2),
        # -6/4 = -1.5: -6 = ...11010, remainder 2, threshold 2; (-6 >> 2) = -2; 2 > 2 no -> -2
        (-6, 2, -2),
        # -5/4 = -1.25: -5 = ...11011, remainder 3 > threshold 2 -> -2 + 1 = -1
        (-5, 2, -1),
        # -7/4 = -1.75: -7 = ...11001, remainder 1 <= 2 -> -2
        (-7, 2, -2),
        # 7/4 = 1.75: remainder 3 > 1 -> 1 + 1 = 2
        (7, 2, 2),
        # exponent 0: mask 0, remainder 0, threshold 0 (+1 if negative): identity
        (I32_MIN, 0, I32_MIN),
        (I32_MAX, 0, I32_MAX),
        (-1, 0, -1),
        # -2**31 / 2**31 = -1 exactly: remainder 0 -> (x >> 31) = -1
        (I32_MIN, 31, -1),
        # (2**31 - 1) / 2**31 = 0.99..: remainder 2**31 - 1 > 2**30 - 1 -> 0 + 1 = 1
        (I32_MAX, 31, 1),
        # -2**30 / 2**31 = -0.5: remainder 2**30, threshold 2**30 - 1 + 1; not > -> -1 (away)
        (-(2**30), 31, -1),
        # 2**30 / 2**31 = 0.5: remainder 2**30 > 2**30 - 1 -> 0 + 1 = 1 (away from zero)
        (2**30, 31, 1),
        # -1 / 2**31: remainder 2**31 - 1 > 2**30 -> -1 + 1 = 0
        (-1, 31, 0),
        # -3 / 2 = -1.5 -> -2 ; 3 / 2 = 1.5 -> 2
        (-3, 1, -2),
        (3, 1, 2),
    ],
)
def test_rdbpot_hand_worked(x, exponent, expected):
    assert c_rdbpot(x, exponent) == expected
    got = rounding_divide_by_pot(np.int32(x), exponent)
    assert got.dtype == np.int32
    assert int(got) == expected


def test_rdbpot_matches_references_all_exponents():
    rng = random.Random(99)
    xs = random_int32s(rng, 1500)
    x = np.array(xs, dtype=np.int32)[:, None]
    e = np.arange(32, dtype=np.int32)[None, :]
    got = rounding_divide_by_pot(x, e)
    assert got.dtype == np.int32 and got.shape == (len(xs), 32)
    expected = [[c_rdbpot(v, k) for k in range(32)] for v in xs]
    assert got.tolist() == expected
    assert expected == [[math_rdbpot(v, k) for k in range(32)] for v in xs]


# --------------------------------------------------------------------------------------------
# MultiplyByQuantizedMultiplier
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("acc", "mult", "shift", "expected"),
    [
        # 46 * 0.5 * 2**-1 = 11.5: SRDHM(46, 2**30) = 23 (23.5 truncated), RDBPOT(23, 1) = 12
        (46, 2**30, -1, 12),
        # -178 * 0.5 * 2**1: left shift -356, SRDHM(-356, 2**30) = -178.5 + 2**-31 -> trunc -178
        (-178, 2**30, 1, -178),
        # 3 * 0.5 * 2**7: 3 * 128 = 384; SRDHM(384, 2**30) = 192
        (3, 2**30, 7, 192),
        # left shift wraps: 2**30 * 2 = 2**31 -> int32 -2**31; SRDHM(-2**31, 2**30):
        # -2**61 + 1 - 2**30 over 2**31 = -2**30 - 0.5 + 2**-31 -> trunc -2**30 (not +2**30)
        (2**30, 2**30, 1, -(2**30)),
        # 3 * 2**30 = 0xC0000000 -> -2**30; SRDHM(-2**30, 2**30) = -2**29 - 2**-31.. -> -2**29
        (3, 2**30, 30, -(2**29)),
        # -2**31 * 0.5 * 2**-31 = -0.5: SRDHM = -2**30 (as above); RDBPOT(-2**30, 31) = -1
        (I32_MIN, 2**30, -31, -1),
        # -1 * (1 - 2**-31) * 2**-31: SRDHM(-1, 2**31 - 1): -2**31 + 1 + 1 - 2**30 over 2**31
        # = -1.5 + 2**-30 -> trunc -1; RDBPOT(-1, 31) = 0
        (-1, I32_MAX, -31, 0),
        # (2**31 - 1) * (1 - 2**-31): SRDHM = 2**31 - 2 (see SRDHM table), shift 0
        (I32_MAX, I32_MAX, 0, I32_MAX - 1),
        # saturation path: -2**31 * -1.0 -> 2**31 - 1, then / 2 -> 2**30 - 0.5 -> 2**30 (away)
        (I32_MIN, I32_MIN, -1, 2**30),
        # zero multiplier gives 0 whatever acc and shift
        (I32_MAX, 0, 30, 0),
        # negative multiplier (C allows it): 100 * -0.5 = -50 -> SRDHM(100, -2**30) = -50
        (100, -(2**30), 0, -50),
    ],
)
def test_mbqm_hand_worked(acc, mult, shift, expected):
    assert c_mbqm(acc, mult, shift) == expected
    got = multiply_by_quantized_multiplier(np.int32(acc), np.int32(mult), np.int32(shift))
    assert got.dtype == np.int32
    assert int(got) == expected


def test_mbqm_matches_reference_random():
    rng = random.Random(7)
    n = 12000
    acc = random_int32s(rng, n)
    mult = [rng.randrange(2**30, 2**31) for _ in range(n // 2)] + random_int32s(rng, n // 2)
    rng.shuffle(mult)
    shift = [rng.randint(-31, 30) for _ in range(n)]
    shift[: 2 * 39] = list(range(-31, 8)) * 2  # make sure the required range appears
    got = multiply_by_quantized_multiplier(
        np.array(acc, np.int32), np.array(mult, np.int32), np.array(shift, np.int32)
    )
    assert got.dtype == np.int32
    assert got.tolist() == [c_mbqm(*t) for t in zip(acc, mult, shift)]


def test_mbqm_every_shift_with_extreme_acc():
    shifts = list(range(-31, 31))
    accs = EXTREMES
    mults = [2**30, I32_MAX, 1, 0, I32_MIN, 1518500250]
    a, m, s = np.meshgrid(
        np.array(accs, np.int32), np.array(mults, np.int32), np.array(shifts, np.int32),
        indexing="ij",
    )
    got = multiply_by_quantized_multiplier(a, m, s)
    expected = [[[c_mbqm(x, y, z) for z in shifts] for y in mults] for x in accs]
    assert got.tolist() == expected


def test_mbqm_per_channel_broadcast():
    acc = np.array([[1000, -1000, 7], [-2, 2, I32_MAX]], dtype=np.int32)  # [P=2, F=3]
    mult = np.array([2**30, 1431655765, I32_MAX], dtype=np.int32)
    shift = np.array([-3, 0, 2], dtype=np.int32)
    got = multiply_by_quantized_multiplier(acc, mult, shift)
    assert got.shape == (2, 3)
    expected = [[c_mbqm(int(acc[p, f]), int(mult[f]), int(shift[f])) for f in range(3)]
                for p in range(2)]
    assert got.tolist() == expected
    # 1000 * 0.5 / 8 = 62.5 -> SRDHM 500 exactly, RDBPOT(500, 3) = 62.5 -> 63
    assert got[0, 0] == 63


# --------------------------------------------------------------------------------------------
# QuantizeMultiplier / per-channel multipliers
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.5, (2**30, 0)),  # frexp(0.5) = (0.5, 0); 0.5 * 2**31 = 2**30
        (1.0, (2**30, 1)),  # frexp(1.0) = (0.5, 1)
        (0.25, (2**30, -1)),  # frexp(0.25) = (0.5, -1)
        (0.75, (3 * 2**29, 0)),  # frexp = (0.75, 0); 0.75 * 2**31 = 3 * 2**29
        (0.0, (0, 0)),
        (-0.0, (0, 0)),
        # 1 - 2**-33: frexp = (1 - 2**-33, 0); * 2**31 = 2**31 - 0.25 -> round 2**31 -> halve
        (1 - 2**-33, (2**30, 1)),
        # 0.5 + 2**-32: * 2**31 = 2**30 + 0.5, an exact tie: half away -> 2**30 + 1
        # (NumPy's round-half-to-even would give 2**30)
        (0.5 + 2**-32, (2**30 + 1, 0)),
        # 0.1 = 0x3FB999999999999A: frexp = (0.8, -3); 0.8 * 2**31 = 1717986918.4 -> 1717986918
        (0.1, (1717986918, -3)),
        # 2**-32: frexp = (0.5, -31) -> kept (shift == -31)
        (2.0**-32, (2**30, -31)),
        # 2**-33: frexp = (0.5, -32) -> shift < -31 -> flushed to (0, 0)
        (2.0**-33, (0, 0)),
        # 2**-32 * (1 - 2**-34): frexp = (1 - 2**-34, -32); q rounds to 2**31 -> (2**30, -31):
        # the renormalisation happens before the flush test, so it is NOT flushed
        (2.0**-32 * (1 - 2**-34), (2**30, -31)),
        # 2**30: frexp = (0.5, 31) -> shift 31 is returned as-is (C does not clamp it)
        (2.0**30, (2**30, 31)),
        # negative: frexp(-0.5) = (-0.5, 0) -> -2**30
        (-0.5, (-(2**30), 0)),
    ],
)
def test_quantize_multiplier_known_values(real, expected):
    assert c_quantize_multiplier(real) == expected
    q, s = quantize_multiplier(real)
    assert q.dtype == np.int32 and s.dtype == np.int32
    assert (int(q), int(s)) == expected


def test_quantize_multiplier_array_matches_reference_and_is_accurate():
    rng = random.Random(5)
    reals = [2.0 ** rng.uniform(-34, 8) for _ in range(3000)]
    reals += [0.0, 1.0, 2.0**-31, 2.0**-32, 2.0**-33, 0.5 + 2**-32, 1 - 2**-33, 1 - 2**-32]
    q, s = quantize_multiplier(np.array(reals))
    got = list(zip(q.tolist(), s.tolist()))
    assert got == [c_quantize_multiplier(r) for r in reals]
    # Independent property: q * 2**(s - 31) is the nearest Q0.31 value to the real multiplier.
    for r, (qi, si) in zip(reals, got):
        if r >= 2.0**-31:
            assert 2**30 <= qi < 2**31
            err = abs(Fraction(qi) * Fraction(2) ** (si - 31) - Fraction(r))
            assert err <= Fraction(2) ** (si - 32)


def test_quantize_multiplier_shape():
    q, s = quantize_multiplier(np.full((2, 3), 0.5, dtype=np.float32))
    assert q.shape == s.shape == (2, 3)
    assert q.dtype == s.dtype == np.int32


def test_per_channel_multipliers_exact_powers_of_two():
    # 0.5 * [0.25, 0.5, 0.0625] / 0.125 = [1.0, 2.0, 0.25]
    m, s = per_channel_multipliers(0.5, [0.25, 0.5, 0.0625], 0.125)
    assert m.tolist() == [2**30, 2**30, 2**30]
    assert s.tolist() == [1, 2, -1]


def test_per_channel_multipliers_float32_scales():
    # float32(0.1) = 13421773 * 2**-27 = 0.800000011920928955078125 * 2**-3;
    # times 2**31 = 13421773 * 2**7 = 1717986944 exactly. The float64 value 0.1 instead gives
    # 1717986918 (see the QuantizeMultiplier table).
    m, s = per_channel_multipliers(0.1, [1.0], 1.0)
    assert (m.tolist(), s.tolist()) == ([1717986944], [-3])
    m, s = per_channel_multipliers(0.1, [1.0], 1.0, float32_scales=False)
    assert (m.tolist(), s.tolist()) == ([1717986918], [-3])


def test_per_channel_multipliers_match_c_formula():
    rng = random.Random(11)
    for _ in range(50):
        s_in = float(np.float32(rng.uniform(0.001, 0.1)))
        s_out = float(np.float32(rng.uniform(0.01, 0.5)))
        ws = [float(np.float32(rng.uniform(1e-4, 1e-2))) for _ in range(8)]
        m, s = per_channel_multipliers(s_in, ws, s_out)
        expected = [c_quantize_multiplier(s_in * w / s_out) for w in ws]
        assert list(zip(m.tolist(), s.tolist())) == expected


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def test_mbqm_rejects_bad_shift():
    with pytest.raises(ValueError, match=re.escape("shift values must be in [-31, 30], got range "
                                                   "[-32, 0]")):
        multiply_by_quantized_multiplier([1, 1], [2**30, 2**30], [0, -32])
    with pytest.raises(ValueError, match=re.escape("shift values must be in [-31, 30], got range "
                                                   "[31, 31]")):
        multiply_by_quantized_multiplier(1, 2**30, 31)


def test_mbqm_rejects_out_of_range_and_non_integer():
    with pytest.raises(ValueError, match=re.escape(
            "acc values must be in [-2147483648, 2147483647], got range [2147483648, 2147483648]")):
        multiply_by_quantized_multiplier(2**31, 2**30, 0)
    with pytest.raises(ValueError, match=re.escape(
            "multiplier values must be in [-2147483648, 2147483647], got range [-2147483649, 0]")):
        multiply_by_quantized_multiplier([1, 1], [0, -(2**31) - 1], 0)
    with pytest.raises(TypeError, match=re.escape("acc must have an integer dtype, got float64")):
        multiply_by_quantized_multiplier(np.array([1.0]), 2**30, 0)


def test_srdhm_and_rdbpot_reject_bad_inputs():
    with pytest.raises(TypeError, match=re.escape("b must have an integer dtype, got bool")):
        saturating_rounding_doubling_high_mul(1, True)
    with pytest.raises(ValueError, match=re.escape(
            "a values must be in [-2147483648, 2147483647], got range [-2147483649, -2147483649]")):
        saturating_rounding_doubling_high_mul(-(2**31) - 1, 1)
    with pytest.raises(ValueError, match=re.escape(
            "exponent values must be in [0, 31], got range [32, 32]")):
        rounding_divide_by_pot(1, 32)
    with pytest.raises(ValueError, match=re.escape(
            "exponent values must be in [0, 31], got range [-1, 3]")):
        rounding_divide_by_pot([1, 2], [-1, 3])


def test_quantize_multiplier_rejects_non_finite():
    with pytest.raises(ValueError, match=re.escape("real must be finite, got nan")):
        quantize_multiplier([0.5, float("nan")])
    with pytest.raises(ValueError, match=re.escape("real must be finite, got inf")):
        quantize_multiplier(float("inf"))
    with pytest.raises(TypeError, match=re.escape(
            "real must be a real number or array of them, got dtype <U3")):
        quantize_multiplier("0.5")


def test_per_channel_multipliers_rejects_bad_scales():
    with pytest.raises(ValueError, match=re.escape(
            "weight_scales must be finite and > 0 as float32, got -0.5")):
        per_channel_multipliers(0.1, [0.25, -0.5], 0.1)
    with pytest.raises(ValueError, match=re.escape(
            "output_scale must be finite and > 0 as float32, got 0.0")):
        per_channel_multipliers(0.1, [0.25], 0.0)
    with pytest.raises(ValueError, match=re.escape(
            "input_scale must be finite and > 0 as float32, got 0.0")):
        per_channel_multipliers(1e-50, [0.25], 0.1)  # underflows to 0 in float32
    with pytest.raises(ValueError, match=re.escape(
            "input_scale must be finite and > 0, got inf")):
        per_channel_multipliers(float("inf"), [0.25], 0.1, float32_scales=False)
    with pytest.raises(ValueError, match=re.escape("input_scale must be a scalar, got shape (2,)")):
        per_channel_multipliers([0.1, 0.2], [0.25], 0.1)
    with pytest.raises(ValueError, match=re.escape(
            "weight_scales must have shape [F] or be a scalar, got (1, 2)")):
        per_channel_multipliers(0.1, [[0.25, 0.5]], 0.1)

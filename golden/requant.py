"""TFLite/gemmlowp fixed-point requantization primitives, vectorized and bit-exact in NumPy."""

from __future__ import annotations

import numpy as np

__all__ = [
    "INT32_MIN",
    "INT32_MAX",
    "SHIFT_MIN",
    "SHIFT_MAX",
    "wrap_int32",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
    "per_channel_multipliers",
    "ROUNDINGS",
    "RUNTIME_ROUNDING",
    "FIXED_POINT_ROUNDINGS",
    "check_rounding",
    "float32_scales",
    "check_float_scale",
    "layer_requant_params",
    "double_scales",
    "round_double_scale",
    "match_double_scale",
]

#: How a runtime rounds when it requantizes an int32 accumulator to int8; see
#: :func:`multiply_by_quantized_multiplier` (the fixed-point modes) and :func:`float32_scales`
#: (``"float"``). ``"double"`` is TFLite's reference kernels, TFLite Micro and CMSIS-NN;
#: ``"single"`` TFLite built with ``TFLITE_SINGLE_ROUNDING``; ``"ruy"`` TFLite's optimized
#: kernels on x86 (ruy's AVX2/AVX-512 kernels); ``"float"`` XNNPACK and ONNX Runtime.
ROUNDINGS = ("double", "single", "ruy", "float")

#: The modes that take an int32 multiplier and a shift (``"float"`` takes a float32 scale).
FIXED_POINT_ROUNDINGS = ("double", "single", "ruy")

#: The rounding mode that makes pwconv bit-exact with each runtime.
RUNTIME_ROUNDING = {
    "tflite-reference": "double",        # OpResolverType.BUILTIN_REF, TFLite Micro, CMSIS-NN
    "tflite-single-rounding": "single",  # TFLite built with TFLITE_SINGLE_ROUNDING
    "tflite-ruy": "ruy",                 # BUILTIN_WITHOUT_DEFAULT_DELEGATES on x86
    "tflite-xnnpack": "float",           # the interpreter's default path (XNNPACK delegate)
    "onnxruntime": "float",              # QLinearConv and fused QDQ convolutions (MLAS)
}


def check_rounding(rounding):
    """Return ``rounding`` if it names a mode of :data:`ROUNDINGS`, else raise ValueError."""
    if not isinstance(rounding, str) or rounding not in ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(ROUNDINGS)}, not {rounding!r}")
    return rounding

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1
#: Range of ``shift`` accepted by :func:`multiply_by_quantized_multiplier`. ``1 << shift`` must
#: be a valid int32 and ``-shift`` a valid gemmlowp exponent (<= 31).
SHIFT_MIN = -31
SHIFT_MAX = 30

_MASK32 = (1 << 32) - 1


def _int_array(name, value, lo, hi):
    """Return ``value`` as an int64 array after checking its dtype and value range.

    Parameters
    ----------
    name : str
        Parameter name used in error messages.
    value : array_like
        Integer-valued input (any integer dtype, Python int or nested list of ints).
    lo, hi : int
        Inclusive bounds every element must satisfy.

    Returns
    -------
    numpy.ndarray
        ``value`` converted to int64 (same shape).

    Raises
    ------
    TypeError
        If ``value`` is not of an integer dtype (bool and float are rejected).
    ValueError
        If any element lies outside ``[lo, hi]``.
    """
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {arr.dtype}")
    if arr.size:
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            raise ValueError(
                f"{name} values must be in [{lo}, {hi}], got range [{amin}, {amax}]"
            )
    return arr.astype(np.int64)


def wrap_int32(value):
    """Wrap integers to 32-bit two's complement, as a C ``int32_t`` computation would.

    Parameters
    ----------
    value : array_like of int
        Integer values (int64 or Python ints within int64 range).

    Returns
    -------
    numpy.ndarray
        int64 array with every element reduced modulo 2**32 into [-2**31, 2**31 - 1].
    """
    v = np.asarray(value, dtype=np.int64)
    return ((v + (1 << 31)) & _MASK32) - (1 << 31)


def _srdhm(a, b):
    """Unchecked int64 core of :func:`saturating_rounding_doubling_high_mul`."""
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b  # |a*b| <= 2**62: exact in int64
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    num = ab + nudge
    # C '/' truncates toward zero: arithmetic shift floors, so add 1 to negative inexact quotients.
    quot = (num >> 31) + ((num < 0) & ((num & ((1 << 31) - 1)) != 0))
    return np.where(overflow, INT32_MAX, quot)


def _rdbpot(x, exponent):
    """Unchecked int64 core of :func:`rounding_divide_by_pot`."""
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def _mbqm(x, multiplier, shift):
    """Unchecked int64 core of :func:`multiply_by_quantized_multiplier`."""
    left_shift = np.maximum(shift, 0)
    right_shift = np.maximum(-shift, 0)
    # x * (1 << left_shift) is an int32 multiply in C: it wraps modulo 2**32.
    shifted = wrap_int32(x * (np.int64(1) << left_shift))
    return _rdbpot(_srdhm(shifted, multiplier), right_shift)


def _mbqm_single(x, multiplier, shift):
    """Unchecked int64 core of the ``"single"`` mode: one rounding, ties toward +infinity."""
    total_shift = 31 - shift                       # 1 .. 62
    # |x * multiplier| <= 2**62 and the rounding term <= 2**61: exact in int64.
    result = (x * multiplier + (np.int64(1) << (total_shift - 1))) >> total_shift
    return wrap_int32(result)                      # static_cast<int32_t> of the int64


def _mbqm_ruy(x, multiplier, shift):
    """Unchecked int64 core of the ``"ruy"`` mode (ruy's x86 kernels), see
    :func:`multiply_by_quantized_multiplier`."""
    left_shift = np.maximum(shift, 0)
    right_shift = np.maximum(-shift, 0)
    shifted = wrap_int32(x * (np.int64(1) << left_shift))         # _mm256_sllv_epi32 wraps
    # (a * b + 2**30) >> 31 in 64 bits, low 32 bits kept: INT32_MIN * INT32_MIN wraps.
    high = wrap_int32((shifted * multiplier + (1 << 30)) >> 31)
    # Rounding right shift, ties toward +infinity, exact (ruy replaces the one overflowing
    # case of the 32-bit add by its exact result 1 << (31 - exponent)).
    nudge = np.where(right_shift > 0, np.int64(1) << np.maximum(right_shift - 1, 0), 0)
    return (high + nudge) >> right_shift


def saturating_rounding_doubling_high_mul(a, b):
    """gemmlowp ``SaturatingRoundingDoublingHighMul`` on int32 values, elementwise.

    Computes ``(a * b + nudge) / 2**31`` with C truncating division, where ``nudge`` is
    ``2**30`` for a non-negative product and ``1 - 2**30`` otherwise (i.e. the result is
    ``floor(a * b / 2**31 + 1/2)``). The single overflowing case ``a == b == -2**31``
    saturates to ``2**31 - 1``.

    Parameters
    ----------
    a, b : array_like of int
        int32-valued operands; broadcast against each other.

    Returns
    -------
    numpy.ndarray
        int32 result with the broadcast shape of ``a`` and ``b``.

    Raises
    ------
    TypeError
        If an operand has a non-integer dtype.
    ValueError
        If an operand has values outside the int32 range.
    """
    a64 = _int_array("a", a, INT32_MIN, INT32_MAX)
    b64 = _int_array("b", b, INT32_MIN, INT32_MAX)
    return _srdhm(a64, b64).astype(np.int32)


def rounding_divide_by_pot(x, exponent):
    """gemmlowp ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero.

    Implemented literally: ``mask = 2**exponent - 1``, ``remainder = x & mask``,
    ``threshold = (mask >> 1) + (x < 0)``, result ``(x >> exponent) + (remainder >
    threshold)`` with an arithmetic right shift.

    Parameters
    ----------
    x : array_like of int
        int32-valued dividend.
    exponent : array_like of int
        Power-of-two exponent in [0, 31]; broadcast against ``x``.

    Returns
    -------
    numpy.ndarray
        int32 result with the broadcast shape of ``x`` and ``exponent``.

    Raises
    ------
    TypeError
        If an operand has a non-integer dtype.
    ValueError
        If ``x`` is outside the int32 range or ``exponent`` outside [0, 31].
    """
    x64 = _int_array("x", x, INT32_MIN, INT32_MAX)
    e64 = _int_array("exponent", exponent, 0, 31)
    return _rdbpot(x64, e64).astype(np.int32)


def multiply_by_quantized_multiplier(acc, multiplier, shift, *, rounding="double"):
    """TFLite ``MultiplyByQuantizedMultiplier`` as each runtime computes it, elementwise.

    With ``left_shift = max(shift, 0)`` and ``right_shift = max(-shift, 0)``:

    ``"double"`` (TFLite's reference kernels, TFLite Micro, CMSIS-NN; tensorflow/lite/kernels/
    internal/common.cc, the ``#else`` branch of ``TFLITE_SINGLE_ROUNDING``)
        ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc * 2**left_shift,
        multiplier), right_shift)``, where ``acc * 2**left_shift`` wraps modulo 2**32 like the
        int32 multiply in C. SRDHM rounds ``a*b / 2**31`` to nearest with ties toward
        +infinity and saturates ``INT32_MIN * INT32_MIN``; RDBPOT rounds ties away from zero.
    ``"single"`` (common.cc with ``TFLITE_SINGLE_ROUNDING``)
        ``(acc * multiplier + 2**(30 - shift)) >> (31 - shift)`` in 64 bits, then cast to int32
        (low 32 bits): one rounding, ties toward +infinity, and no wrap of a left shift.
    ``"ruy"`` (ruy/kernel_avx2_fma.cc and kernel_avx512.cc, ``Kernel8bitAvx2``: the optimized
    kernels TFLite's interpreter runs on x86 without the XNNPACK delegate)
        ``t = low32((wrap32(acc << left_shift) * multiplier + 2**30) >> 31)``, then
        ``(t + 2**(right_shift - 1)) >> right_shift`` computed exactly: both roundings ties
        toward +infinity; ``INT32_MIN * INT32_MIN`` wraps to ``INT32_MIN`` (no saturation).
        ruy's ARM NEON kernels (kernel_arm64.cc, since ruy commit be760b6) instead truncate
        the first step (SQDMULH, then SRSHL): they equal ``"single"`` whenever
        ``shift < 0`` and differ from every mode here for ``shift >= 0``.

    Parameters
    ----------
    acc : array_like of int
        int32-valued accumulators, e.g. shape ``[..., F]``.
    multiplier : array_like of int
        int32 quantized multipliers (Q0.31), broadcast against ``acc`` (e.g. shape ``[F]``).
    shift : array_like of int
        Exponents in [-31, 30] (positive = left shift), broadcast against ``acc``.

    Returns
    -------
    numpy.ndarray
        int32 result with the broadcast shape of the inputs.

    Raises
    ------
    TypeError
        If an input has a non-integer dtype.
    ValueError
        If ``acc`` or ``multiplier`` is outside the int32 range, ``shift`` outside
        [-31, 30], or ``rounding`` is not a fixed-point mode.

    Other Parameters
    ----------------
    rounding : str, optional
        One of :data:`FIXED_POINT_ROUNDINGS`.
    """
    if rounding not in FIXED_POINT_ROUNDINGS:
        raise ValueError(f"rounding must be one of {', '.join(FIXED_POINT_ROUNDINGS)}, "
                         f"not {rounding!r}")
    acc64 = _int_array("acc", acc, INT32_MIN, INT32_MAX)
    mult64 = _int_array("multiplier", multiplier, INT32_MIN, INT32_MAX)
    shift64 = _int_array("shift", shift, SHIFT_MIN, SHIFT_MAX)
    return _MBQM[rounding](acc64, mult64, shift64).astype(np.int32)


_MBQM = {"double": _mbqm, "single": _mbqm_single, "ruy": _mbqm_ruy}


def _round_half_away(v):
    """Round float64 values half away from zero exactly (C ``round``, i.e. TfLiteRound)."""
    whole = np.trunc(v)
    frac = v - whole  # exact for IEEE doubles
    return whole + np.where(np.abs(frac) >= 0.5, np.sign(v), 0.0)


def quantize_multiplier(real):
    """TFLite ``QuantizeMultiplier``: split a real multiplier into (int32 Q0.31, shift).

    ``real == quantized_multiplier * 2**(shift - 31)`` approximately, computed exactly as
    tensorflow/lite/kernels/internal/quantization_util.cc does: ``frexp``, round the
    fraction times 2**31 half away from zero, renormalize a result of 2**31 to 2**30 with
    ``shift + 1``, and flush to ``(0, 0)`` when ``shift < -31``. Zero gives ``(0, 0)``.

    Parameters
    ----------
    real : float or array_like of float
        Finite real multiplier(s), evaluated in float64. Negative values are quantized as
        the C code does (negative multiplier) but are not meaningful for TFLite models.

    Returns
    -------
    quantized_multiplier : numpy.ndarray
        int32 array of the same shape as ``real``.
    shift : numpy.ndarray
        int32 array of the same shape as ``real``. It is not range-checked here; values
        outside [-31, 30] are rejected later by :func:`multiply_by_quantized_multiplier`.

    Raises
    ------
    TypeError
        If ``real`` is not of a real numeric dtype.
    ValueError
        If ``real`` contains NaN or infinity.
    """
    arr = np.asarray(real)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "fiu":
        raise TypeError(f"real must be a real number or array of them, got dtype {arr.dtype}")
    r = arr.astype(np.float64)
    if not np.all(np.isfinite(r)):
        raise ValueError(f"real must be finite, got {float(r[~np.isfinite(r)].ravel()[0])}")
    frac, exp = np.frexp(r)
    q = _round_half_away(frac * float(1 << 31)).astype(np.int64)
    shift = exp.astype(np.int64)
    carry = q == (1 << 31)
    q = np.where(carry, q // 2, q)
    shift = shift + carry
    flush = shift < -31
    q = np.where(flush, 0, q)
    shift = np.where(flush, 0, shift)
    return q.astype(np.int32), shift.astype(np.int32)


def _positive_scale(name, value, float32):
    """Return ``value`` as a float64 array after checking it is finite and positive."""
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must be a real number or array of them, got dtype {arr.dtype}")
    if float32:
        with np.errstate(over="ignore"):
            arr = arr.astype(np.float32)
    arr = arr.astype(np.float64)
    bad = ~(np.isfinite(arr) & (arr > 0))
    if np.any(bad):
        what = " as float32" if float32 else ""
        raise ValueError(
            f"{name} must be finite and > 0{what}, got {float(arr[bad].ravel()[0])}"
        )
    return arr


def per_channel_multipliers(input_scale, weight_scales, output_scale, *, float32_scales=True):
    """Per-output-channel (multiplier, shift) as TFLite's PopulateConvolutionQuantizationParams.

    ``effective_scale[f] = double(input_scale) * double(weight_scales[f]) /
    double(output_scale)`` (in that order, in float64), then :func:`quantize_multiplier`.

    Parameters
    ----------
    input_scale : float
        Input tensor scale (> 0).
    weight_scales : float or array_like of float
        Per-output-channel weight scales, shape ``[F]`` (or a scalar for per-tensor).
    output_scale : float
        Output tensor scale (> 0).
    float32_scales : bool, optional
        TFLite stores scales as float32 and widens them to double; by default the scales
        are therefore first rounded to float32, which makes the result bit-exact with a
        ``.tflite`` model whose scales print as the given values. Pass False to use the
        given float64 values unrounded.

    Returns
    -------
    multiplier : numpy.ndarray
        int32 array shaped like ``weight_scales``.
    shift : numpy.ndarray
        int32 array shaped like ``weight_scales``.

    Raises
    ------
    TypeError
        If a scale is not a real number.
    ValueError
        If a scale is not finite and positive, or ``input_scale``/``output_scale`` is not a
        scalar, or ``weight_scales`` has more than one dimension.
    """
    s_in = _positive_scale("input_scale", input_scale, float32_scales)
    s_w = _positive_scale("weight_scales", weight_scales, float32_scales)
    s_out = _positive_scale("output_scale", output_scale, float32_scales)
    if s_in.ndim != 0:
        raise ValueError(f"input_scale must be a scalar, got shape {s_in.shape}")
    if s_out.ndim != 0:
        raise ValueError(f"output_scale must be a scalar, got shape {s_out.shape}")
    if s_w.ndim > 1:
        raise ValueError(f"weight_scales must have shape [F] or be a scalar, got {s_w.shape}")
    effective = (s_in * s_w) / s_out
    return quantize_multiplier(effective)


#: Smallest positive normal float32: the hardware's ``"float"`` mode takes normal scales only.
FLOAT32_MIN_NORMAL = float(np.finfo(np.float32).tiny)


def check_float_scale(name, scale):
    """Return ``scale`` as a float32 array after checking every value is a finite, normal,
    positive float32 (what the ``"float"`` mode's hardware takes); else raise.

    Raises
    ------
    TypeError
        If ``scale`` is not of dtype float32.
    ValueError
        If a value is NaN, infinite, not positive or subnormal.
    """
    arr = np.asarray(scale)
    if arr.dtype != np.float32:
        raise TypeError(f"{name} must have dtype float32, got {arr.dtype}")
    bad = ~(np.isfinite(arr) & (arr >= np.float32(FLOAT32_MIN_NORMAL)))
    if np.any(bad):
        raise ValueError(f"{name} must be finite, positive and normal float32 values, got "
                         f"{float(arr[bad].ravel()[0])!r}")
    return arr


def float32_scales(input_scale, weight_scales, output_scale):
    """Per-channel requantization scales as XNNPACK and ONNX Runtime compute them.

    ``scale[f] = input_scale * weight_scales[f] / output_scale``, evaluated left to right in
    float32 arithmetic (XNNPACK src/operators/convolution-nhwc.c
    ``create_convolution2d_nhwc_qx8_f32``/``xnn_create_convolution2d_nhwc_qs8_qc8w``;
    onnxruntime/core/providers/cpu/quantization/qlinearconv.cc ``ComputeOutputScale``). Deriving
    it in float64 and rounding once instead differs in the last bit for some channels, which
    changes outputs.

    Returns
    -------
    numpy.ndarray
        float32 array shaped like ``weight_scales``.
    """
    s_in = np.float32(_positive_scale("input_scale", input_scale, True))
    s_w = _positive_scale("weight_scales", weight_scales, True).astype(np.float32)
    s_out = np.float32(_positive_scale("output_scale", output_scale, True))
    with np.errstate(over="ignore", under="ignore"):
        return (s_in * s_w) / s_out


def layer_requant_params(input_scale, weight_scales, output_scale, rounding):
    """A layer's requantization parameters from its float scales, the way the runtime that
    ``rounding`` matches computes them.

    Returns
    -------
    multiplier, shift : numpy.ndarray or None
        int32 [F] for the fixed-point modes (TFLite's PopulateConvolutionQuantizationParams:
        :func:`per_channel_multipliers`; with ``"single"``, QuantizeMultiplier saturates a shift
        above 30 to ``(2**31 - 1, 30)`` as TFLITE_SINGLE_ROUNDING builds do); None for
        ``"float"``.
    scale : numpy.ndarray or None
        float32 [F] for ``"float"`` (:func:`float32_scales`), else None.
    """
    check_rounding(rounding)
    if rounding == "float":
        return None, None, float32_scales(input_scale, weight_scales, output_scale)
    multiplier, shift = per_channel_multipliers(input_scale, weight_scales, output_scale)
    if rounding == "single":
        high = shift > SHIFT_MAX
        multiplier = np.where(high, np.int32(INT32_MAX), multiplier).astype(np.int32)
        shift = np.where(high, np.int32(SHIFT_MAX), shift).astype(np.int32)
    return multiplier, shift, None


def double_scales(input_scale, weight_scales, output_scale):
    """Per-channel requantization scales as TFLite's reference FULLY_CONNECTED takes them:
    ``double(input_scale) * double(weight_scales[f]) / double(output_scale)``, each scale a
    float32 widened to double, evaluated left to right in float64 (ai-edge-litert
    tflite/kernels/internal/reference/integer_ops/fully_connected.h, the ``FullyConnected`` and
    ``FullyConnectedPerChannel`` overloads that take float scales).

    Returns
    -------
    numpy.ndarray
        float64 array shaped like ``weight_scales``.
    """
    s_in = _positive_scale("input_scale", input_scale, True)
    s_w = _positive_scale("weight_scales", weight_scales, True)
    s_out = _positive_scale("output_scale", output_scale, True)
    return (s_in * s_w) / s_out


def _round_double_scale(acc, scale):
    """Unchecked core of :func:`round_double_scale` (int64 in, int64 out)."""
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = _round_half_away(acc.astype(np.float64) * scale)
    # static_cast<int32_t> of a double outside int32 is undefined in C; x86-64's cvttsd2si,
    # which compilers emit for it, returns the "integer indefinite" value INT32_MIN.
    inside = (rounded >= INT32_MIN) & (rounded <= INT32_MAX)
    return np.where(inside, rounded, INT32_MIN).astype(np.int64)


def round_double_scale(acc, scale):
    """TFLite's reference FULLY_CONNECTED requantization: one rounding of a float64 product.

    ``static_cast<int32_t>(round(static_cast<double>(acc) * scale))`` (ai-edge-litert
    reference_integer_ops/fully_connected.h): the product rounded to float64, then rounded half
    away from zero (C ``round``). A result outside int32 is undefined behaviour in C; it is
    given here as x86-64 computes it, ``INT32_MIN``. TFLite Micro and CMSIS-NN do *not* round
    this way: they quantize the same scale to a Q0.31 multiplier and round twice
    (:func:`multiply_by_quantized_multiplier`, ``"double"``).

    Parameters
    ----------
    acc : array_like of int
        int32-valued accumulators, e.g. shape ``[..., F]``.
    scale : array_like of float
        float64 scales (:func:`double_scales`), broadcast against ``acc``.

    Returns
    -------
    numpy.ndarray
        int32 array of the broadcast shape.
    """
    acc64 = _int_array("acc", acc, INT32_MIN, INT32_MAX)
    scale = np.asarray(scale, np.float64)
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError("scale must be finite and > 0")
    return _round_double_scale(acc64, scale).astype(np.int32)


def _fixed_point(acc, multiplier, shift, rounding):
    """The hardware's fixed-point requantization of int64 ``acc`` (unchecked)."""
    return _MBQM[rounding](acc, multiplier, shift)


def _thresholds(scale, acc_lo, acc_hi, levels):
    """For each channel (rows) and output level ``v`` (columns), the smallest accumulator in
    ``[acc_lo - 1, acc_hi + 1]`` at which :func:`round_double_scale` reaches ``v`` (clipped to
    that interval when the level is not reached inside it)."""
    e = scale[:, None]
    lo, hi = acc_lo[:, None] - 1, acc_hi[:, None] + 1
    estimate = np.floor(np.clip((levels[None, :] - 0.5) / e, lo - 3, hi + 3)).astype(np.int64)
    found = np.full(estimate.shape, np.iinfo(np.int64).max)
    # The float estimate is off by far less than one; scanning downward keeps the smallest.
    for delta in range(4, -4, -1):
        t = np.clip(estimate + delta, lo, hi)
        reached = _round_double_scale(t, e) >= levels[None, :]
        found = np.where(reached, t, found)
    found = np.minimum(found, hi)
    below = np.clip(found - 1, lo, hi)
    if np.any((found > lo) & (_round_double_scale(below, e) >= levels[None, :])):
        raise AssertionError("a reference step lies below its float estimate")   # unreachable
    return found


def match_double_scale(scale, acc_lo, acc_hi, out_lo, out_hi, rounding):
    """Fixed-point parameters that reproduce :func:`round_double_scale` exactly on every
    accumulator a layer can produce, or None where none exist.

    TFLite's reference FULLY_CONNECTED rounds ``acc * scale`` once in float64, which no
    fixed-point datapath computes for every int32 ``acc``. A layer's accumulators are bounded,
    though (``[acc_lo, acc_hi]`` per channel, from its weights and bias), and only the output
    levels between the activation bounds matter. Both the reference and the hardware's
    fixed-point modes are monotone non-decreasing in ``acc``, so they agree on the whole range
    exactly when they agree at both ends and on both sides of each step of the (clamped)
    reference. This function finds each step, derives the interval of multipliers that put the
    fixed-point mode's step at the same accumulator, picks one, and *verifies* the result at
    every one of those points; channels that fail verification get None.

    ``"single"`` (one rounding, ``(acc * m + 2**(n-1)) >> n``, ``n = 31 - shift``) uses the
    finest normalized multiplier, so it matches almost every layer. ``"double"`` is tried with
    ``shift = 0`` (SRDHM alone: one rounding, half away from zero, of ``acc * m / 2**31``) and
    then with TFLite's normalized multiplier.

    Parameters
    ----------
    scale : array_like of float
        float64 [F], :func:`double_scales`.
    acc_lo, acc_hi : array_like of int
        int64 [F]: the smallest and largest accumulator each channel can produce.
    out_lo, out_hi : int
        The activation bounds minus the output zero point: the reference's result is clamped
        to ``[out_lo, out_hi]`` before the zero point is added.
    rounding : str
        ``"single"`` or ``"double"``.

    Returns
    -------
    (multiplier, shift) : tuple of numpy.ndarray, or None
        int32 [F] each, when every channel has exact parameters; else None.
    """
    if rounding not in ("single", "double"):
        raise ValueError(f"rounding must be 'single' or 'double', not {rounding!r}")
    scale = np.asarray(scale, np.float64).reshape(-1)
    acc_lo = np.asarray(acc_lo, np.int64).reshape(-1)
    acc_hi = np.asarray(acc_hi, np.int64).reshape(-1)
    if not (np.all(np.isfinite(scale) & (scale > 0)) and scale.shape == acc_lo.shape
            == acc_hi.shape and np.all(acc_lo <= acc_hi) and acc_lo.min(initial=0) >= INT32_MIN
            and acc_hi.max(initial=0) <= INT32_MAX and out_lo <= out_hi):
        raise ValueError("match_double_scale: scale must be finite and > 0, and acc_lo <= "
                         "acc_hi int32 arrays of its shape")
    levels = np.arange(int(out_lo) + 1, int(out_hi) + 1, dtype=np.int64)
    steps = _thresholds(scale, acc_lo, acc_hi, levels)
    # Points to check: both sides of every step, and the range's ends.
    points = np.concatenate([steps - 1, steps, acc_lo[:, None], acc_hi[:, None]], axis=1)
    points = np.clip(points, acc_lo[:, None], acc_hi[:, None])
    want = np.clip(_round_double_scale(points, scale[:, None]), out_lo, out_hi)

    def verify(m, s):
        ok = (m > 0) & (m <= INT32_MAX) & (s >= SHIFT_MIN) & (s <= SHIFT_MAX)
        m_safe, s_safe = np.where(ok, m, 1), np.where(ok, s, 0)
        got = _fixed_point(points, m_safe[:, None], s_safe[:, None], rounding)
        return ok & np.all(np.clip(got, out_lo, out_hi) == want, axis=1)

    def candidates(n):
        """Multipliers for ``acc * m / 2**n``: the nearest to ``scale * 2**n`` moved into the
        interval the steps allow (as floats; verification makes it exact)."""
        ideal = scale * np.ldexp(1.0, n)
        u = (levels[None, :] - 0.5) * np.ldexp(1.0, n)[:, None]
        t, t1 = steps.astype(np.float64), steps.astype(np.float64) - 1
        inside = (steps > acc_lo[:, None]) & (steps <= acc_hi[:, None])
        with np.errstate(divide="ignore", invalid="ignore"):
            low = np.where(inside & (t > 0), u / t, -np.inf)
            low = np.maximum(low, np.where(inside & (t1 < 0), u / t1, -np.inf))
            high = np.where(inside & (t1 > 0), u / t1, np.inf)
            high = np.minimum(high, np.where(inside & (t < 0), u / t, np.inf))
        low, high = low.max(axis=1, initial=-np.inf), high.min(axis=1, initial=np.inf)
        mid = np.clip(np.round(ideal), np.ceil(low), np.floor(high))
        picks = [mid, np.ceil(low), np.floor(high)] + [np.round(ideal) + d for d in (0, 1, -1, 2, -2)]
        return [np.nan_to_num(p, nan=0.0, posinf=0.0, neginf=0.0).clip(0, INT32_MAX + 1)
                .astype(np.int64) for p in picks]

    _, exp = np.frexp(scale)
    exp = exp.astype(np.int64)
    if rounding == "single":
        trials = [np.clip(exp - d, -62 + 31, 30) for d in (0, 1)]    # shift = exp: m in [2^30, 2^31)
    else:
        trials = [np.zeros_like(exp), np.clip(exp, SHIFT_MIN, 0)]
    multiplier = np.zeros(scale.shape, np.int64)
    shift = np.zeros(scale.shape, np.int64)
    done = np.zeros(scale.shape, bool)
    for s in trials:
        for m in candidates(31 - s):
            good = ~done & verify(m, s)
            multiplier = np.where(good, m, multiplier)
            shift = np.where(good, s, shift)
            done |= good
    if not np.all(done):
        return None
    return multiplier.astype(np.int32), shift.astype(np.int32)

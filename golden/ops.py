"""TFLite's reference int8 kernels (the arithmetic of BUILTIN_REF and TFLite Micro) in NumPy.

Each function is the Prepare step (how TFLite turns the tensors' float scales into integer
parameters) followed by the Eval step of one builtin op, vectorized and bit-exact with
``tensorflow/lite/kernels/internal/reference/...``. Every function names the kernel it follows.
Tensors are NHWC as in TFLite; int32 accumulators wrap modulo 2**32 as compiled C does.
"""

from __future__ import annotations

import numpy as np

from .conv import INT8_MAX, INT8_MIN
from .requant import (
    INT32_MAX,
    INT32_MIN,
    _MBQM,
    _int_array,
    _mbqm,
    _rdbpot,
    _round_double_scale,
    _round_half_away,
    _srdhm,
    check_rounding,
    per_channel_multipliers,
    quantize_multiplier,
    wrap_int32,
)

__all__ = [
    "ACTIVATIONS", "activation_range", "compute_padding", "conv2d", "depthwise_conv2d",
    "fully_connected", "fully_connected_multiplier", "fully_connected_acc_range", "add", "average_pool2d", "max_pool2d",
    "mean", "pad", "softmax", "quantize", "requantize_tensor", "dequantize", "concatenation",
    "add_params", "add_quantized", "mean_params", "mean_quantized", "ADD_LEFT_SHIFT",
]

#: Fused activations TFLite's int8 kernels accept, by schema name.
ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")


def _int8(name, x, ndim=None):
    """``x`` as int64 after checking it holds int8 values (and has ``ndim`` dimensions)."""
    x64 = _int_array(name, x, INT8_MIN, INT8_MAX)
    if ndim is not None and x64.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions (NHWC), got shape {x64.shape}")
    return x64


def _tflite_round_f32(v):
    """``TfLiteRound`` (C ``round``: half away from zero) of float32 values, as float64."""
    return _round_half_away(np.asarray(v, dtype=np.float32).astype(np.float64))


def activation_range(activation, scale, zero_point, qmin=INT8_MIN, qmax=INT8_MAX):
    """Clamp range of a fused activation on an int8 output.

    tensorflow/lite/kernels/kernel_util.cc::CalculateActivationRangeQuantizedImpl: with
    ``quantize(f) = zero_point + (int)TfLiteRound(f / scale)`` in float32, RELU gives
    ``[max(qmin, quantize(0)), qmax]``, RELU6 ``[max(qmin, quantize(0)), min(qmax, quantize(6))]``,
    RELU_N1_TO_1 ``[max(qmin, quantize(-1)), min(qmax, quantize(1))]``, NONE ``[qmin, qmax]``.

    Returns
    -------
    (int, int)
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"fused activation {activation} is not supported by TFLite's int8 "
                         f"kernels (supported: {', '.join(ACTIVATIONS)})")
    s = np.float32(scale)

    def quantize(f):
        return int(zero_point) + int(_tflite_round_f32(np.float32(f) / s))
    if activation == "RELU":
        return max(qmin, quantize(0.0)), qmax
    if activation == "RELU6":
        return max(qmin, quantize(0.0)), min(qmax, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(qmin, quantize(-1.0)), min(qmax, quantize(1.0))
    return qmin, qmax


def compute_padding(in_size, filter_size, stride, dilation, padding):
    """Output size and leading padding of one spatial dimension.

    tensorflow/lite/kernels/padding.h::ComputeOutSize and ComputePaddingWithOffset: SAME gives
    ``ceil(in / stride)`` outputs, VALID ``(in + stride - effective_filter) / stride``; the
    leading padding is half the total padding, rounded down (the kernels ignore the offset).
    """
    if padding not in ("SAME", "VALID"):
        raise ValueError(f"padding must be SAME or VALID, not {padding!r}")
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        out = (in_size + stride - 1) // stride
    else:
        out = (in_size + stride - effective) // stride
    total = max((out - 1) * stride + effective - in_size, 0)
    return out, total // 2


def _windows(x, kh, kw, stride, dilation, padding, fill):
    """Yield ``(ky, kx, view)``: the input pixels each filter tap sees, shape [N, OH, OW, C].

    Out-of-image taps read ``fill``; the reference kernels skip them, which is the same as
    reading a value that contributes nothing (the zero point for convolutions).
    """
    n, h, w, c = x.shape
    sh, sw = stride
    dh, dw = dilation
    oh, pt = compute_padding(h, kh, sh, dh, padding)
    ow, pl = compute_padding(w, kw, sw, dw, padding)
    if oh < 1 or ow < 1:
        raise ValueError(f"input {h}x{w} is smaller than the {kh}x{kw} filter with "
                         f"{padding} padding")
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    padded = np.full((n, max(need_h, pt + h), max(need_w, pl + w), c), fill, dtype=x.dtype)
    padded[:, pt:pt + h, pl:pl + w, :] = x
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            yield ky, kx, padded[:, y0:y0 + (oh - 1) * sh + 1:sh, x0:x0 + (ow - 1) * sw + 1:sw, :]


def _per_channel_requant(acc, multiplier, shift, output_zero_point, act_min, act_max):
    y = wrap_int32(_mbqm(wrap_int32(acc), np.asarray(multiplier, np.int64),
                         np.asarray(shift, np.int64)) + int(output_zero_point))
    return np.clip(y, act_min, act_max).astype(np.int8)


def conv2d(x, w, bias, *, input_zero_point, output_zero_point, multiplier, shift,
           stride=(1, 1), dilation=(1, 1), padding="VALID", activation_min=INT8_MIN,
           activation_max=INT8_MAX):
    """CONV_2D, int8 per-channel: reference_integer_ops/conv.h::ConvPerChannel.

    Parameters
    ----------
    x : int8 [N, H, W, C]
    w : int8 [F, KH, KW, C] (TFLite's OHWI filter)
    bias : int32 [F] or None
    multiplier, shift : int32 [F]
        From :func:`pwconv.golden.per_channel_multipliers` (PopulateConvolutionQuantizationParams).
    stride, dilation : (int, int)
        (height, width).
    padding : "SAME" or "VALID"
    """
    x64 = _int8("x", x, 4) - int(input_zero_point)
    w64 = _int8("w", w, 4)
    f, kh, kw, c = w64.shape
    if x64.shape[-1] != c:
        raise ValueError(f"conv2d: input has {x64.shape[-1]} channels, filter has {c}")
    acc = None
    for ky, kx, view in _windows(x64, kh, kw, stride, dilation, padding, 0):
        part = view @ w64[:, ky, kx, :].T
        acc = part if acc is None else acc + part
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return _per_channel_requant(acc, multiplier, shift, output_zero_point, activation_min,
                                activation_max)


def depthwise_conv2d(x, w, bias, *, input_zero_point, output_zero_point, multiplier, shift,
                     depth_multiplier=1, stride=(1, 1), dilation=(1, 1), padding="VALID",
                     activation_min=INT8_MIN, activation_max=INT8_MAX):
    """DEPTHWISE_CONV_2D, int8 per-channel:
    reference_integer_ops/depthwise_conv.h::DepthwiseConvPerChannel.

    Output channel ``ic * depth_multiplier + m`` convolves input channel ``ic`` with filter
    channel ``ic * depth_multiplier + m``. ``w`` is int8 [1, KH, KW, C * depth_multiplier].
    """
    x64 = _int8("x", x, 4) - int(input_zero_point)
    w64 = _int8("w", w, 4)
    _, kh, kw, oc = w64.shape
    if oc != x64.shape[-1] * depth_multiplier:
        raise ValueError(f"depthwise_conv2d: filter has {oc} channels, expected "
                         f"{x64.shape[-1]} x depth_multiplier {depth_multiplier}")
    acc = None
    for ky, kx, view in _windows(x64, kh, kw, stride, dilation, padding, 0):
        if depth_multiplier != 1:
            view = np.repeat(view, depth_multiplier, axis=-1)
        part = view * w64[0, ky, kx, :]
        acc = part if acc is None else acc + part
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return _per_channel_requant(acc, multiplier, shift, output_zero_point, activation_min,
                                activation_max)


def fully_connected_multiplier(input_scale, weight_scale, output_scale):
    """(multiplier, shift) of a per-tensor FULLY_CONNECTED in the kernels that requantize in
    fixed point (TFLite's optimized kernels, TFLite Micro, CMSIS-NN):
    kernel_util.cc::GetQuantizedConvolutionMultipler, ``double(float(in * w)) / double(out)``
    (the product is taken in float32), then QuantizeMultiplier. TFLite's *reference* kernel
    does not use it: see :func:`fully_connected`."""
    product = np.float64(np.float32(input_scale) * np.float32(weight_scale))
    return quantize_multiplier(product / np.float64(np.float32(output_scale)))


def fully_connected(x, w, bias, *, input_zero_point, output_zero_point, scale=None,
                    multiplier=None, shift=None, rounding="double", weight_zero_point=0,
                    activation_min=INT8_MIN, activation_max=INT8_MAX):
    """FULLY_CONNECTED, int8. ``x`` int8 [..., C], ``w`` int8 [F, C]; returns int8 [..., F].

    ``acc[f] = bias[f] + sum_c (x[c] - input_zero_point) * (w[f, c] - weight_zero_point)``
    (int32), then one of two requantizations:

    - ``scale`` (float64, scalar or [F], from :func:`pwconv.golden.double_scales`): TFLite's
      reference kernel as ai-edge-litert runs it (kernels/fully_connected.cc, kReference, calls
      the overloads of reference_integer_ops/fully_connected.h that take the float scales):
      ``round(double(acc) * scale)``, one rounding half away from zero
      (:func:`pwconv.golden.round_double_scale`). This is ``OpResolverType.BUILTIN_REF``.
    - ``multiplier``/``shift`` (int32 [F] or scalars) with ``rounding``: the fixed-point
      kernels, ``MultiplyByQuantizedMultiplier`` in that mode. ``"double"`` with
      :func:`fully_connected_multiplier` (per tensor) or
      :func:`pwconv.golden.per_channel_multipliers` (per channel) is TFLite Micro's
      reference_integer_ops::FullyConnected and CMSIS-NN's arm_fully_connected_s8
      (arm_nn_requantize without CMSIS_NN_USE_SINGLE_ROUNDING); ``"ruy"`` is TFLite's
      optimized kernel on x86.

    Then ``+ output_zero_point`` and the clamp to the activation range.
    """
    if (scale is None) == (multiplier is None or shift is None):
        raise ValueError("fully_connected: give either scale or multiplier and shift")
    x64 = _int8("x", x) - int(input_zero_point)
    w64 = _int8("w", w, 2) - int(weight_zero_point)
    acc = wrap_int32(x64 @ w64.T)
    if bias is not None:
        acc = wrap_int32(acc + np.asarray(bias, np.int64))
    if scale is None:
        if check_rounding(rounding) not in _MBQM:
            raise ValueError(f"fully_connected: multiplier and shift take a fixed-point "
                             f"rounding ({', '.join(_MBQM)}), not {rounding!r}")
        y = _MBQM[rounding](acc, np.asarray(multiplier, np.int64), np.asarray(shift, np.int64))
    else:
        y = _round_double_scale(acc, np.asarray(scale, np.float64))
    y = wrap_int32(y + int(output_zero_point))
    return np.clip(y, activation_min, activation_max).astype(np.int8)


def fully_connected_acc_range(w, bias, input_zero_point, weight_zero_point=0):
    """The smallest and largest int32 accumulator each filter of a FULLY_CONNECTED (or 1x1
    conv) can produce over every int8 input: ``bias[f] + sum_c min/max over x in [-128, 127]
    of (x - input_zero_point) * (w[f, c] - weight_zero_point)``, as int64 [F] arrays (not
    wrapped: a range beyond int32 means the layer can overflow its accumulator)."""
    w64 = _int8("w", w, 2) - int(weight_zero_point)
    low, high = (INT8_MIN - int(input_zero_point)) * w64, (INT8_MAX - int(input_zero_point)) * w64
    b = np.zeros(w64.shape[0], np.int64) if bias is None else np.asarray(bias, np.int64)
    return b + np.minimum(low, high).sum(axis=1), b + np.maximum(low, high).sum(axis=1)


def _smaller_than_one(real):
    """QuantizeMultiplierSmallerThanOneExp: QuantizeMultiplier of a real in (0, 1)."""
    m, s = quantize_multiplier(real)
    if int(s) > 0:
        raise ValueError(f"multiplier {real} is not smaller than one")
    return np.int64(m), np.int64(s)


def add(x1, x2, *, scales, zero_points, output_scale, output_zero_point,
        activation_min=INT8_MIN, activation_max=INT8_MAX):
    """ADD, int8 (with broadcasting): kernels/add.cc::PrepareGeneralSubOp's parameters and
    reference_integer_ops/add.h::AddElementwise (BroadcastAdd6DSlow has the same arithmetic).

    ``left_shift = 20``; ``twice_max = 2 * max(s1, s2)``; input multipliers ``s_i / twice_max``
    and output multiplier ``twice_max / (2**20 * s_out)`` (QuantizeMultiplierSmallerThanOneExp);
    each input ``(x_i - zp_i) << 20`` is scaled by its multiplier, the sum by the output's
    (``MultiplyByQuantizedMultiplierSmallerThanOneExp``), plus the output zero point, clamped.
    """
    multipliers, shifts = add_params(scales, output_scale)
    return add_quantized(x1, x2, zero_points=zero_points, multipliers=multipliers,
                         shifts=shifts, output_zero_point=output_zero_point,
                         activation_min=activation_min, activation_max=activation_max)


#: TFLite's int8 ADD shifts both inputs left by this before scaling (kernels/add.cc).
ADD_LEFT_SHIFT = 20


def add_params(scales, output_scale):
    """ADD's Prepare (kernels/add.cc::PrepareGeneralSubOp): ``((m1, m2, m_out), (s1, s2,
    s_out))``, int multipliers and shifts (<= 0) of the two inputs and the output."""
    s1, s2 = (np.float32(s) for s in scales)
    so = np.float32(output_scale)
    twice_max = np.float64(np.float32(2) * max(s1, s2))
    m1, sh1 = _smaller_than_one(np.float64(s1) / twice_max)
    m2, sh2 = _smaller_than_one(np.float64(s2) / twice_max)
    mo, sho = _smaller_than_one(twice_max / np.float64(np.float32(1 << ADD_LEFT_SHIFT) * so))
    return (int(m1), int(m2), int(mo)), (int(sh1), int(sh2), int(sho))


def add_quantized(x1, x2, *, zero_points, multipliers, shifts, output_zero_point,
                  activation_min=INT8_MIN, activation_max=INT8_MAX):
    """ADD's Eval (reference_integer_ops/add.h::AddElementwise) with the integer parameters of
    :func:`add_params`."""
    (m1, m2, mo), (sh1, sh2, sho) = multipliers, shifts

    def scaled(x, zp, m, s):
        shifted = wrap_int32((x - int(zp)) * (1 << ADD_LEFT_SHIFT))
        return _rdbpot(_srdhm(shifted, np.int64(m)), -np.int64(s))
    x1, x2 = _int8("x1", x1), _int8("x2", x2)
    raw = wrap_int32(scaled(x1, zero_points[0], m1, sh1) + scaled(x2, zero_points[1], m2, sh2))
    out = wrap_int32(_rdbpot(_srdhm(raw, np.int64(mo)), -np.int64(sho))
                     + int(output_zero_point))
    return np.clip(out, activation_min, activation_max).astype(np.int8)


def _c_div(a, b):
    """C integer division (truncates toward zero), elementwise."""
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def average_pool2d(x, filter_size, *, stride=(1, 1), padding="VALID", activation_min=INT8_MIN,
                   activation_max=INT8_MAX):
    """AVERAGE_POOL_2D, int8: reference_integer_ops/pooling.h::AveragePool.

    The sum over the in-image taps is divided by their count rounding half away from zero
    (``(acc +- count / 2) / count`` in C), then clamped. Input and output share one scale.
    """
    x64 = _int8("x", x, 4)
    ones = np.ones(x64.shape[:3] + (1,), np.int64)
    kh, kw = filter_size
    acc = count = 0
    for (_, _, view), (_, _, valid) in zip(
            _windows(x64, kh, kw, stride, (1, 1), padding, 0),
            _windows(ones, kh, kw, stride, (1, 1), padding, 0)):
        acc = acc + view
        count = count + valid
    half = count // 2
    avg = np.where(acc > 0, _c_div(acc + half, count), _c_div(acc - half, count))
    return np.clip(avg, activation_min, activation_max).astype(np.int8)


def max_pool2d(x, filter_size, *, stride=(1, 1), padding="VALID", activation_min=INT8_MIN,
               activation_max=INT8_MAX):
    """MAX_POOL_2D, int8: reference_integer_ops/pooling.h::MaxPool (max over in-image taps,
    then clamped)."""
    x16 = _int8("x", x, 4).astype(np.int16)
    kh, kw = filter_size
    out = None
    for _, _, view in _windows(x16, kh, kw, stride, (1, 1), padding, INT8_MIN - 1):
        out = view if out is None else np.maximum(out, view)
    return np.clip(out, activation_min, activation_max).astype(np.int8)


def mean(x, axes, *, keep_dims, input_scale, input_zero_point, output_scale,
         output_zero_point):
    """MEAN, int8: LiteRT's kernels/reduce.cc::EvalQuantizedMean, which runs
    reference/reduce.h::QuantizedMeanOrSum (compute_sum=false) for every axis set.

    PrepareMeanOrSum: ``(multiplier, shift) = QuantizeMultiplier(double(s_in) / double(s_out))``.
    The 1/n of the mean is folded into it: ``k = min(floor(log2 n), 32, 31 + shift)``,
    ``multiplier' = (int64(multiplier) << k) / n``, ``shift' = shift - k``; then each output is
    ``MultiplyByQuantizedMultiplier(sum - zp_in * n, multiplier', shift') + zp_out``, clamped.
    (TensorFlow's older tensorflow/lite copy took a float path here; ai-edge-litert does not.)
    """
    x64 = _int8("x", x)
    axes = tuple(sorted({int(a) % x64.ndim for a in np.atleast_1d(axes)}))
    count = int(np.prod([x64.shape[a] for a in axes]))
    m, s = mean_params(count, input_scale, output_scale)
    return mean_quantized(x64, axes, keep_dims=keep_dims, input_zero_point=input_zero_point,
                          multiplier=m, shift=s, output_zero_point=output_zero_point)


def mean_params(count, input_scale, output_scale):
    """MEAN's Prepare (:func:`mean`): ``(multiplier', shift')`` with the 1/``count`` folded in."""
    m, s = quantize_multiplier(np.float64(np.float32(input_scale))
                               / np.float64(np.float32(output_scale)))
    m, s = int(m), int(s)
    k = min(count.bit_length() - 1, 32, 31 + s)
    m = int(np.int32(np.int64(((m << k) // count) if m >= 0 else -((-m << k) // count))))
    return m, s - k


def mean_quantized(x, axes, *, keep_dims, input_zero_point, multiplier, shift,
                   output_zero_point):
    """MEAN's Eval (:func:`mean`) with the integer parameters of :func:`mean_params`."""
    x64 = _int8("x", x)
    axes = tuple(sorted({int(a) % x64.ndim for a in np.atleast_1d(axes)}))
    count = int(np.prod([x64.shape[a] for a in axes]))
    total = wrap_int32(x64.sum(axis=axes, keepdims=keep_dims))
    acc = wrap_int32(total - int(input_zero_point) * count)
    out = _mbqm(acc, np.int64(multiplier), np.int64(shift)) + int(output_zero_point)
    return np.clip(out, INT8_MIN, INT8_MAX).astype(np.int8)


def pad(x, paddings, value):
    """PAD / PADV2, int8: reference/pad.h::Pad with ``value`` (PAD: the output zero point)."""
    return np.pad(_int8("x", x).astype(np.int8), [tuple(int(v) for v in p) for p in paddings],
                  constant_values=int(value))


# gemmlowp fixed-point arithmetic (gemmlowp/fixedpoint/fixedpoint.h), on int64 arrays that hold
# int32 values, for SOFTMAX.

def _sat_shift_left(x, exponent):
    """SaturatingRoundingMultiplyByPOT<exponent> for exponent > 0 (saturating left shift)."""
    threshold = (1 << (31 - exponent)) - 1
    out = x << exponent
    out = np.where(x > threshold, INT32_MAX, out)
    return np.where(x < -threshold, INT32_MIN, out)


def _exp_on_interval_between_negative_one_quarter_and_0_excl(a):
    """gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl (Q0.31 in and out)."""
    constant_term = 1895147668          # exp(-1/8)
    constant_1_over_3 = 715827883
    x = a + (1 << 28)
    x2 = _srdhm(x, x)
    x3 = _srdhm(x2, x)
    x4 = _srdhm(x2, x2)
    x4_over_4 = _rdbpot(x4, np.int64(2))
    poly = _rdbpot(wrap_int32(_srdhm(wrap_int32(x4_over_4 + x3), constant_1_over_3) + x2),
                   np.int64(1))
    return wrap_int32(constant_term + _srdhm(constant_term, wrap_int32(x + poly)))


def _exp_on_negative_values(a, integer_bits=5):
    """gemmlowp exp_on_negative_values: Q(integer_bits).(31-integer_bits) in, Q0.31 out."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a_mod = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_interval_between_negative_one_quarter_and_0_excl(
        _sat_shift_left(a_mod, integer_bits))
    remainder = a_mod - a
    barrel = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
              (2, 39332535), (3, 720401), (4, 242))
    for exponent, multiplier in barrel:
        if integer_bits > exponent:
            bit = (remainder & (1 << (fractional_bits + exponent))) != 0
            result = np.where(bit, _srdhm(result, multiplier), result)
    return np.where(a == 0, INT32_MAX, result)


def _one_over_one_plus_x_for_x_in_0_1(a):
    """gemmlowp one_over_one_plus_x_for_x_in_0_1 (Newton-Raphson, Q0.31 in and out)."""
    s = a + INT32_MAX                       # RoundingHalfSum(a, One)
    half_denominator = _c_div(s + np.where(s >= 0, 1, -1), 2)
    x = wrap_int32(1515870810 + _srdhm(half_denominator, -1010580540))   # Q2.29
    one_q2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = _srdhm(half_denominator, x)
        one_minus = wrap_int32(one_q2 - half_denominator_times_x)
        x = wrap_int32(x + _sat_shift_left(_srdhm(x, one_minus), 2))
    return _sat_shift_left(x, 1)             # Rescale<0>(ExactMulByPot<-1>(x))


def softmax_params(beta, input_scale, integer_bits=5):
    """(input_multiplier, input_left_shift, diff_min) as kernels/activations.cc::SoftmaxPrepare
    computes them: quantization_util.cc::PreprocessSoftmaxScaling and CalculateInputRadius."""
    real = min(float(np.float32(beta)) * float(np.float32(input_scale))
               * float(1 << (31 - integer_bits)), float((1 << 31) - 1))
    m, shift = quantize_multiplier(real)
    m, shift = int(m), int(shift)
    radius = (((1 << integer_bits) - 1) * float(1 << (31 - integer_bits))) / float(1 << shift)
    return m, shift, -int(np.floor(radius))


def softmax(x, *, beta, input_scale):
    """SOFTMAX, int8 in and out (output scale 1/256, zero point -128):
    reference/softmax.h::Softmax<int8_t, int8_t>, gemmlowp fixed point along the last axis.

    ``diff = x - max``; kept where ``diff >= diff_min``, rescaled to Q5.26 by
    ``MultiplyByQuantizedMultiplierGreaterThanOne``, ``exp_on_negative_values``; the sum of
    the exps (Q12.19) goes through ``GetReciprocal``; each output is
    ``RoundingDivideByPOT(reciprocal * exp, num_bits_over_unit + 23) - 128``, clamped.
    """
    m, left_shift, diff_min = softmax_params(beta, input_scale)
    x64 = _int8("x", x)
    diff = x64 - x64.max(axis=-1, keepdims=True)
    keep = diff >= diff_min
    rescaled = _srdhm(wrap_int32(diff * (1 << left_shift)), m)
    exp = np.where(keep, _exp_on_negative_values(rescaled), 0)
    sum_of_exps = wrap_int32(_rdbpot(exp, np.int64(12)).sum(axis=-1, keepdims=True))
    # GetReciprocal(sum_of_exps, 12): headroom = CountLeadingZeros(uint32(sum)).
    headroom = 32 - np.floor(np.log2(np.maximum(sum_of_exps, 1))).astype(np.int64) - 1
    # log2 in float can be off by one right below a power of two: correct it exactly.
    headroom = np.where((sum_of_exps << headroom) >= (1 << 32), headroom - 1, headroom)
    headroom = np.where((sum_of_exps << (headroom + 1)) < (1 << 32), headroom + 1, headroom)
    num_bits_over_unit = 12 - headroom
    shifted_minus_one = wrap_int32(((sum_of_exps << headroom) & 0xFFFFFFFF) - (1 << 31))
    reciprocal = _one_over_one_plus_x_for_x_in_0_1(shifted_minus_one)
    exponent = num_bits_over_unit + 31 - 8
    out = _rdbpot(_srdhm(reciprocal, exp), exponent) - 128
    out = np.where(keep, np.clip(out, INT8_MIN, INT8_MAX), INT8_MIN)
    return out.astype(np.int8)


def quantize(x, *, scale, zero_point):
    """QUANTIZE float32 -> int8: reference/quantize.h::AffineQuantize,
    ``clamp((int)TfLiteRound(x / (float)scale) + zero_point)`` in float32."""
    q = _tflite_round_f32(np.asarray(x, np.float32) / np.float32(scale)) + int(zero_point)
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)


def requantize_tensor(x, *, input_scale, input_zero_point, output_scale, output_zero_point):
    """QUANTIZE int8 -> int8: kernels/quantize.cc (Prepare: QuantizeMultiplier of
    ``double(s_in) / double(s_out)``) and reference/requantize.h::Requantize."""
    m, s = quantize_multiplier(np.float64(np.float32(input_scale))
                               / np.float64(np.float32(output_scale)))
    acc = _int8("x", x) - int(input_zero_point)
    out = _mbqm(acc, np.int64(m), np.int64(s)) + int(output_zero_point)
    return np.clip(out, INT8_MIN, INT8_MAX).astype(np.int8)


def dequantize(x, *, scale, zero_point):
    """DEQUANTIZE int8 -> float32: reference/dequantize.h::Dequantize,
    ``(float)(double(scale) * (x - zero_point))``."""
    return (np.float64(np.float32(scale)) * (_int8("x", x) - int(zero_point))
            ).astype(np.float32)


def concatenation(xs, axis):
    """CONCATENATION, int8: reference_ops::Concatenation (a copy; Prepare requires every input
    to share the output's scale and zero point)."""
    return np.concatenate([_int8(f"xs[{i}]", x).astype(np.int8) for i, x in enumerate(xs)],
                          axis=axis)


# Re-exported for callers that quantize conv layers the way TFLite's Prepare does.
conv_multipliers = per_channel_multipliers

"""TFLite's builtin *optimized* int8 kernels where they round differently from the reference.

``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` in ai-edge-litert (and every op the XNNPACK delegate
does not take on the default path) runs LiteRT's ``kGenericOptimized`` kernels
(tflite/kernels/*.cc). Where their arithmetic equals the reference kernels'
(:mod:`pwconv.golden.ops`) this module calls those; what differs is here, once:

- CONV_2D and FULLY_CONNECTED go through ``cpu_backend_gemm`` to ruy
  (optimized_integer_ops/conv.h, optimized_integer_ops/fully_connected.h), which requantizes
  with ruy's x86 kernels: pwconv's ``"ruy"`` rounding (:func:`pwconv.golden.requant._mbqm_ruy`,
  ruy/kernel_avx2_fma.cc, kernel_avx512.cc).
- TFLite compiles its NEON paths on x86 too, through NEON_2_SSE
  (tflite/kernels/internal/optimized/neon_check.h), and those paths round like ruy
  (``vqrdmulhq``, ``vrshlq``: ties up) while their scalar leftovers call
  ``MultiplyByQuantizedMultiplier`` (the reference's ``"double"``): DEPTHWISE_CONV_2D's
  requantization (channels in blocks of 8), the global-average MEAN (channels in blocks of 16),
  QUANTIZE int8->int8 (elements in blocks of 16); QUANTIZE float->int8 rounds its blocks of 8
  to even and the rest away from zero.
- SOFTMAX uses a float32 table of ``expf`` instead of gemmlowp's fixed point.
- ADD and AVERAGE_POOL_2D equal the reference's.

Sources (LiteRT, tflite/kernels/internal/): optimized/optimized_ops.h (``Quantize``,
``Requantize``, ``AffineQuantize``, ``Softmax``, ``PopulateSoftmaxLookupTable``),
optimized/integer_ops/depthwise_conv.h, optimized/integer_ops/mean.h, common.h
(``MultiplyByQuantizedMultiplier4Rows``), and tflite/kernels/reduce.cc, quantize.cc,
activations.cc for which kernel runs. Each function is checked bit for bit against
ai-edge-litert 2.3.0 by tests/test_golden_xnnpack.py.
"""

from __future__ import annotations

import numpy as np

from . import ops as _ops
from .conv import INT8_MAX, INT8_MIN
from .requant import (_MBQM, _round_half_away, per_channel_multipliers, quantize_multiplier,
                      wrap_int32)
from .xnnpack import conv2d_acc, depthwise_conv2d_acc

__all__ = ["conv2d", "depthwise_conv2d", "fully_connected", "add", "mean", "quantize",
           "requantize_tensor", "softmax", "softmax_table", "blocked_requant"]


def _requant(acc, multiplier, shift, zero_point, lo, hi, rounding):
    y = wrap_int32(_MBQM[rounding](wrap_int32(acc), np.asarray(multiplier, np.int64),
                                   np.asarray(shift, np.int64)) + int(zero_point))
    return np.clip(y, lo, hi).astype(np.int8)


def conv2d(x, w, bias, *, input_scale, weight_scales, output_scale, input_zero_point,
           output_zero_point, stride=(1, 1), dilation=(1, 1), padding="VALID",
           activation="NONE"):
    """CONV_2D, int8 per-channel, optimized: optimized_integer_ops/conv.h::ConvPerChannel
    (im2col, then ruy through cpu_backend_gemm). Multipliers as the reference's
    (PopulateConvolutionQuantizationParams), rounding ``"ruy"``; activation range as the
    reference's (CalculateActivationRangeQuantized)."""
    acc = conv2d_acc(x, w, bias, input_zero_point=input_zero_point, stride=stride,
                     dilation=dilation, padding=padding)
    f = np.shape(w)[0]
    mult, shift = per_channel_multipliers(input_scale, np.broadcast_to(weight_scales, (f,)),
                                          output_scale)
    lo, hi = _ops.activation_range(activation, output_scale, output_zero_point)
    return _requant(acc, mult, shift, output_zero_point, lo, hi, "ruy")


def depthwise_conv2d(x, w, bias, *, input_scale, weight_scales, output_scale, input_zero_point,
                     output_zero_point, depth_multiplier=1, stride=(1, 1), dilation=(1, 1),
                     padding="VALID", activation="NONE"):
    """DEPTHWISE_CONV_2D, int8 per-channel, optimized:
    optimized_integer_ops/depthwise_conv.h::DepthwiseConvPerChannel. On x86 it always takes
    ``DepthwiseConvGeneral`` (the 3x3 kernels are aarch64-only), whose requantization is
    optimized_ops.h ``Quantize(multiplier, shift, ...)`` for int8: TFLite compiles it with
    ``USE_NEON`` on x86 through NEON_2_SSE (optimized/neon_check.h, ``__SSE4_1__``), so
    channels in whole blocks of 8 (``c < 8 * (channels // 8)``) round with ``vshlq``,
    ``vqrdmulhq`` (ties up) and ``vrshlq`` (ties up): pwconv's ``"ruy"`` mode; the leftover
    channels go one by one through ``MultiplyByQuantizedMultiplier``: ``"double"``."""
    acc = depthwise_conv2d_acc(x, w, bias, input_zero_point=input_zero_point,
                               depth_multiplier=depth_multiplier, stride=stride,
                               dilation=dilation, padding=padding)
    oc = np.shape(w)[-1]
    mult, shift = per_channel_multipliers(input_scale, np.broadcast_to(weight_scales, (oc,)),
                                          output_scale)
    lo, hi = _ops.activation_range(activation, output_scale, output_zero_point)
    return blocked_requant(acc, mult, shift, output_zero_point, lo, hi)


def blocked_requant(acc, multiplier, shift, zero_point, lo, hi):
    """optimized_ops.h ``Quantize`` (int8, per channel) on x86: ``"ruy"`` rounding for the
    channels in whole blocks of 8, ``"double"`` for the rest (see :func:`depthwise_conv2d`).
    ``acc`` [..., C]; ``multiplier``, ``shift`` [C]."""
    blocked = np.shape(acc)[-1] // 8 * 8
    fast = _requant(acc, multiplier, shift, zero_point, lo, hi, "ruy")
    slow = _requant(acc, multiplier, shift, zero_point, lo, hi, "double")
    return np.concatenate([fast[..., :blocked], slow[..., blocked:]], axis=-1)


def fully_connected(x, w, bias, *, input_scale, weight_scales, output_scale, input_zero_point,
                    output_zero_point, activation="NONE"):
    """FULLY_CONNECTED, int8, optimized: optimized_integer_ops/fully_connected.h (ruy through
    cpu_backend_gemm), rounding ``"ruy"``. A per-tensor layer's multiplier comes from
    :func:`pwconv.golden.ops.fully_connected_multiplier` (GetQuantizedConvolutionMultipler),
    a per-channel layer's from :func:`pwconv.golden.per_channel_multipliers`."""
    x64 = _ops._int8("x", x) - int(input_zero_point)
    w64 = _ops._int8("w", w, 2)
    acc = x64 @ w64.T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    f = w64.shape[0]
    if np.size(weight_scales) == 1:
        mult, shift = _ops.fully_connected_multiplier(
            input_scale, float(np.ravel(weight_scales)[0]), output_scale)
    else:
        mult, shift = per_channel_multipliers(input_scale, weight_scales, output_scale)
    mult = np.broadcast_to(mult, (f,))
    shift = np.broadcast_to(shift, (f,))
    lo, hi = _ops.activation_range(activation, output_scale, output_zero_point)
    return _requant(acc, mult, shift, output_zero_point, lo, hi, "ruy")


def add(a, b, *, scales, zero_points, output_scale, output_zero_point, activation="NONE"):
    """ADD, int8, optimized: optimized_integer_ops/add.h, the reference's arithmetic
    (:func:`pwconv.golden.ops.add`)."""
    lo, hi = _ops.activation_range(activation, output_scale, output_zero_point)
    return _ops.add(a, b, scales=scales, zero_points=zero_points, output_scale=output_scale,
                    output_zero_point=output_zero_point, activation_min=lo, activation_max=hi)


def mean(x, axes, *, keep_dims, input_scale, input_zero_point, output_scale,
         output_zero_point, threads=1):
    """MEAN, int8, optimized: kernels/reduce.cc ``EvalMean<kGenericOptimized>``.

    A 4-D input reduced over axes {1, 2} with ``keep_dims`` (a global average pool) runs
    optimized_integer_ops/mean.h ``Mean``: ``S`` the sum of the raw int8 values over the
    ``N = H * W`` pixels; ``t = f32(f32(zp_in * s_in) / s_out)`` rounded half away from zero
    (``t +- 0.5``, truncated), ``bias = zp_out - t``; ``(multiplier, shift) =
    QuantizeMultiplier(f32(s_in / f32(f32(N) * s_out)))``; ``y = clip(MBQM(S) + bias)``, MBQM
    rounding ``"ruy"`` (``MultiplyByQuantizedMultiplier4Rows``: vqrdmulhq, vrshlq) for the
    channels in whole blocks of 16 and ``"double"`` for the rest (NEON through NEON_2_SSE on
    x86). Every other case is the reference's (:func:`pwconv.golden.ops.mean`).

    ``threads`` is the interpreter's thread count (``num_threads``; ai-edge-litert's default
    runs this kernel on 1): ``Mean`` splits the channels into ``min(C // 8, threads)`` ranges
    (``depth_end = start + (C - start) // (tasks - i)``) and each range counts its blocks of 16
    from its own start.
    """
    x64 = _ops._int8("x", x)
    axes_set = {int(a) % x64.ndim for a in np.atleast_1d(axes)} if x64.ndim else set()
    if not (keep_dims and x64.ndim == 4 and axes_set == {1, 2}):
        return _ops.mean(x, axes, keep_dims=keep_dims, input_scale=input_scale,
                         input_zero_point=input_zero_point, output_scale=output_scale,
                         output_zero_point=output_zero_point)
    f32 = np.float32
    n = x64.shape[1] * x64.shape[2]
    t = f32(f32(f32(int(input_zero_point)) * f32(input_scale)) / f32(output_scale))
    t = f32(t + f32(0.5)) if t > 0 else f32(t - f32(0.5))
    bias = int(output_zero_point) - int(np.trunc(t))
    real = f32(f32(input_scale) / f32(f32(n) * f32(output_scale)))
    mult, shift = quantize_multiplier(np.float64(real))
    total = wrap_int32(x64.sum(axis=(1, 2), keepdims=True))
    c = x64.shape[3]
    m = np.full(c, int(mult), np.int64)
    sh = np.full(c, int(shift), np.int64)
    fast = _MBQM["ruy"](total, m, sh)
    slow = _MBQM["double"](total, m, sh)
    tasks = min(max(c // 8, 1), max(int(threads), 1))
    in_block = np.zeros(c, bool)
    start = 0
    for i in range(tasks):
        end = start + (c - start) // (tasks - i)
        in_block[start:start + (end - start) // 16 * 16] = True
        start = end
    y = np.where(in_block, fast, slow)
    return np.clip(wrap_int32(y + bias), INT8_MIN, INT8_MAX).astype(np.int8)


def quantize(x, *, scale, zero_point):
    """QUANTIZE float32 -> int8, optimized: optimized_ops.h ``AffineQuantize<int8_t>``.

    Over the flattened tensor, the elements in whole blocks of 8 are
    ``rint(x * f32(1 / double(s)))`` (vmulq_f32, then RoundToNearest = vcvtnq_s32_f32 on x86
    with SSSE3: ties to even) ``+ zp``; the leftover ones ``TfLiteRound(double(x) /
    double(s))`` (ties away from zero) ``+ zp``; both clamped to int8.
    """
    xf = np.asarray(x, np.float32)
    flat = xf.reshape(-1)
    blocked = flat.size // 8 * 8
    inv = np.float32(1.0 / np.float64(np.float32(scale)))
    with np.errstate(over="ignore", invalid="ignore"):
        fast = np.rint(np.clip(flat[:blocked] * inv, -1e9, 1e9))
        slow = _round_half_away(np.clip(flat[blocked:].astype(np.float64)
                                        / np.float64(np.float32(scale)), -1e9, 1e9))
    q = np.concatenate([fast.astype(np.float64), slow]) + int(zero_point)
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8).reshape(xf.shape)


def requantize_tensor(x, *, input_scale, input_zero_point, output_scale, output_zero_point):
    """QUANTIZE int8 -> int8, optimized: optimized_ops.h ``Requantize<int8_t, int8_t>`` with
    kernels/quantize.cc's ``QuantizeMultiplier(double(s_in) / double(s_out))``. Over the
    flattened tensor, the elements in whole blocks of 16 go through
    ``MultiplyByQuantizedMultiplier4Rows`` (rounding ``"ruy"``), the leftover ones through
    ``MultiplyByQuantizedMultiplier`` (``"double"``); ``+ zp_out``, clamped."""
    x64 = _ops._int8("x", x)
    mult, shift = quantize_multiplier(np.float64(np.float32(input_scale))
                                      / np.float64(np.float32(output_scale)))
    acc = (x64 - int(input_zero_point)).reshape(-1)
    blocked = acc.size // 16 * 16
    m, s = np.int64(mult), np.int64(shift)
    y = np.concatenate([_MBQM["ruy"](acc[:blocked], m, s), _MBQM["double"](acc[blocked:], m, s)])
    y = y + int(output_zero_point)
    return np.clip(y, INT8_MIN, INT8_MAX).astype(np.int8).reshape(x64.shape)


def softmax_table(beta, input_scale):
    """optimized_ops.h ``PopulateSoftmaxLookupTable``: ``table[255 - v] = expf(f32(-s_in *
    beta) * v)`` for v in 0..255, float32 (expf as the correctly rounded float32 of exp)."""
    scale = np.float32(-np.float32(input_scale) * np.float32(beta))
    v = np.arange(256, dtype=np.float32)
    table = np.empty(256, np.float32)
    table[255 - np.arange(256)] = np.exp((scale * v).astype(np.float64)).astype(np.float32)
    return table


def softmax(x, *, beta, input_scale, output_scale=1 / 256, output_zero_point=-128):
    """SOFTMAX, int8 -> int8, optimized: optimized_ops.h ``Softmax<int8_t, int8_t>`` with the
    float table of :func:`softmax_table` (x86 builds do not define
    ``TFLITE_SOFTMAX_USE_UINT16_LUT``, kernels/activations.cc). Along the last axis: ``e[j] =
    table[255 - max + x[j]]``; ``sum`` the sequential float32 sum of ``e``; ``inv = f32(1 /
    f32(sum * s_out))``; ``y = clip(round_half_away(f32(e[j] * inv)) + zp_out)``
    (``QuantizeSoftmaxOutput``: ``std::round``)."""
    x64 = _ops._int8("x", x)
    table = softmax_table(beta, input_scale)
    top = x64.max(axis=-1, keepdims=True)
    e = table[255 - top + x64]
    total = np.zeros(x64.shape[:-1] + (1,), np.float32)
    for j in range(x64.shape[-1]):                       # sequential, in float32
        total = (total + e[..., j:j + 1]).astype(np.float32)
    inv = (np.float32(1) / (total * np.float32(output_scale))).astype(np.float32)
    prob = (e * inv).astype(np.float32)
    q = _round_half_away(prob.astype(np.float64)) + int(output_zero_point)
    return np.clip(q, INT8_MIN, INT8_MAX).astype(np.int8)

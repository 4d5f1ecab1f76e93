"""XNNPACK's int8 arithmetic per op (the TFLite interpreter's default path), the delegate's rules.

ai-edge-litert's ``Interpreter(model_path=...)`` with no resolver option applies the XNNPACK
delegate: every op it takes (:func:`delegated`) runs in XNNPACK, every other op in TFLite's builtin
*optimized* kernels (:mod:`pwconv.golden.optimized`). Each function here is the parameter setup
of one XNNPACK operator followed by its microkernel's arithmetic, vectorized in NumPy and
bit-exact with ai-edge-litert 2.3.0 on x86-64 (checked by tests/test_golden_xnnpack.py). The
sources read, all in /work/.mirror: LiteRT ``tflite/delegates/xnnpack/xnnpack_delegate.cc``
(which ops and cases are delegated, activation ranges as floats); XNNPACK
``src/microparams-init.c`` (``xnn_init_qs8_add_minmax_scalar_params``,
``xnn_init_qs8_mul_minmax_scalar_params``, ``xnn_init_qs8_cvt_scalar_params``,
``xnn_init_f32_qs8_cvt_scalar_params``, ``xnn_init_qs8_reduce_scalar_params``),
``src/xnnpack/requantization.h`` (``xnn_qs8_quantize``, ``xnn_qs8_quantize_add``),
``src/subgraph/convolution-2d.c``, ``depthwise-convolution-2d.c``, ``fully-connected.c`` (the
output bounds), ``src/operators/convolution-nhwc.c`` and ``fully-connected-nc.c`` (float32
per-channel scales), ``src/operators/reduce-nd.c`` (MEAN), ``src/qs8-vcvt/`` and
``src/f32-qs8-vcvt/`` (QUANTIZE) and ``src/reference/`` (binary and unary elementwise).

The gateware engines for depthwise, residual ADD and pooling use these functions as their
golden reference: each formula lives here once.
"""

from __future__ import annotations

import numpy as np

from . import ops as _ops
from .conv import INT8_MAX, INT8_MIN
from .conv import _requant_float as _float_mode
from .requant import float32_scales, wrap_int32

__all__ = ["output_bounds", "conv2d_acc", "depthwise_conv2d_acc", "add_params", "conv2d",
           "depthwise_conv2d", "fully_connected", "add", "sub", "mul", "mean", "quantize",
           "requantize_tensor", "delegated", "DELEGATED_ACTIVATIONS"]

#: Fused activations the delegate takes (ConvertActivationToOutputRange); TANH, SIGN_BIT and
#: SIGMOID make it leave the op to TFLite.
DELEGATED_ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")

_F32 = np.float32
_ACT_FLOAT = {"NONE": (-np.inf, np.inf), "RELU": (0.0, np.inf), "RELU_N1_TO_1": (-1.0, 1.0),
              "RELU6": (0.0, 6.0)}


def _quantize_bound(value, scale, zero_point):
    """``xnn_qs8_quantize`` (src/xnnpack/requantization.h): ``lrintf(fminf(fmaxf(value / scale
    + zero_point, -128), 127))`` in float32, ties to even."""
    with np.errstate(over="ignore", invalid="ignore"):
        v = _F32(_F32(value) / _F32(scale)) + _F32(zero_point)
    return int(np.rint(np.clip(v, _F32(INT8_MIN), _F32(INT8_MAX))))


def output_bounds(activation, scale, zero_point):
    """The int8 clamp range of a fused activation, as the delegate and XNNPACK compute it.

    xnnpack_delegate.cc ``ConvertActivationToOutputRange`` turns the activation into a float
    range (NONE ``[-inf, inf]``, RELU ``[0, inf]``, RELU_N1_TO_1 ``[-1, 1]``, RELU6 ``[0, 6]``);
    XNNPACK's subgraph nodes quantize each end with ``xnn_qs8_quantize``: ``rint(clip(f32(v /
    s_out) + zp, -128, 127))``, ties to even (TFLite's CalculateActivationRangeQuantized rounds
    ties away from zero instead: :func:`pwconv.golden.ops.activation_range`).

    Returns
    -------
    (int, int)
    """
    if activation not in _ACT_FLOAT:
        raise ValueError(f"fused activation {activation} is not delegated to XNNPACK "
                         f"(delegated: {', '.join(DELEGATED_ACTIVATIONS)})")
    lo, hi = _ACT_FLOAT[activation]
    return _quantize_bound(lo, scale, zero_point), _quantize_bound(hi, scale, zero_point)


def _requant_float(acc, scale32, zero_point, lo, hi):
    """fp32 requantization of the qs8 GEMM/IGEMM/DWCONV microkernels
    (src/qs8-gemm/*-minmax-fp32-*.c, src/qs8-dwconv/*-minmax-fp32-*.c): ``f32(acc) * scale``
    rounded to nearest, ties to even, ``+ zp``, clamped. Shared with pwconv's ``"float"`` mode
    (:func:`pwconv.golden.requantize`)."""
    return _float_mode(wrap_int32(acc), scale32, int(zero_point), int(lo), int(hi))


def conv2d_acc(x, w, bias, *, input_zero_point, stride=(1, 1), dilation=(1, 1),
               padding="VALID"):
    """The int32 accumulators of CONV_2D (int64 array of int32 values, [N, OH, OW, F]):
    ``bias[f] + sum (x - zp_in) * w`` over the in-image taps, as every runtime sums them
    (exactly; the windows are :func:`pwconv.golden.ops.conv2d`'s)."""
    x64 = _ops._int8("x", x, 4) - int(input_zero_point)
    w64 = _ops._int8("w", w, 4)
    f, kh, kw, c = w64.shape
    if x64.shape[-1] != c:
        raise ValueError(f"conv2d: input has {x64.shape[-1]} channels, filter has {c}")
    acc = 0
    for ky, kx, view in _ops._windows(x64, kh, kw, stride, dilation, padding, 0):
        acc = acc + view @ w64[:, ky, kx, :].T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return wrap_int32(acc)


def depthwise_conv2d_acc(x, w, bias, *, input_zero_point, depth_multiplier=1, stride=(1, 1),
                         dilation=(1, 1), padding="VALID"):
    """The int32 accumulators of DEPTHWISE_CONV_2D, [N, OH, OW, C * depth_multiplier]
    (the windows of :func:`pwconv.golden.ops.depthwise_conv2d`)."""
    x64 = _ops._int8("x", x, 4) - int(input_zero_point)
    w64 = _ops._int8("w", w, 4)
    _, kh, kw, oc = w64.shape
    if oc != x64.shape[-1] * depth_multiplier:
        raise ValueError(f"depthwise_conv2d: filter has {oc} channels, expected "
                         f"{x64.shape[-1]} x depth_multiplier {depth_multiplier}")
    acc = 0
    for ky, kx, view in _ops._windows(x64, kh, kw, stride, dilation, padding, 0):
        if depth_multiplier != 1:
            view = np.repeat(view, depth_multiplier, axis=-1)
        acc = acc + view * w64[0, ky, kx, :]
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    return wrap_int32(acc)


def conv2d(x, w, bias, *, input_scale, weight_scales, output_scale, input_zero_point,
           output_zero_point, stride=(1, 1), dilation=(1, 1), padding="VALID",
           activation="NONE"):
    """CONV_2D of any filter size in XNNPACK (``xnn_create_convolution2d_nhwc_qs8_qc8w``).

    The accumulators are the exact int32 sums of :func:`pwconv.golden.ops.conv2d`; the
    requantization is the float mode on every x86 path: ``scale[f] = f32(f32(s_in * s_w[f]) /
    s_out)`` (:func:`pwconv.golden.float32_scales`), ``y = clip(rint(f32(acc) * scale[f]) +
    zp_out, lo, hi)``, ties to even, bounds from :func:`output_bounds`.
    ``x`` int8 [N, H, W, C], ``w`` int8 [F, KH, KW, C].
    """
    acc = conv2d_acc(x, w, bias, input_zero_point=input_zero_point, stride=stride,
                          dilation=dilation, padding=padding)
    f = np.shape(w)[0]
    scale = float32_scales(input_scale, np.broadcast_to(weight_scales, (f,)), output_scale)
    lo, hi = output_bounds(activation, output_scale, output_zero_point)
    return _requant_float(acc, scale, output_zero_point, lo, hi)


def depthwise_conv2d(x, w, bias, *, input_scale, weight_scales, output_scale, input_zero_point,
                     output_zero_point, depth_multiplier=1, stride=(1, 1), dilation=(1, 1),
                     padding="VALID", activation="NONE"):
    """DEPTHWISE_CONV_2D in XNNPACK (the depthwise path of convolution-nhwc.c, qs8 DWCONV
    microkernels): exact int32 accumulators, then the float mode as in :func:`conv2d`.
    ``w`` int8 [1, KH, KW, C * depth_multiplier]."""
    acc = depthwise_conv2d_acc(x, w, bias, input_zero_point=input_zero_point,
                                    depth_multiplier=depth_multiplier, stride=stride,
                                    dilation=dilation, padding=padding)
    oc = np.shape(w)[-1]
    scale = float32_scales(input_scale, np.broadcast_to(weight_scales, (oc,)), output_scale)
    lo, hi = output_bounds(activation, output_scale, output_zero_point)
    return _requant_float(acc, scale, output_zero_point, lo, hi)


def fully_connected(x, w, bias, *, input_scale, weight_scales, output_scale, input_zero_point,
                    output_zero_point, activation="NONE"):
    """FULLY_CONNECTED in XNNPACK (fully-connected-nc.c, qs8 or qs8-qc8w GEMM): exact int32
    accumulators, then the float mode as in :func:`conv2d`. ``x`` int8 [..., C], ``w`` int8
    [F, C]."""
    x64 = _ops._int8("x", x) - int(input_zero_point)
    w64 = _ops._int8("w", w, 2)
    acc = x64 @ w64.T
    if bias is not None:
        acc = acc + np.asarray(bias, np.int64)
    f = w64.shape[0]
    scale = float32_scales(input_scale, np.broadcast_to(weight_scales, (f,)), output_scale)
    lo, hi = output_bounds(activation, output_scale, output_zero_point)
    return _requant_float(acc, scale, output_zero_point, lo, hi)


def add_params(scales, zero_points, output_scale):
    """``(multipliers, bias, shift)`` of ``xnn_init_qs8_add_minmax_scalar_params``
    (src/microparams-init.c) for ADD (SUB: negate the second scale first).

    ``r_i = f32(s_i / s_out)``; ``shift = 20 - exponent(max |r_i|)`` (the float32 exponent, so
    the shift is 12..30 for ratios in [2**-10, 2**8)); ``m_i = rint(r_i * 2**shift)``, ties to
    even (lrintf); ``bias = 2**(shift-1) - m_a * zp_a - m_b * zp_b`` (int32).
    """
    ratios = [_F32(_F32(s) / _F32(output_scale)) for s in scales]
    for r in ratios:
        if not _F32(2.0 ** -10) <= abs(r) < _F32(256.0):
            raise ValueError(f"input/output scale ratio {float(abs(r))} is outside XNNPACK's "
                             f"[2**-10, 256)")
    top = max(abs(r) for r in ratios)
    exponent = int(np.frexp(top)[1]) - 1
    shift = 20 - exponent
    mults = [int(np.rint(np.float64(r) * 2.0 ** shift)) for r in ratios]
    bias = (1 << (shift - 1)) - mults[0] * int(zero_points[0]) - mults[1] * int(zero_points[1])
    return mults, int(wrap_int32(np.int64(bias))), shift


def _add(a, b, params, output_scale, output_zero_point, activation):
    (ma, mb), bias, shift = params
    a64, b64 = _ops._int8("a", a), _ops._int8("b", b)
    acc = wrap_int32(bias + a64 * ma + b64 * mb)
    lo, hi = output_bounds(activation, output_scale, output_zero_point)
    return np.clip((acc >> shift) + int(output_zero_point), lo, hi).astype(np.int8)


def add(a, b, *, scales, zero_points, output_scale, output_zero_point, activation="NONE"):
    """ADD, int8, in XNNPACK (qs8 VADD microkernels, ``xnn_qs8_quantize_add`` in
    src/xnnpack/requantization.h), with NumPy broadcasting.

    ``y = clip(((bias + a * m_a + b * m_b) >> shift) + zp_out, lo, hi)``, an arithmetic (floor)
    shift, parameters from :func:`add_params`, bounds from :func:`output_bounds`.
    """
    return _add(a, b, add_params(scales, zero_points, output_scale), output_scale,
                output_zero_point, activation)


def sub(a, b, *, scales, zero_points, output_scale, output_zero_point, activation="NONE"):
    """SUB, int8, in XNNPACK: :func:`add` with the second input's scale negated
    (``xnn_init_qs8_add_minmax_scalar_params`` takes signed ratios)."""
    params = add_params((scales[0], -_F32(scales[1])), zero_points, output_scale)
    return _add(a, b, params, output_scale, output_zero_point, activation)


def mul(a, b, *, scales, zero_points, output_scale, output_zero_point, activation="NONE"):
    """MUL, int8, in XNNPACK (``xnn_init_qs8_mul_minmax_scalar_params``, qs8 VMUL fp32
    microkernels): ``scale = f32(f32(s_a * s_b) / s_out)``,
    ``y = clip(rint(f32((a - zp_a) * (b - zp_b)) * scale) + zp_out, lo, hi)``, ties to even."""
    scale = _F32(_F32(_F32(scales[0]) * _F32(scales[1])) / _F32(output_scale))
    prod = (_ops._int8("a", a) - int(zero_points[0])) * (_ops._int8("b", b) - int(zero_points[1]))
    v = prod.astype(np.float32) * scale
    lo, hi = output_bounds(activation, output_scale, output_zero_point)
    return np.clip(np.rint(v) + int(output_zero_point), lo, hi).astype(np.int8)


def mean(x, axes, *, keep_dims, input_scale, input_zero_point, output_scale,
         output_zero_point):
    """MEAN, int8, in XNNPACK (src/operators/reduce-nd.c with the qs8 RSUM/RDSUM kernels).

    ``S`` is the exact integer sum of the raw int8 values over the ``N`` reduced elements;
    ``m = f32(f32(s_in / s_out) * f32(1 / N))`` (``xnn_init_qs8_reduce_scalar_params`` then
    ``xnn_update_qs8_reduce_scalar_params``), ``b = f32(zp_out - f32(f32(N * zp_in) * m))``;
    ``y = clip(rint(f32(f32(S) * m) + b), -128, 127)``, ties to even.
    """
    x64 = _ops._int8("x", x)
    axes = tuple(sorted({int(a) % x64.ndim for a in np.atleast_1d(axes)}))
    count = int(np.prod([x64.shape[a] for a in axes]))
    total = x64.sum(axis=axes, keepdims=bool(keep_dims))
    m = _F32(_F32(_F32(input_scale) / _F32(output_scale)) * _F32(_F32(1.0) / _F32(count)))
    b = _F32(_F32(output_zero_point) - _F32(_F32(count * int(input_zero_point)) * m))
    v = total.astype(np.float32) * m + b
    return np.clip(np.rint(v), INT8_MIN, INT8_MAX).astype(np.int8)


def quantize(x, *, scale, zero_point):
    """QUANTIZE float32 -> int8 in XNNPACK (``xnn_init_f32_qs8_cvt_scalar_params``,
    src/f32-qs8-vcvt/): ``y = clip(rint(x * f32(1 / s_out)) + zp, -128, 127)``, ties to even
    (TFLite's reference divides by the scale and rounds ties away). Infinities saturate; NaN is
    not modeled (pwconv refuses non-finite model inputs)."""
    inv = _F32(_F32(1.0) / _F32(scale))
    with np.errstate(over="ignore"):
        v = np.clip(np.asarray(x, np.float32) * inv, -1e6, 1e6)
    return np.clip(np.rint(v) + int(zero_point), INT8_MIN, INT8_MAX).astype(np.int8)


def requantize_tensor(x, *, input_scale, input_zero_point, output_scale, output_zero_point):
    """QUANTIZE int8 -> int8 in XNNPACK (``xnn_init_qs8_cvt_scalar_params``,
    src/qs8-vcvt/): ``M = rint(256 * f32(s_in / s_out))``,
    ``y = clip((((x - zp_in) * M + 128) >> 8) + zp_out, -128, 127)`` (floor shift)."""
    ratio = _F32(_F32(input_scale) / _F32(output_scale))
    mult = int(np.rint(_F32(256.0) * ratio))
    acc = (_ops._int8("x", x) - int(input_zero_point)) * mult + 128
    return np.clip((acc >> 8) + int(output_zero_point), INT8_MIN, INT8_MAX).astype(np.int8)


def delegated(op, *, inputs=(), output=None, activation="NONE", options=None):
    """Whether the XNNPACK delegate takes this int8 op (else TFLite's builtin optimized kernel
    runs it), by the rules of xnnpack_delegate.cc's ``Visit*Node`` checks.

    Parameters
    ----------
    op : str
        Builtin op name (``"CONV_2D"``, ...).
    inputs : sequence of (scale, zero_point, per_axis_dim, is_constant, dtype) or None
        Each input tensor: ``scale`` a float or float array, ``zero_point`` an int or array,
        ``per_axis_dim`` the quantized dimension, ``is_constant`` whether it has data, ``dtype``
        a NumPy dtype name; None for an absent optional input.
    output : (scale, zero_point, per_axis_dim, is_constant, dtype)
    activation : str
        The op's fused activation.
    options : dict, optional
        Op-specific facts: ``depth_multiplier`` and ``channels`` (DEPTHWISE_CONV_2D),
        ``sparse`` (FULLY_CONNECTED weights), ``paddings`` (PAD), ``static_shape`` (RESHAPE).

    Returns
    -------
    bool

    The rules (int8): CONV_2D with a bias; DEPTHWISE_CONV_2D with a bias, weights quantized
    per channel on dimension 3 (or per tensor) and a depth multiplier dividing the output
    channels; FULLY_CONNECTED with weight zero point 0 and dense weights; ADD/SUB with each
    ``s_in / s_out`` in ``[1/1024, 256)``; MUL with ``s_a * s_b / s_out`` in
    ``[1/65536, 256)``; QUANTIZE int8->int8 with ``s_in / s_out`` in ``[1/256, 128]``, and
    float->int8; MAX_POOL_2D, MEAN/SUM with constant axes, PAD with constant non-negative
    paddings (not PADV2), RESHAPE, DEQUANTIZE, CONCATENATION (2 to 5 inputs). A fused
    activation other than NONE, RELU, RELU_N1_TO_1, RELU6 is never delegated. int8
    AVERAGE_POOL_2D and SOFTMAX are not delegated (the delegate takes them in float32 only).
    """
    options = options or {}
    if activation not in DELEGATED_ACTIVATIONS:
        return False
    ins = list(inputs)

    def scale(t):
        return _F32(np.atleast_1d(t[0])[0])

    if op == "CONV_2D":
        return len(ins) > 2 and ins[2] is not None
    if op == "DEPTHWISE_CONV_2D":
        if len(ins) < 3 or ins[2] is None:
            return False
        w = ins[1]
        if np.size(w[0]) > 1 and w[2] != 3:
            return False
        dm, oc = options.get("depth_multiplier", 1), options.get("channels")
        return dm >= 1 and (oc is None or oc % dm == 0)
    if op == "FULLY_CONNECTED":
        return not np.any(np.asarray(ins[1][1]) != 0) and not options.get("sparse", False)
    if op in ("ADD", "SUB"):
        return all(_F32(2.0 ** -10) <= _F32(scale(t) / scale(output)) < _F32(256.0)
                   for t in ins[:2])
    if op == "MUL":
        r = _F32(_F32(scale(ins[0]) * scale(ins[1])) / scale(output))
        return _F32(2.0 ** -16) <= r < _F32(256.0)
    if op == "QUANTIZE":
        if ins[0][4] == "float32":
            return True
        r = _F32(scale(ins[0]) / scale(output))
        return _F32(1 / 256) <= r <= _F32(128.0)
    if op in ("MEAN", "SUM"):
        return len(ins) > 1 and ins[1] is not None and bool(ins[1][3])
    if op == "PAD":
        pads = options.get("paddings")
        return bool(ins[1][3]) and (pads is None or bool(np.all(np.asarray(pads) >= 0)))
    if op == "RESHAPE":
        return options.get("static_shape", True)
    if op == "CONCATENATION":
        return 2 <= len(ins) <= 5
    return op in ("MAX_POOL_2D", "DEQUANTIZE")

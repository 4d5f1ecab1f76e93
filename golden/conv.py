"""Integer-only int8 1x1 convolution golden model, bit-exact with TFLite's per-channel kernel."""

from __future__ import annotations

import numpy as np

from .requant import (FIXED_POINT_ROUNDINGS, INT32_MAX, INT32_MIN, SHIFT_MAX, SHIFT_MIN, _MBQM,
                      _int_array, check_float_scale, check_rounding, wrap_int32)

__all__ = ["conv1x1", "conv1x1_acc", "fold_input_zero_point", "requantize"]

INT8_MIN = -128
INT8_MAX = 127


def _int_scalar(name, value, lo, hi):
    """Return ``value`` as a Python int after checking it is an integer scalar in [lo, hi]."""
    arr = np.asarray(value)
    if arr.dtype == np.bool_ or arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value}")
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar, got shape {arr.shape}")
    v = int(arr)
    if not lo <= v <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v}")
    return v


def _check_x(x):
    """Validate the int8 activation tensor ``x`` of shape ``[..., C]``; return it as int64."""
    x64 = _int_array("x", x, INT8_MIN, INT8_MAX)
    if x64.ndim < 1:
        raise ValueError(f"x must have shape [..., C] (at least 1 dimension), got {x64.shape}")
    return x64


def _check_w(w, channels=None):
    """Validate the int8 weight matrix ``w`` of shape ``[C, F]``; return it as int64."""
    w64 = _int_array("w", w, INT8_MIN, INT8_MAX)
    if channels is None:
        if w64.ndim != 2:
            raise ValueError(f"w must have shape [C, F], got {w64.shape}")
    elif w64.ndim != 2 or w64.shape[0] != channels:
        raise ValueError(
            f"w must have shape [C, F] with C == x.shape[-1] == {channels}, got {w64.shape}"
        )
    return w64


def _check_bias(bias, filters):
    """Validate the int32 bias vector of shape ``[F]``; return it as int64."""
    b64 = _int_array("bias", bias, INT32_MIN, INT32_MAX)
    if b64.shape != (filters,):
        raise ValueError(
            f"bias must have shape [F] with F == w.shape[1] == {filters}, got {b64.shape}"
        )
    return b64


def _check_per_channel(name, value, lo, hi, filters, source):
    """Validate a per-channel int vector of shape ``[F]`` or ``()``; return it as int64."""
    v64 = _int_array(name, value, lo, hi)
    if v64.shape not in ((), (filters,)):
        raise ValueError(
            f"{name} must be a scalar or have shape [F] with F == {source} == {filters}, "
            f"got {v64.shape}"
        )
    return v64


def _check_activation(activation_min, activation_max):
    """Validate the int8 clamp range; return it as a pair of Python ints."""
    lo = _int_scalar("activation_min", activation_min, INT8_MIN, INT8_MAX)
    hi = _int_scalar("activation_max", activation_max, INT8_MIN, INT8_MAX)
    if lo > hi:
        raise ValueError(f"activation_min must be <= activation_max, got {lo} > {hi}")
    return lo, hi


def _acc(x64, w64, b64, zp):
    """Unchecked int64 core of :func:`conv1x1_acc`; returns wrapped int64 accumulators."""
    lead = x64.shape[:-1]
    flat = (x64 - zp).reshape(-1, x64.shape[-1])
    # Every partial sum is bounded by C * 255 * 128 + 2**31, so int64 is exact; the final
    # wrap equals the per-step int32 wrap of the C loop because both are taken mod 2**32.
    acc = flat @ w64 + b64
    return wrap_int32(acc).reshape(*lead, w64.shape[1])


def _requant(acc64, mult64, shift64, zp, lo, hi, rounding="double"):
    """Unchecked int64 core of :func:`requantize` in a fixed-point mode; returns int8."""
    # ``acc += output_offset`` is an int32 add in C; it is wrapped like the accumulator.
    y = wrap_int32(_MBQM[rounding](acc64, mult64, shift64) + zp)
    return np.clip(y, lo, hi).astype(np.int8)


def _requant_float(acc64, scale32, zp, lo, hi):
    """Unchecked core of :func:`requantize` in the ``"float"`` mode; returns int8.

    XNNPACK's fp32 requantization (src/qs8-gemm/*-minmax-fp32-*.c, scalar form
    ``xnn_qs8_qc8w_gemm_minmax_fp32_ukernel_*__scalar_fmagic``) and ONNX Runtime's
    ``MlasRequantizeOutput`` (onnxruntime/core/mlas/lib/quantize.cpp): ``float(acc) * scale``
    in float32, clamped to ``[activation_min - zp, activation_max - zp]``, rounded to nearest
    with ties to even (the magic-bias add or cvtps2dq), then ``+ zp``. Clamping before or
    after the rounding is the same, since the bounds are integers.
    """
    with np.errstate(over="ignore"):
        v = acc64.astype(np.int32).astype(np.float32) * scale32
    v = np.clip(v, np.float32(lo - zp), np.float32(hi - zp))
    return (np.rint(v).astype(np.int64) + zp).astype(np.int8)


def _check_requant_params(rounding, multiplier, shift, scale, filters, source):
    """Validate one mode's parameters; return ``(mult64, shift64, scale32)``, unused ones None."""
    check_rounding(rounding)
    if rounding == "float":
        if scale is None:
            raise ValueError("scale is required with rounding='float'")
        scale32 = check_float_scale("scale", scale)
        if scale32.shape not in ((), (filters,)):
            raise ValueError(f"scale must be a scalar or have shape [F] with F == {source} == "
                             f"{filters}, got {scale32.shape}")
        return None, None, scale32
    if multiplier is None or shift is None:
        raise ValueError(f"multiplier and shift are required with rounding={rounding!r}")
    mult64 = _check_per_channel("multiplier", multiplier, INT32_MIN, INT32_MAX, filters, source)
    shift64 = _check_per_channel("shift", shift, SHIFT_MIN, SHIFT_MAX, filters, source)
    return mult64, shift64, None


def _requant_any(acc64, mult64, shift64, scale32, zp, lo, hi, rounding):
    if rounding == "float":
        return _requant_float(acc64, scale32, zp, lo, hi)
    return _requant(acc64, mult64, shift64, zp, lo, hi, rounding)


def conv1x1_acc(x, w, bias, input_zero_point):
    """int32 accumulators of a 1x1 convolution: ``bias[f] + sum_c (x[..., c] - zp) * w[c, f]``.

    The sum wraps modulo 2**32 exactly like TFLite's int32 accumulator in compiled C.
    Calling it with ``fold_input_zero_point(w, bias, zp)`` as ``bias`` and
    ``input_zero_point=0`` gives the hardware's formulation, with identical results.

    Parameters
    ----------
    x : array_like of int
        int8-valued activations, shape ``[..., C]`` (e.g. ``[H, W, C]`` or ``[N, H, W, C]``).
    w : array_like of int
        int8-valued weights, shape ``[C, F]``.
    bias : array_like of int
        int32-valued bias, shape ``[F]``.
    input_zero_point : int
        Input zero point in [-128, 127].

    Returns
    -------
    numpy.ndarray
        int32 accumulators of shape ``[..., F]``.

    Raises
    ------
    TypeError
        If an input has a non-integer dtype.
    ValueError
        If a shape or value range is invalid.
    """
    x64 = _check_x(x)
    w64 = _check_w(w, x64.shape[-1])
    b64 = _check_bias(bias, w64.shape[1])
    zp = _int_scalar("input_zero_point", input_zero_point, INT8_MIN, INT8_MAX)
    return _acc(x64, w64, b64, zp).astype(np.int32)


def fold_input_zero_point(w, bias, input_zero_point):
    """Fold the input zero point into the bias: ``wrap32(bias[f] - zp * sum_c w[c, f])``.

    With the folded bias the hardware multiplies raw int8 by int8,
    ``acc = wrap32(bias'[f] + sum_c x[..., c] * w[c, f])``, and obtains exactly the same int32
    accumulator as TFLite (both are congruent modulo 2**32).

    Parameters
    ----------
    w : array_like of int
        int8-valued weights, shape ``[C, F]``.
    bias : array_like of int
        int32-valued bias, shape ``[F]``.
    input_zero_point : int
        Input zero point in [-128, 127].

    Returns
    -------
    numpy.ndarray
        int32 folded bias of shape ``[F]``.

    Raises
    ------
    TypeError
        If an input has a non-integer dtype.
    ValueError
        If a shape or value range is invalid.
    """
    w64 = _check_w(w)
    b64 = _check_bias(bias, w64.shape[1])
    zp = _int_scalar("input_zero_point", input_zero_point, INT8_MIN, INT8_MAX)
    return wrap_int32(b64 - zp * w64.sum(axis=0)).astype(np.int32)


def requantize(
    acc, multiplier, shift, output_zero_point, activation_min=INT8_MIN, activation_max=INT8_MAX,
    *, rounding="double", scale=None,
):
    """Requantize int32 accumulators to int8 as a runtime's per-channel conv kernel does.

    In the fixed-point modes (``rounding`` ``"double"``, TFLite's reference kernel, the
    default; ``"single"``; ``"ruy"``), ``y = MultiplyByQuantizedMultiplier(acc,
    multiplier[f], shift[f]) + output_zero_point`` (see
    :func:`~pwconv.golden.multiply_by_quantized_multiplier`; the add is an int32 add, wrapped
    modulo 2**32 as compiled C does), then clamped to ``[activation_min, activation_max]`` and
    cast to int8. With ``rounding="float"`` (XNNPACK, ONNX Runtime) ``y = round_half_even(
    clamp(float32(acc) * scale[f], activation_min - zp, activation_max - zp)) + zp`` in
    float32 arithmetic, and ``multiplier``/``shift`` are not used (they may be None).

    Parameters
    ----------
    acc : array_like of int
        int32-valued accumulators, shape ``[..., F]``.
    multiplier : array_like of int
        int32 quantized multipliers, shape ``[F]`` (or a scalar for per-tensor).
    shift : array_like of int
        Shifts in [-31, 30], shape ``[F]`` (or a scalar).
    output_zero_point : int
        Output zero point in [-128, 127].
    activation_min, activation_max : int, optional
        Clamp bounds, ``-128 <= activation_min <= activation_max <= 127``.
    rounding : str, optional
        One of :data:`~pwconv.golden.ROUNDINGS`.
    scale : array_like of float32, optional
        Per-channel float32 scales, shape ``[F]`` (or a scalar), finite, positive and normal;
        required with ``rounding="float"``.

    Returns
    -------
    numpy.ndarray
        int8 outputs of shape ``[..., F]``.

    Raises
    ------
    TypeError
        If an input has a wrong dtype.
    ValueError
        If a shape or value range is invalid, or a parameter the mode needs is missing.
    """
    acc64 = _int_array("acc", acc, INT32_MIN, INT32_MAX)
    if acc64.ndim < 1:
        raise ValueError(f"acc must have shape [..., F] (at least 1 dimension), got {acc64.shape}")
    filters = acc64.shape[-1]
    mult64, shift64, scale32 = _check_requant_params(rounding, multiplier, shift, scale, filters,
                                                     "acc.shape[-1]")
    zp = _int_scalar("output_zero_point", output_zero_point, INT8_MIN, INT8_MAX)
    lo, hi = _check_activation(activation_min, activation_max)
    return _requant_any(acc64, mult64, shift64, scale32, zp, lo, hi, rounding)


def conv1x1(
    x,
    w,
    bias,
    *,
    input_zero_point,
    output_zero_point,
    output_multiplier,
    output_shift,
    activation_min=INT8_MIN,
    activation_max=INT8_MAX,
    rounding="double",
    scale=None,
):
    """int8 pointwise (1x1) convolution, bit-exact with TFLite's reference per-channel kernel
    (or, with ``rounding``, with another runtime's: see :func:`requantize`).

    Follows tensorflow/lite/kernels/internal/reference/integer_ops/conv.h::
    ConvPerChannel for a 1x1 filter with stride 1 and no padding::

        acc = bias[f] + sum_c (x[..., c] - input_zero_point) * w[c, f]    (int32, wraps)
        y = MultiplyByQuantizedMultiplier(acc, output_multiplier[f], output_shift[f])
        y = clamp(y + output_zero_point, activation_min, activation_max)

    Parameters
    ----------
    x : array_like of int
        int8-valued activations, shape ``[..., C]`` (e.g. ``[H, W, C]`` or ``[N, H, W, C]``).
    w : array_like of int
        int8-valued weights, shape ``[C, F]`` (TFLite's ``[F, 1, 1, C]`` filter transposed).
    bias : array_like of int
        int32-valued bias, shape ``[F]``.
    input_zero_point, output_zero_point : int
        Zero points in [-128, 127].
    output_multiplier : array_like of int
        int32 quantized multipliers, shape ``[F]`` (or a scalar for per-tensor).
    output_shift : array_like of int
        Shifts in [-31, 30], shape ``[F]`` (or a scalar).
    activation_min, activation_max : int, optional
        Clamp bounds, ``-128 <= activation_min <= activation_max <= 127``.
    rounding, scale : optional
        The requantization mode and, for ``"float"``, its float32 scales [F]; see
        :func:`requantize`. ``output_multiplier``/``output_shift`` may be None with
        ``"float"``.

    Returns
    -------
    numpy.ndarray
        int8 outputs of shape ``[..., F]``.

    Raises
    ------
    TypeError
        If an input has a wrong dtype.
    ValueError
        If a shape or value range is invalid.
    """
    x64 = _check_x(x)
    w64 = _check_w(w, x64.shape[-1])
    filters = w64.shape[1]
    b64 = _check_bias(bias, filters)
    izp = _int_scalar("input_zero_point", input_zero_point, INT8_MIN, INT8_MAX)
    ozp = _int_scalar("output_zero_point", output_zero_point, INT8_MIN, INT8_MAX)
    if rounding in FIXED_POINT_ROUNDINGS:
        mult64 = _check_per_channel("output_multiplier", output_multiplier, INT32_MIN,
                                    INT32_MAX, filters, "w.shape[1]")
        shift64 = _check_per_channel("output_shift", output_shift, SHIFT_MIN, SHIFT_MAX, filters,
                                     "w.shape[1]")
        scale32 = None
    else:
        mult64, shift64, scale32 = _check_requant_params(rounding, None, None, scale, filters,
                                                         "w.shape[1]")
    lo, hi = _check_activation(activation_min, activation_max)
    return _requant_any(_acc(x64, w64, b64, izp), mult64, shift64, scale32, ozp, lo, hi,
                        rounding)

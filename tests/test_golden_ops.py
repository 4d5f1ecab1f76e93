"""golden.ops against ai-edge-litert's reference kernels (BUILTIN_REF), one random model per op."""

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite")

from tflite_builder import ModelBuilder, run_reference  # noqa: E402

from pwconv import golden  # noqa: E402
from pwconv.golden import ops  # noqa: E402

SEEDS = range(4)
ACTS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PADDING = {"SAME": 0, "VALID": 1}


def _rand_x(rng, shape):
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def _qparams(rng):
    return float(rng.uniform(0.005, 0.2)), int(rng.integers(-128, 128))


def _check(model, inputs, expected):
    (ref,), _ = run_reference(model, inputs)
    assert ref.shape == expected.shape and ref.dtype == expected.dtype
    diff = np.abs(ref.astype(np.int64) - expected.astype(np.int64))
    assert np.array_equal(ref, expected), f"{int((diff > 0).sum())} of {diff.size} differ"


@pytest.mark.parametrize("seed", range(8))
def test_conv2d_matches_tflite(seed):
    rng = np.random.default_rng(seed)
    kh, kw = (int(v) for v in rng.integers(1, 4, 2))
    sh, sw = (int(v) for v in rng.integers(1, 3, 2))
    dh, dw = (1, 1) if seed % 2 else (int(v) for v in rng.integers(1, 3, 2))
    padding = ("SAME", "VALID")[seed % 2]
    act = list(ACTS)[seed % 4]
    n, h, w, c, f = 1 + seed % 2, int(rng.integers(5, 10)), int(rng.integers(5, 10)), \
        int(rng.integers(1, 9)), int(rng.integers(1, 9))
    (s_in, zp_in), (s_out, zp_out) = _qparams(rng), _qparams(rng)
    ws = rng.uniform(0.001, 0.05, f).astype(np.float32)
    wq = rng.integers(-127, 128, (f, kh, kw, c), dtype=np.int8)
    bias = rng.integers(-20000, 20000, f).astype(np.int32)
    oh, _ = ops.compute_padding(h, kh, sh, dh, padding)
    ow, _ = ops.compute_padding(w, kw, sw, dw, padding)
    b = ModelBuilder()
    x = b.tensor("x", (n, h, w, c), np.int8, s_in, zp_in)
    wt = b.const("w", wq, ws, 0, axis=0)
    bt = b.const("b", bias, np.float32(s_in) * ws, 0)
    y = b.tensor("y", (n, oh, ow, f), np.int8, s_out, zp_out)
    b.op("CONV_2D", [x, wt, bt], [y], "Conv2DOptions", padding=PADDING[padding], strideW=sw,
         strideH=sh, fusedActivationFunction=ACTS[act], dilationWFactor=dw, dilationHFactor=dh)
    xin = _rand_x(rng, (n, h, w, c))
    mult, shift = golden.per_channel_multipliers(s_in, ws, s_out)
    lo, hi = ops.activation_range(act, s_out, zp_out)
    expected = ops.conv2d(xin, wq, bias, input_zero_point=zp_in, output_zero_point=zp_out,
                          multiplier=mult, shift=shift, stride=(sh, sw), dilation=(dh, dw),
                          padding=padding, activation_min=lo, activation_max=hi)
    _check(b.finish([x], [y]), [xin], expected)


@pytest.mark.parametrize("seed", range(6))
def test_depthwise_conv2d_matches_tflite(seed):
    rng = np.random.default_rng(100 + seed)
    k = int(rng.integers(1, 4))
    s = int(rng.integers(1, 3))
    mult_depth = 1 + seed % 2
    padding = ("SAME", "VALID")[seed % 2]
    act = list(ACTS)[seed % 4]
    h, w, c = int(rng.integers(4, 10)), int(rng.integers(4, 10)), int(rng.integers(1, 9))
    f = c * mult_depth
    (s_in, zp_in), (s_out, zp_out) = _qparams(rng), _qparams(rng)
    ws = rng.uniform(0.001, 0.05, f).astype(np.float32)
    wq = rng.integers(-127, 128, (1, k, k, f), dtype=np.int8)
    bias = rng.integers(-20000, 20000, f).astype(np.int32)
    oh, _ = ops.compute_padding(h, k, s, 1, padding)
    ow, _ = ops.compute_padding(w, k, s, 1, padding)
    b = ModelBuilder()
    x = b.tensor("x", (1, h, w, c), np.int8, s_in, zp_in)
    wt = b.const("w", wq, ws, 0, axis=3)
    bt = b.const("b", bias, np.float32(s_in) * ws, 0)
    y = b.tensor("y", (1, oh, ow, f), np.int8, s_out, zp_out)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], "DepthwiseConv2DOptions",
         padding=PADDING[padding], strideW=s, strideH=s, depthMultiplier=mult_depth,
         fusedActivationFunction=ACTS[act], dilationWFactor=1, dilationHFactor=1)
    xin = _rand_x(rng, (1, h, w, c))
    mult, shift = golden.per_channel_multipliers(s_in, ws, s_out)
    lo, hi = ops.activation_range(act, s_out, zp_out)
    expected = ops.depthwise_conv2d(xin, wq, bias, input_zero_point=zp_in,
                                    output_zero_point=zp_out, multiplier=mult, shift=shift,
                                    depth_multiplier=mult_depth, stride=(s, s), padding=padding,
                                    activation_min=lo, activation_max=hi)
    _check(b.finish([x], [y]), [xin], expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_fully_connected_matches_tflite(seed):
    rng = np.random.default_rng(200 + seed)
    batch, c, f = 1 + seed, int(rng.integers(1, 40)), int(rng.integers(1, 20))
    (s_in, zp_in), (s_out, zp_out) = _qparams(rng), _qparams(rng)
    ws = float(rng.uniform(0.001, 0.05))
    wq = rng.integers(-127, 128, (f, c), dtype=np.int8)
    bias = rng.integers(-20000, 20000, f).astype(np.int32)
    act = list(ACTS)[seed % 4]
    b = ModelBuilder()
    x = b.tensor("x", (batch, c), np.int8, s_in, zp_in)
    wt = b.const("w", wq, ws, 0)
    bt = b.const("b", bias, np.float32(s_in) * np.float32(ws), 0)
    y = b.tensor("y", (batch, f), np.int8, s_out, zp_out)
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], "FullyConnectedOptions",
         fusedActivationFunction=ACTS[act])
    xin = _rand_x(rng, (batch, c))
    lo, hi = ops.activation_range(act, s_out, zp_out)
    expected = ops.fully_connected(xin, wq, bias, input_zero_point=zp_in,
                                   output_zero_point=zp_out,
                                   scale=golden.double_scales(s_in, ws, s_out),
                                   activation_min=lo, activation_max=hi)
    _check(b.finish([x], [y]), [xin], expected)


@pytest.mark.parametrize("seed", range(6))
def test_add_matches_tflite(seed):
    rng = np.random.default_rng(300 + seed)
    shape1 = (1, 5, 6, 7)
    shape2 = shape1 if seed < 3 else (1, 1, 1, 7)
    (s1, z1), (s2, z2), (so, zo) = _qparams(rng), _qparams(rng), _qparams(rng)
    act = list(ACTS)[seed % 4]
    b = ModelBuilder()
    x1 = b.tensor("x1", shape1, np.int8, s1, z1)
    x2 = b.tensor("x2", shape2, np.int8, s2, z2)
    y = b.tensor("y", shape1, np.int8, so, zo)
    b.op("ADD", [x1, x2], [y], "AddOptions", fusedActivationFunction=ACTS[act])
    a1, a2 = _rand_x(rng, shape1), _rand_x(rng, shape2)
    lo, hi = ops.activation_range(act, so, zo)
    expected = ops.add(a1, a2, scales=(s1, s2), zero_points=(z1, z2), output_scale=so,
                       output_zero_point=zo, activation_min=lo, activation_max=hi)
    _check(b.finish([x1, x2], [y]), [a1, a2], expected)


@pytest.mark.parametrize("op", ["AVERAGE_POOL_2D", "MAX_POOL_2D"])
@pytest.mark.parametrize("seed", SEEDS)
def test_pool_matches_tflite(op, seed):
    rng = np.random.default_rng(400 + seed)
    k, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    padding = ("SAME", "VALID")[seed % 2]
    act = list(ACTS)[seed % 4]
    h, w, c = int(rng.integers(4, 10)), int(rng.integers(4, 10)), int(rng.integers(1, 6))
    sc, zp = _qparams(rng)
    oh, _ = ops.compute_padding(h, k, s, 1, padding)
    ow, _ = ops.compute_padding(w, k, s, 1, padding)
    b = ModelBuilder()
    x = b.tensor("x", (2, h, w, c), np.int8, sc, zp)
    y = b.tensor("y", (2, oh, ow, c), np.int8, sc, zp)
    b.op(op, [x], [y], "Pool2DOptions", padding=PADDING[padding], strideW=s, strideH=s,
         filterWidth=k, filterHeight=k, fusedActivationFunction=ACTS[act])
    xin = _rand_x(rng, (2, h, w, c))
    lo, hi = ops.activation_range(act, sc, zp)
    fn = ops.average_pool2d if op == "AVERAGE_POOL_2D" else ops.max_pool2d
    expected = fn(xin, (k, k), stride=(s, s), padding=padding, activation_min=lo,
                  activation_max=hi)
    _check(b.finish([x], [y]), [xin], expected)


@pytest.mark.parametrize("case", [((1, 2), True, False), ((1, 2), False, False),
                                  ((1, 2), False, True), ((3,), True, False),
                                  ((2,), False, False), ((1, 2), True, True)])
def test_mean_matches_tflite(case):
    axes, keep_dims, same = case
    rng = np.random.default_rng(hash(case) % 1000)
    shape = (2, 5, 7, 6)
    (s_in, zp_in), (s_out, zp_out) = _qparams(rng), _qparams(rng)
    if same:
        s_out, zp_out = s_in, zp_in
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep_dims else \
        tuple(d for i, d in enumerate(shape) if i not in axes)
    b = ModelBuilder()
    x = b.tensor("x", shape, np.int8, s_in, zp_in)
    ax = b.const("axes", np.array(axes, np.int32))
    y = b.tensor("y", out_shape, np.int8, s_out, zp_out)
    b.op("MEAN", [x, ax], [y], "ReducerOptions", keepDims=keep_dims)
    xin = _rand_x(rng, shape)
    expected = ops.mean(xin, axes, keep_dims=keep_dims, input_scale=s_in,
                        input_zero_point=zp_in, output_scale=s_out, output_zero_point=zp_out)
    _check(b.finish([x], [y]), [xin], expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_softmax_matches_tflite(seed):
    rng = np.random.default_rng(500 + seed)
    s_in, zp_in = _qparams(rng)
    s_in *= (1, 0.3, 3, 10)[seed]
    beta = (1.0, 1.0, 0.5, 2.0)[seed]
    shape = (3, int(rng.integers(2, 40)))
    b = ModelBuilder()
    x = b.tensor("x", shape, np.int8, s_in, zp_in)
    y = b.tensor("y", shape, np.int8, 1 / 256, -128)
    b.op("SOFTMAX", [x], [y], "SoftmaxOptions", beta=beta)
    xin = _rand_x(rng, shape)
    expected = ops.softmax(xin, beta=beta, input_scale=s_in)
    _check(b.finish([x], [y]), [xin], expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_quantize_dequantize_match_tflite(seed):
    rng = np.random.default_rng(600 + seed)
    s, zp = _qparams(rng)
    s2, zp2 = _qparams(rng)
    shape = (1, 4, 5, 3)
    b = ModelBuilder()
    xf = b.tensor("xf", shape, np.float32)
    q = b.tensor("q", shape, np.int8, s, zp)
    q2 = b.tensor("q2", shape, np.int8, s2, zp2)
    yf = b.tensor("yf", shape, np.float32)
    b.op("QUANTIZE", [xf], [q])
    b.op("QUANTIZE", [q], [q2])
    b.op("DEQUANTIZE", [q2], [yf])
    xin = (rng.standard_normal(shape) * 128 * s).astype(np.float32)
    xin.flat[:4] = np.float32(s) * np.array([0.5, -0.5, 1.5, -2.5], np.float32)  # ties
    (ref,), interp = run_reference(b.finish([xf], [yf]), [xin])
    got_q = ops.quantize(xin, scale=s, zero_point=zp)
    assert np.array_equal(interp.get_tensor(q), got_q)
    got_q2 = ops.requantize_tensor(got_q, input_scale=s, input_zero_point=zp, output_scale=s2,
                                   output_zero_point=zp2)
    assert np.array_equal(interp.get_tensor(q2), got_q2)
    got = ops.dequantize(got_q2, scale=s2, zero_point=zp2)
    assert ref.dtype == got.dtype and np.array_equal(ref, got)


def test_pad_reshape_concatenation_match_tflite():
    rng = np.random.default_rng(7)
    s, zp = _qparams(rng)
    b = ModelBuilder()
    x = b.tensor("x", (1, 3, 4, 2), np.int8, s, zp)
    paddings = np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)
    pt = b.const("pads", paddings)
    p = b.tensor("p", (1, 6, 5, 2), np.int8, s, zp)
    b.op("PAD", [x, pt], [p])
    c = b.tensor("c", (1, 6, 5, 4), np.int8, s, zp)
    b.op("CONCATENATION", [p, p], [c], "ConcatenationOptions", axis=3)
    shape = b.const("shape", np.array([1, 120], np.int32))
    r = b.tensor("r", (1, 120), np.int8, s, zp)
    b.op("RESHAPE", [c, shape], [r], "ReshapeOptions")
    xin = _rand_x(rng, (1, 3, 4, 2))
    padded = ops.pad(xin, paddings, zp)
    expected = ops.concatenation([padded, padded], axis=3).reshape(1, 120)
    _check(b.finish([x], [r]), [xin], expected)


def test_activation_range_rejects_unknown():
    with pytest.raises(ValueError, match=r"^fused activation TANH is not supported"):
        ops.activation_range("TANH", 0.1, 0)


def test_ops_validate_their_inputs():
    with pytest.raises(TypeError, match=r"^x must have an integer dtype, got float32$"):
        ops.max_pool2d(np.zeros((1, 2, 2, 1), np.float32), (1, 1))
    with pytest.raises(ValueError, match=r"^x values must be in \[-128, 127\], got range "
                       r"\[0, 200\]$"):
        ops.softmax(np.array([[0, 200]]), beta=1.0, input_scale=0.1)
    with pytest.raises(ValueError, match=r"^x must have 4 dimensions \(NHWC\), got shape "
                       r"\(2, 2, 1\)$"):
        ops.conv2d(np.zeros((2, 2, 1), np.int8), np.zeros((1, 1, 1, 1), np.int8), None,
                   input_zero_point=0, output_zero_point=0, multiplier=[1 << 30], shift=[0])

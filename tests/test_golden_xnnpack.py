"""golden.xnnpack and golden.optimized against ai-edge-litert: each op on random one-op models.

XNNPACK: the interpreter's default path (``Interpreter(model_content=...)`` with no resolver
option, i.e. the XNNPACK delegate). Optimized: ``BUILTIN_WITHOUT_DEFAULT_DELEGATES`` (TFLite's
builtin optimized kernels, ruy for CONV_2D / FULLY_CONNECTED). Half the cases use power-of-two
scales and small values so that exact ties (where the runtimes' roundings differ) are common.
"""

import warnings

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite")

from tflite_builder import ModelBuilder  # noqa: E402

from pwconv import golden  # noqa: E402
from pwconv.golden import ops, optimized, xnnpack  # noqa: E402

ACTS = {"NONE": 0, "RELU": 1, "RELU_N1_TO_1": 2, "RELU6": 3}
PADDING = {"SAME": 0, "VALID": 1}
CASES = 24          # random models per op and runtime (half of them tie-heavy)


def run_default(model, inputs):
    """The interpreter's default path: no resolver option (the XNNPACK delegate)."""
    from ai_edge_litert.interpreter import Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = Interpreter(model_content=model)
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], value)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def run_optimized(model, inputs):
    """TFLite's builtin optimized kernels (BUILTIN_WITHOUT_DEFAULT_DELEGATES)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_content=model, experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], value)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


RUNNERS = {"xnnpack": run_default, "optimized": run_optimized}


def _check(got, ref):
    assert ref.shape == got.shape and ref.dtype == got.dtype, (ref.shape, got.shape)
    diff = np.abs(ref.astype(np.int64) - got.astype(np.int64))
    assert np.array_equal(ref, got), f"{int((diff > 0).sum())} of {diff.size} differ " \
        f"(max {int(diff.max())})"


def _scale(rng, ties, lo=0.005, hi=0.2):
    if ties:
        return float(2.0 ** -int(rng.integers(2, 8)))
    return float(np.float32(rng.uniform(lo, hi)))


def _zp(rng, ties):
    return int(rng.integers(-8, 8)) if ties else int(rng.integers(-128, 128))


def _x(rng, shape, ties):
    if ties:
        return rng.integers(-12, 12, size=shape, dtype=np.int8)
    return rng.integers(-128, 128, size=shape, dtype=np.int8)


def _params(seed):
    rng = np.random.default_rng(seed)
    return rng, seed % 2 == 1


# -- convolutions ---------------------------------------------------------------------------

def _conv_case(seed, depthwise):
    rng, ties = _params(seed)
    k = int(rng.integers(1, 4))
    s = int(rng.integers(1, 3))
    padding = ("SAME", "VALID")[seed % 2 if not depthwise else (seed // 2) % 2]
    act = list(ACTS)[(seed // 2) % 4]
    h, w, c = int(rng.integers(4, 9)), int(rng.integers(4, 9)), int(rng.integers(1, 9))
    dm = 1 + seed % 2 if depthwise else 1
    f = c * dm if depthwise else int(rng.integers(1, 9))
    s_in, s_out = _scale(rng, ties), _scale(rng, ties, 0.02, 0.5)
    zp_in, zp_out = _zp(rng, ties), _zp(rng, ties)
    if ties:
        ws = (2.0 ** -rng.integers(0, 4, f)).astype(np.float32)
        wq = rng.integers(-3, 4, (f, k, k, c), dtype=np.int8)
        bias = rng.integers(-40, 40, f).astype(np.int32)
    else:
        ws = rng.uniform(0.001, 0.05, f).astype(np.float32)
        wq = rng.integers(-127, 128, (f, k, k, c), dtype=np.int8)
        bias = rng.integers(-20000, 20000, f).astype(np.int32)
    if depthwise:
        wq = np.ascontiguousarray(wq[:1, :, :, :1].repeat(f, axis=3)) if False else \
            rng.integers(-3 if ties else -127, 4 if ties else 128, (1, k, k, f), dtype=np.int8)
    oh, _ = ops.compute_padding(h, k, s, 1, padding)
    ow, _ = ops.compute_padding(w, k, s, 1, padding)
    b = ModelBuilder()
    x = b.tensor("x", (1, h, w, c), np.int8, s_in, zp_in)
    wt = b.const("w", wq, ws, 0, axis=3 if depthwise else 0)
    bt = b.const("b", bias, np.float32(s_in) * ws, 0)
    y = b.tensor("y", (1, oh, ow, f), np.int8, s_out, zp_out)
    if depthwise:
        b.op("DEPTHWISE_CONV_2D", [x, wt, bt], [y], "DepthwiseConv2DOptions",
             padding=PADDING[padding], strideW=s, strideH=s, depthMultiplier=dm,
             fusedActivationFunction=ACTS[act], dilationWFactor=1, dilationHFactor=1)
    else:
        b.op("CONV_2D", [x, wt, bt], [y], "Conv2DOptions", padding=PADDING[padding],
             strideW=s, strideH=s, fusedActivationFunction=ACTS[act], dilationWFactor=1,
             dilationHFactor=1)
    xin = _x(rng, (1, h, w, c), ties)
    kw = dict(input_scale=s_in, weight_scales=ws, output_scale=s_out, input_zero_point=zp_in,
              output_zero_point=zp_out, stride=(s, s), padding=padding, activation=act)
    if depthwise:
        kw["depth_multiplier"] = dm
    return b.finish([x], [y]), [xin], (xin, wq, bias), kw


@pytest.mark.parametrize("runtime", RUNNERS)
@pytest.mark.parametrize("depthwise", [False, True], ids=["conv2d", "depthwise"])
def test_conv_matches_tflite(runtime, depthwise):
    for seed in range(CASES):
        model, inputs, (xin, wq, bias), kw = _conv_case(seed, depthwise)
        module = xnnpack if runtime == "xnnpack" else optimized
        fn = module.depthwise_conv2d if depthwise else module.conv2d
        _check(fn(xin, wq, bias, **kw), RUNNERS[runtime](model, inputs))


def _fc_case(seed):
    rng, ties = _params(seed)
    batch, c, f = int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 20))
    s_in, s_out = _scale(rng, ties), _scale(rng, ties, 0.02, 0.5)
    zp_in, zp_out = _zp(rng, ties), _zp(rng, ties)
    ws = float(2.0 ** -int(rng.integers(0, 4))) if ties else float(rng.uniform(0.001, 0.05))
    wq = rng.integers(-3 if ties else -127, 4 if ties else 128, (f, c), dtype=np.int8)
    bias = rng.integers(-40, 40, f).astype(np.int32) if ties else \
        rng.integers(-20000, 20000, f).astype(np.int32)
    act = list(ACTS)[(seed // 2) % 4]
    b = ModelBuilder()
    x = b.tensor("x", (batch, c), np.int8, s_in, zp_in)
    wt = b.const("w", wq, ws, 0)
    bt = b.const("b", bias, np.float32(s_in) * np.float32(ws), 0)
    y = b.tensor("y", (batch, f), np.int8, s_out, zp_out)
    b.op("FULLY_CONNECTED", [x, wt, bt], [y], "FullyConnectedOptions",
         fusedActivationFunction=ACTS[act])
    xin = _x(rng, (batch, c), ties)
    kw = dict(input_scale=s_in, weight_scales=ws, output_scale=s_out, input_zero_point=zp_in,
              output_zero_point=zp_out, activation=act)
    return b.finish([x], [y]), [xin], (xin, wq, bias), kw


@pytest.mark.parametrize("runtime", RUNNERS)
def test_fully_connected_matches_tflite(runtime):
    for seed in range(CASES):
        model, inputs, (xin, wq, bias), kw = _fc_case(seed)
        module = xnnpack if runtime == "xnnpack" else optimized
        _check(module.fully_connected(xin, wq, bias, **kw), RUNNERS[runtime](model, inputs))


# -- elementwise ----------------------------------------------------------------------------

def _binary_case(seed, op):
    rng, ties = _params(seed)
    shape1 = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 9)))
    shape2 = shape1 if seed % 3 else (1, 1, 1, shape1[3])
    act = list(ACTS)[(seed // 2) % 4]
    if op == "MUL":
        s1, s2, so = _scale(rng, ties), _scale(rng, ties), _scale(rng, ties, 0.0005, 0.02)
    else:
        s1, s2, so = _scale(rng, ties), _scale(rng, ties), _scale(rng, ties)
    z1, z2, zo = _zp(rng, ties), _zp(rng, ties), _zp(rng, ties)
    b = ModelBuilder()
    x1 = b.tensor("x1", shape1, np.int8, s1, z1)
    x2 = b.tensor("x2", shape2, np.int8, s2, z2)
    y = b.tensor("y", shape1, np.int8, so, zo)
    b.op(op, [x1, x2], [y], f"{op.capitalize()}Options", fusedActivationFunction=ACTS[act])
    a1, a2 = _x(rng, shape1, ties), _x(rng, shape2, ties)
    kw = dict(scales=(s1, s2), zero_points=(z1, z2), output_scale=so, output_zero_point=zo,
              activation=act)
    return b.finish([x1, x2], [y]), [a1, a2], kw


@pytest.mark.parametrize("runtime, op", [("xnnpack", "ADD"), ("xnnpack", "SUB"),
                                         ("xnnpack", "MUL"), ("optimized", "ADD")])
def test_binary_matches_tflite(runtime, op):
    for seed in range(CASES):
        model, (a1, a2), kw = _binary_case(seed, op)
        module = xnnpack if runtime == "xnnpack" else optimized
        fn = getattr(module, op.lower())
        _check(fn(a1, a2, **kw), RUNNERS[runtime](model, [a1, a2]))


def _mean_case(seed):
    rng, ties = _params(seed)
    shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 41)))
    axes = [(1, 2), (1, 2), (3,), (2,), (1,)][seed % 5]
    keep = bool(seed % 3)
    s_in, s_out = _scale(rng, ties), _scale(rng, ties)
    zp_in, zp_out = _zp(rng, ties), _zp(rng, ties)
    if seed % 7 == 0:
        s_out, zp_out = s_in, zp_in
    out_shape = tuple(1 if i in axes else d for i, d in enumerate(shape)) if keep else \
        tuple(d for i, d in enumerate(shape) if i not in axes)
    b = ModelBuilder()
    x = b.tensor("x", shape, np.int8, s_in, zp_in)
    ax = b.const("axes", np.array(axes, np.int32))
    y = b.tensor("y", out_shape, np.int8, s_out, zp_out)
    b.op("MEAN", [x, ax], [y], "ReducerOptions", keepDims=keep)
    xin = _x(rng, shape, ties)
    kw = dict(keep_dims=keep, input_scale=s_in, input_zero_point=zp_in, output_scale=s_out,
              output_zero_point=zp_out)
    return b.finish([x], [y]), xin, axes, kw


@pytest.mark.parametrize("runtime", RUNNERS)
def test_mean_matches_tflite(runtime):
    for seed in range(CASES):
        model, xin, axes, kw = _mean_case(seed)
        module = xnnpack if runtime == "xnnpack" else optimized
        _check(module.mean(xin, axes, **kw), RUNNERS[runtime](model, [xin]))


def _quantize_case(seed, from_float):
    rng, ties = _params(seed)
    shape = (1, 3, 4, 5)
    s_in, zp_in = _scale(rng, ties), _zp(rng, ties)
    s_out, zp_out = _scale(rng, ties), _zp(rng, ties)
    b = ModelBuilder()
    if from_float:
        x = b.tensor("x", shape, np.float32)
        xin = (rng.standard_normal(shape) * 64 * s_out).astype(np.float32)
        xin.flat[:6] = np.float32(s_out) * np.array([0.5, -0.5, 1.5, -2.5, 3.5, 4.5],
                                                     np.float32)
    else:
        x = b.tensor("x", shape, np.int8, s_in, zp_in)
        xin = _x(rng, shape, ties)
    y = b.tensor("y", shape, np.int8, s_out, zp_out)
    b.op("QUANTIZE", [x], [y])
    return b.finish([x], [y]), xin, (s_in, zp_in, s_out, zp_out)


@pytest.mark.parametrize("from_float", [False, True], ids=["int8", "float32"])
@pytest.mark.parametrize("runtime", RUNNERS)
def test_quantize_matches_tflite(runtime, from_float):
    for seed in range(CASES):
        model, xin, (s_in, zp_in, s_out, zp_out) = _quantize_case(seed, from_float)
        module = xnnpack if runtime == "xnnpack" else optimized
        if from_float:
            got = module.quantize(xin, scale=s_out, zero_point=zp_out)
        else:
            if runtime == "xnnpack" and not xnnpack.delegated(
                    "QUANTIZE", inputs=[(s_in, zp_in, 0, False, "int8")],
                    output=(s_out, zp_out, 0, False, "int8")):
                continue
            got = module.requantize_tensor(xin, input_scale=s_in, input_zero_point=zp_in,
                                           output_scale=s_out, output_zero_point=zp_out)
        _check(got, RUNNERS[runtime](model, [xin]))


# -- ops that run in TFLite's optimized kernels on both paths --------------------------------

def _softmax_case(seed):
    rng, ties = _params(seed)
    s_in = _scale(rng, False) * (1, 0.3, 3, 10)[seed % 4]
    beta = (1.0, 1.0, 0.5, 2.0)[(seed // 4) % 4]
    shape = (int(rng.integers(1, 4)), int(rng.integers(2, 40)))
    b = ModelBuilder()
    x = b.tensor("x", shape, np.int8, s_in, _zp(rng, ties))
    y = b.tensor("y", shape, np.int8, 1 / 256, -128)
    b.op("SOFTMAX", [x], [y], "SoftmaxOptions", beta=beta)
    return b.finish([x], [y]), _x(rng, shape, ties), dict(beta=beta, input_scale=s_in)


@pytest.mark.parametrize("runtime", RUNNERS)
def test_softmax_matches_tflite(runtime):
    """int8 SOFTMAX is not delegated: both paths run the optimized float-table kernel. The
    reference's fixed-point formula agrees with it on random inputs (0 of 327,712 outputs
    differed in a 400-model sweep) but not on exact ties: 512 equal logits give probability
    1/2, 128 steps of 1/256 and a half, which the table rounds away from zero."""
    for seed in range(CASES):
        model, xin, kw = _softmax_case(seed)
        _check(optimized.softmax(xin, **kw), RUNNERS[runtime](model, [xin]))
    shape = (2, 512)
    b = ModelBuilder()
    x = b.tensor("x", shape, np.int8, 2.0 ** -4, 0)
    y = b.tensor("y", shape, np.int8, 1 / 256, -128)
    b.op("SOFTMAX", [x], [y], "SoftmaxOptions", beta=1.0)
    xin = np.zeros(shape, np.int8)
    xin[1, ::2] = -128
    ref = RUNNERS[runtime](b.finish([x], [y]), [xin])
    _check(optimized.softmax(xin, beta=1.0, input_scale=2.0 ** -4), ref)
    assert np.all(ref[0] == -127)
    assert np.all(ops.softmax(xin, beta=1.0, input_scale=2.0 ** -4)[0] == -128)


@pytest.mark.parametrize("runtime", RUNNERS)
def test_average_pool_matches_tflite(runtime):
    """int8 AVERAGE_POOL_2D is not delegated; TFLite's optimized kernel rounds like the
    reference (golden.ops.average_pool2d)."""
    for seed in range(CASES):
        rng, ties = _params(seed)
        k, s = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        padding = ("SAME", "VALID")[(seed // 2) % 2]
        act = list(ACTS)[(seed // 4) % 4]
        h, w, c = int(rng.integers(3, 9)), int(rng.integers(3, 9)), int(rng.integers(1, 20))
        sc, zp = _scale(rng, ties), _zp(rng, ties)
        oh, _ = ops.compute_padding(h, k, s, 1, padding)
        ow, _ = ops.compute_padding(w, k, s, 1, padding)
        b = ModelBuilder()
        x = b.tensor("x", (1, h, w, c), np.int8, sc, zp)
        y = b.tensor("y", (1, oh, ow, c), np.int8, sc, zp)
        b.op("AVERAGE_POOL_2D", [x], [y], "Pool2DOptions", padding=PADDING[padding],
             strideW=s, strideH=s, filterWidth=k, filterHeight=k,
             fusedActivationFunction=ACTS[act])
        xin = _x(rng, (1, h, w, c), ties)
        lo, hi = ops.activation_range(act, sc, zp)
        got = ops.average_pool2d(xin, (k, k), stride=(s, s), padding=padding,
                                 activation_min=lo, activation_max=hi)
        _check(got, RUNNERS[runtime](b.finish([x], [y]), [xin]))


# -- the delegate's rules ----------------------------------------------------------------------

def _t(scale, zp=0, constant=False, dtype="int8", axis=0):
    return (scale, zp, axis, constant, dtype)


def test_delegated_rules():
    x, y = _t(0.05, 3), _t(0.1, -2)
    w, b = _t(np.full(4, 0.01), 0, True), _t(np.full(4, 0.0005), 0, True, "int32")
    assert xnnpack.delegated("CONV_2D", inputs=[x, w, b], output=y)
    assert not xnnpack.delegated("CONV_2D", inputs=[x, w, None], output=y)
    assert not xnnpack.delegated("CONV_2D", inputs=[x, w, b], output=y, activation="TANH")
    dw = _t(np.full(4, 0.01), 0, True, axis=3)
    assert xnnpack.delegated("DEPTHWISE_CONV_2D", inputs=[x, dw, b], output=y,
                             options={"depth_multiplier": 2, "channels": 4})
    assert not xnnpack.delegated("DEPTHWISE_CONV_2D", inputs=[x, dw, b], output=y,
                                 options={"depth_multiplier": 3, "channels": 4})
    assert not xnnpack.delegated("DEPTHWISE_CONV_2D", inputs=[x, _t(np.full(4, 0.01), 0, True),
                                                              b], output=y)
    assert xnnpack.delegated("FULLY_CONNECTED", inputs=[x, _t(0.01, 0, True), b], output=y)
    assert not xnnpack.delegated("FULLY_CONNECTED", inputs=[x, _t(0.01, 5, True), b], output=y)
    assert not xnnpack.delegated("FULLY_CONNECTED", inputs=[x, _t(0.01, 0, True), b], output=y,
                                 options={"sparse": True})
    for op in ("ADD", "SUB"):
        assert xnnpack.delegated(op, inputs=[x, x], output=y)
        assert not xnnpack.delegated(op, inputs=[_t(0.1 / 1025), x], output=y)
        assert not xnnpack.delegated(op, inputs=[x, _t(25.6)], output=y)
    assert xnnpack.delegated("MUL", inputs=[x, x], output=_t(0.01))
    assert not xnnpack.delegated("MUL", inputs=[x, x], output=_t(200.0))
    assert xnnpack.delegated("QUANTIZE", inputs=[_t(None, 0, False, "float32")], output=y)
    assert xnnpack.delegated("QUANTIZE", inputs=[_t(0.1 * 128)], output=y)
    assert not xnnpack.delegated("QUANTIZE", inputs=[_t(0.1 * 129)], output=y)
    assert not xnnpack.delegated("QUANTIZE", inputs=[_t(0.1 / 257)], output=y)
    axes = _t(None, 0, True, "int32")
    assert xnnpack.delegated("MEAN", inputs=[x, axes], output=y)
    assert not xnnpack.delegated("MEAN", inputs=[x, _t(None, 0, False, "int32")], output=y)
    assert xnnpack.delegated("PAD", inputs=[x, axes], output=x, options={"paddings": [[0, 1]]})
    assert not xnnpack.delegated("PAD", inputs=[x, axes], output=x,
                                 options={"paddings": [[0, -1]]})
    for op in ("PADV2", "AVERAGE_POOL_2D", "SOFTMAX"):
        assert not xnnpack.delegated(op, inputs=[x, x, x], output=x)
    assert xnnpack.delegated("CONCATENATION", inputs=[x] * 5, output=x)
    assert not xnnpack.delegated("CONCATENATION", inputs=[x] * 6, output=x)


def test_ops_the_delegate_leaves_run_optimized():
    """Where golden.xnnpack.delegated says no, the default path computes like TFLite's
    optimized kernels (golden.optimized), not like XNNPACK's formulas (which do not even have
    parameters for such scales). An int8 CONV_2D without a bias, which the delegate also
    leaves, fails in TFLite's own Prepare."""
    rng = np.random.default_rng(11)
    # ADD with an input/output scale ratio below 2**-10.
    shape = (1, 4, 5, 24)
    s1, s2, so = 0.0001, 0.5, 0.12
    b = ModelBuilder()
    x1 = b.tensor("x1", shape, np.int8, s1, 3)
    x2 = b.tensor("x2", shape, np.int8, s2, -7)
    y = b.tensor("y", shape, np.int8, so, 1)
    b.op("ADD", [x1, x2], [y], "AddOptions", fusedActivationFunction=0)
    assert not xnnpack.delegated("ADD", inputs=[_t(s1), _t(s2)], output=_t(so))
    a1, a2 = rng.integers(-128, 128, shape, dtype=np.int8), \
        rng.integers(-128, 128, shape, dtype=np.int8)
    kw = dict(scales=(s1, s2), zero_points=(3, -7), output_scale=so, output_zero_point=1)
    _check(optimized.add(a1, a2, **kw), run_default(b.finish([x1, x2], [y]), [a1, a2]))
    with pytest.raises(ValueError, match=r"outside XNNPACK's \[2\*\*-10, 256\)"):
        xnnpack.add(a1, a2, **kw)
    # QUANTIZE int8 -> int8 with a ratio above 128, on 16-element blocks and leftovers.
    s_in, s_out = 2.0 ** -1, 2.0 ** -9
    b = ModelBuilder()
    x = b.tensor("x", (1, 37), np.int8, s_in, 1)
    y = b.tensor("y", (1, 37), np.int8, s_out, 0)
    b.op("QUANTIZE", [x], [y])
    assert not xnnpack.delegated("QUANTIZE", inputs=[_t(s_in)], output=_t(s_out))
    xin = rng.integers(-2, 3, (1, 37), dtype=np.int8)
    ref = run_default(b.finish([x], [y]), [xin])
    _check(optimized.requantize_tensor(xin, input_scale=s_in, input_zero_point=1,
                                       output_scale=s_out, output_zero_point=0), ref)


@pytest.mark.parametrize("act, scale, zp", [("RELU6", 4.0, 1), ("RELU_N1_TO_1", 0.4, 0),
                                            ("RELU6", 2.4, 0), ("RELU", 0.1, -3)])
def test_activation_bounds_match_tflite(act, scale, zp):
    """Fused activation bounds on a tie (f32(v / s) + zp exactly k + 1/2): XNNPACK rounds them
    to even (golden.xnnpack.output_bounds), TFLite's kernels away from zero
    (golden.ops.activation_range). MAX_POOL_2D is delegated, so each path shows its own."""
    rng = np.random.default_rng(3)
    b = ModelBuilder()
    x = b.tensor("x", (1, 4, 4, 3), np.int8, scale, zp)
    y = b.tensor("y", (1, 2, 2, 3), np.int8, scale, zp)
    b.op("MAX_POOL_2D", [x], [y], "Pool2DOptions", padding=PADDING["VALID"], strideW=2,
         strideH=2, filterWidth=2, filterHeight=2, fusedActivationFunction=ACTS[act])
    model = b.finish([x], [y])
    xin = rng.integers(-128, 128, (1, 4, 4, 3), dtype=np.int8)
    for runtime, bounds in (("xnnpack", xnnpack.output_bounds),
                            ("optimized", ops.activation_range)):
        lo, hi = bounds(act, scale, zp)
        got = ops.max_pool2d(xin, (2, 2), stride=(2, 2), activation_min=lo, activation_max=hi)
        _check(got, RUNNERS[runtime](model, [xin]))
    if act != "RELU":
        assert xnnpack.output_bounds(act, scale, zp) != ops.activation_range(act, scale, zp)


def test_add_multiplier_tie_rounds_to_even():
    """s_b / s_out = 1/2 + 2**-21: its multiplier 2**20 * that = 2**19 + 1/2 is an exact tie,
    which XNNPACK's lrintf rounds to 2**19 (even); rounding it up to 2**19 + 1 moves every odd
    negative b (an exact tie of the sum) down by one."""
    s_a, s_b, s_out = 1.0, 0.5 + 2.0 ** -21, 1.0
    assert xnnpack.add_params((s_a, s_b), (0, 0), s_out)[0] == [1 << 20, 1 << 19]
    shape = (1, 16, 16, 1)
    b = ModelBuilder()
    x1 = b.tensor("x1", shape, np.int8, s_a, 0)
    x2 = b.tensor("x2", shape, np.int8, s_b, 0)
    y = b.tensor("y", shape, np.int8, s_out, 0)
    b.op("ADD", [x1, x2], [y], "AddOptions", fusedActivationFunction=0)
    a1 = np.zeros(shape, np.int8)
    a2 = np.arange(-128, 128, dtype=np.int8).reshape(shape)
    kw = dict(scales=(s_a, s_b), zero_points=(0, 0), output_scale=s_out, output_zero_point=0)
    _check(xnnpack.add(a1, a2, **kw), run_default(b.finish([x1, x2], [y]), [a1, a2]))


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_optimized_mean_thread_split(threads):
    """The optimized global-average MEAN counts its blocks of 16 channels per thread range:
    with num_threads > 1 the "ruy"/"double" split moves (golden.optimized.mean ``threads``)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    rng = np.random.default_rng(threads)
    for _ in range(8):
        c = int(rng.integers(17, 70))
        shape = (1, 3, 5, c)
        b = ModelBuilder()
        x = b.tensor("x", shape, np.int8, 2.0 ** -3, 3)
        ax = b.const("axes", np.array([1, 2], np.int32))
        y = b.tensor("y", (1, 1, 1, c), np.int8, 2.0 ** -5, -2)
        b.op("MEAN", [x, ax], [y], "ReducerOptions", keepDims=True)
        interp = Interpreter(model_content=b.finish([x], [y]), num_threads=threads,
                             experimental_op_resolver_type=(
                                 OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
        interp.allocate_tensors()
        xin = rng.integers(-12, 12, shape, dtype=np.int8)
        interp.set_tensor(interp.get_input_details()[0]["index"], xin)
        interp.invoke()
        ref = interp.get_tensor(interp.get_output_details()[0]["index"])
        _check(optimized.mean(xin, (1, 2), keep_dims=True, input_scale=2.0 ** -3,
                              input_zero_point=3, output_scale=2.0 ** -5, output_zero_point=-2,
                              threads=threads), ref)

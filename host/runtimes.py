"""One-layer .tflite and ONNX models built in memory, and the real runtimes that run them.

The tests and `make runtimes` use these to compare pwconv's rounding modes with TFLite's
interpreter (ai-edge-litert: reference kernels, optimized ruy kernels, the XNNPACK delegate) and
ONNX Runtime on thousands of random layers, without tensorflow: the .tflite flatbuffer is written
with the `tflite` package's generated schema builders (the same schema the interpreter reads),
the ONNX model with `onnx.helper`.
"""

import flatbuffers
import numpy as np

__all__ = ["conv1x1_tflite", "run_tflite", "conv1x1_onnx", "run_onnx", "onnxruntime_session",
           "RUNTIMES", "random_scales", "random_runtime_layer", "run_runtime", "compare_runtimes"]

#: The runtimes compared, and the interpreter resolver of the TFLite ones.
RUNTIMES = {"tflite-reference": "BUILTIN_REF", "tflite-ruy": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
            "tflite-xnnpack": "BUILTIN", "onnxruntime": None}


def random_scales(rng, filters, channels):
    """Float scales like a converted model's: per-channel weight scales spread over a decade,
    an output scale that puts typical accumulators near the int8 range."""
    input_scale = float(np.float32(rng.uniform(0.005, 0.1)))
    weight_scales = rng.uniform(0.001, 0.05, size=filters).astype(np.float32)
    output_scale = float(np.float32(input_scale * 0.02 * np.sqrt(channels)
                                    * rng.uniform(0.5, 4)))
    return input_scale, weight_scales, output_scale


def _vector(builder, start, values, prepend):
    start(builder, len(values))
    for v in reversed(list(values)):
        prepend(v)
    return builder.EndVector()


def conv1x1_tflite(w, bias, input_scale, weight_scales, output_scale, input_zero_point,
                   output_zero_point, *, height, width, relu=False):
    """A .tflite model (bytes) of one int8 CONV_2D 1x1, stride 1, per-channel weights.

    ``w`` int8 [C, F]; ``bias`` int32 [F]; scales as TFLite stores them (float32); the
    model's input is int8 [1, height, width, C], its output int8 [1, height, width, F].
    """
    import tflite

    channels, filters = w.shape
    b = flatbuffers.Builder(1024)

    def quant(scales, zero_points, dim=0):
        s = _vector(b, tflite.QuantizationParametersStartScaleVector, scales, b.PrependFloat32)
        z = _vector(b, tflite.QuantizationParametersStartZeroPointVector, zero_points,
                    b.PrependInt64)
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, s)
        tflite.QuantizationParametersAddZeroPoint(b, z)
        tflite.QuantizationParametersAddQuantizedDimension(b, dim)
        return tflite.QuantizationParametersEnd(b)

    def tensor(name, shape, ttype, buffer, q):
        n = b.CreateString(name)
        s = _vector(b, tflite.TensorStartShapeVector, shape, b.PrependInt32)
        tflite.TensorStart(b)
        tflite.TensorAddShape(b, s)
        tflite.TensorAddType(b, ttype)
        tflite.TensorAddBuffer(b, buffer)
        tflite.TensorAddName(b, n)
        tflite.TensorAddQuantization(b, q)
        return tflite.TensorEnd(b)

    bias_scales = [float(np.float32(np.float64(input_scale) * np.float64(s)))
                   for s in weight_scales]
    tensors = [
        tensor("input", [1, height, width, channels], tflite.TensorType.INT8, 0,
               quant([input_scale], [input_zero_point])),
        tensor("filter", [filters, 1, 1, channels], tflite.TensorType.INT8, 1,
               quant([float(s) for s in weight_scales], [0] * filters)),
        tensor("bias", [filters], tflite.TensorType.INT32, 2, quant(bias_scales, [0] * filters)),
        tensor("output", [1, height, width, filters], tflite.TensorType.INT8, 0,
               quant([output_scale], [output_zero_point])),
    ]
    tensor_vec = _vector(b, tflite.SubGraphStartTensorsVector, tensors, b.PrependUOffsetTRelative)

    tflite.Conv2DOptionsStart(b)
    tflite.Conv2DOptionsAddPadding(b, tflite.Padding.VALID)
    tflite.Conv2DOptionsAddStrideW(b, 1)
    tflite.Conv2DOptionsAddStrideH(b, 1)
    tflite.Conv2DOptionsAddDilationWFactor(b, 1)
    tflite.Conv2DOptionsAddDilationHFactor(b, 1)
    tflite.Conv2DOptionsAddFusedActivationFunction(
        b, tflite.ActivationFunctionType.RELU if relu else tflite.ActivationFunctionType.NONE)
    options = tflite.Conv2DOptionsEnd(b)
    op_in = _vector(b, tflite.OperatorStartInputsVector, [0, 1, 2], b.PrependInt32)
    op_out = _vector(b, tflite.OperatorStartOutputsVector, [3], b.PrependInt32)
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, 0)
    tflite.OperatorAddInputs(b, op_in)
    tflite.OperatorAddOutputs(b, op_out)
    tflite.OperatorAddBuiltinOptionsType(b, tflite.BuiltinOptions.Conv2DOptions)
    tflite.OperatorAddBuiltinOptions(b, options)
    operator = tflite.OperatorEnd(b)
    ops_vec = _vector(b, tflite.SubGraphStartOperatorsVector, [operator],
                      b.PrependUOffsetTRelative)
    sg_in = _vector(b, tflite.SubGraphStartInputsVector, [0], b.PrependInt32)
    sg_out = _vector(b, tflite.SubGraphStartOutputsVector, [3], b.PrependInt32)
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, tensor_vec)
    tflite.SubGraphAddInputs(b, sg_in)
    tflite.SubGraphAddOutputs(b, sg_out)
    tflite.SubGraphAddOperators(b, ops_vec)
    subgraph = tflite.SubGraphEnd(b)

    buffers = []
    for payload in (None, np.ascontiguousarray(w.T).astype(np.int8).tobytes(),
                    np.asarray(bias, "<i4").tobytes()):
        data = b.CreateByteVector(payload) if payload is not None else None
        tflite.BufferStart(b)
        if data is not None:
            tflite.BufferAddData(b, data)
        buffers.append(tflite.BufferEnd(b))
    buf_vec = _vector(b, tflite.ModelStartBuffersVector, buffers, b.PrependUOffsetTRelative)

    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, tflite.BuiltinOperator.CONV_2D)
    tflite.OperatorCodeAddBuiltinCode(b, tflite.BuiltinOperator.CONV_2D)
    tflite.OperatorCodeAddVersion(b, 3)
    opcode = tflite.OperatorCodeEnd(b)
    codes = _vector(b, tflite.ModelStartOperatorCodesVector, [opcode],
                    b.PrependUOffsetTRelative)
    subgraphs = _vector(b, tflite.ModelStartSubgraphsVector, [subgraph],
                        b.PrependUOffsetTRelative)
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, codes)
    tflite.ModelAddSubgraphs(b, subgraphs)
    tflite.ModelAddBuffers(b, buf_vec)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def run_tflite(model, x, resolver):
    """Run a one-input .tflite ``model`` (bytes) on ``x`` with ai-edge-litert, kernels chosen by
    ``resolver`` (an ``OpResolverType`` name, as in :data:`RUNTIMES`: ``BUILTIN`` applies the
    default XNNPACK delegate)."""
    from ai_edge_litert import interpreter as litert

    interp = litert.Interpreter(
        model_content=model, num_threads=1,
        experimental_op_resolver_type=getattr(litert.OpResolverType, resolver))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def conv1x1_onnx(w, bias, input_scale, weight_scales, output_scale, input_zero_point,
                 output_zero_point, *, height, width):
    """An ONNX model (bytes) of one QLinearConv 1x1 with per-channel int8 weights; input and
    output int8 NCHW [1, C, height, width] / [1, F, height, width]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    channels, filters = w.shape
    inits = [
        numpy_helper.from_array(np.float32(input_scale).reshape(()), "x_scale"),
        numpy_helper.from_array(np.int8(input_zero_point).reshape(()), "x_zp"),
        numpy_helper.from_array(np.ascontiguousarray(w.T).reshape(filters, channels, 1, 1), "w"),
        numpy_helper.from_array(np.asarray(weight_scales, np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros(filters, np.int8), "w_zp"),
        numpy_helper.from_array(np.float32(output_scale).reshape(()), "y_scale"),
        numpy_helper.from_array(np.int8(output_zero_point).reshape(()), "y_zp"),
        numpy_helper.from_array(np.asarray(bias, np.int32), "b"),
    ]
    node = helper.make_node("QLinearConv", ["x", "x_scale", "x_zp", "w", "w_scale", "w_zp",
                                            "y_scale", "y_zp", "b"], ["y"], kernel_shape=[1, 1])
    graph = helper.make_graph(
        [node], "conv1x1",
        [helper.make_tensor_value_info("x", TensorProto.INT8, [1, channels, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.INT8, [1, filters, height, width])],
        inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnxruntime_session(model, *, optimized_path=None):
    """An ONNX Runtime CPU session of ``model`` (bytes) that computes exact integer
    arithmetic on every CPU (one thread; ``optimized_path``: where to write the graph ONNX
    Runtime optimized).

    On x86-64 CPUs without VNNI (SSE4.1, AVX2, AVX-512 without VNNI), ONNX Runtime's default
    U8S8 kernels (QLinearConv with uint8 activations, the fused QDQ Conv, MatMulInteger) sum
    pairs of u8 x s8 products in 16 bits with saturation (VPMADDUBSW): a large pair sum is
    clipped, and the result is not the integer convolution. ``session.x64quantprecision=1``
    (kOrtSessionOptionsAvx2PrecisionMode in onnxruntime_session_options_config_keys.h) makes
    it rewrite the s8 weights to u8 and use the exact U8U8 kernels. On VNNI and ARM CPUs it
    changes nothing. pwconv computes the exact integer sum, so that is what it is compared
    with. On an AVX2 machine it matters: a uint8 QLinearConv gave outputs up to 12 steps off
    with the default options. The rewrite leaves a QLinearConv with int8 activations without
    a kernel (int8 x uint8: NOT_IMPLEMENTED), so such a model gets the default options. Its
    S8S8 kernel does not take the saturating path.
    """
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented

    def session(precise):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3
        if precise:
            options.add_session_config_entry("session.x64quantprecision", "1")
        if optimized_path is not None:
            options.optimized_model_filepath = str(optimized_path)
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    try:
        return session(precise=True)
    except OrtNotImplemented:
        return session(precise=False)


def run_onnx(model, x):
    """Run a one-input ONNX ``model`` (bytes) on ``x`` with ONNX Runtime's CPU provider."""
    session = onnxruntime_session(model)
    return session.run(None, {session.get_inputs()[0].name: x})[0]


def random_runtime_layer(rng, *, ties=False):
    """A random layer ``(x, w, bias, (input_scale, weight_scales, output_scale), zi, zo)``:
    realistic scales, or (``ties``) small accumulators and power-of-two effective scales so that
    many outputs are exact ties, where the runtimes' roundings differ."""
    channels, filters = int(rng.integers(1, 160)), int(rng.integers(1, 80))
    w = rng.integers(-127, 128, size=(channels, filters), dtype=np.int8)
    bias = rng.integers(-30000, 30000, size=filters).astype(np.int32)
    scales = random_scales(rng, filters, channels)
    if ties:
        channels = int(rng.integers(1, 5))
        w = rng.integers(-2, 3, size=(channels, filters), dtype=np.int8)
        bias = rng.integers(-50, 50, size=filters).astype(np.int32)
        scales = (0.5, np.exp2(-rng.integers(0, 3, size=filters)).astype(np.float32), 1.0)
    zi, zo = int(rng.integers(-128, 128)), int(rng.integers(-40, 40))
    h, wd = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    x = rng.integers(-128, 128, size=(1, h, wd, channels), dtype=np.int8)
    return x, w, bias, scales, zi, zo


def run_runtime(runtime, x, w, bias, scales, zi, zo):
    """The output of ``runtime`` (a :data:`RUNTIMES` key) for one layer, int8 NHWC."""
    h, wd = x.shape[1:3]
    if RUNTIMES[runtime]:
        return run_tflite(conv1x1_tflite(w, bias, *scales, zi, zo, height=h, width=wd), x,
                          RUNTIMES[runtime])
    y = run_onnx(conv1x1_onnx(w, bias, *scales, zi, zo, height=h, width=wd),
                 np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    return y.transpose(0, 2, 3, 1)


def compare_runtimes(layers=200, *, seed=0, accelerator=None):
    """Run ``layers`` random layers (half tie-heavy) through every runtime and through pwconv in
    every rounding mode (``accelerator``: a :class:`~pwconv.host.accelerator.Accelerator`,
    golden by default); return ``{runtime: {mode: (layers exact, outputs differing,
    outputs)}}``."""
    from pwconv import golden
    from pwconv.host.accelerator import Accelerator
    from pwconv.host.layer import Quantization

    accelerator = accelerator or Accelerator("golden")
    rng = np.random.default_rng(seed)
    table = {r: {m: [0, 0, 0] for m in golden.ROUNDINGS} for r in RUNTIMES}
    for index in range(layers):
        x, w, bias, scales, zi, zo = random_runtime_layer(rng, ties=index % 2 == 1)
        ours = {}
        for mode in golden.ROUNDINGS:
            m, s, sc = golden.layer_requant_params(*scales, mode)
            q = Quantization(m, s, input_zero_point=zi, output_zero_point=zo, rounding=mode,
                             scale=sc)
            ours[mode] = accelerator.conv1x1(x, w, bias, q)
        for runtime in RUNTIMES:
            y = run_runtime(runtime, x, w, bias, scales, zi, zo)
            for mode, mine in ours.items():
                diff = int((mine != y).sum())
                row = table[runtime][mode]
                row[0] += diff == 0
                row[1] += diff
                row[2] += y.size
    return {r: {m: tuple(v) for m, v in modes.items()} for r, modes in table.items()}


def main(argv=None):
    """``python -m pwconv.host.runtimes [LAYERS] [BACKEND]``: print the comparison table."""
    import sys

    from pwconv.host.accelerator import Accelerator

    argv = sys.argv[1:] if argv is None else argv
    layers = int(argv[0]) if argv else 200
    backend = argv[1] if len(argv) > 1 else "golden"
    table = compare_runtimes(layers, accelerator=Accelerator(backend, progress=False))
    print(f"{layers} random one-layer models (half tie-heavy), pwconv on {backend}; each cell: "
          f"layers bit-exact / outputs differing (of all outputs)")
    modes = list(next(iter(table.values())))
    print("| runtime | " + " | ".join(modes) + " |")
    print("|---|" + "---|" * len(modes))
    for runtime, row in table.items():
        print(f"| {runtime} | " + " | ".join(
            f"{exact}/{layers} exact, {diff} of {total} differ" for exact, diff, total in
            row.values()) + " |")


if __name__ == "__main__":
    main()

"""One-layer .tflite and ONNX models built in memory, and the real runtimes that run them.

Tests use these to compare pwconv's rounding modes with TFLite's interpreter (ai-edge-litert:
reference kernels, optimized ruy kernels, the XNNPACK delegate) and ONNX Runtime on thousands of
random layers, without tensorflow: the .tflite flatbuffer is written with the `tflite` package's
generated schema builders (the same schema the interpreter reads), the ONNX model with
`onnx.helper`.
"""

import flatbuffers
import numpy as np

__all__ = ["conv1x1_tflite", "run_tflite", "conv1x1_onnx", "run_onnx", "RESOLVERS",
           "random_scales"]

#: The interpreter's kernel choices: resolver name -> the rounding mode it matches.
RESOLVERS = {"BUILTIN_REF": "double", "BUILTIN_WITHOUT_DEFAULT_DELEGATES": "ruy",
             "BUILTIN": "float"}


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
    ``resolver`` (a :data:`RESOLVERS` key: ``BUILTIN`` applies the default XNNPACK delegate)."""
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


def run_onnx(model, x):
    """Run a one-input ONNX ``model`` (bytes) on ``x`` with ONNX Runtime's CPU provider."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]

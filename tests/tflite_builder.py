"""Write small quantized .tflite models with the `tflite` package's flatbuffer builders (tests)."""

import flatbuffers
import numpy as np
import tflite

_TYPES = {np.dtype(np.float32): tflite.TensorType.FLOAT32,
          np.dtype(np.int8): tflite.TensorType.INT8,
          np.dtype(np.int32): tflite.TensorType.INT32, np.dtype(np.int64): tflite.TensorType.INT64,
          np.dtype(np.uint8): tflite.TensorType.UINT8, np.dtype(np.bool_): tflite.TensorType.BOOL}


class ModelBuilder:
    """Collect tensors and operators of one subgraph, then :meth:`finish` to .tflite bytes.

    >>> b = ModelBuilder()
    >>> x = b.tensor("x", (1, 4, 4, 8), np.int8, 0.05, -3)
    >>> y = b.tensor("y", (1, 4, 4, 8), np.int8, 0.05, -3)
    >>> b.op("MAX_POOL_2D", [x], [y], "Pool2DOptions", padding=0, strideW=1, strideH=1,
    ...      filterWidth=1, filterHeight=1)
    >>> data = b.finish([x], [y])
    """

    def __init__(self):
        self.tensors, self.buffers, self.ops, self.codes = [], [b""], [], []

    def tensor(self, name, shape, dtype, scale=None, zero_point=0, data=None, axis=0):
        """Add a tensor (``data``: a constant); ``scale`` a float or per-channel sequence."""
        buffer = 0
        if data is not None:
            data = np.ascontiguousarray(data, dtype=dtype)
            self.buffers.append(data.tobytes())
            buffer = len(self.buffers) - 1
        self.tensors.append(dict(name=name, shape=tuple(shape), dtype=np.dtype(dtype),
                                 scale=scale, zero_point=zero_point, buffer=buffer, axis=axis))
        return len(self.tensors) - 1

    def const(self, name, data, scale=None, zero_point=0, axis=0):
        data = np.asarray(data)
        return self.tensor(name, data.shape, data.dtype, scale, zero_point, data, axis)

    def op(self, opname, inputs, outputs, options=None, **fields):
        code = getattr(tflite.BuiltinOperator, opname)
        if code not in self.codes:
            self.codes.append(code)
        self.ops.append((self.codes.index(code), list(inputs), list(outputs), options, fields))

    def finish(self, inputs, outputs):
        b = flatbuffers.Builder(1024)

        def ivec(start, values):
            start(b, len(values))
            for v in reversed(values):
                b.PrependInt32(int(v))
            return b.EndVector()

        buffers = []
        for data in self.buffers:
            vec = b.CreateNumpyVector(np.frombuffer(data, np.uint8)) if data else None
            tflite.BufferStart(b)
            if vec is not None:
                tflite.BufferAddData(b, vec)
            buffers.append(tflite.BufferEnd(b))
        tensors = []
        for t in self.tensors:
            name = b.CreateString(t["name"])
            shape = ivec(tflite.TensorStartShapeVector, t["shape"])
            quant = None
            if t["scale"] is not None:
                scales = np.atleast_1d(np.asarray(t["scale"], np.float32))
                zps = np.atleast_1d(np.asarray(t["zero_point"], np.int64))
                if zps.size == 1 and scales.size > 1:
                    zps = np.repeat(zps, scales.size)
                sv = b.CreateNumpyVector(scales)
                zv = b.CreateNumpyVector(zps)
                tflite.QuantizationParametersStart(b)
                tflite.QuantizationParametersAddScale(b, sv)
                tflite.QuantizationParametersAddZeroPoint(b, zv)
                tflite.QuantizationParametersAddQuantizedDimension(b, t["axis"])
                quant = tflite.QuantizationParametersEnd(b)
            tflite.TensorStart(b)
            tflite.TensorAddShape(b, shape)
            tflite.TensorAddType(b, _TYPES[t["dtype"]])
            tflite.TensorAddBuffer(b, t["buffer"])
            tflite.TensorAddName(b, name)
            if quant is not None:
                tflite.TensorAddQuantization(b, quant)
            tensors.append(tflite.TensorEnd(b))
        ops = []
        for code, ins, outs, options, fields in self.ops:
            opt = None
            if options is not None:
                getattr(tflite, f"{options}Start")(b)
                for key, value in fields.items():
                    getattr(tflite, f"{options}Add{key[0].upper()}{key[1:]}")(b, value)
                opt = getattr(tflite, f"{options}End")(b)
            iv = ivec(tflite.OperatorStartInputsVector, ins)
            ov = ivec(tflite.OperatorStartOutputsVector, outs)
            tflite.OperatorStart(b)
            tflite.OperatorAddOpcodeIndex(b, code)
            tflite.OperatorAddInputs(b, iv)
            tflite.OperatorAddOutputs(b, ov)
            if opt is not None:
                tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, options))
                tflite.OperatorAddBuiltinOptions(b, opt)
            ops.append(tflite.OperatorEnd(b))
        codes = []
        for code in self.codes:
            tflite.OperatorCodeStart(b)
            tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
            tflite.OperatorCodeAddBuiltinCode(b, code)
            tflite.OperatorCodeAddVersion(b, 1)
            codes.append(tflite.OperatorCodeEnd(b))

        def ovec(start, offsets):
            start(b, len(offsets))
            for o in reversed(offsets):
                b.PrependUOffsetTRelative(o)
            return b.EndVector()
        tv = ovec(tflite.SubGraphStartTensorsVector, tensors)
        opv = ovec(tflite.SubGraphStartOperatorsVector, ops)
        iv = ivec(tflite.SubGraphStartInputsVector, inputs)
        outv = ivec(tflite.SubGraphStartOutputsVector, outputs)
        tflite.SubGraphStart(b)
        tflite.SubGraphAddTensors(b, tv)
        tflite.SubGraphAddInputs(b, iv)
        tflite.SubGraphAddOutputs(b, outv)
        tflite.SubGraphAddOperators(b, opv)
        sub = tflite.SubGraphEnd(b)
        subs = ovec(tflite.ModelStartSubgraphsVector, [sub])
        cv = ovec(tflite.ModelStartOperatorCodesVector, codes)
        bv = ovec(tflite.ModelStartBuffersVector, buffers)
        desc = b.CreateString("pwconv test model")
        tflite.ModelStart(b)
        tflite.ModelAddVersion(b, 3)
        tflite.ModelAddOperatorCodes(b, cv)
        tflite.ModelAddSubgraphs(b, subs)
        tflite.ModelAddDescription(b, desc)
        tflite.ModelAddBuffers(b, bv)
        b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
        return bytes(b.Output())


def run_reference(model_bytes, inputs, resolver="BUILTIN_REF", preserve=True):
    """Run ``model_bytes`` in ai-edge-litert with the given op resolver; returns
    ``(outputs, interpreter)`` (``preserve``: all tensors kept, for op-by-op checks)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    interp = Interpreter(model_content=model_bytes,
                         experimental_op_resolver_type=getattr(OpResolverType, resolver),
                         experimental_preserve_all_tensors=preserve)
    interp.allocate_tensors()
    for detail, value in zip(interp.get_input_details(), inputs):
        interp.set_tensor(detail["index"], value)
    interp.invoke()
    return [interp.get_tensor(d["index"]) for d in interp.get_output_details()], interp

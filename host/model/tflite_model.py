"""Full-int8 .tflite models: parsed with the `tflite` package, pointwise layers on pwconv.

Every CONV_2D with a 1x1 filter (a strided one on its subsampled input) and every
FULLY_CONNECTED runs on the accelerator (:meth:`Accelerator.run_layer`); every other op runs on
the host in the arithmetic of the kernels the matched runtime runs it in (:meth:`_kernels_for`):
:mod:`pwconv.golden.ops` (TFLite's reference kernels), :mod:`pwconv.golden.optimized` (its
optimized kernels) or :mod:`pwconv.golden.xnnpack` (the XNNPACK delegate, for the ops and cases
it takes); an offloaded layer rounds like them too. Multipliers and shifts come from the
model's float scales as TFLite's Prepare computes them
(kernel_util.cc::PopulateConvolutionQuantizationParams for CONV_2D,
GetQuantizedConvolutionMultipler for a per-tensor FULLY_CONNECTED), fused activations from
CalculateActivationRangeQuantized (XNNPACK: golden.xnnpack.output_bounds).
"""

import time

import numpy as np

from pwconv import golden
from pwconv.golden import ops as gops
from pwconv.golden import optimized as gopt
from pwconv.golden import xnnpack as gxnn
from ..layer import Layer
from .base import Model, ModelError, OpStats, make_quantization

__all__ = ["TFLiteModel", "SUPPORTED_OPS", "TFLITE_RUNTIMES"]

#: Builtin ops pwconv runs (CONV_2D 1x1 and FULLY_CONNECTED on the accelerator).
SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D",
                 "MAX_POOL_2D", "MEAN", "PAD", "PADV2", "RESHAPE", "SOFTMAX", "QUANTIZE",
                 "DEQUANTIZE", "CONCATENATION")

#: Runtimes a .tflite run can be compared with, and the ai-edge-litert op resolver of each:
#: the reference kernels (the default, bit-exact end to end), the optimized (ruy) kernels, the
#: default path with the XNNPACK delegate.
TFLITE_RUNTIMES = {"tflite-reference": "BUILTIN_REF", "tflite-ruy":
                   "BUILTIN_WITHOUT_DEFAULT_DELEGATES", "tflite-xnnpack": "BUILTIN"}

_DTYPES = {0: np.float32, 2: np.int32, 3: np.uint8, 4: np.int64, 7: np.int16, 9: np.int8}
_TYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string",
               6: "bool", 7: "int16", 8: "complex64", 9: "int8", 10: "float64",
               11: "complex128", 12: "uint64", 13: "resource", 14: "variant", 15: "uint32",
               16: "uint16", 17: "int4", 18: "bfloat16"}      # schema.fbs TensorType
_FLOATS = (0, 1, 10, 18)
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
#: Inputs an op needs at least (others: 1), and those it may omit (tensor index -1).
_MIN_INPUTS = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2,
               "MEAN": 2, "PAD": 2, "PADV2": 2}
_OPTIONAL = {op: (2,) for op in _WEIGHTED}
#: Inputs that are parameters rather than int8 data: by op, position -> (what, type codes).
_PARAMETERS = {**{op: {1: ("the weights", (9,)), 2: ("the bias", (2,))} for op in _WEIGHTED},
               "MEAN": {1: ("the axes", (2, 4))}, "PAD": {1: ("the paddings", (2, 4))},
               "PADV2": {1: ("the paddings", (2, 4)), 2: ("the padding value", (9,))},
               "RESHAPE": {1: ("the shape", (2,))}}


class _Tensor:
    """One tensor of the subgraph: name, shape, dtype, constant data and quantization."""

    def __init__(self, model, t, index):
        self.index = index
        self.name = t.Name().decode(errors="replace") if t.Name() else f"tensor{index}"
        self.shape = tuple(int(v) for v in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        self.type = t.Type()
        self.type_name = _TYPE_NAMES.get(self.type, f"type {self.type}")
        q = t.Quantization()
        self.scale = q.ScaleAsNumpy().astype(np.float32) if q and q.ScaleLength() else None
        self.zero_point = q.ZeroPointAsNumpy().astype(np.int64) if q and q.ZeroPointLength() \
            else None
        self.axis = int(q.QuantizedDimension()) if q else 0
        self.data = None
        buf = model.Buffers(t.Buffer()) if t.Buffer() < model.BuffersLength() else None
        if buf is not None and buf.DataLength():
            if self.type not in _DTYPES:
                self.data = False                      # a constant of a type we cannot use
            else:
                raw = buf.DataAsNumpy().tobytes()
                self.data = np.frombuffer(raw, _DTYPES[self.type]).reshape(self.shape)

    @property
    def quantized(self):
        return self.scale is not None and self.scale.size > 0

    def s(self):
        return float(self.scale[0])

    def zp(self):
        return int(self.zero_point[0]) if self.zero_point is not None else 0


class TFLiteModel(Model):
    """A full-int8 .tflite model (subgraph 0), validated at load time."""

    runtimes = tuple(TFLITE_RUNTIMES)

    def __init__(self, path):
        import tflite
        self.path = path
        self._tflite = tflite
        data = path.read_bytes()
        names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
        try:
            if len(data) < 8 or data[4:8] != b"TFL3":
                raise ValueError("no TFL3 file identifier")
            model = tflite.Model.GetRootAsModel(data, 0)
            if model.SubgraphsLength() < 1:
                raise ValueError("no subgraph")
            graph = model.Subgraphs(0)
            self.tensors = [_Tensor(model, graph.Tensors(i), i)
                            for i in range(graph.TensorsLength())]
            self.inputs = [int(v) for v in graph.InputsAsNumpy()]
            self.outputs = [int(v) for v in graph.OutputsAsNumpy()]
            self.ops = []
            for i in range(graph.OperatorsLength()):
                op = graph.Operators(i)
                code = model.OperatorCodes(op.OpcodeIndex())
                builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
                self.ops.append((names.get(builtin, f"builtin {builtin}"),
                                 [int(v) for v in op.InputsAsNumpy()] if op.InputsLength()
                                 else [],
                                 [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength()
                                 else [], op.BuiltinOptions()))
        except ModelError:
            raise
        except Exception as error:          # flatbuffers raises anything on a corrupt file
            raise ModelError(f"{path}: not a valid .tflite flatbuffer ({error})") from None
        self._validate()
        x = self.tensors[self.inputs[0]]
        self.input_shape, self.input_dtype = x.shape, np.dtype(_DTYPES[x.type])

    # Validation: every problem is one line naming the op or tensor.

    def _where(self, i):
        return f"{self.path.name}: op {i} ({self.ops[i][0]})"

    def _validate(self):
        """Refuse, at load time, what the run or TFLite would fail on later: tensor indices out
        of range, missing inputs, tensor types pwconv cannot run (anything but int8 data, int32
        bias, int32/int64 axes and paddings; float only into QUANTIZE and out of DEQUANTIZE),
        weights whose scales or bias do not match their filters, strides or filters of 0.
        The rules are TFLite's own int8 kernels' (tflite/kernels/conv.cc, depthwise_conv.cc,
        fully_connected.cc, kernel_util.cc in LiteRT)."""
        name = self.path.name
        if len(self.inputs) != 1 or len(self.outputs) != 1:
            raise ModelError(f"{name}: pwconv runs models with one input and one "
                             f"output, this one has {len(self.inputs)} and {len(self.outputs)}")
        count = len(self.tensors)
        for what, t in (("input", self.inputs[0]), ("output", self.outputs[0])):
            if not 0 <= t < count:
                raise ModelError(f"{name}: the model's {what} is tensor {t}, but the model has "
                                 f"{count} tensors")
        x = self.tensors[self.inputs[0]]
        if x.type not in (0, 9):
            raise ModelError(f"{name}: the model's input '{x.name}' is {x.type_name}; pwconv "
                             f"runs models with an int8 or float32 input")
        available = {self.inputs[0]} | {t.index for t in self.tensors if t.data is not None}
        for i, (op, ins, outs, table) in enumerate(self.ops):
            if op not in SUPPORTED_OPS:
                raise ModelError(f"{self._where(i)} is not supported (pwconv runs "
                                 f"{', '.join(SUPPORTED_OPS)})")
            self._validate_indices(i, op, ins, outs)
            for k, t in enumerate(ins):
                if t >= 0 and t not in available:
                    raise ModelError(f"{self._where(i)}: input {k} '{self.tensors[t].name}' is "
                                     f"computed by no earlier op")
            available.update(outs)
            if op in _WEIGHTED:
                w = self.tensors[ins[1]]
                if w.type in _FLOATS:
                    raise ModelError(f"{self._where(i)} has {w.type_name} weights: a float model;"
                                     f" pwconv runs full-int8 models (convert with a "
                                     f"representative dataset and TFLITE_BUILTINS_INT8)")
                if w.type != 9:
                    raise ModelError(f"{self._where(i)} has {w.type_name} weights '{w.name}': "
                                     f"pwconv runs int8 weights (full-int8 models: convert with "
                                     f"TFLITE_BUILTINS_INT8)")
            tensors = [t for t in ins if t >= 0] + outs
            if op == "QUANTIZE":
                tensors = outs if self.tensors[ins[0]].type == 0 else tensors
            if op == "DEQUANTIZE":
                tensors = ins
            for t in tensors:
                tensor = self.tensors[t]
                if tensor.type in _FLOATS:
                    raise ModelError(f"{self._where(i)} has {tensor.type_name} tensor "
                                     f"'{tensor.name}': a float model; pwconv runs full-int8 "
                                     f"models")
                if tensor.type == 9 and not tensor.quantized:
                    raise ModelError(f"{self._where(i)}: int8 tensor '{tensor.name}' has no "
                                     f"quantization parameters")
            if op in _WEIGHTED or op in ("MEAN", "PAD", "PADV2"):
                for t in ins[1:]:
                    if t >= 0 and self.tensors[t].data is None:
                        raise ModelError(f"{self._where(i)}: input '{self.tensors[t].name}' "
                                         f"must be a constant")
            if op == "DEQUANTIZE" and self.tensors[ins[0]].type != 9:
                raise ModelError(f"{self._where(i)} dequantizes {self.tensors[ins[0]].type_name}"
                                 f": a float model; pwconv runs full-int8 models")
            self._validate_types(i, op, ins, outs)
            if op in _WEIGHTED:
                self._validate_weights(i, op, ins)
            self._validate_options(i, op, table)
        out = self.tensors[self.outputs[0]]
        if out.index != self.inputs[0] and all(out.index not in o for _, _, o, _ in self.ops):
            raise ModelError(f"{name}: the model's output '{out.name}' is computed by no op")

    def _validate_indices(self, i, op, ins, outs):
        """Every tensor index of op ``i`` names a tensor; only optional inputs are -1."""
        need = _MIN_INPUTS.get(op, 1)
        if len(ins) < need:
            raise ModelError(f"{self._where(i)} has {len(ins)} input(s), needs at least {need}")
        if not outs:
            raise ModelError(f"{self._where(i)} has no output")
        count = len(self.tensors)
        roles = _PARAMETERS.get(op, {})
        for kind, indices in (("input", ins), ("output", outs)):
            for k, t in enumerate(indices):
                if kind == "input" and t == -1:
                    if k in _OPTIONAL.get(op, ()):
                        continue
                    role = f" ({roles[k][0]})" if k in roles else ""
                    raise ModelError(f"{self._where(i)}: input {k}{role} is missing (tensor "
                                     f"index -1)")
                if t < 0:
                    hint = ", or -1 for an omitted optional input" if kind == "input" else ""
                    raise ModelError(f"{self._where(i)}: {kind} {k} is tensor {t}, not a tensor "
                                     f"index (0 to {count - 1}{hint})")
                if t >= count:
                    raise ModelError(f"{self._where(i)}: {kind} {k} is tensor {t}, but the "
                                     f"model has {count} tensors")

    def _validate_types(self, i, op, ins, outs):
        """Data in and out of op ``i`` is int8 (float32 into QUANTIZE, out of DEQUANTIZE);
        parameters have their own types."""
        params = _PARAMETERS.get(op, {})

        def activations(tensor):
            return ModelError(f"{self._where(i)}: tensor '{tensor.name}' holds "
                              f"{tensor.type_name} activations; pwconv runs int8 activations "
                              f"(full-int8 models)")
        for k, t in enumerate(ins):
            if t < 0:
                continue
            tensor = self.tensors[t]
            if k in params:
                what, allowed = params[k]
                if tensor.type in allowed:
                    continue
                if what == "the bias":
                    raise ModelError(f"{self._where(i)}: bias '{tensor.name}' is "
                                     f"{tensor.type_name}; TFLite's int8 kernels take an int32 "
                                     f"bias")
                raise ModelError(f"{self._where(i)}: {what} '{tensor.name}' is "
                                 f"{tensor.type_name}, expected "
                                 f"{' or '.join(_TYPE_NAMES[a] for a in allowed)}")
            if tensor.type != 9 and not (op == "QUANTIZE" and tensor.type == 0):
                raise activations(tensor)
        for t in outs:
            tensor = self.tensors[t]
            if tensor.type != 9 and not (op == "DEQUANTIZE" and tensor.type == 0):
                raise activations(tensor)

    def _validate_weights(self, i, op, ins):
        """The weights of op ``i`` have the layout its kernel reads, one scale or one per
        filter, and the bias one value per filter."""
        w = self.tensors[ins[1]]
        layout = "[F, C]" if op == "FULLY_CONNECTED" else \
            "[1, KH, KW, F]" if op == "DEPTHWISE_CONV_2D" else "[F, KH, KW, C]"
        if len(w.shape) != layout.count(",") + 1:
            raise ModelError(f"{self._where(i)}: weights '{w.name}' have shape {list(w.shape)}, "
                             f"expected {layout}")
        filters = w.shape[-1] if op == "DEPTHWISE_CONV_2D" else w.shape[0]
        if w.scale.size not in (1, filters):
            raise ModelError(f"{self._where(i)}: weights '{w.name}' have {w.scale.size} scales "
                             f"for {filters} filters (expected 1 or {filters})")
        if len(ins) > 2 and ins[2] >= 0:
            bias = self.tensors[ins[2]]
            if bias.data is not None and bias.data is not False and bias.data.size != filters:
                raise ModelError(f"{self._where(i)}: bias '{bias.name}' has {bias.data.size} "
                                 f"values for {filters} filters")

    def _validate_options(self, i, op, table):
        """Strides, dilations and pool filters of op ``i`` are at least 1."""
        if op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            opt = self._options(table, "Conv2DOptions" if op == "CONV_2D" else
                                "DepthwiseConv2DOptions", i)
            sizes = [("stride", opt.StrideH(), opt.StrideW()),
                     ("dilation", opt.DilationHFactor(), opt.DilationWFactor())]
        elif op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            opt = self._options(table, "Pool2DOptions", i)
            sizes = [("stride", opt.StrideH(), opt.StrideW()),
                     ("filter", opt.FilterHeight(), opt.FilterWidth())]
        else:
            return
        for what, h, w in sizes:
            if h < 1 or w < 1:
                raise ModelError(f"{self._where(i)}: {what} {h}x{w}: both must be at least 1")

    def _options(self, table, name, i=None):
        """Op ``i``'s builtin options ``table`` read as ``name`` (e.g. ``Conv2DOptions``)."""
        opt = getattr(self._tflite, name)()
        if table is None:
            where = self._where(i) if i is not None else f"{self.path.name}: an op"
            raise ModelError(f"{where} has no {name}")
        opt.Init(table.Bytes, table.Pos)
        return opt

    def _activation_name(self, opt):
        names = {v: k for k, v in vars(self._tflite.ActivationFunctionType).items()
                 if not k.startswith("_")}
        return names.get(opt.FusedActivationFunction(), "unknown")

    def _activation(self, opt, out):
        """The op's int8 clamp range as the kernels running it compute it (``self._kernels``,
        set per op by :meth:`_run_ops`): XNNPACK rounds the float bounds ties to even
        (golden.xnnpack.output_bounds), TFLite's kernels ties away (golden.ops)."""
        act = self._activation_name(opt)
        if getattr(self, "_kernels", "reference") == "xnnpack":
            return gxnn.output_bounds(act, out.s(), out.zp())
        return gops.activation_range(act, out.s(), out.zp())

    #: The options table of each op with a fused activation.
    _ACT_OPTIONS = {"CONV_2D": "Conv2DOptions", "DEPTHWISE_CONV_2D": "DepthwiseConv2DOptions",
                    "FULLY_CONNECTED": "FullyConnectedOptions", "ADD": "AddOptions",
                    "AVERAGE_POOL_2D": "Pool2DOptions", "MAX_POOL_2D": "Pool2DOptions",
                    "CONCATENATION": "ConcatenationOptions"}

    def _kernels_for(self, op, ins, outs, table, runtime):
        """Which kernels compute op ``op`` in ``runtime``: ``"reference"`` (BUILTIN_REF),
        ``"optimized"`` (TFLite's builtin optimized kernels: BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        and on the default path every op the XNNPACK delegate does not take) or
        ``"xnnpack"`` (golden.xnnpack.delegated says the delegate takes it)."""
        if runtime == "tflite-ruy":
            return "optimized"
        if runtime != "tflite-xnnpack":
            return "reference"
        act = "NONE"
        if op in self._ACT_OPTIONS and table is not None:
            act = self._activation_name(self._options(table, self._ACT_OPTIONS[op]))

        def desc(t):
            if t < 0:
                return None
            tensor = self.tensors[t]
            return (tensor.scale if tensor.quantized else None,
                    tensor.zero_point if tensor.zero_point is not None else 0, tensor.axis,
                    tensor.data is not None and tensor.data is not False, tensor.type_name)
        options = {}
        if op == "DEPTHWISE_CONV_2D" and table is not None:
            opt = self._options(table, "DepthwiseConv2DOptions")
            options = {"depth_multiplier": max(opt.DepthMultiplier(), 1),
                       "channels": self.tensors[ins[1]].shape[-1]}
        if op == "PAD" and self.tensors[ins[1]].data is not None:
            options = {"paddings": self.tensors[ins[1]].data}
        delegated = gxnn.delegated(op, inputs=[desc(t) for t in ins], output=desc(outs[0]),
                                   activation=act, options=options)
        return "xnnpack" if delegated else "optimized"

    # Running.

    def _run_ops(self, x, offload, run, rounding):
        values = {t.index: t.data for t in self.tensors if t.data is not None}
        values[self.inputs[0]] = x
        for i, (op, ins, outs, table) in enumerate(self.ops):
            start = time.perf_counter()
            out = self.tensors[outs[0]]
            args = [values.get(t) if t >= 0 else None for t in ins]
            tin = [self.tensors[t] if t >= 0 else None for t in ins]
            try:
                # Each op computes like the kernels the runtime runs it in; an offloaded
                # layer rounds like them too (XNNPACK "float", optimized "ruy").
                self._kernels = self._kernels_for(op, ins, outs, table, run.runtime)
                mode = {"xnnpack": "float", "optimized": "ruy"}.get(self._kernels, rounding)
                y, macs, on_pwconv = self._op(i, op, args, tin, out, table, offload,
                                              mode if rounding != "double" else rounding)
            except (ValueError, TypeError) as error:
                if isinstance(error, ModelError):
                    raise
                raise ModelError(f"{self._where(i)}: {error}") from None
            if out.shape and tuple(y.shape) != out.shape:
                raise ModelError(f"{self._where(i)}: computed shape {list(y.shape)}, the model "
                                 f"declares {list(out.shape)}")
            values[outs[0]] = y
            if not on_pwconv:
                run.ops.append(OpStats(i, op, out.name, tuple(y.shape), "host", macs,
                                       seconds=time.perf_counter() - start))
        return values[self.outputs[0]]

    def _pointwise(self, i, op, x, tin, out, w, bias, opt, offload, rounding, fc, source):
        """Offload a 1x1 conv / FC: ``x`` [..., C], ``w`` int8 [F, C]. Returns ``(y, macs,
        on_pwconv)`` like :meth:`_op`."""
        xin, wt = tin[0], tin[1]
        lo, hi = self._activation(opt, out)
        f, c = w.shape
        weight_scales = np.broadcast_to(wt.scale, (f,)) if wt.scale.size == 1 else wt.scale
        flat = x.reshape(1, -1, c) if fc else x
        macs = int(flat.size // c) * c * f
        # None: golden.layer_requant_params (PopulateConvolutionQuantizationParams' arithmetic).
        multiplier = shift = None
        if fc and rounding == "double":
            params = self._reference_fc_params(xin, wt, w, bias, weight_scales, out, lo, hi,
                                               getattr(offload, "roundings", ("double",)))
            if params is None:
                # No mode of this build reproduces the reference's float64 rounding on every
                # accumulator this layer can produce: the host runs it.
                y = gops.fully_connected(
                    x, w, bias, input_zero_point=xin.zp(), output_zero_point=out.zp(),
                    weight_zero_point=wt.zp(), activation_min=lo, activation_max=hi,
                    scale=golden.double_scales(xin.s(), weight_scales, out.s()))
                return y, macs, False
            rounding, multiplier, shift = params
        elif fc and wt.scale.size == 1 and rounding != "float":
            multiplier, shift = gops.fully_connected_multiplier(xin.s(), wt.s(), out.s())
        quant = make_quantization(input_scale=xin.s(), weight_scales=weight_scales,
                                  output_scale=out.s(), input_zero_point=xin.zp(),
                                  output_zero_point=out.zp(), activation_min=lo,
                                  activation_max=hi, rounding=rounding, multiplier=multiplier,
                                  shift=shift)
        bias = np.zeros(f, np.int32) if bias is None else np.asarray(bias, np.int32)
        layer = Layer(np.ascontiguousarray(w.T), bias, quant)
        y = offload(i, op, out.name, flat, layer, macs, out.shape if fc else None, source)
        return y, None, True

    @staticmethod
    def _reference_fc_params(xin, wt, w, bias, weight_scales, out, lo, hi, roundings):
        """``(rounding, multiplier, shift)`` with which the accelerator computes a
        FULLY_CONNECTED exactly as TFLite's reference kernel does, or None.

        ai-edge-litert's reference FULLY_CONNECTED requantizes ``round(double(acc) * s_in *
        s_w / s_out)`` in float64 (golden.round_double_scale), unlike its CONV_2D (two
        fixed-point roundings). golden.match_double_scale finds fixed-point parameters that
        give the same result on every accumulator the layer's weights and bias allow, in the
        first of this build's modes where they exist ("single", then "double"). A weight zero
        point (which the array does not subtract) or an accumulator range beyond int32 leaves
        the layer to the host."""
        if wt.zp() != 0:
            return None
        acc_lo, acc_hi = gops.fully_connected_acc_range(w, bias, xin.zp())
        if acc_lo.min() < golden.INT32_MIN or acc_hi.max() > golden.INT32_MAX:
            return None
        scale = golden.double_scales(xin.s(), weight_scales, out.s())
        for mode in ("single", "double"):
            if mode in roundings:
                found = golden.match_double_scale(scale, acc_lo, acc_hi, lo - out.zp(),
                                                  hi - out.zp(), mode)
                if found is not None:
                    return (mode,) + found
        return None

    def _op(self, i, op, args, tin, out, table, offload, rounding):
        tf = self._tflite
        x = args[0]
        if op == "CONV_2D":
            opt = self._options(table, "Conv2DOptions")
            w, bias = args[1], args[2] if len(args) > 2 else None
            f, kh, kw, c = w.shape
            if x.shape[-1] != c:
                raise ModelError(f"{self._where(i)}: grouped convolution ({x.shape[-1]} input "
                                 f"channels, filter has {c}) is not supported")
            stride = (opt.StrideH(), opt.StrideW())
            if (kh, kw) == (1, 1):
                # A strided 1x1 conv is a 1x1 conv of the subsampled input (SAME pads nothing
                # for a 1x1 filter), so it runs on pwconv too (ResNet's downsampling shortcuts).
                sub = np.ascontiguousarray(x[:, ::stride[0], ::stride[1], :])
                return self._pointwise(i, op, sub, tin, out, w[:, 0, 0, :], bias, opt, offload,
                                       rounding, fc=False, source=x)
            if self._kernels != "reference":
                fn = gxnn.conv2d if self._kernels == "xnnpack" else gopt.conv2d
                y = fn(x, w, bias, input_scale=tin[0].s(), weight_scales=tin[1].scale,
                       output_scale=out.s(), input_zero_point=tin[0].zp(),
                       output_zero_point=out.zp(), stride=stride,
                       dilation=(opt.DilationHFactor(), opt.DilationWFactor()),
                       padding=_padding(tf, opt.Padding()),
                       activation=self._activation_name(opt))
                return y, int(np.prod(y.shape)) * kh * kw * c, False
            lo, hi = self._activation(opt, out)
            mult, shift = golden.per_channel_multipliers(
                tin[0].s(), np.broadcast_to(tin[1].scale, (f,)), out.s())
            y = gops.conv2d(x, w, bias, input_zero_point=tin[0].zp(),
                            output_zero_point=out.zp(), multiplier=mult, shift=shift,
                            stride=stride, dilation=(opt.DilationHFactor(),
                                                     opt.DilationWFactor()),
                            padding=_padding(tf, opt.Padding()), activation_min=lo,
                            activation_max=hi)
            return y, int(np.prod(y.shape)) * kh * kw * c, False
        if op == "FULLY_CONNECTED":
            opt = self._options(table, "FullyConnectedOptions")
            bias = args[2] if len(args) > 2 else None
            return self._pointwise(i, op, x, tin, out, args[1], bias, opt, offload, rounding,
                                   fc=True, source=x)
        if op == "DEPTHWISE_CONV_2D":
            opt = self._options(table, "DepthwiseConv2DOptions")
            w, bias = args[1], args[2] if len(args) > 2 else None
            _, kh, kw, oc = w.shape
            if self._kernels != "reference":
                fn = gxnn.depthwise_conv2d if self._kernels == "xnnpack" else \
                    gopt.depthwise_conv2d
                y = fn(x, w, bias, input_scale=tin[0].s(), weight_scales=tin[1].scale,
                       output_scale=out.s(), input_zero_point=tin[0].zp(),
                       output_zero_point=out.zp(), depth_multiplier=oc // x.shape[-1],
                       stride=(opt.StrideH(), opt.StrideW()),
                       dilation=(opt.DilationHFactor(), opt.DilationWFactor()),
                       padding=_padding(tf, opt.Padding()),
                       activation=self._activation_name(opt))
                return y, int(np.prod(y.shape)) * kh * kw, False
            lo, hi = self._activation(opt, out)
            mult, shift = golden.per_channel_multipliers(
                tin[0].s(), np.broadcast_to(tin[1].scale, (oc,)), out.s())
            y = gops.depthwise_conv2d(
                x, w, bias, input_zero_point=tin[0].zp(), output_zero_point=out.zp(),
                multiplier=mult, shift=shift, depth_multiplier=oc // x.shape[-1],
                stride=(opt.StrideH(), opt.StrideW()),
                dilation=(opt.DilationHFactor(), opt.DilationWFactor()),
                padding=_padding(tf, opt.Padding()), activation_min=lo, activation_max=hi)
            return y, int(np.prod(y.shape)) * kh * kw, False
        if op == "ADD":
            opt = self._options(table, "AddOptions")
            if self._kernels == "xnnpack":
                y = gxnn.add(args[0], args[1], scales=(tin[0].s(), tin[1].s()),
                             zero_points=(tin[0].zp(), tin[1].zp()), output_scale=out.s(),
                             output_zero_point=out.zp(), activation=self._activation_name(opt))
                return y, 0, False
            lo, hi = self._activation(opt, out)
            y = gops.add(args[0], args[1], scales=(tin[0].s(), tin[1].s()),
                         zero_points=(tin[0].zp(), tin[1].zp()), output_scale=out.s(),
                         output_zero_point=out.zp(), activation_min=lo, activation_max=hi)
            return y, 0, False
        if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            opt = self._options(table, "Pool2DOptions")
            lo, hi = self._activation(opt, out)
            fn = gops.average_pool2d if op == "AVERAGE_POOL_2D" else gops.max_pool2d
            y = fn(x, (opt.FilterHeight(), opt.FilterWidth()),
                   stride=(opt.StrideH(), opt.StrideW()), padding=_padding(tf, opt.Padding()),
                   activation_min=lo, activation_max=hi)
            return y, 0, False
        if op == "MEAN":
            opt = self._options(table, "ReducerOptions")
            fn = {"xnnpack": gxnn.mean, "optimized": gopt.mean}.get(self._kernels, gops.mean)
            y = fn(x, args[1], keep_dims=bool(opt.KeepDims()), input_scale=tin[0].s(),
                   input_zero_point=tin[0].zp(), output_scale=out.s(),
                   output_zero_point=out.zp())
            return y, 0, False
        if op in ("PAD", "PADV2"):
            value = out.zp() if op == "PAD" or len(args) < 3 else int(args[2].ravel()[0])
            return gops.pad(x, args[1], value), 0, False
        if op == "RESHAPE":
            return x.reshape(out.shape), 0, False
        if op == "SOFTMAX":
            opt = self._options(table, "SoftmaxOptions")
            if abs(out.s() - 1 / 256) > 1e-9 or out.zp() != -128:
                raise ModelError(f"{self._where(i)}: int8 output must have scale 1/256 and "
                                 f"zero point -128, has {out.s()} and {out.zp()}")
            fn = gops.softmax if self._kernels == "reference" else gopt.softmax
            return fn(x, beta=opt.Beta(), input_scale=tin[0].s()), 0, False
        if op == "QUANTIZE":
            kernels = {"xnnpack": gxnn, "optimized": gopt}.get(self._kernels, gops)
            if tin[0].type == 0:
                return kernels.quantize(x, scale=out.s(), zero_point=out.zp()), 0, False
            return kernels.requantize_tensor(x, input_scale=tin[0].s(),
                                             input_zero_point=tin[0].zp(),
                                             output_scale=out.s(),
                                             output_zero_point=out.zp()), 0, False
        if op == "DEQUANTIZE":
            return gops.dequantize(x, scale=tin[0].s(), zero_point=tin[0].zp()), 0, False
        if op == "CONCATENATION":
            opt = self._options(table, "ConcatenationOptions")
            if opt.FusedActivationFunction() != 0:
                raise ModelError(f"{self._where(i)}: a fused activation is not supported")
            for t in tin:
                if t.s() != out.s() or t.zp() != out.zp():
                    raise ModelError(f"{self._where(i)}: inputs must share the output's scale "
                                     f"and zero point (TFLite's int8 kernel requires it)")
            return gops.concatenation(args, opt.Axis()), 0, False
        raise ModelError(f"{self._where(i)} is not supported")   # unreachable: validated

    def reference(self, x, runtime, run=None):
        """Run ``x`` through ai-edge-litert with ``runtime``'s op resolver; None when
        ai-edge-litert is not installed. Every op's output (by tensor name) comes from the
        preserved intermediate tensors (none for tflite-xnnpack, whose delegate keeps none)."""
        try:
            from ai_edge_litert.interpreter import Interpreter, OpResolverType
        except ImportError:
            return None
        resolver = getattr(OpResolverType, TFLITE_RUNTIMES[runtime])
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            interp = Interpreter(model_path=str(self.path), experimental_op_resolver_type=resolver,
                                 experimental_preserve_all_tensors=runtime != "tflite-xnnpack")
        interp.allocate_tensors()
        interp.set_tensor(self.inputs[0], x)
        interp.invoke()
        output = interp.get_tensor(self.outputs[0])
        layers, inputs = {}, {}
        if runtime != "tflite-xnnpack":
            for op, ins, outs, _ in self.ops:
                name = self.tensors[outs[0]].name
                layers[name] = interp.get_tensor(outs[0])
                if op in ("CONV_2D", "FULLY_CONNECTED"):
                    inputs[name] = interp.get_tensor(ins[0])
        return output, layers, inputs


def _padding(tf, value):
    return "SAME" if value == tf.Padding.SAME else "VALID"

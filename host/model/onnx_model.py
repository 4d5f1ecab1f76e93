"""Quantized ONNX models: pointwise convs on pwconv, every other node in ONNX Runtime itself.

Offloaded node groups, found with the `onnx` package the way ONNX Runtime's QDQ selectors see
them (onnxruntime/core/optimizer/qdq_transformer/selectors_actions):

- QDQ: ``DequantizeLinear(x int8) -> Conv 1x1 (any stride, group 1, no padding) [-> Relu|Clip]
  -> QuantizeLinear`` with per-channel (axis 0) or per-tensor int8 weights with zero point 0
  and an int32 bias (DequantizeLinear, zero point 0) or none. ONNX Runtime fuses it into
  QLinearConv; a Relu or Clip in between is kept only where it changes nothing once quantized
  (ReluQuantFusion / ClipQuantFusion remove it), otherwise the group stays in ONNX Runtime.
- ``QLinearConv`` nodes of the same shape, int8 or uint8 activations (uint8 ``v`` is int8
  ``v - 128`` with the zero point shifted alike: the same arithmetic).

The rest of the graph is cut into sub-models at the offloaded groups (built with the onnx API:
each a run of consecutive nodes, its boundary tensors as inputs and outputs) and executed by
onnxruntime, so no ONNX op is re-implemented here.
"""

import contextlib
import re
import time

import numpy as np

from ..layer import Layer
from ..runtimes import onnxruntime_session
from .base import Model, ModelError, OpStats, make_quantization

__all__ = ["ONNXModel"]

_INT8, _UINT8, _INT32, _FLOAT = 3, 2, 6, 1


class _Group:
    """An offloaded pointwise conv: its nodes, int8 input/output tensor names, layer params."""

    def __init__(self, nodes, x, y, w, bias, x_q, w_scale, y_q, uint8_in, uint8_out, op,
                 x_dq=None):
        self.x_dq = x_dq
        self.stride = (1, 1)
        self.nodes, self.x, self.y, self.w, self.bias = nodes, x, y, w, bias
        self.x_q, self.w_scale, self.y_q = x_q, w_scale, y_q
        self.uint8_in, self.uint8_out, self.op = uint8_in, uint8_out, op


class ONNXModel(Model):
    """A quantized ONNX model; see the module docstring for what runs where."""

    runtimes = ("onnxruntime",)

    def __init__(self, path):
        import onnx
        self.path = path
        try:
            model = onnx.load(str(path))
            onnx.checker.check_model(model)
            model = onnx.shape_inference.infer_shapes(model)
        except Exception as error:      # protobuf and the checker raise many kinds
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
            raise ModelError(f"{path}: not a valid ONNX model ({first})") from None
        self.model = model = _unique_dequantize(model)
        g = model.graph
        self.inits = {i.name: onnx.numpy_helper.to_array(i) for i in g.initializer}
        inputs = [i for i in g.input if i.name not in self.inits]
        if len(inputs) != 1 or len(g.output) != 1:
            raise ModelError(f"{path.name}: pwconv runs models with one input and one output, "
                             f"this one has {len(inputs)} and {len(g.output)}")
        self.input_name, self.output_name = inputs[0].name, g.output[0].name
        self.types = {}
        for vi in list(g.value_info) + list(g.input) + list(g.output):
            t = vi.type.tensor_type
            dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
            self.types[vi.name] = (t.elem_type, dims)
        elem, shape = self.types[self.input_name]
        if None in shape:
            raise ModelError(f"{path.name}: input '{self.input_name}' has a symbolic shape "
                             f"{list(shape)}; pwconv needs static shapes")
        self.input_shape = shape
        self.input_dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem))
        self.nodes = list(g.node)          # one wrapper per node: identity is used below
        self.consumers = {}
        for n in self.nodes:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.producer = {o: n for n in self.nodes for o in n.output}
        self.notes = []
        self.groups = self._find_groups()
        unfused = self._unfused_by_onnxruntime()
        if unfused:
            self.groups = [g for g in self.groups if g.op != "Conv (QDQ)" or g.y not in unfused]
            self.notes.append(
                f"{len(unfused)} pointwise conv(s) stay in onnxruntime, which does not fuse them "
                f"into QLinearConv but computes them in float (no integer result matches that "
                f"bit for bit): {', '.join(sorted(unfused))}")
        if not self.groups:
            raise ModelError(f"{path.name}: no quantized 1x1 convolution to run on pwconv "
                             f"(needs QDQ DequantizeLinear -> Conv -> QuantizeLinear with int8 "
                             f"weights, or QLinearConv)")
        self.steps = self._plan()
        self._sessions = {}

    # Finding the offloaded groups.

    def _unfused_by_onnxruntime(self):
        """Output names of the QDQ pointwise groups ONNX Runtime leaves unfused: their Conv is
        still a float Conv in the graph ONNX Runtime optimizes (read back with
        SessionOptions.optimized_model_filepath). On x86 this happens to int8 models whose Q/DQ
        pairs QDQS8ToU8Transformer rewrites to uint8 only in part. Empty without onnxruntime."""
        import importlib.util
        import tempfile
        if importlib.util.find_spec("onnxruntime") is None:
            return set()
        import onnx
        convs = {n.output[0]: g.y for g in self.groups if g.op == "Conv (QDQ)"
                 for n in g.nodes if n.op_type == "Conv"}
        if not convs:
            return set()
        with tempfile.TemporaryDirectory() as tmp:
            optimized_path = f"{tmp}/optimized.onnx"
            with self._onnxruntime_errors():
                onnxruntime_session(self.model.SerializeToString(),
                                    optimized_path=optimized_path)
            optimized = onnx.load(optimized_path)
        return {convs[n.output[0]] for n in optimized.graph.node
                if n.op_type == "Conv" and n.output[0] in convs}

    def _const(self, name):
        return self.inits.get(name)

    def _attrs(self, node):
        import onnx
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def _pointwise_attrs(self, node, w):
        a = self._attrs(node)
        return (w is not None and w.ndim == 4 and w.shape[2:] == (1, 1)
                and a.get("group", 1) == 1
                and not any(a.get("pads", [0])) and a.get("auto_pad", b"NOTSET") in
                (b"NOTSET", "NOTSET", b"VALID", "VALID"))

    def _single_use(self, name):
        return len(self.consumers.get(name, [])) == 1 and name != self.output_name

    def _dq(self, name):
        """``(int tensor name, scale, zero point)`` if ``name`` is a DequantizeLinear output."""
        n = self.producer.get(name)
        if n is None or n.op_type != "DequantizeLinear":
            return None
        scale = self._const(n.input[1])
        zp = self._const(n.input[2]) if len(n.input) > 2 and n.input[2] else None
        if scale is None:
            return None
        return n, scale, zp

    def _find_groups(self):
        groups = []
        for node in self.nodes:
            group = self._qlinearconv(node) if node.op_type == "QLinearConv" else \
                self._qdq_conv(node) if node.op_type == "Conv" else None
            if group is not None:
                # A strided 1x1 conv without padding is the 1x1 conv of the subsampled input.
                group.stride = tuple(self._attrs(node).get("strides", [1, 1]))
                groups.append(group)
        return groups

    def _qlinearconv(self, node):
        ins = list(node.input) + [""] * (9 - len(node.input))
        consts = [self._const(n) for n in ins[1:8]]
        w = consts[2]
        if any(v is None for v in consts) or not self._pointwise_attrs(node, w) or \
                w.dtype != np.int8:
            return None
        x_scale, x_zp, _, w_scale, w_zp, y_scale, y_zp = consts
        if np.any(w_zp != 0):
            return None
        bias = self._const(ins[8]) if ins[8] else None
        if ins[8] and bias is None:
            return None
        return _Group([node], ins[0], node.output[0], w, bias,
                      (float(x_scale), int(x_zp)), np.asarray(w_scale, np.float32),
                      (float(y_scale), int(y_zp)), x_zp.dtype == np.uint8,
                      y_zp.dtype == np.uint8, "QLinearConv")

    def _qdq_conv(self, conv):
        x_dq, w_dq = self._dq(conv.input[0]), self._dq(conv.input[1])
        if x_dq is None or w_dq is None:
            return None
        w = self._const(w_dq[0].input[0])
        if w is None or w.dtype != np.int8 or not self._pointwise_attrs(conv, w):
            return None
        if w_dq[2] is not None and np.any(w_dq[2] != 0):
            return None
        x_zp = x_dq[2] if x_dq[2] is not None else np.int8(0)
        if np.asarray(x_zp).dtype not in (np.int8, np.uint8) or np.size(x_dq[1]) != 1:
            return None
        nodes, bias = [w_dq[0], conv], None
        if len(conv.input) > 2 and conv.input[2]:
            b_dq = self._dq(conv.input[2])
            if b_dq is None or self._const(b_dq[0].input[0]) is None:
                return None
            bias = self._const(b_dq[0].input[0])
            if bias.dtype != np.int32 or (b_dq[2] is not None and np.any(b_dq[2] != 0)):
                return None
            nodes.insert(0, b_dq[0])
        if self._single_use(x_dq[0].output[0]):
            nodes.insert(0, x_dq[0])
        out = conv.output[0]
        if not self._single_use(out):
            return None
        nxt = self.consumers[out][0]
        activation = None
        if nxt.op_type in ("Relu", "Clip"):
            activation = nxt
            if not self._single_use(nxt.output[0]):
                return None
            out = nxt.output[0]
            nxt = self.consumers[out][0]
        if nxt.op_type != "QuantizeLinear" or self._const(nxt.input[1]) is None:
            return None
        y_scale = float(self._const(nxt.input[1]))
        y_zp = self._const(nxt.input[2]) if len(nxt.input) > 2 and nxt.input[2] else np.uint8(0)
        if np.asarray(y_zp).dtype not in (np.int8, np.uint8) or np.size(y_zp) != 1:
            return None
        if activation is not None and not self._activation_is_noop(activation, y_scale, y_zp):
            return None
        if activation is not None:
            nodes.append(activation)
        nodes.append(nxt)
        uint8_in = np.asarray(x_zp).dtype == np.uint8
        uint8_out = np.asarray(y_zp).dtype == np.uint8
        return _Group(nodes, x_dq[0].input[0], nxt.output[0], w, bias,
                      (float(x_dq[1]), int(x_zp)), np.asarray(w_dq[1], np.float32),
                      (y_scale, int(y_zp)), uint8_in, uint8_out, "Conv (QDQ)", x_dq[0])

    def _activation_is_noop(self, node, y_scale, y_zp):
        """Relu / Clip before QuantizeLinear changes no quantized value (so ONNX Runtime drops
        it): its lower bound quantizes to at most the type's minimum and its upper bound to at
        least the maximum."""
        lo_q, hi_q = (0, 255) if np.asarray(y_zp).dtype == np.uint8 else (-128, 127)
        lo, hi = 0.0, np.inf
        if node.op_type == "Clip":
            a = self._attrs(node)
            lo, hi = a.get("min", -np.inf), a.get("max", np.inf)
            if len(node.input) > 1 and node.input[1]:
                v = self._const(node.input[1])
                if v is None:
                    return False
                lo = float(v)
            if len(node.input) > 2 and node.input[2]:
                v = self._const(node.input[2])
                if v is None:
                    return False
                hi = float(v)
        q = lambda f: np.round(f / y_scale) + int(y_zp)     # noqa: E731
        return q(lo) <= lo_q and q(hi) >= hi_q

    # The plan: offloaded groups and onnxruntime segments, in graph order.

    def _plan(self):
        in_group = {id(n): g for g in self.groups for n in g.nodes}
        steps, segment = [], []
        emitted = set()
        for node in self.nodes:
            g = in_group.get(id(node))
            if g is None:
                segment.append(node)
                continue
            if id(g) in emitted:
                continue
            # A group's weight/bias DequantizeLinear nodes come early in the graph: the group
            # runs where its Conv is, so flush the segment only at the conv's position.
            conv = next(n for n in g.nodes if n.op_type in ("Conv", "QLinearConv"))
            if node is not conv:
                continue
            if segment:
                steps.append(("onnxruntime", segment))
                segment = []
            steps.append(("pwconv", g))
            emitted.add(id(g))
        if segment:
            steps.append(("onnxruntime", segment))
        return steps

    def _quantized_by(self, name):
        """``(scale, zero point)`` initializer names of an int8/uint8 tensor that a
        QuantizeLinear makes (per-tensor), else None."""
        q = self.producer.get(name)
        if self.types.get(name, (0,))[0] not in (_INT8, _UINT8) or q is None or \
                q.op_type != "QuantizeLinear" or len(q.input) < 3:
            return None
        scale, zp = q.input[1], q.input[2]
        if scale not in self.inits or zp not in self.inits or self.inits[scale].size != 1:
            return None
        return scale, zp

    def _segment_model(self, nodes, later_needed):
        """A model of ``nodes`` whose inputs are what they read from outside and whose outputs
        are what later steps (or the graph output) read.

        An int8 tensor crossing the boundary crosses it as float (a QuantizeLinear after the
        input, a DequantizeLinear before the output, both exact round trips): ONNX Runtime
        does not fuse a node unit whose DequantizeLinear reads a graph input or whose
        QuantizeLinear writes a graph output, and would then compute it in float.
        Returns ``(model, [(graph input, tensor, q)], [(graph output, tensor, q)])`` with ``q``
        the (scale, zero point) names of a float-wrapped tensor, else None.
        """
        import onnx
        from onnx import helper
        produced = {o for n in nodes for o in n.output}
        inputs, seen = [], set()
        for n in nodes:
            for name in n.input:
                if name and name not in produced and name not in self.inits and name not in seen:
                    seen.add(name)
                    inputs.append(name)
        outputs = [o for n in nodes for o in n.output if o in later_needed]
        nodes, feeds, fetches, graph_in, graph_out = list(nodes), [], [], [], []
        for name in inputs:
            q = self._quantized_by(name)
            elem, dims = self.types[name]
            if q is not None:
                fname = f"{name}__pwconv_float"
                nodes.insert(0, helper.make_node("QuantizeLinear", [fname, *q], [name]))
                graph_in.append(helper.make_tensor_value_info(fname, _FLOAT, list(dims)))
                feeds.append((fname, name, q))
            else:
                graph_in.append(helper.make_tensor_value_info(name, elem, list(dims)))
                feeds.append((name, name, None))
        for name in outputs:
            q = self._quantized_by(name)
            elem, dims = self.types[name]
            if q is not None:
                fname = f"{name}__pwconv_float"
                nodes.append(helper.make_node("DequantizeLinear", [name, *q], [fname]))
                graph_out.append(helper.make_tensor_value_info(fname, _FLOAT, list(dims)))
                fetches.append((fname, name, q))
            else:
                graph_out.append(helper.make_tensor_value_info(name, elem, list(dims)))
                fetches.append((name, name, None))
        used_inits = {name for n in nodes for name in n.input if name in self.inits}
        inits = [i for i in self.model.graph.initializer if i.name in used_inits]
        graph = helper.make_graph(nodes, "segment", graph_in, graph_out, inits)
        model = helper.make_model(graph, opset_imports=self.model.opset_import)
        model.ir_version = self.model.ir_version
        onnx.checker.check_model(model)
        return model, feeds, fetches

    def _to_float(self, x_q, q):
        """DequantizeLinear's float32 ``(x - zero_point) * scale``."""
        scale, zp = np.float32(self.inits[q[0]]), np.float32(self.inits[q[1]])
        return ((x_q.astype(np.float32) - zp) * scale).astype(np.float32)

    def _from_float(self, y, q):
        """The int tensor a DequantizeLinear made ``y`` from (an exact inverse)."""
        scale, zp = self.inits[q[0]], self.inits[q[1]]
        info = np.iinfo(zp.dtype)
        return np.clip(np.round(y / np.float32(scale)) + int(zp), info.min, info.max
                       ).astype(zp.dtype)

    def _session(self, key, model_bytes):
        if key not in self._sessions:
            with self._onnxruntime_errors():
                self._sessions[key] = onnxruntime_session(model_bytes)
        return _CheckedSession(self._sessions[key], self._onnxruntime_errors)

    @contextlib.contextmanager
    def _onnxruntime_errors(self):
        """Turn what onnxruntime raises (its own exception types, from loading or running the
        model: an unknown custom op, an opset it does not support, ...) into one ModelError
        line naming the model."""
        try:
            yield
        except Exception as error:
            if not type(error).__module__.startswith("onnxruntime"):
                raise
            raise ModelError(f"{self.path.name}: onnxruntime cannot run this model "
                             f"({_onnxruntime_message(error)})") from None

    def _run_ops(self, x, offload, run, rounding):
        values = {self.input_name: x}
        needed_after = []
        for k in range(len(self.steps)):
            need = {self.output_name}
            for kind, item in self.steps[k + 1:]:
                nodes = item if kind == "onnxruntime" else item.nodes
                need |= {name for n in nodes for name in n.input}
            needed_after.append(need)
        for k, (kind, item) in enumerate(self.steps):
            start = time.perf_counter()
            if kind == "onnxruntime":
                model, feeds, fetches = self._segment_model(item, needed_after[k])
                session = self._session(k, model.SerializeToString())
                results = session.run(
                    [f[0] for f in fetches],
                    {gin: values[name] if q is None else self._to_float(values[name], q)
                     for gin, name, q in feeds})
                for (_, name, q), y in zip(fetches, results):
                    values[name] = y if q is None else self._from_float(y, q)
                seconds = (time.perf_counter() - start) / max(len(item), 1)
                for n in item:
                    run.ops.append(OpStats(self._index(n), n.op_type, n.output[0],
                                           self.types.get(n.output[0], (0, ()))[1],
                                           "host", self._macs(n), seconds=seconds))
            else:
                values[item.y] = self._offload(item, values[item.x], offload, rounding)
        run.ops.sort(key=lambda s: s.index)
        return values[self.output_name]

    def _index(self, node):
        return next(i for i, n in enumerate(self.nodes) if n is node)

    def _macs(self, node):
        """MACs of a Conv / QLinearConv left to onnxruntime (0 for other nodes)."""
        if node.op_type not in ("Conv", "QLinearConv"):
            return 0
        w_name = node.input[3] if node.op_type == "QLinearConv" else node.input[1]
        w_shape = self.types.get(w_name, (0, ()))[1]
        if not w_shape and w_name in self.inits:
            w_shape = self.inits[w_name].shape
        out = self.types.get(node.output[0], (0, ()))[1]
        if not w_shape or not out or None in out or None in w_shape:
            return 0
        return int(np.prod(out)) * int(np.prod(w_shape[1:]))

    def _layer(self, g, rounding):
        (xs, xzp), (ys, yzp) = g.x_q, g.y_q
        xzp -= 128 if g.uint8_in else 0
        yzp -= 128 if g.uint8_out else 0
        f, c = g.w.shape[:2]
        scales = np.broadcast_to(g.w_scale, (f,)).astype(np.float32)
        quant = make_quantization(input_scale=xs, weight_scales=scales, output_scale=ys,
                                  input_zero_point=xzp, output_zero_point=yzp,
                                  activation_min=-128, activation_max=127, rounding=rounding)
        bias = np.zeros(f, np.int32) if g.bias is None else np.asarray(g.bias, np.int32)
        return Layer(np.ascontiguousarray(g.w[:, :, 0, 0].T), bias, quant)

    def _offload(self, g, x_q, offload, rounding):
        """Run group ``g`` on the accelerator: NCHW int8/uint8 in and out."""
        layer = self._layer(g, rounding)
        x8 = (x_q.astype(np.int16) - 128).astype(np.int8) if g.uint8_in else x_q
        if x8.dtype != np.int8 or x8.ndim != 4:
            raise ModelError(f"{self.path.name}: {g.op} '{g.y}': expected an int8 NCHW input, "
                             f"got {x_q.dtype.name} {list(x_q.shape)}")
        sh, sw = g.stride
        nhwc = np.ascontiguousarray(x8[:, :, ::sh, ::sw].transpose(0, 2, 3, 1))
        macs = int(np.prod(nhwc.shape)) * layer.filters
        y = offload(self._index(g.nodes[-1]), g.op, g.y, nhwc, layer, macs, source=x_q)
        y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        return (y.astype(np.int16) + 128).astype(np.uint8) if g.uint8_out else y

    def run(self, x, accelerator, *, runtime=None, layers_out=None):
        result = super().run(x, accelerator, runtime=runtime, layers_out=layers_out)
        # Offloaded outputs and inputs are reported NCHW and typed as ONNX Runtime has them.
        by_y = {g.y: g for g in self.groups}
        result.offloaded = {name: _to_onnx(y, by_y[name].uint8_out)
                            for name, y in result.offloaded.items()}
        result.layer_inputs = {name: _to_onnx(x, by_y[name].uint8_in)
                               for name, x in result.layer_inputs.items()}
        for s in result.ops:
            if s.where == "pwconv":
                s.shape = result.offloaded[s.name].shape
        return result

    def reference(self, x, runtime="onnxruntime", run=None):
        """The whole model in onnxruntime and, given ``run``, each offloaded group alone on the
        input pwconv saw (a model with float input and output around the group, so that ONNX
        Runtime fuses it as in the whole model); None without onnxruntime."""
        import importlib.util
        if importlib.util.find_spec("onnxruntime") is None:
            return None
        output = self._session("whole", self.model.SerializeToString()).run(
            [self.output_name], {self.input_name: x})[0]
        layers = {}
        if run is not None:
            by_y = {g.y: g for g in self.groups}
            layers = {name: self._group_alone(by_y[name], x_q)
                      for name, x_q in run.layer_inputs.items()}
        return output, layers, dict(run.layer_sources) if run is not None else {}

    def _group_alone(self, g, x_q):
        import onnx
        from onnx import TensorProto, helper, numpy_helper
        (xs, xzp), (ys, yzp) = g.x_q, g.y_q
        qtype = np.uint8 if g.uint8_in else np.int8
        otype = np.uint8 if g.uint8_out else np.int8
        inits = [numpy_helper.from_array(np.float32(xs), "pw_xs"),
                 numpy_helper.from_array(np.asarray(xzp, qtype), "pw_xzp"),
                 numpy_helper.from_array(np.float32(ys), "pw_ys"),
                 numpy_helper.from_array(np.asarray(yzp, otype), "pw_yzp")]
        nodes = [helper.make_node("QuantizeLinear", ["pw_in", "pw_xs", "pw_xzp"], [g.x])]
        if g.x_dq is not None and g.x_dq not in g.nodes:
            nodes.append(g.x_dq)
        nodes += list(g.nodes)
        nodes.append(helper.make_node("DequantizeLinear", [g.y, "pw_ys", "pw_yzp"], ["pw_out"]))
        used = {name for n in nodes for name in n.input if name in self.inits}
        inits += [i for i in self.model.graph.initializer if i.name in used]
        shape = list(x_q.shape)
        out_shape = list(self.types[g.y][1])
        graph = helper.make_graph(
            nodes, "layer", [helper.make_tensor_value_info("pw_in", TensorProto.FLOAT, shape)],
            [helper.make_tensor_value_info("pw_out", TensorProto.FLOAT, out_shape)], inits)
        model = helper.make_model(graph, opset_imports=self.model.opset_import)
        model.ir_version = self.model.ir_version
        onnx.checker.check_model(model)
        xf = ((x_q.astype(np.float32) - np.float32(xzp)) * np.float32(xs)).astype(np.float32)
        yf = self._session(("layer", g.y), model.SerializeToString()).run(
            ["pw_out"], {"pw_in": xf})[0]
        lo, hi = (0, 255) if g.uint8_out else (-128, 127)
        return np.clip(np.round(yf / np.float32(ys)) + yzp, lo, hi).astype(otype)


class _CheckedSession:
    """An onnxruntime session whose ``run`` raises ModelError instead of onnxruntime's own
    exceptions (``errors``: the context manager that translates them)."""

    def __init__(self, session, errors):
        self._session, self._errors = session, errors

    def run(self, *args, **kwargs):
        with self._errors():
            return self._session.run(*args, **kwargs)


def _onnxruntime_message(error):
    """onnxruntime's message, one line: without its ``[ONNXRuntimeError] : 1 : FAIL :`` prefix
    and the C++ source location and function signature that some messages start with."""
    text = " ".join(str(error).split())
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    text = re.sub(r"^/\S+:\d+ [^()]*\([^()]*\) ", "", text)
    return text if len(text) <= 300 else text[:297] + "..."


def _to_onnx(y, uint8):
    """NHWC int8 (the accelerator's) to NCHW, uint8 where the model has uint8."""
    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
    return (y.astype(np.int16) + 128).astype(np.uint8) if uint8 else y


def _unique_dequantize(model):
    """Give every consumer of a shared DequantizeLinear output its own copy of the node, placed
    right before that consumer, as ONNX Runtime's EnsureUniqueDQForNodeUnit does before it
    fuses node units (so each copy lands in its consumer's onnxruntime segment)."""
    import onnx
    from onnx import helper
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    nodes = list(g.node)
    consumers = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    outputs = {o.name for o in g.output}
    shared = [n for n in nodes if n.op_type == "DequantizeLinear"
              and len(consumers.get(n.output[0], [])) > 1 and n.output[0] not in outputs]
    before = {}                                    # id(consumer) -> copies to put before it
    for n in shared:
        for k, user in enumerate(consumers[n.output[0]]):
            name = f"{n.output[0]}_pwconv_dup{k}"
            copy = helper.make_node("DequantizeLinear", list(n.input), [name],
                                    name=f"{n.name}_pwconv_dup{k}")
            copy.attribute.extend(n.attribute)
            before.setdefault(id(user), []).append(copy)
            for i, inp in enumerate(user.input):
                if inp == n.output[0]:
                    user.input[i] = name
    drop = {id(n) for n in shared}
    new_nodes = []
    for n in nodes:
        new_nodes.extend(before.get(id(n), []))
        if id(n) not in drop:
            new_nodes.append(n)
    del g.node[:]
    g.node.extend(new_nodes)
    return onnx.shape_inference.infer_shapes(model)

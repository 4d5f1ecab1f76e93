"""The compiler: a .tflite model -> one memory image (header, program, weights, params, arena).

:func:`compile_model` decides where each op runs, lays the model's tensors out in an arena
planned by liveness (host/compiler/plan.py), turns every board op into a 64-byte descriptor with
its weights and parameters pre-tiled for the array's load ports (host/program.py
``compile_layer``, host/tiling.py ``plan_passes``), and groups the ops the board cannot run into
host segments (a HOST descriptor each), counting the bytes that cross the link. PAD, RESHAPE and
channel CONCATENATION become views (format.View), not ops, wherever their tensors allow it.

The requantization parameters are the ones :class:`~pwconv.host.model.tflite_model.TFLiteModel`
computes for the same runtime (golden.layer_requant_params, its reference FULLY_CONNECTED
matching, golden.ops' Prepare steps), so the image's outputs equal ``model.run(x, "golden")``
bit for bit. :mod:`pwconv.golden.program` executes an image.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.golden import ops as gops
from pwconv.golden import program as gprog
from ..model.base import ModelError, rounding_for
from ..tiling import plan_passes
from . import format as fmt
from .plan import Buffer, plan_arena

__all__ = ["CompileError", "CompiledModel", "OpReport", "compile_model", "BOARD_OPS",
           "ARRAY_OPS", "VIEW_OPS"]

#: Every op kind the program format has a descriptor for (issues 25 and 26).
BOARD_OPS = ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D", "ADD", "AVERAGE_POOL_2D",
             "MAX_POOL_2D", "MEAN")
#: What the array alone runs (the engine of issue 25, before the depthwise/pooling engines).
ARRAY_OPS = ("CONV_2D", "FULLY_CONNECTED")
#: Ops that become addressing.
VIEW_OPS = ("RESHAPE", "CONCATENATION", "PAD", "PADV2")

_KIND = {"CONV_2D": "CONV", "FULLY_CONNECTED": "FULLY_CONNECTED",
         "DEPTHWISE_CONV_2D": "DEPTHWISE", "ADD": "ADD", "AVERAGE_POOL_2D": "AVERAGE_POOL",
         "MAX_POOL_2D": "MAX_POOL", "MEAN": "MEAN"}
_ALIGN = 64


class CompileError(ModelError):
    """The model cannot be compiled for the board: one line naming what and by how much."""


@dataclass
class OpReport:
    """One model op in the compiled program: where it runs (``board``, ``host``, ``view``:
    addressing only, or ``fused``: an ADD done by its conv's descriptor), its MACs, and its
    SDRAM and link traffic per inference.

    ``min_bytes``: the op's input read once, output written once, weights and parameters read
    once. ``moved_bytes``: what this scheme's address generation moves (see
    :func:`compile_model`). ``link_bytes``: what a host op reads from and writes to the board.
    """

    index: int
    op: str
    name: str
    where: str
    macs: int = 0
    min_bytes: int = 0
    moved_bytes: int = 0
    link_bytes: int = 0
    passes: int = 0
    descriptor: int | None = None
    segment: int | None = None


@dataclass
class CompiledModel:
    """A compiled model: ``image`` (bytes to load into the SDRAM once), its header and
    descriptors, the per-op report, host segments (model op indices), each arena tensor's
    view, and the arena plan. :meth:`infer` runs one inference on a copy of the image with
    the golden executor (or on ``image`` given, e.g. the board's memory)."""

    model: object
    config: ArrayConfig
    runtime: str
    image: bytes
    header: fmt.Header
    descriptors: list
    ops: list
    segments: list
    views: dict
    arena: object
    link: dict = field(default_factory=dict)
    #: Each arena tensor's buffer (the tensor whose bytes it is part of).
    roots: dict = field(default_factory=dict)

    @property
    def link_bytes_per_inference(self):
        """Payload bytes over the link per inference: input, host segments, output."""
        return sum(self.link.values())

    @property
    def sdram_bytes_per_inference(self):
        return sum(r.moved_bytes for r in self.ops if r.where == "board")

    def roofline(self, sdram_bytes_per_cycle, macs_per_cycle=None):
        """Per board op (by model op index): the fewest cycles it can take, ``max(MACs /
        macs_per_cycle, min_bytes / sdram_bytes_per_cycle)`` (issue 25's roofline;
        ``macs_per_cycle`` defaults to the array's ``rows * cols``, which a depthwise engine of
        another size would replace)."""
        rate = macs_per_cycle or self.config.macs
        return {r.index: max(r.macs / rate, r.min_bytes / sdram_bytes_per_cycle)
                for r in self.ops if r.where == "board"}

    def fresh_image(self):
        return bytearray(self.image)

    def infer(self, x, image=None, counts=None):
        """Run one inference: write ``x`` (and run the host segments) through the views, the
        board ops with golden.program. Returns the model output; ``counts`` (a dict) gets the
        link bytes moved, by ``input``, ``host``, ``output``."""
        x = self.model.check_input(x)
        image = self.fresh_image() if image is None else image
        counts = {} if counts is None else counts
        counts.update(input=0, host=0, output=0)
        values = {t.index: t.data for t in self.model.tensors if t.data is not None}
        values[self.model.inputs[0]] = x
        if self.model.inputs[0] in self.views:
            gprog.write_view(image, self.views[self.model.inputs[0]], x)
            counts["input"] += x.size
        host = _HostRunner(self, values, counts)
        gprog.run_program(image, host)
        out = self.model.outputs[0]
        if out in values:
            return values[out]
        y = gprog.read_view(image, self.views[out])
        counts["output"] += y.size
        return y.reshape(self.model.tensors[out].shape)

    def table(self):
        """The per-op table as text."""
        lines = [f"{'#':>4} {'op':<18} {'where':<6} {'MACs':>12} {'min SDRAM B':>12} "
                 f"{'moved B':>12} {'link B':>8}"]
        for r in self.ops:
            lines.append(f"{r.index:>4} {r.op:<18} {r.where:<6} {r.macs:>12,} "
                         f"{r.min_bytes:>12,} {r.moved_bytes:>12,} {r.link_bytes:>8,}")
        h = self.header
        lines.append(f"image {h.image_bytes:,} B: program {len(self.descriptors)} descriptors, "
                     f"weights+params {h.weights_bytes:,} B, arena {h.arena_bytes:,} B "
                     f"(unshared {self.arena.unshared:,} B), scratch {h.scratch_bytes:,} B; "
                     f"link {self.link_bytes_per_inference:,} B per inference")
        return "\n".join(lines)


class _HostRunner:
    """Runs HOST descriptors: the model's own host kernels (TFLiteModel._op) on tensors read
    from and written to the image through their views, counting the link bytes."""

    def __init__(self, compiled, values, counts):
        self.c, self.values, self.counts = compiled, values, counts
        # Host ops compute on the host (golden), whatever modes the board's build has.
        cfg = ArrayConfig()

        def offload(index, op, name, x_in, layer, macs, shape=None, source=None):
            from ..accelerator import Accelerator
            y = Accelerator("golden", config=cfg).run_layer(x_in, layer)
            return y if shape is None else y.reshape(shape)
        offload.roundings = cfg.roundings
        self.offload = offload

    def _get(self, t, image):
        if t not in self.values:
            y = gprog.read_view(image, self.c.views[t])
            self.counts["host"] += y.size
            self.values[t] = y.reshape(self.c.model.tensors[t].shape)
        return self.values[t]

    def __call__(self, segment, image):
        model = self.c.model
        for i in self.c.segments[segment]:
            op, ins, outs, table = model.ops[i]
            args = [self._get(t, image) if t >= 0 else None for t in ins]
            tin = [model.tensors[t] if t >= 0 else None for t in ins]
            out = model.tensors[outs[0]]
            try:
                mode = _use_kernels(model, i, self.c.runtime)
                y, _, _ = model._op(i, op, args, tin, out, table, self.offload, mode)
            except ModelError:
                raise
            except (ValueError, TypeError) as error:
                raise ModelError(f"{model._where(i)}: {error}") from None
            self.values[outs[0]] = y
            if outs[0] in self.c.views:
                gprog.write_view(image, self.c.views[outs[0]], y)
                self.counts["host"] += y.size



def _use_kernels(model, i, runtime):
    """Set the kernels op ``i`` computes like in ``runtime`` (TFLiteModel._kernels, read by
    its _op and _activation) and return the rounding mode of an offloaded layer, as
    TFLiteModel._run_ops decides them."""
    op, ins, outs, table = model.ops[i]
    model._kernels = model._kernels_for(op, ins, outs, table, runtime)
    rounding = rounding_for(runtime)
    if rounding == "double":
        return rounding
    return {"xnnpack": "float", "optimized": "ruy"}.get(model._kernels, rounding)


def _geometry(shape):
    """(h, w, c) of a tensor stored NHWC-contiguously, or None (a scalar)."""
    shape = tuple(int(v) for v in shape)
    if not shape:
        return None
    if len(shape) == 1:
        return 1, 1, shape[0]
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    return int(np.prod(shape[:-2])), shape[-2], shape[-1]


def _fits(geometry):
    return geometry is not None and all(1 <= v <= 0xFFFF for v in geometry)


def _taps(size, out, k, s, d, pad):
    """In-image taps along one axis summed over the outputs, and the input rows (columns)
    read at all."""
    o = np.arange(out)[:, None] * s - pad + np.arange(k)[None, :] * d
    inside = (o >= 0) & (o < size)
    return int(inside.sum()), len(np.unique(o[inside]))


def _pads(size, k, s, d, padding):
    out, lead = gops.compute_padding(size, k, s, d, padding)
    return out, lead, max((out - 1) * s + (k - 1) * d + 1 - size - lead, 0)


class _Compiler:
    def __init__(self, model, cfg, runtime, board_ops, fuse=True):
        self.m, self.cfg, self.runtime, self.fuse = model, cfg, runtime, fuse
        self.rounding = rounding_for(runtime)
        self.board_ops = tuple(board_ops)
        self.T = model.tensors
        self.n = len(model.ops)
        self.producer, self.consumers, self.op_rounding = {}, {}, {}
        for i, (_, ins, outs, _) in enumerate(model.ops):
            for t in outs:
                self.producer[t] = i
            for t in ins:
                if t >= 0:
                    self.consumers.setdefault(t, []).append(i)

    # Where each op runs.

    def _is_act(self, t):
        """An int8 activation (not a constant) that can live in the arena."""
        tensor = self.T[t]
        return tensor.data is None and tensor.type == 9 and _fits(_geometry(tensor.shape))

    def _nhwc1(self, t):
        shape = self.T[t].shape
        return len(shape) == 4 and shape[0] == 1

    def _board_ok(self, i):
        """The op's descriptor parameters, or None when the board cannot run it."""
        m = self.m
        op, ins, outs, table = m.ops[i]
        if op not in self.board_ops or len(outs) != 1:
            return None
        self.op_rounding[i] = _use_kernels(m, i, self.runtime)
        if self.op_rounding[i] not in self.cfg.roundings:
            return None
        if self.runtime != "tflite-reference" and not (
                op == "FULLY_CONNECTED" or
                (op == "CONV_2D" and self.T[ins[1]].data is not None and
                 self.T[ins[1]].data.shape[1:3] == (1, 1))):
            # Other runtimes' depthwise, ADD, pools, MEAN and KxK convs are their own kernels
            # (golden.optimized, golden.xnnpack): the board's are TFLite's reference ones.
            return None
        acts = [t for t in ins if t >= 0 and self.T[t].data is None] + outs
        if not all(self._is_act(t) for t in acts):
            return None
        x, out = self.T[ins[0]], self.T[outs[0]]
        if op == "CONV_2D":
            w = self.T[ins[1]]
            if not self._nhwc1(ins[0]) or w.data is None or w.data.shape[-1] != x.shape[-1]:
                return None
            opt = m._options(table, "Conv2DOptions")
            f, kh, kw, c = w.data.shape
            stride = (opt.StrideH(), opt.StrideW())
            dil = (opt.DilationHFactor(), opt.DilationWFactor())
            padding = "SAME" if opt.Padding() == m._tflite.Padding.SAME else "VALID"
            pads = [_pads(x.shape[1 + a], (kh, kw)[a], stride[a], dil[a], padding)
                    for a in range(2)]
            if max(stride + dil) > 15 or max(kh, kw) > 255 or \
                    max(p for _, lead, trail in pads for p in (lead, trail)) > 255 or \
                    w.zp() != 0 or (pads[0][0], pads[1][0]) != tuple(out.shape[1:3]):
                return None
            return dict(opt=opt, stride=stride, dilation=dil, pads=pads)
        if op == "FULLY_CONNECTED":
            w = self.T[ins[1]]
            if w.data is None or w.data.ndim != 2 or x.shape[-1] != w.data.shape[1]:
                return None
            if not _fits((1, int(np.prod(x.shape)) // w.data.shape[1], w.data.shape[1])):
                return None
            params = self._fc_params(i)
            return None if params is None else dict(params=params)
        if op == "DEPTHWISE_CONV_2D":
            w = self.T[ins[1]]
            if not self._nhwc1(ins[0]) or w.data is None:
                return None
            opt = m._options(table, "DepthwiseConv2DOptions")
            _, kh, kw, oc = w.data.shape
            stride = (opt.StrideH(), opt.StrideW())
            if oc != x.shape[-1] or (kh, kw) not in ((3, 3), (5, 5)) or \
                    stride not in ((1, 1), (2, 2)) or \
                    (opt.DilationHFactor(), opt.DilationWFactor()) != (1, 1) or w.zp() != 0:
                return None
            padding = "SAME" if opt.Padding() == m._tflite.Padding.SAME else "VALID"
            pads = [_pads(x.shape[1 + a], (kh, kw)[a], stride[a], 1, padding) for a in range(2)]
            return dict(opt=opt, stride=stride, pads=pads)
        if op == "ADD":
            shapes = {self.T[t].shape for t in ins[:2]} | {out.shape}
            if len(shapes) != 1 or any(self.T[t].data is not None for t in ins[:2]):
                return None
            return {}
        if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            if not self._nhwc1(ins[0]):
                return None
            opt = m._options(table, "Pool2DOptions")
            k = (opt.FilterHeight(), opt.FilterWidth())
            stride = (opt.StrideH(), opt.StrideW())
            padding = "SAME" if opt.Padding() == m._tflite.Padding.SAME else "VALID"
            if max(k) > 255 or max(stride) > 15 or min(k + stride) < 1:
                return None
            pads = [_pads(x.shape[1 + a], k[a], stride[a], 1, padding) for a in range(2)]
            return dict(opt=opt, kernel=k, stride=stride, pads=pads)
        if op == "MEAN":
            axes = self.T[ins[1]].data
            if not self._nhwc1(ins[0]) or axes is None or \
                    {int(a) % 4 for a in np.atleast_1d(axes)} != {1, 2}:
                return None
            return {}
        return None

    def _fc_params(self, i):
        """``(rounding, multiplier, shift, scale)`` of a FULLY_CONNECTED as TFLiteModel's
        offload computes them, or None where it runs the layer on the host."""
        m = self.m
        op, ins, outs, table = m.ops[i]
        xin, wt, out = self.T[ins[0]], self.T[ins[1]], self.T[outs[0]]
        w = wt.data
        bias = self.T[ins[2]].data if len(ins) > 2 and ins[2] >= 0 else None
        f = w.shape[0]
        opt = m._options(table, "FullyConnectedOptions")
        lo, hi = m._activation(opt, out)
        weight_scales = np.broadcast_to(wt.scale, (f,)) if wt.scale.size == 1 else wt.scale
        rounding, multiplier, shift = self.op_rounding[i], None, None
        if rounding == "double":
            found = m._reference_fc_params(xin, wt, w, bias, weight_scales, out, lo, hi,
                                           self.cfg.roundings)
            if found is None:
                return None
            rounding, multiplier, shift = found
        elif wt.scale.size == 1 and rounding != "float":
            multiplier, shift = gops.fully_connected_multiplier(xin.s(), wt.s(), out.s())
        if rounding not in self.cfg.roundings:
            return None
        mm, ss, scale = golden.layer_requant_params(xin.s(), weight_scales, out.s(), rounding)
        if multiplier is None and mm is not None:
            multiplier, shift = mm, ss
        if multiplier is not None:
            multiplier = np.broadcast_to(np.asarray(multiplier, np.int32), (f,)).copy()
            shift = np.broadcast_to(np.asarray(shift, np.int32), (f,)).copy()
        return rounding, multiplier, shift, scale

    # Views: which tensors share bytes.

    def _views(self, where):
        """Record the relations of the view ops that can be addressing: ``parent[t] = (p, oy,
        ox, oc)`` (t is a window of p), ``alias[t] = s`` (t is s's bytes, another shape),
        ``fill[p]`` (a pad buffer's constant border)."""
        self.parent, self.alias, self.fill = {}, {}, {}
        self.view_ops = {}
        for i, (op, ins, outs, _) in enumerate(self.m.ops):
            if op not in VIEW_OPS or where[i] is not None:
                continue
            if op in ("PAD", "PADV2") and self._absorb_pad(ins, outs):
                where[i] = "view"
                continue
            rel = self._view_relation(op, ins, outs)
            if rel is not None:
                where[i] = "view"
                self.view_ops[i] = rel
                for kind, t, value in rel:
                    getattr(self, kind)[t] = value

    def _pad_amounts(self, ins, outs):
        """``(top, left, bottom, right, value)`` of a PAD of height and width only, or None."""
        src, out = ins[0], outs[0]
        pads = self.T[ins[1]].data
        if pads is None or not self._is_act(src) or not self._nhwc1(src):
            return None
        pads = np.asarray(pads)
        if pads.shape != (4, 2) or pads[[0, 3]].any() or (pads < 0).any():
            return None
        if self.T[src].s() != self.T[out].s() or self.T[src].zp() != self.T[out].zp():
            return None
        value = self.T[out].zp()
        if len(ins) > 2 and ins[2] >= 0:
            value = int(np.asarray(self.T[ins[2]].data).ravel()[0])
        return int(pads[1, 0]), int(pads[2, 0]), int(pads[1, 1]), int(pads[2, 1]), value

    def _absorb_pad(self, ins, outs):
        """Fold a PAD into its readers' padding when every reader is a board CONV_2D or
        DEPTHWISE_CONV_2D whose out-of-image taps read the pad value (its input zero point):
        they read the unpadded tensor with more padding, and the padded one never exists."""
        src, out = ins[0], outs[0]
        amounts = self._pad_amounts(ins, outs)
        readers = self.consumers.get(out, [])
        if amounts is None or not readers or out == self.m.outputs[0]:
            return False
        top, left, bottom, right, value = amounts
        for j in readers:
            op, ins_j, _, _ = self.m.ops[j]
            if j not in self.board or op not in ("CONV_2D", "DEPTHWISE_CONV_2D") or \
                    ins_j[0] != out or ins_j.count(out) != 1 or value != self.T[out].zp():
                return False
            (_, pt, pb), (_, pl, pr) = self.board[j]["pads"]
            if max(pt + top, pb + bottom, pl + left, pr + right) > 255:
                return False
        for j in readers:
            (oh, pt, pb), (ow, pl, pr) = self.board[j]["pads"]
            self.board[j]["pads"] = [(oh, pt + top, pb + bottom), (ow, pl + left, pr + right)]
            self.board[j]["source"] = src
        self.consumers.setdefault(src, []).extend(readers)     # src lives until they run
        return True

    def _free(self, t):
        """Whether ``t`` may become a window of another tensor (not already one, not aliased,
        not read by a board FULLY_CONNECTED that flattens it, which needs its bytes dense)."""
        if not self._is_act(t) or t in self.parent or t in self.alias or \
                t in self.alias.values():
            return False
        c = _geometry(self.T[t].shape)[2]
        return not any(self.m.ops[i][0] == "FULLY_CONNECTED" and i in self.board and
                       self.T[self.m.ops[i][1][1]].data.shape[1] != c
                       for i in self.consumers.get(t, []))

    def _view_relation(self, op, ins, outs):
        out = outs[0]
        if not self._is_act(out) or out in self.parent or out in self.alias:
            return None
        if op == "RESHAPE":
            src = ins[0]
            if not self._is_act(src) or src in self.parent or out in self.alias.values():
                return None
            return [("alias", out, src)]
        if op == "CONCATENATION":
            opt = self.m._options(self.m.ops[self.producer[out]][3], "ConcatenationOptions")
            rank = len(self.T[out].shape)
            if rank == 0 or opt.Axis() % rank != rank - 1 or len(set(ins)) != len(ins) or \
                    opt.FusedActivationFunction() != 0:
                return None
            rel, offset = [], 0
            gout = _geometry(self.T[out].shape)
            for t in ins:
                g = _geometry(self.T[t].shape)
                if not self._free(t) or g is None or g[:2] != gout[:2] or \
                        self.T[t].s() != self.T[out].s() or self.T[t].zp() != self.T[out].zp():
                    return None
                rel.append(("parent", t, (out, 0, 0, offset)))
                offset += g[2]
            return rel
        if op in ("PAD", "PADV2"):
            amounts = self._pad_amounts(ins, outs)
            if amounts is None or not self._free(ins[0]):
                return None
            top, left, _, _, value = amounts
            return [("parent", ins[0], (out, top, left, 0)), ("fill", out, value)]
        return None

    def _root(self, t):
        while True:
            if t in self.parent:
                t = self.parent[t][0]
            elif t in self.alias:
                t = self.alias[t]
            else:
                return t

    def _fuse_residuals(self, where):
        """Fold each board ADD into the CONV_2D that makes one of its inputs (its only
        consumer) when the other input exists before that conv: the conv's descriptor gets the
        RESIDUAL flag, the ADD's output view and the other input as its ``aux`` view."""
        m = self.m
        for i in sorted(self.board):
            op, ins, outs, _ = m.ops[i]
            if op != "ADD":
                continue
            for t, other in ((ins[0], ins[1]), (ins[1], ins[0])):
                j = self.producer.get(t)
                if j is None or j not in self.board or m.ops[j][0] != "CONV_2D" or \
                        j in self.residual or t == other or t == m.outputs[0] or \
                        self.consumers.get(t) != [i]:
                    continue
                made = -1 if other == m.inputs[0] else self.producer.get(other)
                if made is None or made >= j:
                    continue
                self.fused[i], self.residual[j] = j, (i, other)
                self.producer[outs[0]] = j           # written by the conv: live from there
                where[i] = "fused"
                break

    def compile(self):
        m, n = self.m, self.n
        where = [None] * n
        self.board = {}
        for i in range(n):
            params = self._board_ok(i)
            if params is not None:
                where[i] = "board"
                self.board[i] = params
        self.fused, self.residual = {}, {}
        if self.fuse:
            self._fuse_residuals(where)
        self._views(where)
        # Tensors the board touches; a group of views lives in the arena if any member does.
        touched = set()
        for i in self.board:
            if i in self.fused:
                continue
            _, ins, outs, _ = m.ops[i]
            ins = [self.board[i].get("source", ins[0])] + ins[1:]
            if i in self.residual:
                add, other = self.residual[i]
                outs = [m.ops[add][2][0], other]
            touched |= {t for t in ins + outs if t >= 0 and self.T[t].data is None}
        changed = True
        while changed:
            changed = False
            arena_roots = {self._root(t) for t in touched}
            for i, rel in list(self.view_ops.items()):
                tensors = [t for _, t, _ in rel]
                tensors += [v if kind == "alias" else v[0] for kind, _, v in rel
                            if kind != "fill"]
                if not any(self._root(t) in arena_roots for t in tensors):
                    where[i] = None
                    del self.view_ops[i]
                    for kind, t, _ in rel:
                        getattr(self, kind).pop(t, None)
                    changed = True
        where = [w or "host" for w in where]
        self.where = where
        arena_roots = {self._root(t) for t in touched}
        members = {}
        for t in range(len(self.T)):
            if self._is_act(t) and self._root(t) in arena_roots:
                members.setdefault(self._root(t), []).append(t)
        for t in touched:               # touched tensors all have roots in the arena
            members.setdefault(self._root(t), [])
            if t not in members[self._root(t)]:
                members[self._root(t)].append(t)
        # Liveness of each root buffer.
        buffers = {}
        for root, ts in members.items():
            first = min(-1 if t == m.inputs[0] else self.producer.get(t, -1) for t in ts)
            last = max(max(self.consumers.get(t, [-1]) + [n if t == m.outputs[0] else -1])
                       for t in ts)
            if root in self.fill:
                first, last = -1, n
            last = max(last, first)
            h, w, c = _geometry(self.T[root].shape)
            buffers[root] = Buffer(self.T[root].name, h * w * c, first, last)
        self.arena = plan_arena(list(buffers.values()), _ALIGN)
        self.members = members
        self.buffers = buffers
        return self._emit()

    def _view(self, t, arena_addr):
        if t in self.parent:
            p, oy, ox, oc = self.parent[t]
            pv = self._view(p, arena_addr)
            h, w, c = _geometry(self.T[t].shape)
            return fmt.View(pv.addr + (oy * pv.row_pixels + ox) * pv.pixel_stride + oc, h, w, c,
                            pv.pixel_stride, pv.row_pixels)
        root = self._root(t)
        h, w, c = _geometry(self.T[t].shape)
        return fmt.View.dense(arena_addr + self.buffers[root].offset, h, w, c)

    # Descriptors, weights and parameters.

    def _emit(self):
        m, n, cfg = self.m, self.n, self.cfg
        segments, program = [], []       # program: ("board", i) or ("host", segment)
        for i in range(n):
            if self.where[i] == "board":
                program.append(("board", i))
            elif self.where[i] == "host":
                if not program or program[-1][0] != "host":
                    segments.append([])
                    program.append(("host", len(segments) - 1))
                segments[-1].append(i)
        count = len(program)
        if count > fmt.MAX_DESCRIPTORS:
            raise CompileError(f"{m.path.name}: the program needs {count} descriptors, "
                               f"{count - fmt.MAX_DESCRIPTORS} more than the format's "
                               f"{fmt.MAX_DESCRIPTORS}")
        weights_addr = _align(fmt.HEADER_BYTES + fmt.DESCRIPTOR_BYTES * count)
        estimate = weights_addr + sum(self._blob_bytes(i) for kind, i in program
                                      if kind == "board")
        self._check_size(_align(estimate) + self.arena.size, "at least ")
        blobs, cursor = {}, weights_addr
        for kind, i in program:
            if kind == "board":
                wbytes, pbytes, extra = self._blobs(i)
                waddr = cursor
                paddr = _align(waddr + len(wbytes), 16)
                cursor = _align(paddr + len(pbytes), 16)
                blobs[i] = (waddr, wbytes, paddr, pbytes, extra)
        weights_bytes = cursor - weights_addr
        arena_addr = _align(cursor)
        scratch_bytes = max([b[4].get("scratch", 0) for b in blobs.values()] + [0])
        scratch_addr = _align(arena_addr + self.arena.size)
        image_bytes = scratch_addr + scratch_bytes
        self._check_size(image_bytes, "", weights_bytes, scratch_bytes)
        views = {t: self._view(t, arena_addr) for ts in self.members.values() for t in ts}
        image = bytearray(image_bytes)
        reports = {i: OpReport(i, op, self.T[outs[0]].name if outs else "", self.where[i])
                   for i, (op, ins, outs, _) in enumerate(m.ops)}
        descriptors = []
        for index, (kind, i) in enumerate(program):
            last = index == count - 1
            if kind == "host":
                d = fmt.Host(i, last=last)
                for j in segments[i]:
                    reports[j].segment = i
            else:
                waddr, wbytes, paddr, pbytes, extra = blobs[i]
                image[waddr:waddr + len(wbytes)] = wbytes
                image[paddr:paddr + len(pbytes)] = pbytes
                d = self._descriptor(i, views, waddr, paddr, extra, last)
                self._account(reports[i], d, len(wbytes) + len(pbytes), extra)
                reports[i].descriptor = index
                if i in self.residual:
                    reports[self.residual[i][0]].descriptor = index
            try:
                raw = fmt.encode_descriptor(d, f"op {i} ({d.kind})" if kind == "board"
                                            else f"host segment {i}")
            except fmt.FormatError as error:
                raise CompileError(f"{m.path.name}: {error}") from None
            at = fmt.HEADER_BYTES + index * fmt.DESCRIPTOR_BYTES
            image[at:at + fmt.DESCRIPTOR_BYTES] = raw
            descriptors.append(d)
        for root, value in self.fill.items():        # pad buffers' constant borders
            v = views[root]
            gprog.write_view(image, v, np.full((v.h, v.w, v.c), value, np.int8))
        x, y = m.inputs[0], m.outputs[0]
        zero = fmt.View(0, 1, 1, 1, 1, 1)
        header = fmt.Header(image_bytes, fmt.HEADER_BYTES, count, weights_addr, weights_bytes,
                            arena_addr, self.arena.size, scratch_addr, scratch_bytes,
                            views.get(x, zero), views.get(y, zero), cfg)
        image[:fmt.HEADER_BYTES] = fmt.encode_header(header)
        header = fmt.replace(header, image_id=fmt.image_id(image, header))
        image[:fmt.HEADER_BYTES] = fmt.encode_header(header)
        link = self._link(views, segments, reports)
        return CompiledModel(m, cfg, self.runtime, bytes(image), header, descriptors,
                             [reports[i] for i in range(n)], segments, views, self.arena, link,
                             {t: self._root(t) for t in views})

    def _link(self, views, segments, reports):
        """Payload bytes over the link per inference (the same rule _HostRunner follows)."""
        m = self.m
        have = {t.index for t in self.T if t.data is not None} | {m.inputs[0]}
        link = {"input": int(np.prod(self.T[m.inputs[0]].shape)) if m.inputs[0] in views
                else 0,
                "host": 0, "output": 0}
        for seg in segments:
            for i in seg:
                _, ins, outs, _ = m.ops[i]
                moved = 0
                for t in ins:
                    if t >= 0 and t not in have:
                        moved += int(np.prod(self.T[t].shape))
                        have.add(t)
                for t in outs:
                    have.add(t)
                    if t in views:
                        moved += int(np.prod(self.T[t].shape))
                reports[i].link_bytes = moved
                link["host"] += moved
        if m.outputs[0] not in have:
            link["output"] = int(np.prod(self.T[m.outputs[0]].shape))
        return link

    def _check_size(self, image_bytes, at_least, weights=None, scratch=None):
        if image_bytes <= fmt.SDRAM_BYTES:
            return
        parts = f"arena {self.arena.size:,}"
        if weights is not None:
            parts = f"weights and parameters {weights:,}, {parts}, scratch {scratch:,}"
        raise CompileError(f"{self.m.path.name}: the image needs {at_least}{image_bytes:,} bytes "
                           f"of SDRAM ({parts}), {image_bytes - fmt.SDRAM_BYTES:,} more than "
                           f"the board's {fmt.SDRAM_BYTES:,}")

    def _blob_bytes(self, i):
        """The weight and parameter bytes of board op ``i``, computed from its shapes alone
        (so a model too large for the SDRAM is refused before anything is packed)."""
        cfg = self.cfg
        op, ins, _, _ = self.m.ops[i]
        if op in ("CONV_2D", "FULLY_CONNECTED"):
            w = self.T[ins[1]].data
            total = 0
            for ps in plan_passes(cfg, int(np.prod(w.shape[1:])), w.shape[0]):
                tiles = cfg.tiles(ps.f1 - ps.f0)
                total += cfg.beats(ps.c1 - ps.c0) * tiles * cfg.load_groups * cfg.load_width \
                    * cfg.cols + tiles * fmt.param_tile_bytes(cfg.cols)
            return total + (fmt.AddRecord.BYTES if i in self.residual else 0)
        if op == "DEPTHWISE_CONV_2D":
            w = self.T[ins[1]].data
            return w.size + 9 * w.shape[-1]
        return fmt.AddRecord.BYTES

    def _blobs(self, i):
        """(weight bytes, parameter bytes, extras) of board op ``i``."""
        m, cfg = self.m, self.cfg
        op, ins, outs, table = m.ops[i]
        xin, out = self.T[ins[0]], self.T[outs[0]]
        p = self.board[i]
        _use_kernels(m, i, self.runtime)
        if op in ("CONV_2D", "FULLY_CONNECTED"):
            w = self.T[ins[1]].data
            bias = self.T[ins[2]].data if len(ins) > 2 and ins[2] >= 0 else None
            f = w.shape[0]
            bias = np.zeros(f, np.int32) if bias is None else np.asarray(bias, np.int32)
            if op == "CONV_2D":
                lo, hi = m._activation(p["opt"], out)
                ws = self.T[ins[1]].scale
                ws = np.broadcast_to(ws, (f,)) if ws.size == 1 else ws
                rounding = self.op_rounding[i]
                mult, shift, scale = golden.layer_requant_params(xin.s(), ws, out.s(), rounding)
                w_mat = w.reshape(f, -1).T              # im2col channel (ky * kw + kx) * C + c
            else:
                lo, hi = m._activation(m._options(table, "FullyConnectedOptions"), out)
                rounding, mult, shift, scale = p["params"]
                w_mat = w.T
            wb, pb, extra = self._array_passes(w_mat, bias, xin.zp(), mult, shift, scale,
                                               rounding, out.zp(), lo, hi)
            if i in self.residual:
                other = self.T[self.residual[i][1]]
                add_out = self.T[m.ops[self.residual[i][0]][2][0]]
                mults, shifts = gops.add_params((out.s(), other.s()), add_out.s())
                pb += fmt.AddRecord(mults, shifts, (out.zp(), other.zp()), (lo, hi)).encode()
            pixels = int(np.prod(out.shape)) // f
            extra["scratch"] = extra["scratch_per_pixel"] * pixels
            return wb, pb, extra
        if op == "DEPTHWISE_CONV_2D":
            w = self.T[ins[1]].data
            c = w.shape[-1]
            bias = self.T[ins[2]].data if len(ins) > 2 and ins[2] >= 0 else None
            bias = np.zeros(c, np.int32) if bias is None else np.asarray(bias, np.int32)
            ws = self.T[ins[1]].scale
            mult, shift = golden.per_channel_multipliers(
                xin.s(), np.broadcast_to(ws, (c,)) if ws.size == 1 else ws, out.s())
            params = (np.asarray(bias, "<i4").tobytes() + np.asarray(mult, "<i4").tobytes()
                      + np.asarray(shift, np.int8).tobytes())
            return (np.ascontiguousarray(w[0], np.int8).tobytes(), params,
                    {"rounding": "double"})
        if op == "ADD":
            mults, shifts = gops.add_params((self.T[ins[0]].s(), self.T[ins[1]].s()), out.s())
            rec = fmt.AddRecord(mults, shifts, (self.T[ins[0]].zp(), self.T[ins[1]].zp()))
            return b"", rec.encode(), {}
        if op == "MEAN":
            count = xin.shape[1] * xin.shape[2]
            mm, ss = gops.mean_params(count, xin.s(), out.s())
            return b"", fmt.MeanRecord(mm, ss).encode(), {}
        return b"", b"", {}

    def _array_passes(self, w_mat, bias, izp, mult, shift, scale, rounding, ozp, lo, hi):
        """Weight and parameter bytes of a CONV / FULLY_CONNECTED, pass by pass, exactly the
        words compile_layer sends to the load ports (their data fields)."""
        from ..program import compile_layer
        from pwconv.hw import layouts
        cfg = self.cfg
        channels, filters = w_mat.shape
        folded = golden.fold_input_zero_point(w_mat, bias, izp)
        passes = plan_passes(cfg, channels, filters)
        wword, pword = layouts.weight_word(cfg), layouts.param_word(cfg)
        data_at = wword["data"].offset
        nbytes = cfg.load_width * cfg.cols
        wout, pout = bytearray(), bytearray()
        for ps in passes:
            f0, f1 = ps.f0, ps.f1
            b = folded[f0:f1] if ps.c0 == 0 else np.zeros(f1 - f0, np.int32)
            prog = compile_layer(cfg, np.ascontiguousarray(w_mat[ps.c0:ps.c1, f0:f1]), b,
                                 None if mult is None else mult[f0:f1],
                                 None if shift is None else shift[f0:f1],
                                 output_zero_point=ozp, activation_min=lo, activation_max=hi,
                                 raw=ps.raw, rounding=rounding,
                                 scale=None if scale is None else scale[f0:f1])
            mask = (1 << (8 * nbytes)) - 1
            for word in prog.weight_words:
                wout += ((word >> data_at) & mask).to_bytes(nbytes, "little")
            for word in prog.param_words:
                pout += _param_word_bytes(cfg, pword, word)
        chunk = passes[0].c1 - passes[0].c0
        group = passes[0].f1 - passes[0].f0
        chunks = -(-channels // chunk)
        scratch = 0 if chunks == 1 else 4 * group      # per pixel; scaled by pixels later
        return bytes(wout), bytes(pout), {"chunk": chunk, "group": group, "rounding": rounding,
                                          "passes": len(passes), "chunks": chunks,
                                          "scratch_per_pixel": scratch}

    def _descriptor(self, i, views, waddr, paddr, extra, last):
        m = self.m
        op, ins, outs, table = m.ops[i]
        xin, out = self.T[ins[0]], self.T[outs[0]]
        p = self.board[i]
        _use_kernels(m, i, self.runtime)
        vin, vout = views[p.get("source", ins[0])], views.get(outs[0])
        if op == "CONV_2D":
            w = self.T[ins[1]].data
            lo, hi = m._activation(p["opt"], out)
            (_, pt, pb), (_, pl, pr) = p["pads"]
            residual, ozp = None, out.zp()
            if i in self.residual:                  # the fused ADD's output and clamp
                add, other = self.residual[i]
                add_out = m.ops[add][2][0]
                vout, residual, ozp = views[add_out], views[other], self.T[add_out].zp()
                _use_kernels(m, add, self.runtime)
                lo, hi = m._activation(m._options(m.ops[add][3], "AddOptions"),
                                       self.T[add_out])
            return fmt.Conv(vin, vout, waddr, paddr, kernel=w.shape[1:3], stride=p["stride"],
                            dilation=p["dilation"], padding=(pt, pl, pb, pr),
                            input_zero_point=xin.zp(), output_zero_point=ozp,
                            activation=(lo, hi), rounding=extra["rounding"],
                            chunk_channels=extra["chunk"], group_filters=extra["group"],
                            residual=residual, last=last)
        if op == "FULLY_CONNECTED":
            c = self.T[ins[1]].data.shape[1]
            f = self.T[ins[1]].data.shape[0]
            pixels = int(np.prod(xin.shape)) // c
            vin = vin if vin.c == c else fmt.View.dense(vin.addr, 1, pixels, c)
            vout = vout if vout.c == f else fmt.View.dense(vout.addr, 1, pixels, f)
            lo, hi = m._activation(m._options(table, "FullyConnectedOptions"), out)
            return fmt.FullyConnected(vin, vout, waddr, paddr, input_zero_point=xin.zp(),
                                      output_zero_point=out.zp(), activation=(lo, hi),
                                      rounding=extra["rounding"], chunk_channels=extra["chunk"],
                                      group_filters=extra["group"], last=last)
        if op == "DEPTHWISE_CONV_2D":
            w = self.T[ins[1]].data
            lo, hi = m._activation(p["opt"], out)
            (_, pt, pb), (_, pl, pr) = p["pads"]
            return fmt.Depthwise(vin, vout, waddr, paddr, kernel=w.shape[1:3],
                                 stride=p["stride"], padding=(pt, pl, pb, pr),
                                 input_zero_point=xin.zp(), output_zero_point=out.zp(),
                                 activation=(lo, hi), rounding="double", last=last)
        if op == "ADD":
            lo, hi = m._activation(m._options(table, "AddOptions"), out)
            return fmt.Add(vin, views[ins[1]], vout, paddr, output_zero_point=out.zp(),
                           activation=(lo, hi), last=last)
        if op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            lo, hi = m._activation(p["opt"], out)
            (_, pt, pb), (_, pl, pr) = p["pads"]
            cls = fmt.AveragePool if op == "AVERAGE_POOL_2D" else fmt.MaxPool
            return cls(vin, vout, kernel=p["kernel"], stride=p["stride"],
                       padding=(pt, pl, pb, pr), activation=(lo, hi), last=last)
        if op == "MEAN":
            return fmt.Mean(vin, vout, paddr, input_zero_point=xin.zp(),
                            output_zero_point=out.zp(), last=last)
        raise AssertionError(op)

    def _account(self, r, d, wp_bytes, extra):
        """MACs, minimum and moved SDRAM bytes of board op ``r`` (descriptor ``d``).

        Assumptions of ``moved_bytes``: CONV reads each in-image im2col tap from SDRAM once per
        filter group (no line buffer: a KxK stride-1 conv reads its input about K*K times per
        group; a strided 1x1 conv reads only the pixels it uses); FULLY_CONNECTED reads its
        input once per group; a split C writes and reads back each non-final chunk's int32
        partial sums; DEPTHWISE and the pools read their input once (line buffers); weights
        and parameters are read once, outputs written once."""
        vin, vout = d.input, d.output
        r.min_bytes = vin.nbytes + vout.nbytes + wp_bytes
        r.moved_bytes = r.min_bytes
        if d.kind in ("CONV", "FULLY_CONNECTED"):
            k = d.kernel if d.kind == "CONV" else (1, 1)
            r.macs = vout.h * vout.w * vout.c * k[0] * k[1] * vin.c
            r.passes = extra["passes"]
            groups = -(-vout.c // extra["group"])
            if d.kind == "CONV":
                (taps_h, used_h), (taps_w, used_w) = (
                    _taps(size, out, k[a], d.stride[a], d.dilation[a], d.padding[a])
                    for a, size, out in ((0, vin.h, vout.h), (1, vin.w, vout.w)))
                reads = taps_h * taps_w * vin.c
                r.min_bytes -= vin.nbytes - used_h * used_w * vin.c   # pixels it never reads
            else:
                reads = vin.nbytes
            psum = 2 * 4 * (extra["chunks"] - 1) * vout.h * vout.w * vout.c
            r.moved_bytes = groups * reads + vout.nbytes + wp_bytes + psum
        elif d.kind == "DEPTHWISE":
            r.macs = vout.h * vout.w * vout.c * d.kernel[0] * d.kernel[1]
        elif d.kind == "ADD":
            r.min_bytes += d.other.nbytes
            r.moved_bytes = r.min_bytes
        if getattr(d, "residual", None) is not None:
            r.min_bytes += d.residual.nbytes
            r.moved_bytes += d.residual.nbytes


def _align(n, alignment=_ALIGN):
    return -(-n // alignment) * alignment


def _param_word_bytes(cfg, layout, word):
    """One parameter word's data as stored: bias, multiplier int32[cols], shift int8[cols]."""
    def lanes(name, bits, signed):
        field = layout[name]
        v = word >> field.offset
        out = []
        for c in range(cfg.cols):
            lane = (v >> (c * bits)) & ((1 << bits) - 1)
            out.append(lane - (1 << bits) if signed and lane >> (bits - 1) else lane)
        return out
    from pwconv.hw import layouts
    bias = np.array(lanes("bias", 32, False), np.uint32)
    mult = np.array(lanes("multiplier", 32, False), np.uint32)
    shift = np.array(lanes("shift", layouts.SHIFT_SHAPE.width, True), np.int8)
    return bias.astype("<u4").tobytes() + mult.astype("<u4").tobytes() + shift.tobytes()


def compile_model(model, config=None, *, runtime=None, board_ops=BOARD_OPS,
                  fuse_residual=True):
    """Compile ``model`` (a TFLiteModel) into a memory image for an array of ``config``.

    Parameters
    ----------
    model : pwconv.host.model.tflite_model.TFLiteModel
    config : ArrayConfig, optional
        The array the program is for (the header records it); default ``ArrayConfig()``.
    runtime : str, optional
        The runtime to be bit-exact with (``model.runtimes``); picks CONV's and
        FULLY_CONNECTED's rounding mode. DEPTHWISE, ADD, pools and MEAN are always TFLite's
        reference kernels (as the host runs them today).
    board_ops : tuple of str
        The TFLite ops the board runs (:data:`BOARD_OPS`, or :data:`ARRAY_OPS` for the array
        alone); every other op, and any op whose shapes the board cannot take, runs in a host
        segment.
    fuse_residual : bool
        Fold a board ADD into the CONV_2D that makes one of its inputs (the RESIDUAL flag:
        the conv's output path adds the other input), so no separate pass is spent on it.

    Returns
    -------
    CompiledModel

    Raises
    ------
    CompileError
        The model does not fit the SDRAM or the program's limits (one line, what and by how
        much), or the build lacks the runtime's rounding mode.
    """
    from ..model.tflite_model import TFLiteModel
    if not isinstance(model, TFLiteModel):
        raise CompileError(f"{getattr(model, 'path', model)}: the compiler takes .tflite models")
    cfg = config or ArrayConfig()
    runtime = runtime or model.runtimes[0]
    if runtime not in model.runtimes:
        raise CompileError(f"runtime {runtime!r} cannot run {model.path.name} (choose from "
                           f"{', '.join(model.runtimes)})")
    unknown = set(board_ops) - set(BOARD_OPS)
    if unknown:
        raise CompileError(f"board_ops: {', '.join(sorted(unknown))} have no descriptor (the "
                           f"format has {', '.join(BOARD_OPS)})")
    return _Compiler(model, cfg, runtime, board_ops, fuse_residual).compile()

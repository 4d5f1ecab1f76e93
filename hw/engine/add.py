"""AddUnit: int8 residual ADD of two NHWC streams, TFLite's reference arithmetic, pipelined."""

import numbers

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from pwconv.golden.ops import ADD_LEFT_SHIFT, add_params
from ..layouts import SHIFT_SHAPE
from ..params import check_config, rejected
from ..requant_lane import RequantLane
from .depthwise import beat_layout

__all__ = ["AddUnit", "add_layout", "add_config"]


def add_layout():
    """The ADD's run-time settings (:func:`add_config` builds them), held stable while
    ``busy``: the inputs' zero points, multipliers and shifts (<= 0) and the output's, the
    output zero point and the activation range (TFLite's ``ArithmeticParams``)."""
    return data.StructLayout({
        "input_zero_point":  data.ArrayLayout(signed(8), 2),
        "input_multiplier":  data.ArrayLayout(signed(32), 2),
        "input_shift":       data.ArrayLayout(SHIFT_SHAPE, 2),
        "output_multiplier": signed(32),
        "output_shift":      SHIFT_SHAPE,
        "output_zero_point": signed(8),
        "activation_min":    signed(8),
        "activation_max":    signed(8),
    })


def add_config(*, scales, zero_points, output_scale, output_zero_point, activation_min=-128,
               activation_max=127):
    """The ``layer`` setting of an :class:`AddUnit` for an ADD of tensors with ``scales`` and
    ``zero_points`` (pairs) into ``output_scale``/``output_zero_point``: TFLite's Prepare
    (:func:`pwconv.golden.ops.add_params`), as a dict for ``add_layout().const(...)``.

    Raises
    ------
    ValueError
        Naming a zero point or activation bound outside int8, or an empty activation range.
    """
    for name, value in (("input zero point", zero_points[0]),
                        ("input zero point", zero_points[1]),
                        ("output_zero_point", output_zero_point),
                        ("activation_min", activation_min), ("activation_max", activation_max)):
        if not isinstance(value, numbers.Integral) or not -128 <= value <= 127:
            raise ValueError(f"{name} must be an integer between -128 and 127, not {value!r}")
    if activation_min > activation_max:
        raise ValueError(f"activation_min {activation_min} is above activation_max "
                         f"{activation_max}")
    (m1, m2, mo), (s1, s2, so) = add_params(scales, output_scale)
    return {
        "input_zero_point": [int(zero_points[0]), int(zero_points[1])],
        "input_multiplier": [m1, m2], "input_shift": [s1, s2],
        "output_multiplier": mo, "output_shift": so,
        "output_zero_point": int(output_zero_point),
        "activation_min": int(activation_min), "activation_max": int(activation_max),
    }


class AddUnit(wiring.Component):
    """ADD, int8, two tensors of one shape, bit-exact with TFLite's
    ``reference_integer_ops::AddElementwise`` (``tflite/kernels/internal/reference/
    integer_ops/add.h`` in google-ai-edge/LiteRT, parameters from ``kernels/add.cc``
    PrepareGeneralSubOp; :func:`pwconv.golden.ops.add`)::

        a_k = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
                  (x_k - zp_k) << 20, m_k), -shift_k)                      for k = 1, 2
        y   = clamp(MultiplyByQuantizedMultiplier(a_1 + a_2, m_out, shift_out) + zp_out,
                    activation_min, activation_max)

    Each lane computes the two inputs' scaling itself (x - zp is 9 bits, so each product is
    9 x 32 bits) and the output's with a :class:`~pwconv.hw.requant_lane.RequantLane` in the
    ``"double"`` mode (bias 0), the array's own lane. TFLite's ADD has no other rounding.

    Parameters
    ----------
    cfg : ArrayConfig
        The build's configuration (its ``requant_multiply`` maps the lanes' multiplies).
    lanes : int
        Channels per beat and per cycle, 1..64. Each lane costs two 10 x 32-bit products and a
        requantization lane (a 32 x 32 multiply); unfused, an ADD moves three bytes per output
        (two read, one written), so the 16-bit SDRAM (2 bytes per cycle) feeds 2/3 of an output
        per cycle: the default, 2 lanes, keeps up with it.

    Members
    -------
    a, b : In(stream.Signature(beat_layout(lanes)))
        The two inputs, beat for beat (the same NHWC order); a pair is taken in one cycle,
        when both are valid and the output FIFO has room for its result (each ``ready``
        depends on the other stream's ``valid``).
    o : Out(stream.Signature(beat_layout(lanes)))
        The sums, in order; full backpressure.
    layer : In(add_layout())
        The ADD's settings (:func:`add_config`), held stable while ``busy``.
    busy : Out(1)
        Some beat is inside the unit.

    Latency :attr:`latency` cycles from a pair taken to its result on ``o``; throughput one
    beat (``lanes`` outputs) per cycle. One clock domain, ``sync``.
    """

    def __init__(self, cfg: ArrayConfig, *, lanes=2):
        check_config(self, cfg)
        if not isinstance(lanes, numbers.Integral) or isinstance(lanes, bool):
            raise rejected(self, TypeError(f"Lane count must be a positive integer, "
                                           f"not {lanes!r}"))
        if not 1 <= lanes <= 64:
            raise rejected(self, ValueError(f"Lane count must be between 1 and 64, not {lanes}"))
        self._cfg = cfg
        self._lanes = int(lanes)
        beat = beat_layout(self._lanes)
        super().__init__({
            "a":     In(stream.Signature(beat)),
            "b":     In(stream.Signature(beat)),
            "o":     Out(stream.Signature(beat)),
            "layer": In(add_layout()),
            "busy":  Out(1),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def latency(self):
        """Cycles from a pair taken to its result first valid on ``o``: four input stages,
        the lane, the FIFO's output register."""
        return 4 + RequantLane.latency_of(1, ("double",), self._cfg.requant_multiply) + 2

    @property
    def fifo_depth(self):
        """Output FIFO depth, the input's credit: a result per cycle through the latency."""
        return self.latency + 2

    def elaborate(self, platform):
        lanes, layer = self._lanes, self.layer
        m = Module()
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(
            width=8 * lanes, depth=self.fifo_depth)

        outstanding = Signal(range(self.fifo_depth + 1))
        credit = outstanding < self.fifo_depth
        take = Signal()
        m.d.comb += [
            take.eq(self.a.valid & self.b.valid & credit),
            self.a.ready.eq(self.b.valid & credit),
            self.b.ready.eq(self.a.valid & credit),
        ]
        taken = self.o.valid & self.o.ready
        with m.If(take & ~taken):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(taken & ~take):
            m.d.sync += outstanding.eq(outstanding - 1)
        m.d.comb += self.busy.eq(outstanding != 0)

        valid = [take]                  # valid[n]: a pair's values are in stage n's registers
        for stage in range(4):
            v = Signal(name=f"valid{stage + 1}")
            m.d.sync += v.eq(valid[-1])
            valid.append(v)

        results = []
        for i in range(lanes):
            scaled = []
            for k, port in enumerate((self.a, self.b)):
                # Stage 1: x - zp.
                diff = Signal(signed(10), name=f"diff{k}_{i}", reset_less=True)
                m.d.sync += diff.eq(port.payload[i] - layer.input_zero_point[k])
                # Stage 2: (x - zp) * m, 42 bits (the << 20 is applied below, exactly).
                prod = Signal(signed(42), name=f"prod{k}_{i}", reset_less=True)
                m.d.sync += prod.eq(diff * layer.input_multiplier[k])
                # Stage 3: SaturatingRoundingDoublingHighMul((x - zp) << 20, m): (P + nudge)
                # / 2^31 truncated toward zero, nudge 2^30 or 1 - 2^30 by P's sign (never
                # saturates: (x - zp) << 20 is far from INT32_MIN). |result| < 2^28.
                full = Signal(signed(64), name=f"full{k}_{i}")
                m.d.comb += full.eq((prod << ADD_LEFT_SHIFT)
                                    + Mux(prod >= 0, 1 << 30, 1 - (1 << 30)))
                high = Signal(signed(32), name=f"high{k}_{i}", reset_less=True)
                inexact = full[:31].any()
                m.d.sync += high.eq((full >> 31) + (full[63] & inexact))
                # Stage 4: RoundingDivideByPOT(high, -shift), ties away from zero.
                exponent = Signal(unsigned(5), name=f"exp{k}_{i}")
                m.d.comb += exponent.eq(-layer.input_shift[k])
                mask = Signal(unsigned(32), name=f"mask{k}_{i}")
                m.d.comb += mask.eq((1 << exponent) - 1)
                remainder = high.as_unsigned() & mask
                threshold = (mask >> 1) + high[31]
                out = Signal(signed(32), name=f"scaled{k}_{i}", reset_less=True)
                m.d.sync += out.eq((high >> exponent) + (remainder > threshold))
                scaled.append(out)
            lane = RequantLane(sum_shape=signed(33), steps=1, roundings=("double",),
                               multiply=self._cfg.requant_multiply)
            m.submodules[f"lane{i}"] = lane
            m.d.comb += [
                lane.valid.eq(valid[4]),
                lane.sum.eq(scaled[0] + scaled[1]),      # wrapped to int32 by the lane
                lane.bias.eq(0),
                lane.multiplier.eq(layer.output_multiplier),
                lane.shift.eq(layer.output_shift),
                lane.rounding.eq(0),
                lane.output_zero_point.eq(layer.output_zero_point),
                lane.activation_min.eq(layer.activation_min),
                lane.activation_max.eq(layer.activation_max),
                lane.raw.eq(0),
            ]
            results.append(lane.result[:8])
            if i == 0:
                m.d.comb += out_fifo.w_en.eq(lane.result_valid)
        m.d.comb += [
            out_fifo.w_data.eq(Cat(*results)),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
        ]
        return m

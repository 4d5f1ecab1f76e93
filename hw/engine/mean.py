"""MeanUnit: int8 MEAN over the pixels of an NHWC stream (global average), TFLite's reference."""

import numbers

import numpy as np
from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from pwconv.golden.ops import mean_params
from pwconv.golden.requant import wrap_int32
from ..layouts import SHIFT_SHAPE
from ..params import check_config, rejected
from ..requant_lane import RequantLane
from .depthwise import beat_layout

__all__ = ["MeanUnit", "mean_layout", "mean_config"]


def mean_layout(unit):
    """The MEAN's run-time settings (:func:`mean_config` builds them), held stable while
    ``busy``: ``pixels`` (H * W, the count averaged), ``groups`` = ceil(C / lanes), and the
    requantization: ``bias`` = -zp_in * pixels (int32), TFLite's folded ``multiplier`` and
    ``shift`` (:func:`pwconv.golden.ops.mean_params`), ``output_zero_point``."""
    return data.StructLayout({
        "pixels":            unsigned(unit.max_pixels.bit_length()),
        "groups":            unsigned(unit.max_groups.bit_length()),
        "bias":              signed(32),
        "multiplier":        signed(32),
        "shift":             SHIFT_SHAPE,
        "output_zero_point": signed(8),
    })


def mean_config(unit, *, pixels, channels, input_scale, input_zero_point, output_scale,
                output_zero_point):
    """The ``layer`` setting of ``unit`` for MEAN over ``pixels`` pixels of ``channels``
    channels, as a dict for ``mean_layout(unit).const(...)``.

    Raises
    ------
    ValueError
        Naming a size beyond the unit's maximum or a zero point outside int8.
    """
    for name, value, hi in (("pixels", pixels, unit.max_pixels),
                            ("channels", channels, unit.max_channels)):
        if not isinstance(value, numbers.Integral) or not 1 <= value <= hi:
            raise ValueError(f"{name} must be an integer between 1 and {hi}, not {value!r}")
    for name, value in (("input_zero_point", input_zero_point),
                        ("output_zero_point", output_zero_point)):
        if not isinstance(value, numbers.Integral) or not -128 <= value <= 127:
            raise ValueError(f"{name} must be an integer between -128 and 127, not {value!r}")
    multiplier, shift = mean_params(int(pixels), input_scale, output_scale)
    return {
        "pixels": int(pixels), "groups": -(-int(channels) // unit.lanes),
        "bias": int(wrap_int32(np.int64(-int(input_zero_point) * int(pixels)))),
        "multiplier": int(multiplier), "shift": int(shift),
        "output_zero_point": int(output_zero_point),
    }


class MeanUnit(wiring.Component):
    """MEAN over the pixels (H and W) of an int8 NHWC tensor, bit-exact with LiteRT's
    ``reference_ops::QuantizedMeanOrSum`` as ``kernels/reduce.cc`` runs it (Prepare folds 1/n
    into the multiplier; :func:`pwconv.golden.ops.mean`)::

        y[c] = clamp(MultiplyByQuantizedMultiplier(sum_p x[p, c] - zp_in * n, m', s') + zp_out,
                     -128, 127)

    the global average pooling that ends MobileNetV2 and ResNets. The sums are kept per
    channel in a memory of ``max_groups`` words of ``lanes`` int32 (read asynchronously, so a
    beat per cycle accumulates with no hazard even when a pixel is one beat); after the last
    pixel each group's sums go, a group per cycle, through ``lanes``
    :class:`~pwconv.hw.requant_lane.RequantLane` s in the ``"double"`` mode (bias
    ``-zp_in * n``).

    Parameters
    ----------
    cfg : ArrayConfig
        The build's configuration (its ``requant_multiply`` maps the lanes' multiplies).
    lanes : int
        Channels per beat, 1..64 (each with a requantization lane); the SDRAM gives 2 bytes
        per cycle, so the default, 2, keeps up with it.
    max_channels : int
        Largest C, 1..65536.
    max_pixels : int
        Largest H * W, 1..2^24.

    Members
    -------
    i : In(stream.Signature(beat_layout(lanes)))
        The input, ``pixels * groups`` beats in NHWC order, a beat per cycle; taken while
        ``busy`` until the last one.
    o : Out(stream.Signature(beat_layout(lanes)))
        The ``groups`` beats of the one output pixel; full backpressure.
    layer : In(mean_layout(self))
        The MEAN (:func:`mean_config`); read from ``start`` on, held stable while ``busy``.
    start : In(1)
        Starts a MEAN when idle.
    busy : Out(1)
        From the cycle after ``start`` until the last output beat is taken.

    Throughput: a beat per cycle in, then a beat per cycle out; ``pixels * groups + groups``
    cycles plus the lane's latency. One clock domain, ``sync``.
    """

    def __init__(self, cfg: ArrayConfig, *, lanes=2, max_channels=1280, max_pixels=1 << 12):
        check_config(self, cfg)
        for name, value, hi in (("Lane count", lanes, 64),
                                ("Maximum channel count", max_channels, 1 << 16),
                                ("Maximum pixel count", max_pixels, 1 << 24)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise rejected(self, TypeError(f"{name} must be a positive integer, "
                                               f"not {value!r}"))
            if not 1 <= value <= hi:
                raise rejected(self, ValueError(f"{name} must be between 1 and {hi}, "
                                                f"not {value}"))
        self._cfg = cfg
        self._lanes, self._max_channels = int(lanes), int(max_channels)
        self._max_pixels = int(max_pixels)
        beat = beat_layout(self._lanes)
        super().__init__({
            "i":     In(stream.Signature(beat)),
            "o":     Out(stream.Signature(beat)),
            "layer": In(mean_layout(self)),
            "start": In(1),
            "busy":  Out(1),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def max_channels(self):
        return self._max_channels

    @property
    def max_pixels(self):
        return self._max_pixels

    @property
    def max_groups(self):
        return -(-self._max_channels // self._lanes)

    @property
    def fifo_depth(self):
        """Output FIFO depth, the drain's credit: a beat per cycle through the lane."""
        return RequantLane.latency_of(1, ("double",), self._cfg.requant_multiply) + 4

    def elaborate(self, platform):
        lanes, layer = self._lanes, self.layer
        m = Module()
        word = data.ArrayLayout(signed(32), lanes)
        m.submodules.sums = sums = memory.Memory(shape=word, depth=self.max_groups, init=[])
        read = sums.read_port(domain="comb")
        write = sums.write_port()

        busy, draining = Signal(), Signal()
        pixel = Signal(range(self._max_pixels + 1))
        g = Signal(range(self.max_groups + 1))
        m.d.comb += self.busy.eq(busy)
        with m.If(~busy & self.start):
            m.d.sync += [busy.eq(1), draining.eq(0), pixel.eq(0), g.eq(0)]

        # Accumulate: a beat per cycle, the first pixel's beats overwrite the old sums.
        take = Signal()
        m.d.comb += [
            self.i.ready.eq(busy & ~draining),
            take.eq(self.i.valid & self.i.ready),
            read.addr.eq(g),
            write.addr.eq(g),
            write.en.eq(take),
        ]
        for i in range(lanes):
            m.d.comb += write.data[i].eq(
                Mux(pixel == 0, 0, read.data[i]) + self.i.payload[i])
        with m.If(take):
            with m.If(g + 1 != layer.groups):
                m.d.sync += g.eq(g + 1)
            with m.Else():
                m.d.sync += g.eq(0)
                with m.If(pixel + 1 == layer.pixels):
                    m.d.sync += draining.eq(1)
                with m.Else():
                    m.d.sync += pixel.eq(pixel + 1)

        # Drain: a group per cycle into the lanes while the output FIFO has room.
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(
            width=8 * lanes, depth=self.fifo_depth)
        outstanding = Signal(range(self.fifo_depth + 1))
        issue = Signal()
        m.d.comb += issue.eq(busy & draining & (g != layer.groups)
                             & (outstanding < self.fifo_depth))
        with m.If(issue):
            m.d.sync += g.eq(g + 1)
        taken = self.o.valid & self.o.ready
        with m.If(issue & ~taken):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(taken & ~issue):
            m.d.sync += outstanding.eq(outstanding - 1)
        with m.If(busy & draining & (g == layer.groups) & (outstanding == 0)):
            m.d.sync += busy.eq(0)

        valid = Signal()
        sums_reg = Signal(word, reset_less=True)
        m.d.sync += [valid.eq(issue), sums_reg.eq(read.data)]
        results = []
        for i in range(lanes):
            lane = RequantLane(sum_shape=signed(32), steps=1, roundings=("double",),
                               multiply=self._cfg.requant_multiply)
            m.submodules[f"lane{i}"] = lane
            m.d.comb += [
                lane.valid.eq(valid),
                lane.sum.eq(sums_reg[i]),
                lane.bias.eq(layer.bias),
                lane.multiplier.eq(layer.multiplier),
                lane.shift.eq(layer.shift),
                lane.rounding.eq(0),
                lane.output_zero_point.eq(layer.output_zero_point),
                lane.activation_min.eq(-128),
                lane.activation_max.eq(127),
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

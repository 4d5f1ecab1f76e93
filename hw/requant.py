"""Output stage: bias, TFLite fixed-point requantization, output zero point and clamp, pipelined."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .params import check_config
from .array import column_sum_layout
from .layouts import param_word, result_vector, runtime_config
from .requant_lane import RequantLane

__all__ = ["Requantizer"]


class Requantizer(wiring.Component):
    """Per-channel requantization of completed column sums, exactly as TFLite's reference kernel.

    For each column ``c`` of a sum vector of column tile ``j`` (parameters ``p = params[j]``)::

        acc = wrap32(sum + p.bias[c])
        y   = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
                  wrap32(acc << max(shift, 0)), p.multiplier[c]), max(-shift, 0))
        y   = clamp(wrap32(y + output_zero_point), activation_min, activation_max)

    or ``acc`` itself in raw mode: one parameter-read stage, then a :class:`RequantLane` per
    column (every stage registered, the 32 x 32 multiply in a stage of its own: 4 DSPs per column
    on iCE40 and ECP5). :class:`~.requant_serial.SerialRequantizer` shares one lane instead.

    Each lane includes the rounding modes ``cfg.roundings``; ``config.rounding`` picks one per
    layer.

    Members
    -------
    sums : In(column_sum_layout), sums_valid : In(1)
        Completed column sums, one vector per cycle at most; no handshake.
    result : Out(result_vector), result_valid : Out(1)
        Requantized vector, :meth:`latency_of` cycles later.
    config : In(runtime_config)
        Output zero point, activation range, raw mode and rounding mode; held stable while
        ``busy``.
    param : In(param_word), param_valid : In(1), param_ready : Out(1)
        Parameter writes (bias, multiplier, shift of one column tile), a stream like
        :class:`~.requant_serial.SerialRequantizer`'s; always ready, a word per cycle. Write
        while not ``busy``.
    busy : Out(1)
        Some vector is inside the pipeline.
    """

    @staticmethod
    def latency_of(cfg: ArrayConfig):
        """Cycles from ``sums_valid`` to ``result_valid``: the parameter read and its output
        register, then a lane."""
        return 2 + RequantLane.latency_of(1, cfg.roundings, cfg.requant_multiply)

    @property
    def latency(self):
        return self.latency_of(self._cfg)

    def __init__(self, cfg: ArrayConfig):
        check_config(self, cfg)
        self._cfg = cfg
        super().__init__({
            "sums":         In(column_sum_layout(cfg)),
            "sums_valid":   In(1),
            "result":       Out(result_vector(cfg)),
            "result_valid": Out(1),
            "config":       In(runtime_config(cfg)),
            "param":        In(param_word(cfg)),
            "param_valid":  In(1),
            "param_ready":  Out(1),
            "busy":         Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()

        params_layout = data.StructLayout({
            name: param_word(cfg)[name].shape for name in ("bias", "multiplier", "shift")})
        m.submodules.params = params = memory.Memory(
            shape=params_layout, depth=cfg.max_tiles, init=[])
        read = params.read_port(domain="sync")
        write = params.write_port()
        m.d.comb += [
            read.addr.eq(self.sums.tile),
            write.addr.eq(self.param.addr),
            write.data.bias.eq(self.param.bias),
            write.data.multiplier.eq(self.param.multiplier),
            write.data.shift.eq(self.param.shift),
            write.en.eq(self.param_valid),
            self.param_ready.eq(1),
        ]

        # Stage 1: wait for the parameter read; stage 2: its data registered (a block RAM's
        # output is slow: on ECP5 the read alone is most of a 10 ns cycle); then one lane per
        # column.
        valid1, valid2 = Signal(), Signal()
        sums1 = Signal(self.sums.acc.shape(), reset_less=True)
        sums2 = Signal(self.sums.acc.shape(), reset_less=True)
        params2 = Signal(params_layout, reset_less=True)
        m.d.sync += [valid1.eq(self.sums_valid), sums1.eq(self.sums.acc),
                     valid2.eq(valid1), sums2.eq(sums1), params2.eq(read.data)]
        busy = [self.sums_valid, valid1, valid2]
        for c in range(cfg.cols):
            lane = RequantLane(sum_shape=cfg.acc_shape, steps=1, roundings=cfg.roundings,
                               multiply=cfg.requant_multiply)
            m.submodules[f"lane{c}"] = lane
            m.d.comb += [
                lane.valid.eq(valid2),
                lane.sum.eq(sums2[c]),
                lane.bias.eq(params2.bias[c]),
                lane.multiplier.eq(params2.multiplier[c]),
                lane.shift.eq(params2.shift[c]),
                lane.output_zero_point.eq(self.config.output_zero_point),
                lane.activation_min.eq(self.config.activation_min),
                lane.activation_max.eq(self.config.activation_max),
                lane.raw.eq(self.config.raw),
                lane.rounding.eq(self.config.rounding),
                self.result[c].eq(lane.result),
            ]
            busy.append(lane.busy)
            if c == 0:
                m.d.comb += self.result_valid.eq(lane.result_valid)
        m.d.comb += self.busy.eq(Cat(*busy).any())
        return m

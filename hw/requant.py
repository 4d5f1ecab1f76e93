"""Output stage: bias, TFLite fixed-point requantization, output zero point and clamp, pipelined."""

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .params import check_config
from .array import column_sum_layout
from .layouts import param_word, result_vector, runtime_config

__all__ = ["Requantizer"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _wrap32(value):
    """The low 32 bits of ``value`` as int32: two's-complement wrap, as compiled C does."""
    return value.as_unsigned()[:32].as_signed()


class Requantizer(wiring.Component):
    """Per-channel requantization of completed column sums, exactly as TFLite's reference kernel.

    For each column ``c`` of a sum vector of column tile ``j`` (parameters ``p = params[j]``)::

        acc = wrap32(sum + p.bias[c])
        y   = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
                  wrap32(acc << max(shift, 0)), p.multiplier[c]), max(-shift, 0))
        y   = clamp(wrap32(y + output_zero_point), activation_min, activation_max)

    or ``acc`` itself in raw mode. Every stage is registered; the 32 x 32 multiply has a stage of
    its own.

    Members
    -------
    sums : In(column_sum_layout), sums_valid : In(1)
        Completed column sums, one vector per cycle at most; no handshake.
    result : Out(result_vector), result_valid : Out(1)
        Requantized vector, ``LATENCY`` cycles later.
    config : In(runtime_config)
        Output zero point, activation range and raw mode; held stable while ``busy``.
    param : In(param_word), param_en : In(1)
        Parameter write port (bias, multiplier, shift of one column tile); write while idle.
    busy : Out(1)
        Some vector is inside the pipeline.
    """

    LATENCY = 7

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
            "param_en":     In(1),
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
            write.en.eq(self.param_en),
        ]

        valid = [Signal(name=f"valid{s}") for s in range(self.LATENCY + 1)]
        m.d.comb += valid[0].eq(self.sums_valid)
        for s in range(1, self.LATENCY + 1):
            m.d.sync += valid[s].eq(valid[s - 1])
        m.d.comb += [
            self.busy.eq(sum(valid) != 0),
            self.result_valid.eq(valid[-1]),
        ]

        def reg(shape, name):
            return Signal(shape, name=name, reset_less=True)

        # Stage 1: wait for the parameter read.
        sums1 = reg(self.sums.acc.shape(), "sums1")
        m.d.sync += sums1.eq(self.sums.acc)

        for c in range(cfg.cols):
            bias, mult, shift = (read.data.bias[c], read.data.multiplier[c], read.data.shift[c])

            # Stage 2: add the bias (int32 wrap), split the shift.
            acc2, mult2 = reg(signed(32), f"acc2_{c}"), reg(signed(32), f"mult2_{c}")
            left2, right2 = reg(unsigned(5), f"left2_{c}"), reg(unsigned(5), f"right2_{c}")
            m.d.sync += [
                acc2.eq(_wrap32(sums1[c] + bias)),
                mult2.eq(mult),
                left2.eq(Mux(shift > 0, shift, 0)),
                right2.eq(Mux(shift < 0, -shift, 0)),
            ]

            # Stage 3: left shift (int32 wrap).
            shifted3, mult3 = reg(signed(32), f"shifted3_{c}"), reg(signed(32), f"mult3_{c}")
            right3, raw3 = reg(unsigned(5), f"right3_{c}"), reg(signed(32), f"raw3_{c}")
            m.d.sync += [
                shifted3.eq(_wrap32(acc2 << left2)),
                mult3.eq(mult2), right3.eq(right2), raw3.eq(acc2),
            ]

            # Stage 4: the 32 x 32 -> 64 multiply; note the one saturating case.
            product4, saturate4 = reg(signed(64), f"product4_{c}"), reg(1, f"saturate4_{c}")
            right4, raw4 = reg(unsigned(5), f"right4_{c}"), reg(signed(32), f"raw4_{c}")
            m.d.sync += [
                product4.eq(shifted3 * mult3),
                saturate4.eq((shifted3 == INT32_MIN) & (mult3 == INT32_MIN)),
                right4.eq(right3), raw4.eq(raw3),
            ]

            # Stage 5: SaturatingRoundingDoublingHighMul: (ab + nudge) / 2^31, C division
            # (truncating toward zero), so negative numerators are biased by 2^31 - 1.
            nudged = Signal(signed(66), name=f"nudged_{c}")
            m.d.comb += nudged.eq(product4 + Mux(product4 >= 0, 1 << 30, 1 - (1 << 30)))
            high = Signal(signed(66), name=f"high_{c}")
            m.d.comb += high.eq((nudged + Mux(nudged < 0, (1 << 31) - 1, 0)) >> 31)
            high5, right5 = reg(signed(32), f"high5_{c}"), reg(unsigned(5), f"right5_{c}")
            raw5 = reg(signed(32), f"raw5_{c}")
            m.d.sync += [
                high5.eq(Mux(saturate4, INT32_MAX, high[:32].as_signed())),
                right5.eq(right4), raw5.eq(raw4),
            ]

            # Stage 6: RoundingDivideByPOT(high, right): arithmetic shift, round half away from 0.
            mask = Signal(unsigned(32), name=f"mask_{c}")
            m.d.comb += mask.eq((Const(1, 33) << right5) - 1)
            remainder = Signal(unsigned(32), name=f"remainder_{c}")
            m.d.comb += remainder.eq(high5.as_unsigned() & mask)
            threshold = Signal(unsigned(32), name=f"threshold_{c}")
            m.d.comb += threshold.eq((mask >> 1) + (high5 < 0))
            scaled6, raw6 = reg(signed(32), f"scaled6_{c}"), reg(signed(32), f"raw6_{c}")
            m.d.sync += [
                scaled6.eq((high5 >> right5) + (remainder > threshold)),
                raw6.eq(raw5),
            ]

            # Stage 7: output zero point (an int32 add, wrapping as compiled C does), activation
            # clamp, or the raw accumulator.
            biased = Signal(signed(32), name=f"biased_{c}")
            m.d.comb += biased.eq(_wrap32(scaled6 + self.config.output_zero_point))
            out7 = reg(signed(32), f"out7_{c}")
            with m.If(self.config.raw):
                m.d.sync += out7.eq(raw6)
            with m.Elif(biased < self.config.activation_min):
                m.d.sync += out7.eq(self.config.activation_min)
            with m.Elif(biased > self.config.activation_max):
                m.d.sync += out7.eq(self.config.activation_max)
            with m.Else():
                m.d.sync += out7.eq(biased)
            m.d.comb += self.result[c].eq(out7)
        return m

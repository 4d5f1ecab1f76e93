"""One requantization lane: TFLite's bias add, fixed-point multiply, shift and clamp, pipelined."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import REQUANT_STEPS
from .layouts import SHIFT_SHAPE
from .params import rejected

__all__ = ["RequantLane", "INT32_MIN", "INT32_MAX"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1


def _wrap32(value):
    """The low 32 bits of ``value`` as int32: two's-complement wrap, as compiled C does."""
    return value.as_unsigned()[:32].as_signed()


class RequantLane(wiring.Component):
    """Per-channel requantization of one accumulator, exactly as TFLite's reference kernel::

        acc = wrap32(sum + bias)
        y   = RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(
                  wrap32(acc << max(shift, 0)), multiplier), max(-shift, 0))
        y   = clamp(wrap32(y + output_zero_point), activation_min, activation_max)

    or ``acc`` itself in raw mode (the shifts are then forced to zero and the multiply bypassed,
    so raw values ride the same registers).

    The 32 x 32 multiply takes ``steps`` cycles: each cycle multiplies the multiplicand by the
    next ``32 / steps``-bit digit of the multiplier, least significant first, as shift-and-add
    rows on carry chains, two bits per row (each row adds 0, a, 2a or 3a). ``steps = 1`` is one plain product, which synthesis
    maps to DSPs; larger ``steps`` make a small fabric multiplier for FPGAs whose DSPs are all
    in the array.

    Parameters
    ----------
    sum_shape : ShapeLike
        Shape of the incoming accumulator (any signed width; it is added to the bias modulo
        2^32).
    steps : int
        Cycles per multiply, one of :data:`pwconv.config.REQUANT_STEPS`.
    rounding : str
        How RoundingDivideByPOT is built, bit-exact either way: ``"compare"`` (TFLite's
        mask-and-compare; with Yosys about 270 LUT4 on ECP5, 370 on iCE40) or ``"add"`` (a
        rounding bias added before the shift; about 290 LUT4 on iCE40 but 630 on ECP5).

    Members
    -------
    valid : In(1)
        ``sum``, ``bias``, ``multiplier`` and ``shift`` hold one input this cycle. At most one
        input every ``steps`` cycles (not checked: the caller's schedule guarantees it).
    sum : In(sum_shape), bias : In(signed(32)), multiplier : In(signed(32)), shift : In(signed(6))
        Accumulator and its channel's parameters (positive shift: left, negative: right).
    output_zero_point, activation_min, activation_max : In(signed(8)); raw : In(1)
        Layer settings; held stable while ``busy``.
    result : Out(signed(32)), result_valid : Out(1)
        The requantized value (int8-valued unless raw), ``latency`` = ``steps + 5`` cycles
        after ``valid``; no handshake.
    busy : Out(1)
        Some input is inside the pipeline.
    """

    def __init__(self, *, sum_shape, steps=1, rounding="compare"):
        if steps not in REQUANT_STEPS:
            raise rejected(self, ValueError(
                f"Multiply steps must be one of {', '.join(map(str, REQUANT_STEPS))}, "
                f"not {steps!r}"))
        if rounding not in ("compare", "add"):
            raise rejected(self, ValueError(
                f"Rounding must be 'compare' or 'add', not {rounding!r}"))
        self._steps = steps
        self._rounding = rounding
        super().__init__({
            "valid":             In(1),
            "sum":               In(sum_shape),
            "bias":              In(signed(32)),
            "multiplier":        In(signed(32)),
            "shift":             In(SHIFT_SHAPE),
            "output_zero_point": In(signed(8)),
            "activation_min":    In(signed(8)),
            "activation_max":    In(signed(8)),
            "raw":               In(1),
            "result":            Out(signed(32)),
            "result_valid":      Out(1),
            "busy":              Out(1),
        })

    @property
    def steps(self):
        return self._steps

    @property
    def latency(self):
        """Cycles from ``valid`` to ``result_valid``."""
        return self._steps + 5

    def elaborate(self, platform):
        steps = self._steps
        digit = 32 // steps
        m = Module()

        def reg(shape, name):
            return Signal(shape, name=name, reset_less=True)

        # Stage 1: add the bias (int32 wrap), split the shift (both zero in raw mode).
        acc1, mult1 = reg(signed(32), "acc1"), reg(signed(32), "mult1")
        left1, right1 = reg(unsigned(5), "left1"), reg(unsigned(5), "right1")
        valid1 = Signal()
        m.d.sync += [
            valid1.eq(self.valid),
            acc1.eq(_wrap32(self.sum + self.bias)),
            mult1.eq(self.multiplier),
            left1.eq(Mux(~self.raw & (self.shift > 0), self.shift, 0)),
            right1.eq(Mux(~self.raw & (self.shift < 0), -self.shift, 0)),
        ]

        # Stage 2: left shift (int32 wrap); note the one case SRDHM saturates. These registers
        # are the multiplier's operands and hold for the whole multiply (inputs come at most
        # once per `steps` cycles); the multiplier register shifts its next digit to the bottom.
        shifted = Signal(signed(32))
        m.d.comb += shifted.eq(_wrap32(acc1 << left1))
        a2, b2 = reg(signed(32), "a2"), reg(signed(32), "b2")
        right2, saturate2 = reg(unsigned(5), "right2"), reg(1, "saturate2")
        valid2 = Signal()
        m.d.sync += valid2.eq(valid1)
        with m.If(valid1):
            m.d.sync += [
                a2.eq(shifted), b2.eq(mult1), right2.eq(right1),
                saturate2.eq((shifted == INT32_MIN) & (mult1 == INT32_MIN)),
            ]
        if steps > 1:
            with m.Else():
                m.d.sync += b2.eq(b2 >> digit)
            # 3 * a2, for the multiply's radix-4 rows, one adder for the whole multiply.
            a2x3 = reg(signed(34), "a2x3")
            with m.If(valid1):
                m.d.sync += a2x3.eq(shifted + (shifted << 1))

        # Stages 3 .. 2 + steps: product = a2 * b2.
        if steps == 1:
            # One plain product: synthesis maps it to DSPs.
            product = reg(signed(64), "product")
            last_step = valid2
            m.d.sync += product.eq(a2 * b2)
        else:
            # Digit-serial, least significant digit first: each cycle adds a2 times one
            # `digit`-bit digit of b2 (taken as unsigned) to the running high part, one radix-4
            # row per two bits, and shifts the `digit` finished low bits out; after the last
            # digit, subtracting a2 * 2^32 for b2's sign bit makes the product signed. Each row
            # is its own named adder so synthesis keeps it on a carry chain (a multi-operand sum
            # would be rebuilt as a much larger LUT adder tree).
            step = Signal(range(steps), name="step")
            first_step = valid2
            last_step = Signal()
            m.d.comb += last_step.eq(step == steps - 1)
            with m.If(first_step):
                m.d.sync += step.eq(1)
            with m.Elif(step != 0):
                m.d.sync += step.eq(Mux(last_step, 0, step + 1))
            upper, lower = reg(signed(35), "product_upper"), reg(unsigned(32), "product_lower")
            row = Mux(first_step, 0, upper)
            done_bits = []
            for pair in range(digit // 2):
                # Two bits of b2 per row: add 0, a2, 2 a2 or 3 a2 (a3x, computed once).
                bits = b2[2 * pair:2 * pair + 2]
                addend = Signal(signed(35), name=f"addend{pair}")
                with m.Switch(bits):
                    with m.Case(0):
                        m.d.comb += addend.eq(0)
                    with m.Case(1):
                        m.d.comb += addend.eq(a2)
                    with m.Case(2):
                        m.d.comb += addend.eq(a2 << 1)
                    with m.Case(3):
                        m.d.comb += addend.eq(a2x3)
                total = Signal(signed(35), name=f"row{pair}", attrs={"keep": 1})
                m.d.comb += total.eq(row + addend)
                done_bits += [total[0], total[1]]
                row = total >> 2
            signed_high = Signal(signed(35), name="row_sign", attrs={"keep": 1})
            # At the last step b2 holds the top digit, whose top bit is b2's sign.
            m.d.comb += signed_high.eq(row - Mux(last_step & b2[digit - 1], a2, 0))
            m.d.sync += [upper.eq(signed_high), lower.eq(Cat(lower[digit:], *done_bits))]
            product = Cat(lower, upper[:32]).as_signed()
        a3, right3, saturate3 = reg(signed(32), "a3"), reg(unsigned(5), "right3"), reg(1, "sat3")
        valid3 = Signal()
        m.d.sync += valid3.eq(last_step)
        with m.If(last_step):
            m.d.sync += [a3.eq(a2), right3.eq(right2), saturate3.eq(saturate2)]

        # SaturatingRoundingDoublingHighMul: (ab + nudge) / 2^31 with C's division (truncating
        # toward zero): floor, plus one for a negative numerator with a nonzero remainder.
        nudged = Signal(signed(65))
        m.d.comb += nudged.eq(product + Mux(product >= 0, 1 << 30, 1 - (1 << 30)))
        high = Signal(signed(34))
        m.d.comb += high.eq((nudged >> 31)
                            + ((nudged < 0) & (nudged[:31] != 0)))
        high4, right4 = reg(signed(32), "high4"), reg(unsigned(5), "right4")
        valid4 = Signal()
        m.d.sync += [valid4.eq(valid3), right4.eq(right3)]
        with m.If(self.raw):
            m.d.sync += high4.eq(a3)
        with m.Elif(saturate3):
            m.d.sync += high4.eq(INT32_MAX)
        with m.Else():
            m.d.sync += high4.eq(high[:32].as_signed())

        # RoundingDivideByPOT(high, right): arithmetic shift, round half away from zero (the
        # identity for right = 0, so raw values pass unchanged). Two equal forms; see
        # `rounding`.
        scaled5 = reg(signed(32), "scaled5")
        valid5 = Signal()
        m.d.sync += valid5.eq(valid4)
        if self._rounding == "compare":
            # TFLite's own: add 1 when the bits shifted out exceed half (plus one if negative).
            mask = Signal(unsigned(32))
            m.d.comb += mask.eq((Const(1, 33) << right4) - 1)
            remainder = Signal(unsigned(32))
            m.d.comb += remainder.eq(high4.as_unsigned() & mask)
            threshold = Signal(unsigned(32))
            m.d.comb += threshold.eq((mask >> 1) + (high4 < 0))
            m.d.sync += scaled5.eq((high4 >> right4) + (remainder > threshold))
        else:
            # The same as (high + bias) >> right with bias 2^(right-1), or 2^(right-1) - 1 for
            # a negative high, and 0 for right = 0: one adder, then the shift.
            round_bias = Signal(unsigned(31))
            half = (Const(1, 32) << (right4 - 1)[:5])[:31]
            with m.If(right4 == 0):
                m.d.comb += round_bias.eq(0)
            with m.Elif(high4 < 0):
                m.d.comb += round_bias.eq(half - 1)
            with m.Else():
                m.d.comb += round_bias.eq(half)
            rounded = Signal(signed(33), attrs={"keep": 1})
            m.d.comb += rounded.eq(high4 + round_bias)
            m.d.sync += scaled5.eq(rounded >> right4)

        # Output zero point (an int32 add, wrapping as compiled C does) and activation clamp,
        # or the raw accumulator unchanged.
        biased = Signal(signed(32))
        m.d.comb += biased.eq(_wrap32(scaled5 + self.output_zero_point))
        out6 = reg(signed(32), "out6")
        valid6 = Signal()
        m.d.sync += valid6.eq(valid5)
        with m.If(self.raw):
            m.d.sync += out6.eq(scaled5)
        with m.Elif(biased < self.activation_min):
            m.d.sync += out6.eq(self.activation_min)
        with m.Elif(biased > self.activation_max):
            m.d.sync += out6.eq(self.activation_max)
        with m.Else():
            m.d.sync += out6.eq(biased)

        in_flight = [self.valid, valid1, valid2, valid3, valid4, valid5, valid6]
        if steps > 1:
            in_flight.append(step != 0)
        m.d.comb += [
            self.result.eq(out6),
            self.result_valid.eq(valid6),
            self.busy.eq(Cat(*in_flight).any()),
        ]
        return m

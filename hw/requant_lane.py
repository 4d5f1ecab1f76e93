"""One requantization lane: bias add, a runtime's fixed-point or float32 rescale, clamp."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import REQUANT_STEPS, ROUNDINGS
from .layouts import SHIFT_SHAPE
from .params import rejected

__all__ = ["RequantLane", "INT32_MIN", "INT32_MAX", "DIVIDE_FORMS"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

#: How the lane's rounding right shift is built (bit-exact either way): ``"compare"``
#: (TFLite's mask-and-compare; with Yosys about 270 LUT4 on ECP5, 370 on iCE40 for the double
#: mode) or ``"add"`` (a rounding bias added before the shift; about 290 LUT4 on iCE40 but 630
#: on ECP5).
DIVIDE_FORMS = ("compare", "add")


def _wrap32(value):
    """The low 32 bits of ``value`` as int32: two's-complement wrap, as compiled C does."""
    return value.as_unsigned()[:32].as_signed()


def _leading_zeros(m, value, width):
    """A signal counting the leading zeros of the unsigned ``value`` (``width`` for zero)."""
    count = Signal(range(width + 1))
    m.d.comb += count.eq(width)
    for bit in range(width):        # the highest set bit wins: it is assigned last
        with m.If(value[bit]):
            m.d.comb += count.eq(width - 1 - bit)
    return count


def _round_shift(m, form, value, amount, tie, name):
    """``value >> amount`` (arithmetic) rounded to nearest, as ``(quotient, round_up)``: the
    result is ``quotient + round_up``, added by the caller in the next pipeline stage.

    A tie rounds up when ``tie`` is 1: pass 1 for ties toward +infinity, ``value >= 0`` for
    ties away from zero, the quotient's lowest bit (``value[amount]``) for ties to even. The
    identity for ``amount == 0``. ``form`` is one of :data:`DIVIDE_FORMS`. The masks are
    thermometer codes of ``amount`` (logic only), so each form has one carry chain.
    """
    width = len(value)
    # mask = 2^amount - 1, half = 2^(amount - 1) (0 for amount 0), below = half - 1.
    mask = Signal(unsigned(width), name=f"{name}_mask")
    m.d.comb += mask.eq(~(Const((1 << width) - 1, width) << amount)[:width])
    below = Signal(unsigned(width), name=f"{name}_below")
    m.d.comb += below.eq(mask >> 1)
    half = Signal(unsigned(width), name=f"{name}_half")
    m.d.comb += half.eq(mask ^ below)
    quotient = Signal(signed(width), name=f"{name}_q")
    round_up = Signal(name=f"{name}_up")
    if form == "compare":
        # Round up when the bits shifted out exceed half, or equal it and `tie`: both
        # comparisons run beside the shift, so a tie rule that needs the quotient's lowest bit
        # (ties to even) only picks between them.
        remainder = Signal(unsigned(width), name=f"{name}_rem")
        m.d.comb += remainder.eq(value.as_unsigned() & mask)
        m.d.comb += [quotient.eq(value >> amount),
                     round_up.eq(Mux(tie, remainder > below, remainder > half))]
    else:
        # (value + half - 1 + tie) >> amount: one adder, then the shift.
        total = Signal(signed(width + 1), name=f"{name}_sum", attrs={"keep": 1})
        m.d.comb += total.eq(value + Mux(tie, half, below))
        m.d.comb += [quotient.eq(total >> amount), round_up.eq(0)]
    return quotient, round_up


class RequantLane(wiring.Component):
    """Per-channel requantization of one accumulator, bit-exact with the runtime each mode names
    (see :func:`pwconv.golden.requantize`)::

        acc = wrap32(sum + bias)
        y   = rescale(acc)                          # per the rounding mode, below
        y   = clamp(wrap32(y + output_zero_point), activation_min, activation_max)

    or ``acc`` itself in raw mode. The rescale, with ``left = max(shift, 0)``, ``right =
    max(-shift, 0)`` and ``P = a * b`` the lane's one 32 x 32 product:

    ``"double"`` (TFLite reference)
        ``a = wrap32(acc << left)``, ``b = multiplier``; ``h = (P >> 31) + P[30]`` (gemmlowp's
        SaturatingRoundingDoublingHighMul, saturating INT32_MIN * INT32_MIN), then ``h >> right``
        rounded, ties away from zero (RoundingDivideByPOT).
    ``"ruy"``
        as double but ``h`` wraps instead of saturating and the final shift rounds ties toward
        +infinity.
    ``"single"``
        ``a = acc``, ``b = multiplier``; ``h = P >> (30 - left)`` (floor, 34 bits), then ``h >>
        (right + 1)`` (or ``>> 1`` when ``left > 0``) rounded ties toward +infinity, wrapped to
        32 bits: ``(acc * multiplier + 2^(30 - shift)) >> (31 - shift)`` exactly.
    ``"float"``
        ``multiplier`` holds the bits of a positive normal float32 scale; ``a`` is float32(acc)'s
        24-bit significand (|acc| normalized by a leading-zero count and rounded to 24 bits,
        ties to even), ``b`` the scale's significand; the 48-bit ``P`` is rounded to 24 bits
        (the float32 multiply, ties to even), then shifted to an integer by the exponent sum,
        rounded ties to even; the sign of acc is applied with the zero point (IEEE-754 binary32
        exactly, in integer logic).

    The 32 x 32 multiply takes ``steps`` cycles: each cycle multiplies the multiplicand by the
    next ``32 / steps``-bit digit of the multiplier, least significant first, as shift-and-add
    rows on carry chains, two bits per row (each row adds 0, a, 2a or 3a). ``steps = 1`` is one
    plain product, which synthesis maps to DSPs; larger ``steps`` make a small fabric multiplier
    for FPGAs whose DSPs are all in the array.

    Parameters
    ----------
    sum_shape : ShapeLike
        Shape of the incoming accumulator (any signed width; it is added to the bias modulo
        2^32).
    steps : int
        Cycles per multiply, one of :data:`pwconv.config.REQUANT_STEPS`.
    roundings : tuple of str
        The modes this lane includes, a non-empty subset of :data:`pwconv.config.ROUNDINGS`.
        A mode that is left out costs no logic; ``"float"`` adds two pipeline stages.
    divide : str
        How the rounding right shift is built, one of :data:`DIVIDE_FORMS`.

    Members
    -------
    valid : In(1)
        ``sum``, ``bias``, ``multiplier`` and ``shift`` hold one input this cycle. At most one
        input every ``steps`` cycles (not checked: the caller's schedule guarantees it).
    sum : In(sum_shape), bias : In(signed(32)), multiplier : In(signed(32)), shift : In(signed(6))
        Accumulator and its channel's parameters (positive shift: left, negative: right;
        shifts in [-31, 30] for every mode, [-31, 31] for ``"double"``; the shift is unused by
        ``"float"``).
    rounding : In(2)
        Index of the mode in :data:`~pwconv.config.ROUNDINGS`; a mode this lane does not
        include computes as ``roundings[0]`` (the host and the board refuse such layers).
    output_zero_point, activation_min, activation_max : In(signed(8)); raw : In(1)
        Layer settings; ``rounding``, these and ``raw`` are held stable while ``busy``.
    result : Out(signed(32)), result_valid : Out(1)
        The requantized value (int8-valued unless raw), ``latency`` cycles after ``valid``
        (:meth:`latency_of`); no handshake.
    busy : Out(1)
        Some input is inside the pipeline.
    """

    def __init__(self, *, sum_shape, steps=1, roundings=("double",), divide="compare"):
        if steps not in REQUANT_STEPS:
            raise rejected(self, ValueError(
                f"Multiply steps must be one of {', '.join(map(str, REQUANT_STEPS))}, "
                f"not {steps!r}"))
        if divide not in DIVIDE_FORMS:
            raise rejected(self, ValueError(
                f"Divide form must be 'compare' or 'add', not {divide!r}"))
        if (not isinstance(roundings, tuple) or not roundings
                or any(r not in ROUNDINGS for r in roundings)
                or len(set(roundings)) != len(roundings)):
            raise rejected(self, ValueError(
                f"Roundings must be a non-empty tuple of distinct modes from "
                f"{', '.join(ROUNDINGS)}, not {roundings!r}"))
        self._steps = steps
        self._roundings = roundings
        self._divide = divide
        super().__init__({
            "valid":             In(1),
            "sum":               In(sum_shape),
            "bias":              In(signed(32)),
            "multiplier":        In(signed(32)),
            "shift":             In(SHIFT_SHAPE),
            "rounding":          In(2),
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
    def roundings(self):
        return self._roundings

    @staticmethod
    def latency_of(steps, roundings):
        """Cycles from ``valid`` to ``result_valid``: bias add, [|acc| and its float32
        significand: two stages with ``"float"``], the operand shift, the multiply (``steps``
        cycles, or three pipelined stages for ``steps == 1``), the high part, the rounding
        shift, zero point, clamp."""
        return steps + 6 + (2 if steps == 1 else 0) + (2 if "float" in roundings else 0)

    @property
    def latency(self):
        """Cycles from ``valid`` to ``result_valid``."""
        return self.latency_of(self._steps, self._roundings)

    def elaborate(self, platform):
        steps, modes = self._steps, self._roundings
        digit = 32 // steps
        has_float = "float" in modes
        has_single = "single" in modes
        m = Module()

        def reg(shape, name):
            return Signal(shape, name=name, reset_less=True)

        # The layer's mode, one flag per included mode (constants when the lane has one).
        is_mode = {}
        for mode in modes:
            others = [ROUNDINGS.index(r) for r in modes if r != mode]
            if not others:
                is_mode[mode] = Const(1)
            elif mode == modes[0]:      # the fallback for indices the lane does not include
                is_mode[mode] = ~Cat(*(self.rounding == i for i in others)).any()
            else:
                is_mode[mode] = self.rounding == ROUNDINGS.index(mode)

        def mode_is(*names):
            flags = [is_mode[n] for n in names if n in is_mode]
            return Cat(*flags).any() if flags else Const(0)

        is_float, is_single = mode_is("float"), mode_is("single")
        raw = self.raw

        # Stage 1: add the bias (int32 wrap), split the shift (both zero in raw mode).
        acc1, mult1 = reg(signed(32), "acc1"), reg(signed(32), "mult1")
        left1, right1 = reg(unsigned(5), "left1"), reg(unsigned(5), "right1")
        valid1 = Signal()
        m.d.sync += [
            valid1.eq(self.valid),
            acc1.eq(_wrap32(self.sum + self.bias)),
            mult1.eq(self.multiplier),
            left1.eq(Mux(~raw & (self.shift > 0), self.shift, 0)),
            right1.eq(Mux(~raw & (self.shift < 0), -self.shift, 0)),
        ]
        in_flight = [self.valid, valid1]

        # Float only: |acc| (one adder) and, beside it, its leading zeros up to one: those of
        # acc itself, or its leading ones less one when negative (|acc| may have one more
        # leading zero, when it is a power of two; the significand stage shifts that bit).
        x2, valid2 = acc1, valid1
        negative2, zero2 = acc1 < 0, acc1 == 0
        if has_float:
            x2, negative2, zero2 = reg(signed(33), "mag2"), reg(1, "neg2"), reg(1, "zero2")
            mult2, left2, right2 = reg(signed(32), "mult2"), reg(unsigned(5), "left2"), \
                reg(unsigned(5), "right2")
            lz2 = reg(unsigned(6), "lz2")
            sign_run = _leading_zeros(m, (acc1 ^ acc1[31].replicate(32)).as_unsigned(), 32)
            valid2 = Signal()
            m.d.sync += [
                valid2.eq(valid1),
                x2.eq(Mux(is_float & ~raw & (acc1 < 0), -acc1, acc1)),
                negative2.eq(acc1 < 0), zero2.eq(acc1 == 0),
                mult2.eq(mult1), left2.eq(left1), right2.eq(right1),
                lz2.eq(Mux(acc1[31], sign_run - 1, sign_run)),
            ]
            mult1, left1, right1 = mult2, left2, right2
            in_flight.append(valid2)

        # Operand shift: acc << left (int32 wrap) for double and ruy, none for single (its
        # left shift comes after the multiply, unwrapped), |acc| << its leading zeros for float
        # (its top bit to bit 31); note the one case SRDHM saturates.
        amount = Signal(unsigned(5))
        fixed_amount = Mux(is_single, 0, left1) if has_single else left1
        if has_float:
            m.d.comb += amount.eq(Mux(is_float & ~raw, lz2[:5], fixed_amount))
        else:
            m.d.comb += amount.eq(fixed_amount)
        shifted = Signal(signed(32))
        m.d.comb += shifted.eq(_wrap32(x2[:32].as_signed() << amount))

        # The operand registers: they hold for the whole multiply (inputs come at most once per
        # `steps` cycles); the multiplier register shifts its next digit to the bottom.
        a_op, b_op = reg(signed(32), "a_op"), reg(signed(32), "b_op")
        right_op, saturate_op = reg(unsigned(5), "right_op"), reg(1, "saturate_op")
        left_op = reg(unsigned(5), "left_op")
        load = Signal()
        if has_float:
            # One more stage: float32(acc)'s significand, rounded to 24 bits, ties to even.
            norm3, valid3 = reg(unsigned(32), "norm3"), Signal()
            mult3, left3, right3 = reg(signed(32), "mult3"), reg(unsigned(5), "left3"), \
                reg(unsigned(5), "right3")
            lz3, neg3, zero3 = reg(unsigned(6), "lz3"), reg(1, "neg3"), reg(1, "zero3")
            m.d.sync += [
                valid3.eq(valid2), norm3.eq(shifted.as_unsigned()), mult3.eq(mult1),
                left3.eq(left1), right3.eq(right1), lz3.eq(lz2), neg3.eq(negative2),
                zero3.eq(zero2),
            ]
            in_flight.append(valid3)
            # The one bit of normalization the leading-zero estimate may have left.
            short = ~norm3[31]
            normal = Signal(unsigned(32))
            m.d.comb += normal.eq(Mux(short, norm3 << 1, norm3))
            sticky3 = normal[:7].any()
            mantissa = Signal(unsigned(25))
            m.d.comb += mantissa.eq(normal[8:] + (normal[7] & (sticky3 | normal[8])))
            fixed_operand = norm3.as_signed()
            float_operand = Mux(mantissa[24], 1 << 23, mantissa)
            a_next = Mux(is_float & ~raw, float_operand, fixed_operand)
            b_next = Mux(is_float & ~raw, Cat(mult3[:23], Const(1, 1), Const(0, 8)).as_signed(),
                         mult3)
            load_valid, src_mult, src_left, src_right = valid3, mult3, left3, right3
            # float32(|acc|) = significand * 2^ea, ea = 8 - lz (+1 when rounding carried).
            ea_op = reg(signed(7), "ea_op")
            exp_op = reg(unsigned(8), "exp_op")
            neg_op, zero_op = reg(1, "neg_op"), reg(1, "zero_op")
            with m.If(load_valid):
                m.d.sync += [ea_op.eq(8 - lz3 - short + mantissa[24]), exp_op.eq(mult3[23:31]),
                             neg_op.eq(neg3), zero_op.eq(zero3)]
        else:
            a_next, b_next = shifted, mult1
            load_valid, src_mult, src_left, src_right = valid2, mult1, left1, right1
        m.d.comb += load.eq(load_valid)
        valid_op = Signal()
        m.d.sync += valid_op.eq(load_valid)
        with m.If(load):
            m.d.sync += [
                a_op.eq(a_next), b_op.eq(b_next), right_op.eq(src_right), left_op.eq(src_left),
                saturate_op.eq((a_next == INT32_MIN) & (b_next == INT32_MIN)),
            ]
        if steps > 1:
            with m.Else():
                m.d.sync += b_op.eq(b_op >> digit)
            # 3 * a, for the multiply's radix-4 rows, one adder for the whole multiply.
            a_x3 = reg(signed(34), "a_x3")
            with m.If(load):
                m.d.sync += a_x3.eq(a_next + (a_next << 1))
        in_flight.append(valid_op)

        # The sideband of the operands, as it must be beside the finished product.
        sideband = {"a": (a_op, signed(32)), "right": (right_op, unsigned(5)),
                    "left": (left_op, unsigned(5)), "saturate": (saturate_op, 1)}
        if has_float:
            sideband.update({"ea": (ea_op, signed(7)), "exp": (exp_op, unsigned(8)),
                             "neg": (neg_op, 1), "zero": (zero_op, 1)})

        # The product P = a_op * b_op.
        if steps == 1:
            # Four 16 x 16 partial products, registered (each one MULT18X18D or SB_MAC16 with
            # its output register), then their middle pair summed and the halves kept, then the
            # 64-bit sum: every stage one DSP or one carry chain. Inputs may come every cycle,
            # so the sideband travels along.
            a_lo, a_hi = a_op[:16], a_op[16:].as_signed()
            b_lo, b_hi = b_op[:16], b_op[16:].as_signed()
            p_ll, p_lh = reg(unsigned(32), "p_ll"), reg(signed(33), "p_lh")
            p_hl, p_hh = reg(signed(33), "p_hl"), reg(signed(32), "p_hh")
            valid_m1, valid_m2 = Signal(), Signal()
            m.d.sync += [
                valid_m1.eq(valid_op),
                p_ll.eq(a_lo * b_lo), p_lh.eq(a_lo * b_hi), p_hl.eq(a_hi * b_lo),
                p_hh.eq(a_hi * b_hi),
            ]
            middle, halves = reg(signed(34), "p_middle"), reg(signed(64), "p_halves")
            m.d.sync += [valid_m2.eq(valid_m1), middle.eq(p_lh + p_hl),
                         halves.eq(Cat(p_ll, p_hh).as_signed())]
            for stage in ("m1", "m2"):
                delayed_side = {}
                for key, (value, shape) in sideband.items():
                    copy = reg(shape, f"{key}_{stage}")
                    m.d.sync += copy.eq(value)
                    delayed_side[key] = (copy, shape)
                sideband = delayed_side
            product = reg(signed(64), "product")
            last_step = valid_m2
            m.d.sync += product.eq(halves + (middle << 16))
            in_flight += [valid_m1, valid_m2]
        else:
            # Digit-serial, least significant digit first: each cycle adds a times one
            # `digit`-bit digit of b (taken as unsigned) to the running high part, one radix-4
            # row per two bits, and shifts the `digit` finished low bits out; after the last
            # digit, subtracting a * 2^32 for b's sign bit makes the product signed. Each row
            # is its own named adder so synthesis keeps it on a carry chain (a multi-operand sum
            # would be rebuilt as a much larger LUT adder tree).
            # The step is a delay line of first_step rather than a counter: a counter reading
            # itself would keep an X of a 4-state simulator's start-up forever (Icarus).
            first_step = valid_op
            step_line = [first_step]
            for index in range(1, steps):
                stage = Signal(name=f"step{index}")
                m.d.sync += stage.eq(step_line[-1])
                step_line.append(stage)
            last_step = step_line[-1]
            upper, lower = reg(signed(35), "product_upper"), reg(unsigned(32), "product_lower")
            row = Mux(first_step, 0, upper)
            done_bits = []
            for pair in range(digit // 2):
                # Two bits of b per row: add 0, a, 2 a or 3 a (a_x3, computed once).
                bits = b_op[2 * pair:2 * pair + 2]
                addend = Signal(signed(35), name=f"addend{pair}")
                with m.Switch(bits):
                    with m.Case(0):
                        m.d.comb += addend.eq(0)
                    with m.Case(1):
                        m.d.comb += addend.eq(a_op)
                    with m.Case(2):
                        m.d.comb += addend.eq(a_op << 1)
                    with m.Case(3):
                        m.d.comb += addend.eq(a_x3)
                total = Signal(signed(35), name=f"row{pair}", attrs={"keep": 1})
                m.d.comb += total.eq(row + addend)
                done_bits += [total[0], total[1]]
                row = total >> 2
            signed_high = Signal(signed(35), name="row_sign", attrs={"keep": 1})
            # At the last step b holds the top digit, whose top bit is b's sign.
            m.d.comb += signed_high.eq(row - Mux(last_step & b_op[digit - 1], a_op, 0))
            m.d.sync += [upper.eq(signed_high), lower.eq(Cat(lower[digit:], *done_bits))]
            product = Cat(lower, upper[:32]).as_signed()
            in_flight += step_line[1:]

        # The product is complete the cycle after the last step; its operands' sideband is
        # copied there, since the next input may load the operand registers meanwhile.
        valid_p = Signal()
        m.d.sync += valid_p.eq(last_step)
        side_p = {}
        for key, (value, shape) in sideband.items():
            side_p[key] = reg(shape, f"{key}_p")
            with m.If(last_step):
                m.d.sync += side_p[key].eq(value)
        a_p, right_p, left_p = side_p["a"], side_p["right"], side_p["left"]
        saturate_p = side_p["saturate"]
        if has_float:
            ea_p, exp_p, neg_p, zero_p = (side_p[k] for k in ("ea", "exp", "neg", "zero"))
        in_flight.append(valid_p)

        # Stage "high": the first rounding, per mode, and the amount of the second one.
        h_width = 34 if has_single else 33
        high = reg(signed(h_width), "high")
        amount_h = reg(unsigned(6), "amount_h")
        valid_h = Signal()
        m.d.sync += valid_h.eq(valid_p)
        # double and ruy: floor((P + 2^30) / 2^31) = (P >> 31) + P[30], 33 bits.
        srdhm = Signal(signed(33))
        m.d.comb += srdhm.eq(product[31:].as_signed() + product[30])
        fixed_high = Mux(mode_is("double") & saturate_p, INT32_MAX,
                         Mux(mode_is("double"), srdhm, _wrap32(srdhm)))
        neg_h, sat_h, zero_h = reg(1, "neg_h"), reg(1, "sat_h"), reg(1, "zero_h")
        with m.If(valid_p):
            with m.If(raw):
                m.d.sync += [high.eq(a_p), amount_h.eq(0)]
            with m.Elif(is_single):
                # floor(P / 2^(30 - left)), of which the low 34 bits are all that matter.
                m.d.sync += [
                    high.eq((product >> (30 - left_p)[:5])[:h_width]),
                    amount_h.eq(Mux(left_p == 0, right_p + 1, 1)),
                ]
            with m.Else():
                m.d.sync += [high.eq(fixed_high), amount_h.eq(right_p)]
            if has_float:
                # The float32 product: the 48-bit significand product rounded to 24 bits
                # (ties to even), as m * 2^e; then m's shift to an integer is -e.
                top = product[47]
                kept = Mux(top, product[24:48], product[23:47])
                round_bit = Mux(top, product[23], product[22])
                sticky = Mux(top, product[:23].any(), product[:22].any())
                significand = Signal(unsigned(25))
                m.d.comb += significand.eq(kept + (round_bit & (sticky | kept[0])))
                # e = ea + (exp - 127 - 23) + 23 + top; the shift is -e, 0 when e >= 0.
                exponent = Signal(signed(10))
                m.d.comb += exponent.eq(ea_p + exp_p - 127 + top)
                with m.If(is_float & ~raw):
                    m.d.sync += [
                        high.eq(significand),
                        amount_h.eq(Mux(exponent >= 0, 0,
                                        Mux(exponent < -31, 31, -exponent))),
                        sat_h.eq(exponent >= 0), neg_h.eq(neg_p), zero_h.eq(zero_p),
                    ]
                with m.Else():
                    m.d.sync += [sat_h.eq(0), neg_h.eq(0), zero_h.eq(0)]
        in_flight.append(valid_h)

        # Stage "scaled": the second rounding, a right shift rounded with the mode's tie rule
        # (identity for amount 0, so raw values pass unchanged), kept as quotient and round-up
        # bit; float's special cases are forced here.
        # The tie rule is the layer's (its mode is held stable while busy): up for ruy and
        # single, away from zero for double, to even for float.
        tie = Signal()
        tie_rules = [mode_is("ruy", "single"), mode_is("double") & (high >= 0)]
        if has_float:
            tie_rules.append(is_float & high.bit_select(amount_h, 1))
        m.d.comb += tie.eq(Cat(*tie_rules).any())
        quotient, round_up = _round_shift(m, self._divide, high, amount_h, tie, "rdbpot")
        scaled, up_s = reg(signed(32), "scaled"), reg(1, "up_s")
        valid_s = Signal()
        neg_s = reg(1, "neg_s")
        m.d.sync += [valid_s.eq(valid_h), neg_s.eq(neg_h),
                     scaled.eq(_wrap32(quotient)), up_s.eq(round_up)]
        if has_float:
            with m.If(zero_h):
                m.d.sync += [scaled.eq(0), up_s.eq(0)]
            with m.Elif(sat_h):
                m.d.sync += [scaled.eq(1 << 30), up_s.eq(0)]     # |value| >= 2^23: clamps
        in_flight.append(valid_s)

        # Stage "biased": the output zero point, one adder with the round-up bit as carry in
        # (an int32 add, wrapping as compiled C does; float's magnitude is subtracted for a
        # negative acc: zp - (q + up) = zp + ~q + (1 - up)), or the raw accumulator.
        biased = reg(signed(32), "biased")
        valid_b = Signal()
        m.d.sync += valid_b.eq(valid_s)
        # One adder: (q or ~q) + (zp, or 0 when raw) + carry (raw makes neg_s 0).
        zp = Mux(raw, 0, self.output_zero_point)
        if has_float:
            sum_b = Mux(neg_s, ~scaled, scaled) + zp + (up_s ^ neg_s)
        else:
            sum_b = scaled + zp + up_s
        m.d.sync += biased.eq(_wrap32(sum_b))
        in_flight.append(valid_b)

        # Activation clamp (raw values pass).
        out = reg(signed(32), "out")
        valid_o = Signal()
        m.d.sync += valid_o.eq(valid_b)
        with m.If(raw):
            m.d.sync += out.eq(biased)
        with m.Elif(biased < self.activation_min):
            m.d.sync += out.eq(self.activation_min)
        with m.Elif(biased > self.activation_max):
            m.d.sync += out.eq(self.activation_max)
        with m.Else():
            m.d.sync += out.eq(biased)
        in_flight.append(valid_o)

        m.d.comb += [
            self.result.eq(out),
            self.result_valid.eq(valid_o),
            self.busy.eq(Cat(*in_flight).any()),
        ]
        return m

"""One requantization lane: bias add, a runtime's fixed-point or float32 rescale, clamp."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import REQUANT_MULTIPLIES as MULTIPLIES, REQUANT_STEPS, ROUNDINGS
from .layouts import SHIFT_SHAPE
from .params import rejected

__all__ = ["RequantLane", "INT32_MIN", "INT32_MAX", "DIVIDE_FORMS", "OWN_REGISTER"]

INT32_MIN = -(1 << 31)
INT32_MAX = (1 << 31) - 1

#: How the lane's rounding right shift is built (bit-exact either way): ``"compare"``
#: (TFLite's mask-and-compare, done as the round bit and a sticky OR of the bits shifted out,
#: no carry chain; the fast one, for ECP5) or ``"add"`` (a rounding bias added before the
#: shift; the smaller one on iCE40). `make lane-cost` measures both boards' lanes.
DIVIDE_FORMS = ("compare", "add")

#: The attribute of a wire whose flip-flops Yosys must not merge with identical ones
#: elsewhere (each lane's copy of a shared setting); ``synth.flow.KEEP_REGISTERS`` reads it.
OWN_REGISTER = "pwconv_own"


def _wrap32(value):
    """The low 32 bits of ``value`` as int32: two's-complement wrap, as compiled C does."""
    return value.as_unsigned()[:32].as_signed()


def _leading_zeros(m, value, width):
    """A signal counting the leading zeros of the unsigned ``value`` (``width``, a power of
    two, for zero), built as a tree: a half's count, or the upper half's width plus the lower
    half's count when the upper half is zero (log2(width) levels of 2:1 muxes, not a chain of
    ``width`` priority muxes)."""
    if width == 1:
        return ~value[0]
    half = width // 2
    upper = _leading_zeros(m, value[half:], half)
    lower = _leading_zeros(m, value[:half], half)
    count = Signal(range(width + 1))
    upper_zero = ~value[half:].any()
    m.d.comb += count.eq(Mux(upper_zero, half + lower, upper))
    return count


def _radix4_row(m, bits, a, a3, neg_a, signed_top, name):
    """One radix-4 row of a shift-and-add multiply: ``a`` times the two-bit digit ``bits``
    (0, a, 2a or 3a with ``3a`` precomputed). When ``signed_top`` (a 1-bit signal or
    constant) is set, the digit's upper bit is the multiplier's sign bit, of weight -2: the
    row is 0, a, -2a or -a (``-a`` precomputed)."""
    row = Signal(signed(len(a3)), name=name)
    with m.Switch(bits):
        with m.Case(0):
            m.d.comb += row.eq(0)
        with m.Case(1):
            m.d.comb += row.eq(a)
        with m.Case(2):
            m.d.comb += row.eq(Mux(signed_top, neg_a << 1, a << 1) if neg_a is not None
                               else a << 1)
        with m.Case(3):
            m.d.comb += row.eq(Mux(signed_top, neg_a, a3) if neg_a is not None else a3)
    return row


def _digit_levels(steps):
    """Adder levels (pipeline stages) of a ``steps``-step lane's digit product: a tree over
    its ``32 / steps / 2`` radix-4 rows."""
    return max(1, (32 // steps // 2 - 1).bit_length())


def _sum_pairs(m, terms, name, limit):
    """One adder level of a multiply's tree: ``terms`` is a list of ``(value, weight)`` with
    ascending weights (powers of two as exponents); neighbours are summed pairwise, each sum
    registered (one carry chain per pipeline stage). Widths are capped at ``limit`` bits
    above the term's weight (the product's width). Returns the next level's terms."""
    level = []
    for index in range(0, len(terms) - 1, 2):
        (low, w_low), (high, w_high) = terms[index], terms[index + 1]
        width = min(max(len(low), len(high) + w_high - w_low) + 1, limit - w_low)
        total = Signal(signed(width), name=f"{name}_{index // 2}", reset_less=True)
        m.d.sync += total.eq(low + (high << (w_high - w_low)))
        level.append((total, w_low))
    if len(terms) % 2:
        last, weight = terms[-1]
        copy = Signal(signed(len(last)), name=f"{name}_{len(terms) // 2}", reset_less=True)
        m.d.sync += copy.eq(last)
        level.append((copy, weight))
    return level


def _shift_masks(m, amount, width, name):
    """``mask = 2^amount - 1`` for a rounding right shift by ``amount``, as a thermometer code
    of ``amount`` (logic only, no carry chain). The caller registers it beside the value to be
    shifted, so that :func:`_round_shift` starts from flip-flops."""
    mask = Signal(unsigned(width), name=f"{name}_mask")
    m.d.comb += mask.eq(~(Const((1 << width) - 1, width) << amount)[:width])
    return mask


def _round_shift(m, form, value, amount, mask, tie, name):
    """``value >> amount`` (arithmetic) rounded to nearest, as ``(quotient, round_up)``: the
    result is ``quotient + round_up``, added by the caller in the next pipeline stage.

    ``mask`` is ``2^amount - 1`` (:func:`_shift_masks`), registered by the caller in the same
    cycle as ``amount``: the masks of the bits shifted out, ``below = 2^(amount - 1) - 1`` and
    ``half = 2^(amount - 1)`` (0 and 0 for amount 0), are then one LUT level from flip-flops
    instead of a decoder of ``amount`` in the path (in the ULX3S build the decoder fanning out
    to the 34-bit reductions was the longest path, 14.2 ns). A tie rounds up when ``tie`` is 1:
    pass 1 for ties toward +infinity, ``value >= 0`` for ties away from zero, the quotient's
    lowest bit (:func:`_quotient_lsb`) for ties to even. The identity for ``amount == 0``.
    ``form`` is one of :data:`DIVIDE_FORMS`: the add form has one carry chain, the compare form
    none.
    """
    width = len(value)
    below = Signal(unsigned(width), name=f"{name}_below")
    m.d.comb += below.eq(mask >> 1)
    half = Signal(unsigned(width), name=f"{name}_half")
    m.d.comb += half.eq(mask ^ below)
    quotient = Signal(signed(width), name=f"{name}_q")
    round_up = Signal(name=f"{name}_up")
    if form == "compare":
        # Round up when the bits shifted out exceed half, or equal it and `tie`. The bits
        # shifted out exceed half exactly when their top bit (the one under `half`) is set and
        # so is one below it (under `below`), and reach half when that top bit is set: two
        # AND-OR reductions beside the shift, no comparator's carry chain, so a tie rule that
        # needs the quotient's lowest bit (ties to even) only picks between them.
        bits = value.as_unsigned()
        round_bit = Signal(name=f"{name}_round")
        sticky = Signal(name=f"{name}_sticky")
        m.d.comb += [round_bit.eq((bits & half).any()), sticky.eq((bits & below).any())]
        m.d.comb += [quotient.eq(value >> amount),
                     round_up.eq(round_bit & (tie | sticky))]
    else:
        # (value + half - 1 + tie) >> amount: one adder, then the shift.
        total = Signal(signed(width + 1), name=f"{name}_sum", attrs={"keep": 1})
        m.d.comb += total.eq(value + Mux(tie, half, below))
        m.d.comb += [quotient.eq(total >> amount), round_up.eq(0)]
    return quotient, round_up


def _quotient_lsb(value, mask):
    """Bit ``amount`` of ``value`` (the lowest bit of ``value >> amount``) for the registered
    ``mask = 2^amount - 1``: an AND-OR with the one-hot ``2^amount = (mask << 1 | 1) ^ mask``
    instead of a ``len(value)``-input multiplexer on ``amount``."""
    width = len(value)
    one_hot = (Cat(Const(1, 1), mask[:width - 1]) ^ mask)[:width]
    return (value.as_unsigned() & one_hot).any()


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
    next ``32 / steps``-bit digit of the multiplier, least significant first, as radix-4
    shift-and-add rows (each row 0, a, 2a or 3a, the sign bit's row 0, a, -2a or -a) summed by a
    pipelined adder tree, then added to the running high part: a small fabric multiplier for
    FPGAs whose DSPs are all in the array, whose longest path is one mux and one carry chain.
    ``steps = 1`` is one product per cycle: four 16 x 16 partial products that synthesis maps
    to DSPs (``multiply="dsp"``), or 16 radix-4 rows and a four-level adder tree in fabric
    (``multiply="fabric"``).

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
    multiply : str
        With ``steps == 1``: ``"dsp"`` or ``"fabric"`` (see above); larger ``steps`` are
        always in fabric.

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
        Some input is inside the pipeline (from its ``valid`` cycle on; it may stay high one
        cycle after the last result).
    """

    def __init__(self, *, sum_shape, steps=1, roundings=("double",), divide="compare",
                 multiply="dsp"):
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
        if multiply not in MULTIPLIES:
            raise rejected(self, ValueError(
                f"Multiply must be one of {', '.join(map(repr, MULTIPLIES))}, not {multiply!r}"))
        self._multiply = multiply if steps == 1 else "fabric"
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

    @property
    def multiply(self):
        return self._multiply

    @staticmethod
    def latency_of(steps, roundings, multiply="dsp"):
        """Cycles from ``valid`` to ``result_valid``: bias add, [|acc| and its float32
        significand: two stages with ``"float"``], the operand shift, the multiply, the high
        part, the rounding shift, zero point, clamp. The multiply is ``steps`` cycles plus its
        digit product's adder levels with ``steps > 1`` (3, 2, 1 for 2, 4, 8 steps); with
        ``steps == 1`` three stages on DSPs, five in
        fabric (3a and -a, then four adder levels)."""
        if steps > 1:
            extra = _digit_levels(steps)
        else:
            extra = 2 if multiply == "dsp" else 4
        return steps + 6 + extra + (2 if "float" in roundings else 0)

    @property
    def latency(self):
        """Cycles from ``valid`` to ``result_valid``."""
        return self.latency_of(self._steps, self._roundings, self._multiply)

    def elaborate(self, platform):
        steps, modes = self._steps, self._roundings
        digit = 32 // steps
        has_float = "float" in modes
        has_single = "single" in modes
        m = Module()

        def reg(shape, name):
            return Signal(shape, name=name, reset_less=True)

        def own(name, shape=1, reset_less=False):
            """A control register of this lane's own. Every lane's copy has the same input
            (the layer's settings, the shared valid), and Yosys merges identical registers
            (opt_merge): one register then fans out to every lane across the die (at 89.8 MHz
            the ULX3S build's longest path ran from lane2's merged ``is_float`` into lane5's
            shift mask, 6.4 ns of it routing). The ``pwconv_own`` attribute keeps the copies
            apart: the board flow gives the flip-flops behind such wires ``keep``
            (``synth.flow.KEEP_REGISTERS``), and opt_merge leaves two kept cells alone;
            ``keep`` on the wire keeps its name in the netlist and timing reports."""
            return Signal(shape, name=name, reset_less=reset_less,
                          attrs={"keep": 1, OWN_REGISTER: 1})

        # The layer's mode, one flag per included mode (constants when the lane has one), and
        # raw: registered, since they fan out to every stage (the settings are stable while
        # busy, so from an input's cycle on; stage 1, in that cycle, reads raw directly).
        is_mode = {}
        for mode in modes:
            others = [ROUNDINGS.index(r) for r in modes if r != mode]
            if not others:
                is_mode[mode] = Const(1)
                continue
            if mode == modes[0]:      # the fallback for indices the lane does not include
                decoded = ~Cat(*(self.rounding == i for i in others)).any()
            else:
                decoded = self.rounding == ROUNDINGS.index(mode)
            is_mode[mode] = own(f"is_{mode}")
            m.d.sync += is_mode[mode].eq(decoded)

        def mode_is(*names):
            flags = [is_mode[n] for n in names if n in is_mode]
            return Cat(*flags).any() if flags else Const(0)

        is_float, is_single = mode_is("float"), mode_is("single")
        raw = own("raw")
        m.d.sync += raw.eq(self.raw)
        # The output settings too: the last two stages read them, so registered copies next to
        # those stages replace routes from the layer's registers (far away, shared by every
        # lane) with local ones.
        zero_point, act_min, act_max = (own(name, signed(8), reset_less=True) for name in
                                        ("zero_point", "act_min", "act_max"))
        m.d.sync += [zero_point.eq(self.output_zero_point), act_min.eq(self.activation_min),
                     act_max.eq(self.activation_max)]

        # Stage 1: add the bias (int32 wrap), split the shift (both zero in raw mode).
        acc1, mult1 = reg(signed(32), "acc1"), reg(signed(32), "mult1")
        left1, right1 = reg(unsigned(5), "left1"), reg(unsigned(5), "right1")
        valid1 = own("valid1")
        m.d.sync += [
            valid1.eq(self.valid),
            acc1.eq(_wrap32(self.sum + self.bias)),
            mult1.eq(self.multiplier),
            left1.eq(Mux(~self.raw & (self.shift > 0), self.shift, 0)),
            right1.eq(Mux(~self.raw & (self.shift < 0), -self.shift, 0)),
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
            # Leading zeros of acc, or of its leading ones less one when negative (shifted
            # up once, a 1 entering below: no subtractor after the count).
            ones_run = Cat(Const(1, 1), (~acc1)[:31])
            lz_source = Mux(acc1[31], ones_run, acc1.as_unsigned())
            valid2 = own("valid2")
            # The operand shift's amount is chosen here too, so the next stage is the shifter
            # alone.
            leading = _leading_zeros(m, lz_source, 32)
            fixed_amount = Mux(is_single, 0, left1) if has_single else left1
            amount2 = reg(unsigned(5), "amount2")
            m.d.sync += [
                valid2.eq(valid1),
                x2.eq(Mux(is_float & ~raw & (acc1 < 0), -acc1, acc1)),
                negative2.eq(acc1 < 0), zero2.eq(acc1 == 0),
                mult2.eq(mult1), left2.eq(left1), right2.eq(right1),
                lz2.eq(leading),
                amount2.eq(Mux(is_float & ~raw, leading[:5], fixed_amount)),
            ]
            mult1, left1, right1 = mult2, left2, right2
            in_flight.append(valid2)

        # Operand shift: acc << left (int32 wrap) for double and ruy, none for single (its
        # left shift comes after the multiply, unwrapped), |acc| << its leading zeros for float
        # (its top bit to bit 31); note the one case SRDHM saturates.
        amount = Signal(unsigned(5))
        if has_float:
            m.d.comb += amount.eq(amount2)
        else:
            m.d.comb += amount.eq(Mux(is_single, 0, left1) if has_single else left1)
        shifted = Signal(signed(32))
        m.d.comb += shifted.eq(_wrap32(x2[:32].as_signed() << amount))

        # The operand registers: they hold for the whole multiply (inputs come at most once per
        # `steps` cycles); the multiplier register shifts its next digit to the bottom. A raw
        # input multiplies by 1, so the accumulator comes out of the product unchanged.
        a_op, b_op = reg(signed(32), "a_op"), reg(signed(32), "b_op")
        right_op, saturate_op = reg(unsigned(5), "right_op"), reg(1, "saturate_op")
        left_op = reg(unsigned(5), "left_op")
        load = Signal()
        if has_float:
            # One more stage: float32(acc)'s significand, rounded to 24 bits, ties to even.
            norm3, valid3 = reg(unsigned(32), "norm3"), own("valid3")
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
            b_next = Mux(raw, 1, Mux(is_float, Cat(mult3[:23], Const(1, 1),
                                                   Const(0, 8)).as_signed(), mult3))
            load_valid, src_mult, src_left, src_right = valid3, mult3, left3, right3
            # float32(|acc|) = significand * 2^ea, ea = 8 - lz (+1 when rounding carried).
            ea_op = reg(signed(7), "ea_op")
            exp_op = reg(unsigned(8), "exp_op")
            neg_op, zero_op = reg(1, "neg_op"), reg(1, "zero_op")
            # The rounding's carry (mantissa[24]) is kept apart, added in a later stage, so
            # this stage has one carry chain (the mantissa's) before each register.
            carry_op = reg(1, "carry_op")
            with m.If(load_valid):
                m.d.sync += [ea_op.eq(8 - lz3 - short), carry_op.eq(mantissa[24]),
                             exp_op.eq(mult3[23:31]), neg_op.eq(neg3), zero_op.eq(zero3)]
        else:
            a_next, b_next = shifted, Mux(raw, 1, mult1)
            load_valid, src_mult, src_left, src_right = valid2, mult1, left1, right1
        m.d.comb += load.eq(load_valid)
        valid_op = own("valid_op")
        m.d.sync += valid_op.eq(load_valid)
        # SRDHM's one saturating case, INT32_MIN * INT32_MIN. Only the fixed-point operands
        # can be it (a raw input multiplies by 1; float's are below 2^25), so it is compared
        # on them: not after float's significand rounding and the operand muxes (that chain
        # was the lane's longest path).
        fixed_a = fixed_operand if has_float else a_next
        saturate_next = (fixed_a == INT32_MIN) & (src_mult == INT32_MIN) & ~raw
        if has_float:
            saturate_next &= ~is_float
        with m.If(load):
            m.d.sync += [
                a_op.eq(a_next), b_op.eq(b_next), right_op.eq(src_right), left_op.eq(src_left),
                saturate_op.eq(saturate_next),
            ]
        if steps > 1:
            with m.Else():
                m.d.sync += b_op.eq(b_op >> digit)
            # 3a and -a for the multiply's radix-4 rows, one adder each for the whole multiply.
            a_x3, a_neg = reg(signed(34), "a_x3"), reg(signed(34), "a_neg")
            with m.If(load):
                m.d.sync += [a_x3.eq(a_next + (a_next << 1)), a_neg.eq(-a_next)]
        in_flight.append(valid_op)

        # The sideband of the operands, as it must be beside the finished product.
        sideband = {"right": (right_op, unsigned(5)), "left": (left_op, unsigned(5)),
                    "saturate": (saturate_op, 1)}
        if has_float:
            sideband.update({"ea": (ea_op, signed(7)), "carry": (carry_op, 1),
                             "exp": (exp_op, unsigned(8)), "neg": (neg_op, 1),
                             "zero": (zero_op, 1)})

        def float_shift(exponent):
            """float's final shift and saturation for the product exponent ``exponent``."""
            return (Mux(exponent >= 0, 0, Mux(exponent < -31, 31, -exponent)), exponent >= 0)

        def delay_sideband(stage):
            """The sideband one cycle later. float's exponent arithmetic is done on the way,
            one step per stage, so that the "high" stage only picks between two candidates
            (the product's top bit says which): first the exponent sums e0 and e0 + 1, then
            the shift and saturation of each."""
            delayed = {}
            for key, (value, shape) in sideband.items():
                if key in ("ea", "carry", "exp", "e0", "e1"):
                    continue
                copy = reg(shape, f"{key}_{stage}")
                m.d.sync += copy.eq(value)
                delayed[key] = (copy, shape)
            if "ea" in sideband:
                ea, exp = sideband["ea"][0], sideband["exp"][0]
                carry = sideband["carry"][0]
                for name, offset in (("e0", 127), ("e1", 126)):
                    value = reg(signed(10), f"{name}_{stage}")
                    m.d.sync += value.eq(ea + exp - offset + carry)
                    delayed[name] = (value, signed(10))
            elif "e0" in sideband:
                for index in (0, 1):
                    amount, saturate = float_shift(sideband[f"e{index}"][0])
                    amount_reg = reg(unsigned(6), f"amt{index}_{stage}")
                    saturate_reg = reg(1, f"sat{index}_{stage}")
                    m.d.sync += [amount_reg.eq(amount), saturate_reg.eq(saturate)]
                    delayed[f"amt{index}"] = (amount_reg, unsigned(6))
                    delayed[f"sat{index}"] = (saturate_reg, 1)
            return delayed

        # The product P = a_op * b_op. Inputs may come every cycle with steps = 1, so the
        # sideband travels along each multiply stage; with more steps it is captured once.
        if steps == 1 and self._multiply == "dsp":
            # Four 16 x 16 partial products, registered (each one MULT18X18D or SB_MAC16 with
            # its output register), then their middle pair summed and the halves kept, then the
            # 64-bit sum: every stage one DSP or one carry chain.
            a_lo, a_hi = a_op[:16], a_op[16:].as_signed()
            b_lo, b_hi = b_op[:16], b_op[16:].as_signed()
            p_ll, p_lh = reg(unsigned(32), "p_ll"), reg(signed(33), "p_lh")
            p_hl, p_hh = reg(signed(33), "p_hl"), reg(signed(32), "p_hh")
            valid_m1, valid_m2 = own("valid_m1"), own("valid_m2")
            m.d.sync += [
                valid_m1.eq(valid_op),
                p_ll.eq(a_lo * b_lo), p_lh.eq(a_lo * b_hi), p_hl.eq(a_hi * b_lo),
                p_hh.eq(a_hi * b_hi),
            ]
            middle, halves = reg(signed(34), "p_middle"), reg(signed(64), "p_halves")
            m.d.sync += [valid_m2.eq(valid_m1), middle.eq(p_lh + p_hl),
                         halves.eq(Cat(p_ll, p_hh).as_signed())]
            for stage in ("m1", "m2"):
                sideband = delay_sideband(stage)
            product = reg(signed(64), "product")
            last_step = valid_m2
            m.d.sync += product.eq(halves + (middle << 16))
            in_flight += [valid_m1, valid_m2]
        elif steps == 1:
            # In fabric, for FPGAs whose DSPs are all array MACs: 3a and -a (one adder each),
            # then 16 radix-4 rows (0, a, 2a or 3a; the top row, holding b's sign bit, 0, a,
            # -2a or -a) summed by a binary tree of adders, one level per pipeline stage.
            a_f, b_f = reg(signed(32), "a_f"), reg(signed(32), "b_f")
            a_x3, a_neg = reg(signed(34), "a_x3"), reg(signed(34), "a_neg")
            valid_f = own("valid_f")
            m.d.sync += [valid_f.eq(valid_op), a_f.eq(a_op), b_f.eq(b_op),
                         a_x3.eq(a_op + (a_op << 1)), a_neg.eq(-a_op)]
            sideband = delay_sideband("f")
            rows = [(_radix4_row(m, b_f[2 * i:2 * i + 2], a_f, a_x3, a_neg, Const(i == 15),
                                 f"mul_row{i}"), 2 * i) for i in range(16)]
            terms, valids = rows, [valid_f]
            while len(terms) > 1:
                terms = _sum_pairs(m, terms, f"mul_l{len(valids)}", 64)
                if len(terms) > 1:      # a level before the product: the sideband moves on
                    sideband = delay_sideband(f"l{len(valids)}")
                    stage_valid = own(f"valid_l{len(valids)}")
                    m.d.sync += stage_valid.eq(valids[-1])
                    valids.append(stage_valid)
            last_step = valids[-1]      # the product's inputs: it is registered next
            product = terms[0][0][:64].as_signed()
            in_flight += valids
        else:
            # Digit-serial, least significant digit first, pipelined: in each step's cycle the
            # radix-4 rows of a times the `digit`-bit digit of b at the bottom of b_op (taken
            # as unsigned, except the top digit's top bit, b's sign, of weight -2 in its row)
            # are summed in pairs, registered; a tree level per cycle makes the digit's product
            # a * d; then T = (T >> digit) + a * d, whose low `digit` bits are finished product
            # bits. The recurrence is one adder; the rows do not wait for it.
            # The steps are a delay line of first_step rather than a counter: a counter reading
            # itself would keep an X of a 4-state simulator's start-up forever (Icarus).
            levels = _digit_levels(steps)
            first_step = valid_op
            step_line = [first_step]
            for index in range(1, steps + levels):
                stage = own(f"step{index}")
                m.d.sync += stage.eq(step_line[-1])
                step_line.append(stage)
            last_step = step_line[steps - 1]     # b_op holds the top digit
            rows = [(_radix4_row(m, b_op[2 * i:2 * i + 2], a_op, a_x3, a_neg,
                                 last_step if 2 * i + 2 == digit else Const(0),
                                 f"mul_row{i}"), 2 * i)
                    for i in range(digit // 2)]
            terms = rows
            for level in range(levels):
                terms = _sum_pairs(m, terms, f"mul_l{level + 1}", 34 + digit)
            digit_product = terms[0][0]
            first_sum = step_line[levels]       # digit 0's product, `levels` cycles later
            upper = reg(signed(35), "product_upper")
            lower = reg(unsigned(32), "product_lower")
            total = Signal(signed(35 + digit), name="product_step")
            m.d.comb += total.eq(Mux(first_sum, 0, upper) + digit_product)
            m.d.sync += [upper.eq(total >> digit),
                         lower.eq(Cat(lower[digit:], total[:digit]))]
            product = Cat(lower, upper[:32]).as_signed()
            # Captured at the last step, read `levels + 1` cycles later; the next multiply's
            # last step (`steps` cycles later) overwrites it, so short multiplies add delays.
            captured = {}
            for key, (value, shape) in sideband.items():
                captured[key] = (reg(shape, f"{key}_x"), shape)
                with m.If(last_step):
                    m.d.sync += captured[key][0].eq(value)
            sideband = captured
            for extra in range(max(0, levels + 1 - steps)):
                sideband = delay_sideband(f"y{extra}")
            in_flight += step_line[1:]
            last_step = step_line[-1]

        # The product is complete the cycle after last_step; its operands' sideband beside it.
        valid_p = own("valid_p")
        m.d.sync += valid_p.eq(last_step)
        side_p = {}
        # The second rounding's amount in the fixed-point modes (0 in raw mode), resolved as
        # the sideband is registered, and whether float's amount replaces it, a register of
        # this lane's own: the "high" stage then only picks float's candidate by the product's
        # top bit and decodes the mask. (raw, fanning out across the lane, ran through the
        # mode muxes into the mask: the longest path of a full ULX3S build, 96.8 MHz, 8.1 of
        # its 10.3 ns routing.)
        def fixed_amount_of(right, left):
            amount = right
            if has_single:
                amount = Mux(is_single, Mux(left == 0, right + 1, 1), right)
            return Mux(raw, 0, amount)

        if steps == 1:
            for key, (value, shape) in sideband.items():
                side_p[key] = reg(shape, f"{key}_p")
                with m.If(last_step):
                    m.d.sync += side_p[key].eq(value)
            fixed_amount_p = reg(unsigned(6), "fixed_amount_p")
            with m.If(last_step):
                m.d.sync += fixed_amount_p.eq(fixed_amount_of(sideband["right"][0],
                                                              sideband["left"][0]))
        else:
            side_p = {key: value for key, (value, shape) in sideband.items()}
            fixed_amount_p = Signal(unsigned(6))
            m.d.comb += fixed_amount_p.eq(fixed_amount_of(side_p["right"], side_p["left"]))
        left_p = side_p["left"]
        saturate_p = side_p["saturate"]
        if has_float:
            neg_p, zero_p = side_p["neg"], side_p["zero"]
        in_flight.append(valid_p)

        # Stage "high": the first rounding, per mode, and the amount of the second one.
        h_width = 34 if has_single else 33
        high = reg(signed(h_width), "high")
        amount_h = reg(unsigned(6), "amount_h")
        mask_h = reg(unsigned(h_width), "mask_h")  # 2^amount_h - 1, registered with it
        # The amount_h the input at this stage gets, and its mask: both registers load only
        # with valid_p, so the decode does not wait for it (valid_p through a hold mux into
        # the mask's decode was the longest path of a full ULX3S build, 97.2 MHz).
        amount_next = Signal(unsigned(6))
        m.d.comb += amount_next.eq(fixed_amount_p)
        valid_h = own("valid_h")
        m.d.sync += valid_h.eq(valid_p)
        # double and ruy: floor((P + 2^30) / 2^31) = (P >> 31) + P[30], 33 bits.
        srdhm = Signal(signed(33))
        m.d.comb += srdhm.eq(product[31:].as_signed() + product[30])
        fixed_high = Mux(mode_is("double") & saturate_p, INT32_MAX,
                         Mux(mode_is("double"), srdhm, _wrap32(srdhm)))
        neg_h, sat_h, zero_h = reg(1, "neg_h"), reg(1, "sat_h"), reg(1, "zero_h")
        if has_float:
            takes_float = own("takes_float")    # is_float & ~raw, settled from stage 2 on
            m.d.sync += takes_float.eq(is_float & ~raw)
        with m.If(valid_p):
            with m.If(raw):
                m.d.sync += high.eq(product[:h_width])
            with m.Elif(is_single):
                # floor(P / 2^(30 - left)), of which the low 34 bits are all that matter.
                m.d.sync += high.eq((product >> (30 - left_p)[:5])[:h_width])
            with m.Else():
                m.d.sync += high.eq(fixed_high)
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
                if "amt0" in side_p:
                    float_amount = Mux(top, side_p["amt1"], side_p["amt0"])
                    float_saturate = Mux(top, side_p["sat1"], side_p["sat0"])
                else:
                    exponent = Signal(signed(10))
                    if "e0" in side_p:
                        m.d.comb += exponent.eq(Mux(top, side_p["e1"], side_p["e0"]))
                    else:
                        m.d.comb += exponent.eq(side_p["ea"] + side_p["exp"] - 127
                                                + side_p["carry"] + top)
                    float_amount, float_saturate = float_shift(exponent)
                with m.If(takes_float):
                    m.d.sync += [
                        high.eq(significand),
                        sat_h.eq(float_saturate), neg_h.eq(neg_p), zero_h.eq(zero_p),
                    ]
                with m.Else():
                    m.d.sync += [sat_h.eq(0), neg_h.eq(0), zero_h.eq(0)]
        if has_float:
            with m.If(takes_float):
                m.d.comb += amount_next.eq(float_amount)
        mask_next = _shift_masks(m, amount_next, h_width, "rdbpot")
        with m.If(valid_p):
            m.d.sync += [amount_h.eq(amount_next), mask_h.eq(mask_next)]
        in_flight.append(valid_h)

        # Stage "scaled": the second rounding, a right shift rounded with the mode's tie rule
        # (identity for amount 0, so raw values pass unchanged), kept as quotient and round-up
        # bit; float's special cases are forced here.
        # The tie rule is the layer's (its mode is held stable while busy): up for ruy and
        # single, away from zero for double, to even for float.
        tie = Signal()
        tie_rules = [mode_is("ruy", "single"), mode_is("double") & (high >= 0)]
        if has_float:
            tie_rules.append(is_float & _quotient_lsb(high, mask_h))
        m.d.comb += tie.eq(Cat(*tie_rules).any())
        quotient, round_up = _round_shift(m, self._divide, high, amount_h, mask_h, tie, "rdbpot")
        scaled, up_s = reg(signed(32), "scaled"), reg(1, "up_s")
        valid_s = own("valid_s")
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
        valid_b = own("valid_b")
        m.d.sync += valid_b.eq(valid_s)
        # One adder: (q or ~q) + (zp, or 0 when raw) + carry (raw makes neg_s 0).
        zp = Mux(raw, 0, zero_point)
        if has_float:
            sum_b = Mux(neg_s, ~scaled, scaled) + zp + (up_s ^ neg_s)
        else:
            sum_b = scaled + zp + up_s
        m.d.sync += biased.eq(_wrap32(sum_b))
        in_flight.append(valid_b)

        # Activation clamp (raw values pass).
        out = reg(signed(32), "out")
        valid_o = own("valid_o")
        m.d.sync += valid_o.eq(valid_b)
        with m.If(raw):
            m.d.sync += out.eq(biased)
        with m.Elif(biased < act_min):
            m.d.sync += out.eq(act_min)
        with m.Elif(biased > act_max):
            m.d.sync += out.eq(act_max)
        with m.Else():
            m.d.sync += out.eq(biased)
        in_flight.append(valid_o)

        m.d.comb += [
            self.result.eq(out),
            self.result_valid.eq(valid_o),
        ]
        # busy: the input, or anything in flight last cycle (every pipeline valid is a delayed
        # copy of one in in_flight, so this covers them all, one cycle longer at the end): a
        # register after the OR tree instead of the whole tree in the caller's idle logic.
        in_flight_before = own("in_flight_before")
        m.d.sync += in_flight_before.eq(Cat(*in_flight).any())
        m.d.comb += self.busy.eq(self.valid | in_flight_before)
        return m

"""Two signed int8 x int8 products on one iCE40 SB_MAC16, in its 2 x 8x8 mode."""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.vendor import SiliconBluePlatform

from .params import check_primitive

__all__ = ["DualMul8x8", "SB_MAC16_DUAL8X8_PARAMS", "SB_MAC16_REGISTERED"]

#: SB_MAC16 parameters of two independent, unregistered, signed 8x8 multipliers.
#:
#: Semantics (Yosys ``techlibs/ice40/cells_sim.v``, checked against the vendor model since Yosys
#: PR #1212, and Lattice TN1295): with ``MODE_8x8`` the multiplier array splits in two;
#: ``A_SIGNED``/``B_SIGNED`` then sign-extend *both* byte halves of A and B
#: (``Al = {A_SIGNED && MODE_8x8 ? {8{A[7]}} : 0, A[7:0]}``), so the top product
#: ``F = A[15:8] * B[15:8]`` and the bottom product ``G = A[7:0] * B[7:0]`` are each a full,
#: exact signed 16-bit product (``-128 * -128 = 0x4000`` still fits). ``TOPOUTPUT_SELECT = 2``
#: and ``BOTOUTPUT_SELECT = 2`` route F and G straight to ``O[31:16]`` and ``O[15:0]``; with the
#: ``*_8x8_MULT_REG`` and input registers off, the cell is purely combinational.
SB_MAC16_DUAL8X8_PARAMS = {
    "NEG_TRIGGER":              Const(0, 1),
    "C_REG":                    Const(0, 1),
    "A_REG":                    Const(0, 1),
    "B_REG":                    Const(0, 1),
    "D_REG":                    Const(0, 1),
    "TOP_8x8_MULT_REG":         Const(0, 1),
    "BOT_8x8_MULT_REG":         Const(0, 1),
    "PIPELINE_16x16_MULT_REG1": Const(0, 1),
    "PIPELINE_16x16_MULT_REG2": Const(0, 1),
    "TOPOUTPUT_SELECT":         Const(2, 2),    # 8x8 multiplier output F, unregistered
    "TOPADDSUB_LOWERINPUT":     Const(0, 2),
    "TOPADDSUB_UPPERINPUT":     Const(0, 1),
    "TOPADDSUB_CARRYSELECT":    Const(0, 2),
    "BOTOUTPUT_SELECT":         Const(2, 2),    # 8x8 multiplier output G, unregistered
    "BOTADDSUB_LOWERINPUT":     Const(0, 2),
    "BOTADDSUB_UPPERINPUT":     Const(0, 1),
    "BOTADDSUB_CARRYSELECT":    Const(0, 2),
    "MODE_8x8":                 Const(1, 1),
    "A_SIGNED":                 Const(1, 1),
    "B_SIGNED":                 Const(1, 1),
}


#: The parameters that register the cell's inputs (A, B) and its two 8x8 products (``rF``,
#: ``rG`` in Yosys's model): latency 2, and every path into and out of the cell starts or ends
#: at a register inside it (nextpnr-ice40 has no delay model through SB_MAC16, so only then is
#: its timing report complete).
SB_MAC16_REGISTERED = {"A_REG": Const(1, 1), "B_REG": Const(1, 1),
                       "TOP_8x8_MULT_REG": Const(1, 1), "BOT_8x8_MULT_REG": Const(1, 1)}


class DualMul8x8(wiring.Component):
    """Two independent signed int8 x int8 multipliers sharing one iCE40 SB_MAC16.

    Yosys infers SB_MAC16 only in its 16x16 mode, one product per cell; this block instantiates
    the cell in its 2 x 8x8 mode (:data:`SB_MAC16_DUAL8X8_PARAMS`) and so doubles the products
    an iCE40UP5K's eight DSPs can deliver. Half 0 uses the cell's bottom multiplier
    (``A[7:0]``, ``B[7:0]`` -> ``O[15:0]``), half 1 its top one (``A[15:8]``, ``B[15:8]`` ->
    ``O[31:16]``). Elsewhere (simulation, Verilog export, other FPGAs) an equivalent
    pure-Amaranth model is elaborated instead.

    Parameters
    ----------
    primitive : bool or None
        ``True``: always instantiate SB_MAC16; ``False``: always the Amaranth model; ``None``
        (default): SB_MAC16 exactly when elaborated for an iCE40 (``SiliconBluePlatform``).
    latency : int
        0: combinational; 2: the operands and the products registered inside the cell
        (:data:`SB_MAC16_REGISTERED`; the model has the same two registers).

    Members
    -------
    a0, b0, a1, b1 : In(signed(8))
        The operands of product 0 and product 1.
    p0, p1 : Out(signed(16))
        ``a0 * b0`` and ``a1 * b1``, exact.

    Timing: ``p0``, ``p1`` are the products of the operands of ``latency`` cycles before (0:
    combinational, the user registers the products or a sum of them).
    """

    a0: In(signed(8))
    b0: In(signed(8))
    a1: In(signed(8))
    b1: In(signed(8))
    p0: Out(signed(16))
    p1: Out(signed(16))

    def __init__(self, *, primitive=None, latency=0):
        check_primitive(self, primitive)
        if latency not in (0, 2):
            self._MustUse__silence = True
            raise ValueError(f"Latency must be 0 or 2, not {latency!r}")
        self._primitive = primitive
        self._latency = latency
        super().__init__()

    @property
    def primitive(self):
        return self._primitive

    @property
    def latency(self):
        return self._latency

    @staticmethod
    def uses_primitive(platform, primitive=None):
        """Whether an instance built with ``primitive`` uses SB_MAC16 on ``platform``."""
        if primitive is not None:
            return primitive
        return isinstance(platform, SiliconBluePlatform)

    def elaborate(self, platform):
        m = Module()
        if not self.uses_primitive(platform, self._primitive):
            if self._latency == 0:
                m.d.comb += [self.p0.eq(self.a0 * self.b0), self.p1.eq(self.a1 * self.b1)]
                return m
            operands = [Signal(signed(8), name=n, reset_less=True)
                        for n in ("a0_reg", "b0_reg", "a1_reg", "b1_reg")]
            products = [Signal(signed(16), name=n, reset_less=True) for n in ("p0_reg", "p1_reg")]
            a0, b0, a1, b1 = operands
            m.d.sync += [a0.eq(self.a0), b0.eq(self.b0), a1.eq(self.a1), b1.eq(self.b1),
                         products[0].eq(a0 * b0), products[1].eq(a1 * b1)]
            m.d.comb += [self.p0.eq(products[0]), self.p1.eq(products[1])]
            return m

        zero16 = Const(0, 16)
        out = Cat(self.p0, self.p1)
        params = dict(SB_MAC16_DUAL8X8_PARAMS)
        if self._latency:
            params.update(SB_MAC16_REGISTERED)
        m.submodules.mac = Instance(
            "SB_MAC16",
            **{f"p_{name}": value for name, value in params.items()},
            i_CLK=ClockSignal("sync") if self._latency else Const(0, 1), i_CE=Const(1, 1),
            i_A=Cat(self.a0, self.a1), i_B=Cat(self.b0, self.b1), i_C=zero16, i_D=zero16,
            i_AHOLD=0, i_BHOLD=0, i_CHOLD=0, i_DHOLD=0,
            i_IRSTTOP=0, i_IRSTBOT=0, i_ORSTTOP=0, i_ORSTBOT=0,
            i_OLOADTOP=0, i_OLOADBOT=0, i_ADDSUBTOP=0, i_ADDSUBBOT=0,
            i_OHOLDTOP=0, i_OHOLDBOT=0, i_CI=0, i_ACCUMCI=0, i_SIGNEXTIN=0,
            o_O=out,
        )
        return m

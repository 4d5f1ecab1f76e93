"""One signed int8 x int8 product on an ECP5 MULT18X18D, its operands and product registered
inside the cell."""

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.vendor import LatticePlatform

from .params import check_primitive

__all__ = ["RegisteredMul8x8", "MULT18X18D_REGISTERED_PARAMS"]

#: MULT18X18D parameters of a signed multiplier whose A and B operands and whose product are
#: registered inside the cell (on CLK0 with CE0, reset by RST0: CE0 is tied high and RST0 low),
#: the pipeline register bypassed: latency 2 from A, B to P.
#:
#: Why instantiated and not inferred: Yosys's ``synth_ecp5`` maps a ``*`` to MULT18X18D
#: (``techlibs/lattice/dsp_map_18x18.v``) with every register of the cell set to ``"NONE"``,
#: and has no pass that absorbs the surrounding flip-flops into it (as ``ice40_dsp`` does for
#: SB_MAC16; the same gap is Yosys issue #5917 for Nexus). The operand and product registers
#: then sit in fabric, and in the ULX3S build the route from a fabric register into the
#: multiplier plus its 3.9 ns of combinational delay was the longest path (87.0 MHz). With
#: the cell's own registers every path into and out of the multiplier starts or ends at a
#: register inside it, which nextpnr-ecp5 times with the registered cell's setup and
#: clock-to-out (nextpnr PR #435, "Alter MULT18X18D timing db based on register config").
#: Parameter and port names are those of Yosys's ``techlibs/lattice/cells_bb_ecp5.v``.
MULT18X18D_REGISTERED_PARAMS = {
    "REG_INPUTA_CLK":   "CLK0",
    "REG_INPUTA_CE":    "CE0",
    "REG_INPUTA_RST":   "RST0",
    "REG_INPUTB_CLK":   "CLK0",
    "REG_INPUTB_CE":    "CE0",
    "REG_INPUTB_RST":   "RST0",
    "REG_INPUTC_CLK":   "NONE",
    "REG_PIPELINE_CLK": "NONE",
    "REG_OUTPUT_CLK":   "CLK0",
    "REG_OUTPUT_CE":    "CE0",
    "REG_OUTPUT_RST":   "RST0",
    "CLK0_DIV":         "ENABLED",
    "GSR":              "DISABLED",
    "SOURCEB_MODE":     "B_SHIFT",
    "RESETMODE":        "SYNC",
}


class RegisteredMul8x8(wiring.Component):
    """``a * b`` for signed int8 ``a`` and ``b``, two cycles late: the operands and the product
    each registered once.

    On an ECP5 (``LatticePlatform`` with ``family == "ecp5"``) this is one MULT18X18D with its
    A, B and output registers (:data:`MULT18X18D_REGISTERED_PARAMS`; the operands
    sign-extended to the cell's 18 bits, ``SIGNEDA``/``SIGNEDB`` high, the low 16 bits of its
    36-bit product taken). Elsewhere (simulation, Verilog export, other FPGAs) the same two
    registers and a ``*`` in Amaranth.

    Parameters
    ----------
    primitive : bool or None
        ``True``: always instantiate MULT18X18D; ``False``: always the Amaranth model; ``None``
        (default): MULT18X18D exactly when elaborated for an ECP5.

    Members
    -------
    a, b : In(signed(8))
        The operands, taken every cycle.
    p : Out(signed(16))
        ``a * b`` of two cycles before, exact (``-128 * -128 = 16384`` fits).

    Timing: latency 2, throughput one product per cycle; no handshake, no reset (the registers
    hold whatever they were last given).
    """

    a: In(signed(8))
    b: In(signed(8))
    p: Out(signed(16))

    def __init__(self, *, primitive=None):
        check_primitive(self, primitive)
        self._primitive = primitive
        super().__init__()

    @property
    def primitive(self):
        return self._primitive

    @staticmethod
    def uses_primitive(platform, primitive=None):
        """Whether an instance built with ``primitive`` uses MULT18X18D on ``platform``."""
        if primitive is not None:
            return primitive
        return isinstance(platform, LatticePlatform) and platform.family == "ecp5"

    def elaborate(self, platform):
        m = Module()
        if not self.uses_primitive(platform, self._primitive):
            a_reg = Signal(signed(8), reset_less=True)
            b_reg = Signal(signed(8), reset_less=True)
            p_reg = Signal(signed(16), reset_less=True)
            m.d.sync += [a_reg.eq(self.a), b_reg.eq(self.b), p_reg.eq(a_reg * b_reg)]
            m.d.comb += self.p.eq(p_reg)
            return m

        a18 = Signal(signed(18))
        b18 = Signal(signed(18))
        product = Signal(signed(36))
        m.d.comb += [a18.eq(self.a), b18.eq(self.b), self.p.eq(product[:16])]
        # The ports Yosys's own mapping connects (dsp_map_18x18.v), and CLK0/CE0/RST0 for the
        # registers; the cascade inputs (SRIA, SRIB) and the other clock, enable and reset
        # pins are left open, as nextpnr cannot route a constant to them.
        ports = {}
        for bit in range(18):
            ports[f"i_A{bit}"] = a18[bit]
            ports[f"i_B{bit}"] = b18[bit]
            ports[f"i_C{bit}"] = Const(0, 1)
        for bit in range(36):
            ports[f"o_P{bit}"] = product[bit]
        m.submodules.mult = Instance(
            "MULT18X18D",
            **{f"p_{name}": value for name, value in MULT18X18D_REGISTERED_PARAMS.items()},
            i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1),
            i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=ClockSignal("sync"), i_CE0=Const(1, 1), i_RST0=Const(0, 1),
            **ports,
        )
        return m

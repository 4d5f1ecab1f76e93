"""SDRAM bring-up without a CPU: LiteDRAM's init sequence, replayed over its Wishbone CSR port.

LiteDRAM leaves initialization to software: with ``cpu: None`` nothing runs the sequence of
the generated ``sdram_phy.h`` (``init_sequence()``; LiteX ``liblitedram/sdram.c`` then calls
``sdram_software_control_off()`` and the BIOS sets ``ddrctrl_init_done``). :func:`init_program`
turns that sequence, read from the generated header by :mod:`.litedram_core`, into a list of
Wishbone writes and waits, and :class:`SDRAMInitSequencer` plays it back in gateware.
"""

import dataclasses

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .litedram_core import cycles

__all__ = ["WishboneSignature", "InitOp", "init_program", "SDRAMInitSequencer",
           "POWERUP_US", "MIN_POWERUP_US"]

#: Power-up wait before the first command (MT48LC16M16A2 and IS42S16160G: 100 us of stable
#: clock, with NOPs; LiteX waits cdelay(20000)). 200 us gives margin.
POWERUP_US = 200.0
#: The data sheets' minimum; a simulation may shorten the wait to this, not below.
MIN_POWERUP_US = 100.0


class WishboneSignature(wiring.Signature):
    """A classic Wishbone B4 bus, as seen by its master (word addresses, 32-bit data).

    Members
    -------
    adr : Out(addr_width)
    dat_w : Out(32)
    dat_r : In(32)
    sel : Out(4)
    cyc, stb, we : Out(1)
    ack, err : In(1)
    """

    def __init__(self, addr_width=30):
        if not isinstance(addr_width, int) or not 1 <= addr_width <= 30:
            raise TypeError(f"Wishbone address width must be an integer 1-30, "
                            f"not {addr_width!r}")
        super().__init__({
            "adr": Out(addr_width), "dat_w": Out(32), "dat_r": In(32), "sel": Out(4),
            "cyc": Out(1), "stb": Out(1), "we": Out(1), "ack": In(1), "err": In(1),
        })


@dataclasses.dataclass(frozen=True)
class InitOp:
    """A Wishbone write of ``value`` to word address ``adr``, or (``adr`` None) a wait of
    ``cycles`` clock cycles."""

    adr: int = None
    value: int = 0
    cycles: int = 0
    comment: str = ""


def init_program(core, *, powerup_cycles=None):
    """The bring-up of ``core`` (a :class:`.litedram_core.LiteDRAMCore`) as :class:`InitOp` s.

    ``sdram_phy.h``'s ``cdelay(n)`` waits become ``n`` cycles, but at least the longest of the
    module's tRP, tRFC and tMRD (2 cycles) after every DFII command, so the spacing does not
    depend on how fast the Wishbone port answers; mode register writes get A[8:7] = 00 (see
    below); its longest wait (the power-up wait after
    CKE goes high) becomes ``powerup_cycles`` (default :data:`POWERUP_US`). Then control goes
    to the controller (``sdram_dfii_control`` = SEL) and ``ddrctrl_init_done`` is set, which
    also opens the core's user ports.

    Raises
    ------
    ValueError
        If ``powerup_cycles`` is shorter than :data:`MIN_POWERUP_US` at the core's clock.
    """
    freq = core.config.sys_clk_freq
    minimum = cycles(MIN_POWERUP_US * 1e3, freq)
    if powerup_cycles is None:
        powerup_cycles = cycles(POWERUP_US * 1e3, freq)
    if not isinstance(powerup_cycles, int) or powerup_cycles < minimum:
        raise ValueError(f"Power-up wait must be an integer of at least {minimum} cycles "
                         f"({MIN_POWERUP_US:g} us at {freq / 1e6:g} MHz), not {powerup_cycles!r}")
    timings = core.config.timings_ns()
    gap = max(cycles(timings["tRP"], freq), cycles(timings["tRFC"], freq), 2)
    issue = core.csr_word("sdram_dfii_pi0_command_issue")
    address = core.csr_word("sdram_dfii_pi0_address")
    command = core.csr_word("sdram_dfii_pi0_command")
    flags = core.dfii_command
    lmr = flags["ras"] | flags["cas"] | flags["we"] | flags["cs"]
    program, last_address = [], None
    for index, step in enumerate(core.init_sequence):
        if step.csr is not None and core.csr_word(step.csr) == command and step.value == lmr \
                and last_address is not None:
            # LiteDRAM's first LOAD MODE REGISTER sets A8 ("Reset DLL", a DDR bit). In an SDR
            # SDRAM A[8:7] is the operating mode, 00 its only defined value (MT48LC16M16A2,
            # IS42S16160G, AS4C32M16SB data sheets: mode register definition): clear them.
            op = program[last_address]
            program[last_address] = dataclasses.replace(op, value=op.value & ~0x180)
        if step.csr is None:
            wait = powerup_cycles if index == core.powerup_step else max(step.cycles, gap)
            if program and program[-1].adr is None:     # merge with the gap already there
                wait = max(wait, program.pop().cycles)
            program.append(InitOp(cycles=wait, comment=step.comment))
        else:
            program.append(InitOp(adr=core.csr_word(step.csr), value=step.value,
                                  comment=step.comment))
            if program[-1].adr == address:
                last_address = len(program) - 1
            if program[-1].adr == issue:
                program.append(InitOp(cycles=gap, comment=f"{step.comment}: command spacing"))
    program.append(InitOp(adr=core.csr_word("sdram_dfii_control"),
                          value=core.dfii_control["sel"], comment="Hand over to the controller"))
    program.append(InitOp(adr=core.csr_word("ddrctrl_init_done"), value=1,
                          comment="Init done (opens the user ports)"))
    return tuple(program)


class SDRAMInitSequencer(wiring.Component):
    """Plays an init program (:func:`init_program`) over a Wishbone master port, once after reset.

    Each write is a classic Wishbone cycle (``cyc``, ``stb``, ``we``, all byte lanes) held until
    ``ack`` or ``err``; a wait counts clock cycles. One operation at a time: a write takes as
    long as the slave's ``ack`` (3 cycles on LiteDRAM's Wishbone2CSR bridge), then the next
    operation starts on the following cycle. The whole program of the ULX3S core takes the
    power-up wait plus about 300 cycles.

    Parameters
    ----------
    program : sequence of InitOp
        The writes and waits, in order.
    addr_width : int
        Width of the Wishbone word address.
    timeout : int
        Cycles a write may wait for ``ack`` before the sequence fails.

    Members
    -------
    bus : Out(WishboneSignature(addr_width))
        The master port (to the core's ``wb_ctrl``).
    done : Out(1)
        High from the cycle after the last write was acknowledged, until reset.
    error : Out(1)
        High (and the sequence stopped) after a write ended in ``err`` or timed out.
    busy : Out(1)
        High while the program runs.

    Raises
    ------
    TypeError, ValueError
        For an empty program, an operation that is not an :class:`InitOp`, an address or value
        that does not fit, or a bad ``timeout``.
    """

    def __init__(self, program, *, addr_width=30, timeout=64):
        self._MustUse__silence = True       # not an error if a parameter check fails below
        program = tuple(program)
        if not program:
            raise ValueError("Init program must not be empty")
        if not isinstance(timeout, int) or timeout < 1:
            raise TypeError(f"Timeout must be a positive integer, not {timeout!r}")
        for op in program:
            if not isinstance(op, InitOp):
                raise TypeError(f"Init program steps must be InitOp, not {op!r}")
            if op.adr is not None and not (0 <= op.adr < 2 ** addr_width
                                           and 0 <= op.value < 2 ** 32):
                raise ValueError(f"Init write {op!r} does not fit a {addr_width}-bit address "
                                 "and 32-bit data")
            if op.adr is None and (not isinstance(op.cycles, int) or op.cycles < 1):
                raise ValueError(f"Init wait must be a positive number of cycles, not {op!r}")
        self._program = program
        self._timeout = timeout
        super().__init__({
            "bus": Out(WishboneSignature(addr_width)),
            "done": Out(1), "error": Out(1), "busy": Out(1),
        })
        self._MustUse__silence = False

    @property
    def program(self):
        return self._program

    @property
    def total_cycles(self):
        """Cycles the program's waits add up to (writes add a few cycles each)."""
        return sum(op.cycles for op in self._program)

    def elaborate(self, platform):
        m = Module()
        program = self._program
        pc = Signal(range(len(program) + 1))
        longest = max([op.cycles for op in program] + [self._timeout])
        count = Signal(range(longest + 1))
        started = Signal()          # the current operation has loaded its counter / raised stb

        with m.FSM():
            with m.State("RUN"):
                m.d.comb += self.busy.eq(1)
                with m.Switch(pc):
                    for index, op in enumerate(program):
                        with m.Case(index):
                            if op.adr is None:
                                with m.If(~started):
                                    m.d.sync += [count.eq(op.cycles - 1), started.eq(1)]
                                with m.Elif(count == 0):
                                    m.d.sync += [started.eq(0), pc.eq(pc + 1)]
                                with m.Else():
                                    m.d.sync += count.eq(count - 1)
                            else:
                                m.d.comb += [self.bus.adr.eq(op.adr),
                                             self.bus.dat_w.eq(op.value)]
                                m.d.comb += [self.bus.cyc.eq(1), self.bus.stb.eq(1),
                                             self.bus.we.eq(1), self.bus.sel.eq(0b1111)]
                                with m.If(~started):
                                    m.d.sync += [count.eq(self._timeout), started.eq(1)]
                                with m.If(self.bus.err | (started & (count == 0))):
                                    m.next = "ERROR"
                                with m.Elif(self.bus.ack):
                                    m.d.sync += [started.eq(0), pc.eq(pc + 1)]
                                with m.Elif(started):
                                    m.d.sync += count.eq(count - 1)
                    with m.Default():
                        m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.done.eq(1)
            with m.State("ERROR"):
                m.d.comb += self.error.eq(1)
        return m

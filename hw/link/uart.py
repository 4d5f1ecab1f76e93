"""8N1 UART: receiver with a 2-flop synchronizer and mid-bit sampling, transmitter, divisor math."""

import numbers

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..params import rejected

__all__ = ["MIN_DIVISOR", "MAX_BAUD_ERROR", "uart_divisor", "baud_error", "UARTReceiver",
           "UARTTransmitter"]

#: Fewest clock cycles per bit: the receiver samples mid-bit, 2 cycles after the start edge.
MIN_DIVISOR = 4

#: Largest relative baud error accepted (8N1 tolerates roughly 4% total between both ends).
MAX_BAUD_ERROR = 0.02


def _check_rate(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or value <= 0:
        raise TypeError(f"{name} must be a positive number, not {value!r}")


def baud_error(clk_freq, baud):
    """Relative error of the baud rate a ``round(clk_freq / baud)`` divisor really gives."""
    _check_rate("Clock frequency", clk_freq)
    _check_rate("Baud rate", baud)
    divisor = max(1, round(clk_freq / baud))
    return abs(clk_freq / divisor - baud) / baud


def uart_divisor(clk_freq, baud):
    """Clock cycles per bit, ``round(clk_freq / baud)``, checked.

    Raises
    ------
    TypeError
        If ``clk_freq`` or ``baud`` is not a positive number.
    ValueError
        If the divisor is below :data:`MIN_DIVISOR` or the baud error reaches
        :data:`MAX_BAUD_ERROR`.
    """
    _check_rate("Clock frequency", clk_freq)
    _check_rate("Baud rate", baud)
    divisor = round(clk_freq / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"Baud rate {baud} at {clk_freq} Hz needs a clock divisor of at least "
                         f"{MIN_DIVISOR}, not {divisor}")
    error = baud_error(clk_freq, baud)
    if error >= MAX_BAUD_ERROR:
        raise ValueError(f"Baud rate {baud} at {clk_freq} Hz is off by {100 * error:.2f}% with "
                         f"divisor {divisor} ({clk_freq / divisor:.0f} baud); at most "
                         f"{100 * MAX_BAUD_ERROR:.0f}% is allowed")
    return divisor


def _check_divisor(component, divisor):
    if not isinstance(divisor, int) or isinstance(divisor, bool):
        raise rejected(component, TypeError(
            f"Divisor must be an integer, not {divisor!r}"))
    if divisor < MIN_DIVISOR:
        raise rejected(component, ValueError(
            f"Divisor must be at least {MIN_DIVISOR}, not {divisor}"))


class UARTReceiver(wiring.Component):
    """8N1 UART receiver.

    ``rx`` passes a 2-flop synchronizer. A falling edge starts a byte; the start bit is checked
    half a bit later (a shorter low pulse is ignored as a glitch), then the 8 data bits (LSB
    first) and the stop bit are sampled mid-bit, every ``divisor`` cycles. Right after the stop
    bit's sample the receiver looks for the next start edge, so back-to-back bytes and a sender
    up to ~4% fast or slow are taken.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR` (see :func:`uart_divisor`).

    Members
    -------
    rx : In(1)
        The serial line, idle high; asynchronous.
    o : Out(stream.Signature(8))
        Received bytes. A byte is held on ``o`` until taken; ``valid`` rises 3 cycles after the
        stop bit's middle (2 synchronizer stages, 1 register).
    error : Out(1)
        One-cycle strobe: a stop bit was low (framing error); the byte is dropped and the
        receiver waits for the line to return high before the next start bit.
    overrun : Out(1)
        One-cycle strobe: a byte arrived while the previous one was still on ``o``; the new
        byte is dropped.
    """

    rx: In(1, init=1)
    o: Out(stream.Signature(8))
    error: Out(1)
    overrun: Out(1)

    def __init__(self, divisor):
        _check_divisor(self, divisor)
        self._divisor = divisor
        super().__init__()

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        d = self._divisor
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(d))
        bit = Signal(range(8))
        shreg = Signal(8)
        m.d.sync += [self.error.eq(0), self.overrun.eq(0)]
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM(name="rx_fsm"):
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"                 # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [timer.eq(d - 1), shreg.eq(Cat(shreg[1:], rx)), bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.sync += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += self.error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 UART transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least :data:`MIN_DIVISOR`.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send. ``ready`` is high while idle and in the last cycle of a stop bit, so
        back-to-back bytes leave with no gap: one byte per ``10 * divisor`` cycles.
    tx : Out(1)
        The serial line, registered, idle high; the start bit begins the cycle after a byte is
        taken.
    busy : Out(1)
        A byte is on the line.
    """

    i: In(stream.Signature(8))
    tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, divisor):
        _check_divisor(self, divisor)
        self._divisor = divisor
        super().__init__()

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        d = self._divisor
        m = Module()
        timer = Signal(range(d))
        left = Signal(range(10))        # bits still to send after the one on the line
        shreg = Signal(9)               # data bits, then the stop bit
        busy = Signal()
        # The stop bit's last cycle (busy, timer == 0, left == 0), a register set a cycle
        # ahead: `ready` leaves no logic between the counters and the sender's byte handshake
        # (from the timer through `ready`, the sender and the link's vector release it was
        # the longest path of a full ULX3S build, 87.2 MHz).
        last = Signal()
        m.d.comb += [
            self.busy.eq(busy),
            self.i.ready.eq(~busy | last),
        ]
        m.d.sync += last.eq(0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [
                self.tx.eq(0), shreg.eq(Cat(self.i.payload, 1)), left.eq(9),
                timer.eq(d - 1), busy.eq(1),
            ]
        with m.Elif(busy):
            with m.If(timer != 0):
                m.d.sync += [timer.eq(timer - 1), last.eq((timer == 1) & (left == 0))]
            with m.Elif(left == 0):
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += [
                    self.tx.eq(shreg[0]), shreg.eq(shreg >> 1), left.eq(left - 1),
                    timer.eq(d - 1),
                ]
        return m

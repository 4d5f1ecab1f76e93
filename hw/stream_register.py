"""A register slice for a stream: its payload leaves a flip-flop, at full throughput."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamRegister"]


class StreamRegister(wiring.Component):
    """One registered stage of an :mod:`amaranth.lib.stream`: whatever drives ``i`` (a block
    RAM's slow output, say) then ends at a register instead of in the consumer's logic.

    Parameters
    ----------
    shape : ShapeLike
        The payload's shape.

    Members
    -------
    i : In(stream.Signature(shape))
        Taken whenever the register is empty or is being emptied this cycle (``i.ready`` is
        ``~o.valid | o.ready``: combinational from ``o.ready``, the one path left unregistered).
    o : Out(stream.Signature(shape))
        The taken payload, one cycle later; ``o.valid`` and ``o.payload`` are registers and hold
        while ``o.ready`` is low. Throughput one payload per cycle; nothing is dropped,
        duplicated or reordered.
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        payload = Signal.like(self.o.payload, reset_less=True)
        full = Signal()
        m.d.comb += [
            self.i.ready.eq(~full | self.o.ready),
            self.o.valid.eq(full),
            self.o.payload.eq(payload),
        ]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [payload.eq(self.i.payload), full.eq(1)]
        with m.Elif(self.o.ready):
            m.d.sync += full.eq(0)
        return m

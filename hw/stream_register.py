"""A register slice for a stream: payload, valid and ready all leave flip-flops (a skid buffer)."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["StreamRegister"]


class StreamRegister(wiring.Component):
    """One registered stage of an :mod:`amaranth.lib.stream` in both directions: whatever
    drives ``i`` (a block RAM's slow output, say) ends at a register instead of in the
    consumer's logic, and the consumer's ``o.ready`` ends at a register instead of running back
    into the producer's. A skid buffer: the output register, and a second one that catches the
    payload taken in the cycle the output stalls (``i.ready`` was promised a cycle earlier).

    Parameters
    ----------
    shape : ShapeLike
        The payload's shape.

    Members
    -------
    i : In(stream.Signature(shape))
        ``i.ready`` is a register: high while the skid register is empty.
    o : Out(stream.Signature(shape))
        ``o.valid`` and ``o.payload`` are registers and hold while ``o.ready`` is low. A payload
        taken on ``i`` leaves one cycle later at the earliest; throughput one payload per cycle;
        nothing is dropped, duplicated or reordered.
    """

    def __init__(self, shape):
        super().__init__({"i": In(stream.Signature(shape)), "o": Out(stream.Signature(shape))})

    def elaborate(self, platform):
        m = Module()
        main = Signal.like(self.o.payload, reset_less=True)
        main_valid = Signal()
        skid = Signal.like(self.o.payload, reset_less=True)
        skid_valid = Signal()
        m.d.comb += [
            self.i.ready.eq(~skid_valid),
            self.o.valid.eq(main_valid),
            self.o.payload.eq(main),
        ]
        # The payload registers' enables never depend on ``i.valid``: a wide register's enable
        # fans out to every one of its flip-flops, and from the producer's valid logic across
        # the chip that was the ULX3S build's longest path (71.9 MHz). The skid register copies
        # ``i.payload`` whenever it is empty (an enable from its own valid bit); the output
        # register loads whenever it is free (from ``o.ready`` and its valid bit), from the skid
        # register if that holds a payload. Copies of a payload nobody offered are harmless:
        # only the valid bits, small, follow the handshake.
        take = self.i.valid & ~skid_valid
        free = ~main_valid | self.o.ready               # the output register is free
        with m.If(~skid_valid):
            m.d.sync += skid.eq(self.i.payload)
        with m.If(free):
            m.d.sync += [main.eq(Mux(skid_valid, skid, self.i.payload)),
                         main_valid.eq(skid_valid | take), skid_valid.eq(0)]
        with m.Elif(take):                              # stalled: the taken payload skids
            m.d.sync += skid_valid.eq(1)
        return m

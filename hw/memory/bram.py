"""A small block-RAM memory behind a NativePortSignature (tests, board-sim without SDRAM)."""

from amaranth.hdl import Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In

from ..params import rejected
from .port import NativePortSignature

__all__ = ["BlockRAMMemory"]


class BlockRAMMemory(wiring.Component):
    """``depth`` words of block RAM answering a native memory port.

    It keeps the port's contract (:class:`~.port.NativePortSignature`, after LiteDRAM's
    ``LiteDRAMNativePort``, litedram/common.py): a write command is taken together with its
    ``wdata`` beat (byte enables from ``mask``); a read command is taken when the one-word read
    register is free or being emptied, and its word is offered on ``rdata`` the next cycle,
    held until taken. Words are zero after configuration.

    Parameters
    ----------
    depth : int
        Words of memory, at least 1; addresses at or above ``depth`` wrap (the port's
        ``addr_width`` is ``ceil_log2(depth)``, at least 1).
    data_width : int
        Word width in bits, a multiple of 8.

    Members
    -------
    bus : In(NativePortSignature(addr_width=..., data_width=data_width))
        The memory side of the port.

    Timing: one command per cycle, reads and writes; a read's word is offered one cycle after
    its command is taken. ``cmd.ready`` depends combinationally on ``wdata.valid`` (writes)
    and ``rdata.ready`` (reads).
    """

    def __init__(self, *, depth, data_width):
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise rejected(self, TypeError(f"Depth must be a positive integer, not {depth!r}"))
        if not isinstance(data_width, int) or data_width < 8 or data_width % 8:
            raise rejected(self, TypeError(
                f"Data width must be a positive multiple of 8, not {data_width!r}"))
        self._depth = depth
        self._data_width = data_width
        addr_width = max(1, (depth - 1).bit_length())
        super().__init__({
            "bus": In(NativePortSignature(addr_width=addr_width, data_width=data_width)),
        })

    @property
    def depth(self):
        return self._depth

    @property
    def size(self):
        """Bytes of memory."""
        return self._depth * self._data_width // 8

    def elaborate(self, platform):
        m = Module()
        m.submodules.storage = storage = memory.Memory(shape=self._data_width,
                                                       depth=self._depth, init=[])
        write = storage.write_port(granularity=8)
        read = storage.read_port(domain="sync")
        bus = self.bus
        addr = bus.cmd.payload.addr[:len(write.addr)]
        pending = Signal()      # rdata holds a word not yet taken
        take_write = bus.cmd.valid & bus.cmd.payload.we & bus.wdata.valid
        take_read = bus.cmd.valid & ~bus.cmd.payload.we & (~pending | bus.rdata.ready)
        m.d.comb += [
            bus.cmd.ready.eq(take_write | take_read),
            bus.wdata.ready.eq(take_write),
            write.addr.eq(addr),
            write.data.eq(bus.wdata.payload.data),
            write.en.eq(bus.wdata.payload.mask & take_write.replicate(len(write.en))),
            read.addr.eq(addr),
            read.en.eq(take_read),
            bus.rdata.payload.eq(read.data),
            bus.rdata.valid.eq(pending),
        ]
        with m.If(take_read):
            m.d.sync += pending.eq(1)
        with m.Elif(bus.rdata.ready):
            m.d.sync += pending.eq(0)
        return m

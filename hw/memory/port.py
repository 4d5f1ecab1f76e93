"""The memory port every block of hw/memory speaks: LiteDRAM's native user port, as streams."""

from amaranth.hdl import unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["NativePortSignature", "command_layout", "write_layout"]


def command_layout(addr_width):
    """One command: a word address and whether it writes (``we``) or reads."""
    return data.StructLayout({"addr": unsigned(addr_width), "we": unsigned(1)})


def write_layout(data_width):
    """One write word and its byte enables (``mask`` bit i enables byte i, little-endian)."""
    return data.StructLayout({"data": unsigned(data_width), "mask": unsigned(data_width // 8)})


class NativePortSignature(wiring.Signature):
    """A word-addressed memory port with separate command, write-data and read-data streams.

    The model is LiteDRAM's ``LiteDRAMNativePort`` (litedram/common.py): each command moves
    one ``data_width``-bit word at word address ``addr``. A write command (``we = 1``) takes
    one beat of ``wdata``; a read command (``we = 0``) returns one beat of ``rdata``. Read
    data comes back in command order. Commands may be issued back to back, many in flight;
    the memory paces them with ``cmd.ready`` and every stream has full backpressure (a
    master that cannot take read data stalls ``rdata`` with ``rdata.ready``, and must not
    issue more reads than it can take, since the memory may hold only a bounded number of
    read words). ``wdata`` beats may come before, with or after their command; they are
    consumed in command order.

    Members (as seen by the master, e.g. a DMA engine; the memory side is ``.flip()``)
    -------------------------------------------------------------------------------------
    cmd : Out(stream.Signature(command_layout(addr_width)))
    wdata : Out(stream.Signature(write_layout(data_width)))
    rdata : In(stream.Signature(unsigned(data_width)))

    Parameters
    ----------
    addr_width : int
        Word address width (24 for 32 MB of 16-bit words).
    data_width : int
        Word width in bits, a multiple of 8 (16 for the ULX3S's SDR SDRAM).
    """

    def __init__(self, *, addr_width, data_width):
        if not isinstance(addr_width, int) or addr_width < 1:
            raise TypeError(f"Address width must be a positive integer, not {addr_width!r}")
        if not isinstance(data_width, int) or data_width < 8 or data_width % 8:
            raise TypeError(f"Data width must be a positive multiple of 8, not {data_width!r}")
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "cmd": Out(stream.Signature(command_layout(addr_width))),
            "wdata": Out(stream.Signature(write_layout(data_width))),
            "rdata": In(stream.Signature(unsigned(data_width))),
        })

    @property
    def addr_width(self):
        return self._addr_width

    @property
    def data_width(self):
        return self._data_width

    def __eq__(self, other):
        return (isinstance(other, NativePortSignature) and other.addr_width == self.addr_width
                and other.data_width == self.data_width)

    def __repr__(self):
        return f"NativePortSignature(addr_width={self.addr_width}, data_width={self.data_width})"

"""CRC-32 (zlib's) over memory words: a port word per cycle, any number of its low bytes."""

from functools import reduce
from operator import xor

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..params import rejected

__all__ = ["Crc32", "CRC32_POLY_REFLECTED", "crc32_matrices"]

#: The reflected form of CRC-32's polynomial 0x04C11DB7 (zlib, Ethernet, PNG).
CRC32_POLY_REFLECTED = 0xEDB88320


def crc32_matrices(word_bytes):
    """The register update over ``k`` bytes, ``k`` = 1 .. ``word_bytes``, as XOR sets.

    Returns a list: entry ``k - 1`` is a list of 32 ints, one per register bit; bit ``j`` of
    such an int set means that the new register bit depends on input ``j``, inputs 0..31 being
    the register and 32.. the data bits (byte 0's bit 0 first). The update is the bit-serial
    reflected CRC (shift right, XOR the polynomial when the bit shifted out differs from the
    data bit), run symbolically: each value is the set of inputs it is the XOR of, as
    Amaranth's :class:`amaranth.lib.crc.Processor` derives its matrices (amaranth
    ``lib/crc/__init__.py``, ``_matrices``).
    """
    result = []
    state = [1 << i for i in range(32)]
    for k in range(word_bytes):
        for bit in range(8):
            feedback = state[0] ^ (1 << (32 + 8 * k + bit))
            state = state[1:] + [0]
            state = [s ^ (feedback if CRC32_POLY_REFLECTED >> i & 1 else 0)
                     for i, s in enumerate(state)]
        result.append(list(state))
    return result


class Crc32(wiring.Component):
    """CRC-32 as :func:`zlib.crc32` computes it, taking up to a whole memory word per cycle.

    The register starts at ``0xFFFFFFFF`` on ``start``; each cycle with ``valid`` it takes the
    ``count`` low bytes of ``data`` (byte 0 first, as the bytes lie in memory, little-endian;
    ``count`` 0 takes nothing). ``crc`` is the register complemented: the CRC-32 of all the
    bytes taken since ``start``, the cycle after the last was taken.

    The update is a fixed XOR network per byte count (:func:`crc32_matrices`), selected by
    ``count``; its inputs are this component's ports and its output a register, so it is one
    stage between the caller's registers and its own.

    Parameters
    ----------
    data_width : int
        Word width in bits: a positive multiple of 8.

    Members
    -------
    start : In(1)
        Restart: the register is ``0xFFFFFFFF`` at the next cycle (``valid`` is ignored).
    valid : In(1)
        Take ``count`` bytes of ``data`` this cycle.
    data : In(data_width)
    count : In(range(data_width // 8 + 1))
    crc : Out(32)
        The CRC-32 so far (latency one cycle, throughput one word per cycle).
    """

    def __init__(self, data_width):
        if not isinstance(data_width, int) or data_width < 8 or data_width % 8:
            raise rejected(self, TypeError(
                f"Data width must be a positive multiple of 8, not {data_width!r}"))
        self._data_width = data_width
        super().__init__({
            "start": In(1),
            "valid": In(1),
            "data":  In(data_width),
            "count": In(range(data_width // 8 + 1)),
            "crc":   Out(32),
        })

    @property
    def data_width(self):
        return self._data_width

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, init=0xFFFFFFFF)
        inputs = Cat(state, self.data)

        def network(rows):
            return Cat(*(reduce(xor, (inputs[j] for j in range(len(inputs)) if row >> j & 1),
                                Const(0, 1))
                         for row in rows))

        with m.If(self.start):
            m.d.sync += state.eq(0xFFFFFFFF)
        with m.Elif(self.valid):
            with m.Switch(self.count):
                for k, rows in enumerate(crc32_matrices(self._data_width // 8), start=1):
                    with m.Case(k):
                        m.d.sync += state.eq(network(rows))
        m.d.comb += self.crc.eq(~state)
        return m

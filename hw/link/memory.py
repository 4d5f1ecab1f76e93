"""The link's board-memory commands: MEM_INFO, MEM_WRITE, MEM_READ, MEM_CRC on a native port."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.utils import exact_log2
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..memory.crc32 import Crc32
from ..memory.port import NativePortSignature
from ..params import rejected
from .protocol import MEM_ADDR_BYTES, MAX_LENGTH, Command, Error, MemoryInfo

__all__ = ["MemoryCommands", "memory_reply", "check_memory_params"]

#: What the executor answers a memory command with: ``error`` 0 and the reply payload's
#: ``length`` (the bytes follow on ``o_byte``), or a NACK reason.
memory_reply = data.StructLayout({"error": 8, "length": 16})


def check_memory_params(memory, size):
    """The memory size in bytes for a native port signature ``memory`` and a requested
    ``size`` (None: the port's whole range); TypeError or ValueError naming the value."""
    if not isinstance(memory, NativePortSignature):
        raise TypeError(f"Memory must be a NativePortSignature, not {memory!r}")
    word_bytes = memory.data_width // 8
    if word_bytes & (word_bytes - 1):
        raise ValueError(f"Memory word must be a power of two bytes, not {word_bytes}")
    whole = word_bytes << memory.addr_width
    if size is None:
        size = whole
    if (not isinstance(size, int) or isinstance(size, bool) or not 0 < size <= whole
            or size % word_bytes or size >= 1 << 32):
        raise ValueError(f"Memory size must be a positive multiple of {word_bytes} bytes, at "
                         f"most {min(whole, (1 << 32) - word_bytes)} (the port's range and "
                         f"the protocol's u32 addresses), not {size!r}")
    return size


class MemoryCommands(wiring.Component):
    """Executes the board-memory commands of a frame the :class:`LinkController` holds.

    The controller starts it (``start``, with ``cmd`` and the payload ``length`` held) on a
    good frame of a memory command; it reads the request from the frame buffer
    (``buf_addr``, ``buf_data`` a cycle later), checks it whole, executes it on ``mem`` and
    offers the verdict on ``reply``: a NACK reason, or the reply's payload length, whose
    bytes it then offers one at a time on ``o_byte``/``o_valid`` (each held until
    ``o_took``, the controller's registered note that the sender took it).

    - MEM_INFO: the size (u32) and word bytes (u8), constants.
    - MEM_WRITE (byte address u32, then the bytes): the payload is checked first (at least one
      data byte, else ``BAD_LENGTH``; the range inside the memory, else ``BAD_RANGE``), so a
      refused write writes nothing. Bytes are gathered into words and written with byte
      enables (any alignment). Reply: the byte count (u16).
    - MEM_READ (address u32, count u16): one word read at a time, its bytes sent as the
      sender takes them (the UART sets the pace, so one read in flight is enough).
    - MEM_CRC (address u32, count u32): reads issued back to back, read data taken every
      cycle, the words fed through a :class:`~pwconv.hw.memory.crc32.Crc32` (the first and
      last word's outside bytes left out) after two register stages. Reply: the CRC-32 (u32).

    Every decision is made from registers (the checks take four cycles: length, length - 1,
    last byte address, compare), so no path from the frame buffer or the port runs through
    an adder into the reply.

    Parameters
    ----------
    memory : NativePortSignature
        The port's signature (word bytes a power of two).
    size : int or None
        Bytes of memory behind the port (default: the port's whole range).
    max_payload : int
        The frame buffer's size (``buf_addr``'s range).

    Members
    -------
    start : In(1)
        Pulse: execute the frame; ``cmd`` (In(8)) and ``length`` (In(16)) hold its command
        and payload length until ``reply`` is taken.
    buf_addr : Out(range(max_payload)), buf_data : In(8)
        The frame buffer's read port (synchronous: data the cycle after the address).
    reply : Out(stream.Signature(memory_reply))
        The verdict, once per start.
    o_byte : Out(8), o_valid : Out(1), o_took : In(1)
        The reply's payload bytes, registers; ``o_took`` the cycle after the sender took one.
    mem : Out(NativePortSignature)
        The memory (master side).

    Timing: a MEM_WRITE takes 2 cycles per byte plus the port's time per word; MEM_READ a
    word read per ``word_bytes`` bytes sent; MEM_CRC one word per cycle when the port keeps
    up, plus 4 cycles.
    """

    def __init__(self, memory, *, size=None, max_payload):
        try:
            size = check_memory_params(memory, size)
        except (TypeError, ValueError) as error:
            raise rejected(self, error) from None
        if not isinstance(max_payload, int) or not MEM_ADDR_BYTES < max_payload <= MAX_LENGTH:
            raise rejected(self, ValueError(
                f"Maximum payload must be an integer between {MEM_ADDR_BYTES + 1} and "
                f"{MAX_LENGTH}, not {max_payload!r}"))
        self._memory = memory
        self._size = size
        self._max_payload = max_payload
        super().__init__({
            "start":    In(1),
            "cmd":      In(8),
            "length":   In(16),
            "buf_addr": Out(range(max_payload)),
            "buf_data": In(8),
            "reply":    Out(stream.Signature(memory_reply)),
            "o_byte":   Out(8),
            "o_valid":  Out(1),
            "o_took":   In(1),
            "mem":      Out(memory),
        })

    @property
    def size(self):
        """Bytes of memory the commands reach."""
        return self._size

    @property
    def info(self):
        """The :class:`MemoryInfo` MEM_INFO returns."""
        return MemoryInfo(self._size, self._memory.data_width // 8)

    def elaborate(self, platform):
        m = Module()
        word_bytes = self._memory.data_width // 8
        shift = exact_log2(word_bytes)
        addr_width = self._memory.addr_width
        mem = self.mem

        m.submodules.crc = crc = Crc32(self._memory.data_width)

        is_info, is_write, is_read, is_crc = (Signal(name=n) for n in (
            "is_info", "is_write", "is_read", "is_crc"))
        pos = Signal(16)
        addr = Signal(32)           # the request's byte address
        count = Signal(32)          # its count field (MEM_READ's u16 lands in the top half)
        nbytes = Signal(32)         # bytes of the region
        nbytes_m1 = Signal(32)
        empty = Signal()
        last = Signal(33)           # the region's last byte address
        header_end = Signal()       # the last header byte is being latched
        m.d.comb += self.buf_addr.eq(pos)

        error = Signal(8)
        rlen = Signal(16)
        m.d.comb += [self.reply.payload.error.eq(error), self.reply.payload.length.eq(rlen)]
        reply_word = Signal(40)     # small replies: write count, CRC, MEM_INFO
        index = Signal(3)
        info = Const(int.from_bytes(self.info.pack(), "little"), 40)

        waddr = Signal(addr_width)  # word address of the next command
        lane = Signal(range(word_bytes))
        lane_first = Signal(range(word_bytes))
        lane_last = Signal(range(word_bytes))
        wword = Signal(self._memory.data_width)
        wmask = Signal(word_bytes)
        cmd_done = Signal()
        wdata_done = Signal()
        rword = Signal(self._memory.data_width)
        remaining = Signal(32)

        # MEM_CRC: reads issued (`issuing`, `issue_left` more after this one) and received
        # (`recv_left` more after this one), then two register stages before the engine.
        issuing = Signal()
        issue_left = Signal(addr_width + 1)
        recv_left = Signal(addr_width + 1)
        first = Signal()
        d1, v1, f1, l1 = (Signal(self._memory.data_width, name="d1"), Signal(name="v1"),
                          Signal(name="f1"), Signal(name="l1"))
        d2, v2, e2, e3 = (Signal(self._memory.data_width, name="d2"), Signal(name="v2"),
                          Signal(name="e2"), Signal(name="e3"))
        n2 = Signal(range(word_bytes + 1))
        m.d.comb += [crc.valid.eq(v2), crc.data.eq(d2), crc.count.eq(n2)]
        skip = Mux(f1, lane_first, 0)
        m.d.sync += [
            v1.eq(0), v2.eq(v1), e2.eq(v1 & l1), e3.eq(e2),
            d2.eq(d1 >> Cat(Const(0, 3), skip)),
            n2.eq(Mux(l1, lane_last + 1, word_bytes) - skip),
        ]

        with m.FSM(name="memory"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [
                        is_info.eq(self.cmd == Command.MEM_INFO),
                        is_write.eq(self.cmd == Command.MEM_WRITE),
                        is_read.eq(self.cmd == Command.MEM_READ),
                        is_crc.eq(self.cmd == Command.MEM_CRC),
                        header_end.eq(0), pos.eq(0), error.eq(0), index.eq(0),
                    ]
                    with m.If(self.cmd == Command.MEM_INFO):
                        m.d.sync += [reply_word.eq(info), rlen.eq(len(self.info.pack()))]
                        m.next = "REPLY"
                    with m.Elif((self.cmd == Command.MEM_WRITE)
                                & (self.length <= MEM_ADDR_BYTES)):
                        m.d.sync += error.eq(Error.BAD_LENGTH)
                        m.next = "REPLY"
                    with m.Else():
                        m.next = "HEAD_ADDR"

            # The header: the address (4 bytes), then a count (2 or 4 bytes), little-endian,
            # shifted in at the top.
            with m.State("HEAD_ADDR"):
                m.d.sync += header_end.eq(Mux(is_write, pos == MEM_ADDR_BYTES - 1,
                                              Mux(is_read, pos == MEM_ADDR_BYTES + 1,
                                                  pos == MEM_ADDR_BYTES + 3)))
                m.next = "HEAD_LATCH"
            with m.State("HEAD_LATCH"):
                with m.If(pos < MEM_ADDR_BYTES):
                    m.d.sync += addr.eq(Cat(addr[8:], self.buf_data))
                with m.Else():
                    m.d.sync += count.eq(Cat(count[8:], self.buf_data))
                m.d.sync += pos.eq(pos + 1)
                with m.If(header_end):
                    m.next = "CHECK_COUNT"
                with m.Else():
                    m.next = "HEAD_ADDR"

            with m.State("CHECK_COUNT"):
                m.d.sync += nbytes.eq(Mux(is_write, self.length - MEM_ADDR_BYTES,
                                          Mux(is_read, count[16:], count)))
                m.next = "CHECK_LAST"
            with m.State("CHECK_LAST"):
                m.d.sync += [nbytes_m1.eq(nbytes - 1), empty.eq(nbytes == 0)]
                m.next = "CHECK_END"
            with m.State("CHECK_END"):
                m.d.sync += last.eq(addr + nbytes_m1)
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [
                    waddr.eq(addr[shift:]), lane.eq(addr[:shift]), lane_first.eq(addr[:shift]),
                    lane_last.eq(last[:shift]), remaining.eq(nbytes), wmask.eq(0),
                    cmd_done.eq(0), wdata_done.eq(0),
                    issuing.eq(1), issue_left.eq(last[shift:] - addr[shift:]),
                    recv_left.eq(last[shift:] - addr[shift:]), first.eq(1),
                ]
                with m.If(empty):
                    m.d.sync += error.eq(Error.BAD_LENGTH)
                    m.next = "REPLY"
                with m.Elif(last >= self._size):
                    m.d.sync += error.eq(Error.BAD_RANGE)
                    m.next = "REPLY"
                with m.Elif(is_write):
                    m.next = "W_ADDR"
                with m.Elif(is_read):
                    m.d.sync += rlen.eq(nbytes)
                    m.next = "REPLY"
                with m.Else():
                    m.d.comb += crc.start.eq(1)
                    m.next = "CRC"

            with m.State("W_ADDR"):
                m.next = "W_LATCH"
            with m.State("W_LATCH"):
                m.d.sync += [
                    wword.word_select(lane, 8).eq(self.buf_data),
                    wmask.bit_select(lane, 1).eq(1),
                    pos.eq(pos + 1),
                ]
                with m.If((lane == word_bytes - 1) | (pos + 1 == self.length)):
                    m.next = "W_ISSUE"
                with m.Else():
                    m.d.sync += lane.eq(lane + 1)
                    m.next = "W_ADDR"
            with m.State("W_ISSUE"):
                m.d.comb += [
                    mem.cmd.valid.eq(~cmd_done),
                    mem.cmd.payload.addr.eq(waddr),
                    mem.cmd.payload.we.eq(1),
                    mem.wdata.valid.eq(~wdata_done),
                    mem.wdata.payload.data.eq(wword),
                    mem.wdata.payload.mask.eq(wmask),
                ]
                cmd_now = cmd_done | mem.cmd.ready
                wdata_now = wdata_done | mem.wdata.ready
                m.d.sync += [cmd_done.eq(cmd_now), wdata_done.eq(wdata_now)]
                with m.If(cmd_now & wdata_now):
                    m.d.sync += [cmd_done.eq(0), wdata_done.eq(0), wmask.eq(0), lane.eq(0),
                                 waddr.eq(waddr + 1)]
                    with m.If(pos == self.length):
                        m.d.sync += [reply_word.eq(nbytes), rlen.eq(2)]
                        m.next = "REPLY"
                    with m.Else():
                        m.next = "W_ADDR"

            with m.State("CRC"):
                m.d.comb += [
                    mem.cmd.valid.eq(issuing),
                    mem.cmd.payload.addr.eq(waddr),
                    mem.rdata.ready.eq(1),
                ]
                with m.If(mem.cmd.valid & mem.cmd.ready):
                    m.d.sync += waddr.eq(waddr + 1)
                    with m.If(issue_left == 0):
                        m.d.sync += issuing.eq(0)
                    with m.Else():
                        m.d.sync += issue_left.eq(issue_left - 1)
                with m.If(mem.rdata.valid):
                    m.d.sync += [d1.eq(mem.rdata.payload), v1.eq(1), f1.eq(first),
                                 l1.eq(recv_left == 0), first.eq(0),
                                 recv_left.eq(recv_left - 1)]
                with m.If(e3):
                    m.d.sync += [reply_word.eq(crc.crc), rlen.eq(4)]
                    m.next = "REPLY"

            with m.State("REPLY"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    with m.If(error != 0):
                        m.next = "IDLE"
                    with m.Elif(is_read):
                        m.next = "R_CMD"
                    with m.Else():
                        m.next = "S_LOAD"

            # Small replies: `rlen` bytes of `reply_word`.
            with m.State("S_LOAD"):
                m.d.sync += [self.o_byte.eq(reply_word.word_select(index, 8)),
                             self.o_valid.eq(1)]
                m.next = "S_WAIT"
            with m.State("S_WAIT"):
                with m.If(self.o_took):
                    m.d.sync += [self.o_valid.eq(0), index.eq(index + 1)]
                    with m.If(index + 1 == rlen):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "S_LOAD"

            # MEM_READ: a word at a time, its bytes from `lane` on.
            with m.State("R_CMD"):
                m.d.comb += [mem.cmd.valid.eq(1), mem.cmd.payload.addr.eq(waddr)]
                with m.If(mem.cmd.ready):
                    m.next = "R_DATA"
            with m.State("R_DATA"):
                m.d.comb += mem.rdata.ready.eq(1)
                with m.If(mem.rdata.valid):
                    m.d.sync += rword.eq(mem.rdata.payload)
                    m.next = "R_LOAD"
            with m.State("R_LOAD"):
                m.d.sync += [self.o_byte.eq(rword.word_select(lane, 8)), self.o_valid.eq(1)]
                m.next = "R_WAIT"
            with m.State("R_WAIT"):
                with m.If(self.o_took):
                    m.d.sync += [self.o_valid.eq(0), remaining.eq(remaining - 1)]
                    with m.If(remaining == 1):
                        m.next = "IDLE"
                    with m.Elif(lane == word_bytes - 1):
                        m.d.sync += [lane.eq(0), waddr.eq(waddr + 1)]
                        m.next = "R_CMD"
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
                        m.next = "R_LOAD"
        return m

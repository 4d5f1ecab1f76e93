"""Frame receiver (bytes into a buffer, CRC-checked) and frame sender of the board link."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import crc, data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..params import rejected
from .protocol import CRC_BYTES, MAX_LENGTH, START, Error

__all__ = ["frame_request", "frame_header", "crc16", "FrameReceiver", "FrameSender"]


def crc16():
    """A CRC-16/CCITT-FALSE processor, one byte per cycle (``binascii.crc_hqx(data, 0xFFFF)``)."""
    return crc.catalog.CRC16_CCITT_FALSE(data_width=8).create()


#: What the receiver hands on: a whole, CRC-checked frame in the buffer (on ``frame``), or a
#: refused one (on ``refusal``, ``error`` an :class:`Error`, ``cmd`` and ``tag`` as received,
#: zero if the frame did not get that far).
frame_request = data.StructLayout({
    "cmd":    8,
    "tag":    8,
    "length": 16,
    "error":  8,
})

#: Header of a frame to send: command (reply) code, the tag to echo and the payload length.
frame_header = data.StructLayout({
    "cmd":    8,
    "tag":    8,
    "length": 16,
})


class FrameReceiver(wiring.Component):
    """Parses frames from a byte stream into a buffer and checks them before handing them on.

    Frame: ``START``, command, tag, length (u16 LE), ``length`` payload bytes, CRC-16/CCITT-FALSE
    of command, tag, length and payload (MSB first). Bytes before a ``START`` are skipped. The
    payload is written to the buffer at offsets ``0 .. length-1``; only once the CRC matched is
    the frame offered on ``frame``. A frame is refused, once, on ``refusal``:

    - unknown command byte (``UNKNOWN_COMMAND``), length above ``max_payload`` (``TOO_LONG``)
      or different from the command's fixed length (``BAD_LENGTH``), or the buffer still in use
      by the previous frame (``BUSY``): decided at the last header byte;
    - a CRC mismatch (``BAD_CRC``), at the end;
    - more than ``timeout`` cycles between two bytes of a frame (``TIMEOUT``);
    - a UART framing error inside a frame (``FRAMING``).

    A frame refused at its header has the rest of its declared length skipped (payload and CRC,
    counted down; the skip ends early once ``timeout`` cycles pass without a byte), and one
    with a framing error is skipped until the line is quiet for ``timeout`` cycles, so that
    start bytes inside them do not begin frames: one refused frame draws one refusal. The
    refusal is offered when the skip ends.

    While a good frame or a refusal is offered (until the consumer takes it; the consumer
    takes refusals and frames whenever it is idle), received bytes are dropped and counted:
    one reply at a time is pending. A host that waits for each reply sends nothing then.

    Parameters
    ----------
    max_payload : int
        Buffer size in bytes, 1..65535.
    timeout : int
        Inter-byte timeout in clock cycles, at least 1.
    lengths : dict
        Known command codes, each mapped to its fixed payload length or None (any length).

    Members
    -------
    i : In(stream.Signature(8))
        Received bytes; always ready.
    framing_error : In(1)
        Strobe from the UART: a byte with a bad stop bit was lost.
    owned : In(1)
        The consumer is executing a frame from the buffer: a frame that arrives meanwhile is
        refused ``BUSY`` (and skipped, never written to the buffer) once the consumer is idle.
    wr_addr : Out(range(max_payload)), wr_data : Out(8), wr_en : Out(1)
        Buffer write port (write-only; the consumer reads the buffer).
    frame : Out(stream.Signature(frame_request))
        Good frames (``error`` 0).
    refusal : Out(stream.Signature(frame_request))
        Refused frames (``error`` non-zero).
    active : Out(1)
        A frame is being received or skipped.
    dropped : Out(1)
        Strobe: a byte was dropped (it arrived while a frame or refusal was being offered).

    Timing: one byte per 2 cycles at most (a UART delivers one per 10 bit times, at least 40
    cycles); a good frame is offered 2 cycles after its last CRC byte.
    """

    def __init__(self, *, max_payload, timeout, lengths):
        if not isinstance(max_payload, int) or not 1 <= max_payload <= MAX_LENGTH:
            raise rejected(self, ValueError(
                f"Maximum payload must be an integer between 1 and {MAX_LENGTH}, "
                f"not {max_payload!r}"))
        if not isinstance(timeout, int) or timeout < 1:
            raise rejected(self, ValueError(
                f"Timeout must be a positive integer number of cycles, not {timeout!r}"))
        self._max_payload = max_payload
        self._timeout = timeout
        self._lengths = {int(code): length for code, length in dict(lengths).items()}
        super().__init__({
            "i":             In(stream.Signature(8)),
            "framing_error": In(1),
            "owned":         In(1),
            "wr_addr":       Out(range(max_payload)),
            "wr_data":       Out(8),
            "wr_en":         Out(1),
            "frame":         Out(stream.Signature(frame_request)),
            "refusal":       Out(stream.Signature(frame_request)),
            "active":        Out(1),
            "dropped":       Out(1),
        })

    @property
    def max_payload(self):
        return self._max_payload

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = checker = crc16()

        byte = self.i.payload
        got = Signal()
        m.d.comb += [self.i.ready.eq(1), got.eq(self.i.valid)]

        cmd = Signal(8)
        tag = Signal(8)
        length = Signal(16)
        count = Signal(17)
        timer = Signal(range(self._timeout + 1))
        error = Signal(8)
        m.d.comb += [
            self.frame.payload.cmd.eq(cmd),
            self.frame.payload.tag.eq(tag),
            self.frame.payload.length.eq(length),
            self.wr_addr.eq(count),
            self.wr_data.eq(byte),
            checker.data.eq(byte),
        ]

        m.d.comb += [self.refusal.payload.cmd.eq(cmd), self.refusal.payload.tag.eq(tag),
                     self.refusal.payload.length.eq(length),
                     self.refusal.payload.error.eq(error)]

        known = Signal()
        fixed_ok = Signal()
        length_now = Cat(length[:8], byte)
        with m.Switch(cmd):
            for code, fixed in self._lengths.items():
                with m.Case(code):
                    m.d.comb += [known.eq(1),
                                 fixed_ok.eq(1 if fixed is None else length_now == fixed)]

        receiving = Signal()

        def report(code):
            # Offer the refusal, then hunt again.
            m.d.sync += error.eq(code)
            m.next = "REFUSED"

        # SKIP counts the declared payload down from `length`, then the 2 CRC bytes past zero
        # (no adder); `until_quiet` skips until the line is quiet instead.
        skip_done = (1 << len(count)) - CRC_BYTES
        until_quiet = Signal()

        def skip(code, payload_left=None):
            # Refuse the frame once the rest it declares has gone by (or the line is quiet).
            m.d.sync += error.eq(code)
            if payload_left is None:
                m.d.sync += until_quiet.eq(1)
            else:
                m.d.sync += [until_quiet.eq(0), count.eq(payload_left)]
            m.next = "SKIP"

        def guard():
            # In a frame: refuse it after `timeout` idle cycles, or on a UART framing error
            # (a byte lost: the rest is skipped until the line is quiet).
            m.d.comb += receiving.eq(1)
            with m.If(got):
                m.d.sync += timer.eq(self._timeout)
            with m.Elif(timer == 0):
                report(Error.TIMEOUT)
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
            with m.If(self.framing_error):
                skip(Error.FRAMING)

        with m.FSM(name="rx_frame") as fsm:
            with m.State("HUNT"):
                m.d.sync += timer.eq(self._timeout)
                with m.If(got & (byte == START)):
                    m.d.comb += checker.start.eq(1)
                    m.d.sync += [cmd.eq(0), tag.eq(0), length.eq(0), count.eq(0)]
                    m.next = "CMD"
            with m.State("CMD"):
                with m.If(got):
                    m.d.comb += checker.valid.eq(1)
                    m.d.sync += cmd.eq(byte)
                    m.next = "TAG"
                guard()
            with m.State("TAG"):
                with m.If(got):
                    m.d.comb += checker.valid.eq(1)
                    m.d.sync += tag.eq(byte)
                    m.next = "LEN_LO"
                guard()
            with m.State("LEN_LO"):
                with m.If(got):
                    m.d.comb += checker.valid.eq(1)
                    m.d.sync += length[:8].eq(byte)
                    m.next = "LEN_HI"
                guard()
            with m.State("LEN_HI"):
                rest = length_now
                with m.If(got):
                    m.d.comb += checker.valid.eq(1)
                    m.d.sync += length.eq(length_now)
                    with m.If(~known):
                        skip(Error.UNKNOWN_COMMAND, rest)
                    with m.Elif(length_now > self._max_payload):
                        skip(Error.TOO_LONG, rest)
                    with m.Elif(~fixed_ok):
                        skip(Error.BAD_LENGTH, rest)
                    with m.Elif(self.owned):
                        skip(Error.BUSY, rest)
                    with m.Elif(length_now == 0):
                        m.next = "CRC"
                    with m.Else():
                        m.next = "PAYLOAD"
                guard()
            with m.State("PAYLOAD"):
                with m.If(got):
                    m.d.comb += [checker.valid.eq(1), self.wr_en.eq(1)]
                    m.d.sync += count.eq(count + 1)
                    with m.If(count + 1 == length):
                        m.d.sync += count.eq(0)
                        m.next = "CRC"
                guard()
            with m.State("CRC"):
                with m.If(got):
                    m.d.comb += checker.valid.eq(1)
                    m.d.sync += count.eq(count + 1)
                    with m.If(count == CRC_BYTES - 1):
                        m.next = "VERIFY"
                guard()
            with m.State("VERIFY"):
                with m.If(checker.match_detected):
                    m.next = "GOOD"
                with m.Else():
                    report(Error.BAD_CRC)
            with m.State("GOOD"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    m.next = "HUNT"
            with m.State("REFUSED"):
                m.d.comb += self.refusal.valid.eq(1)
                with m.If(self.refusal.ready):
                    m.next = "HUNT"
            with m.State("SKIP"):
                m.d.comb += receiving.eq(1)
                with m.If(~until_quiet & (count == skip_done)):
                    report(error)
                with m.Elif(got):
                    m.d.sync += [count.eq(count - 1), timer.eq(self._timeout)]
                with m.Elif(timer == 0):
                    report(error)
                with m.Else():
                    m.d.sync += timer.eq(timer - 1)

        m.d.comb += [
            self.active.eq(receiving),
            self.dropped.eq(got & (fsm.ongoing("VERIFY") | fsm.ongoing("GOOD")
                                   | fsm.ongoing("REFUSED"))),
        ]
        return m


class FrameSender(wiring.Component):
    """Frames payloads for sending: ``START``, code, tag, length (u16 LE), payload, CRC (MSB
    first).

    Members
    -------
    header : In(stream.Signature(frame_header))
        Starts a frame; taken only while idle (``ready`` is ``~busy``).
    payload : In(stream.Signature(8))
        Exactly ``header.length`` bytes, taken after the header bytes are out.
    index : Out(16)
        Offset of the payload byte to take next (for sources that are tables).
    o : Out(stream.Signature(8))
        The frame's bytes, to the UART transmitter.
    busy : Out(1)
        A frame is being sent: from the cycle after ``header`` is taken to the one after its last
        CRC byte is taken on ``o``.

    Timing: one byte per cycle when ``o`` is always ready; the CRC is updated the cycle after a
    byte leaves, so its bytes can follow the last payload byte immediately.
    """

    header: In(stream.Signature(frame_header))
    payload: In(stream.Signature(8))
    index: Out(16)
    o: Out(stream.Signature(8))
    busy: Out(1)

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = generator = crc16()

        cmd = Signal(8)
        tag = Signal(8)
        length = Signal(16)
        index = Signal(16)
        sent = Signal()
        m.d.comb += [
            self.index.eq(index),
            sent.eq(self.o.valid & self.o.ready),
            generator.data.eq(self.o.payload),
        ]

        with m.FSM(name="tx_frame") as fsm:
            with m.State("IDLE"):
                m.d.comb += self.header.ready.eq(1)
                with m.If(self.header.valid):
                    m.d.sync += [
                        cmd.eq(self.header.payload.cmd),
                        tag.eq(self.header.payload.tag),
                        length.eq(self.header.payload.length),
                        index.eq(0),
                    ]
                    m.d.comb += generator.start.eq(1)
                    m.next = "START"
            with m.State("START"):
                m.d.comb += [self.o.payload.eq(START), self.o.valid.eq(1)]
                with m.If(sent):
                    m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += [self.o.payload.eq(cmd), self.o.valid.eq(1),
                             generator.valid.eq(sent)]
                with m.If(sent):
                    m.next = "TAG"
            with m.State("TAG"):
                m.d.comb += [self.o.payload.eq(tag), self.o.valid.eq(1),
                             generator.valid.eq(sent)]
                with m.If(sent):
                    m.next = "LEN_LO"
            with m.State("LEN_LO"):
                m.d.comb += [self.o.payload.eq(length[:8]), self.o.valid.eq(1),
                             generator.valid.eq(sent)]
                with m.If(sent):
                    m.next = "LEN_HI"
            with m.State("LEN_HI"):
                m.d.comb += [self.o.payload.eq(length[8:]), self.o.valid.eq(1),
                             generator.valid.eq(sent)]
                with m.If(sent):
                    with m.If(length == 0):
                        m.next = "CRC_HI"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [
                    self.o.payload.eq(self.payload.payload),
                    self.o.valid.eq(self.payload.valid),
                    self.payload.ready.eq(self.o.ready),
                    generator.valid.eq(sent),
                ]
                with m.If(sent):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index + 1 == length):
                        m.next = "CRC_HI"
            with m.State("CRC_HI"):
                # The CRC register took the last byte at the edge that entered this state.
                m.d.comb += [self.o.payload.eq(generator.crc[8:]), self.o.valid.eq(1)]
                with m.If(sent):
                    m.next = "CRC_LO"
            with m.State("CRC_LO"):
                m.d.comb += [self.o.payload.eq(generator.crc[:8]), self.o.valid.eq(1)]
                with m.If(sent):
                    m.next = "IDLE"
        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE"))
        return m

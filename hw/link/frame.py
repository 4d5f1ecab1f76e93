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


#: What the receiver hands on: a whole, CRC-checked frame in the buffer (``error`` zero), or a
#: refused one (``error`` an :class:`Error`, ``cmd`` the command byte if it got that far).
frame_request = data.StructLayout({
    "cmd":    8,
    "length": 16,
    "error":  8,
})

#: Header of a frame to send: command (reply) code and payload length.
frame_header = data.StructLayout({
    "cmd":    8,
    "length": 16,
})


class FrameReceiver(wiring.Component):
    """Parses frames from a byte stream into a buffer and checks them before handing them on.

    Frame: ``START``, command, length (u16 LE), ``length`` payload bytes, CRC-16/CCITT-FALSE of
    command, length and payload (MSB first). Bytes before a ``START`` are skipped. The payload
    is written to the buffer at offsets ``0 .. length-1``; only once the CRC matched is the frame
    offered on ``frame`` (``error`` 0). Refusals are offered on ``frame`` too, as early as they
    are known, after which the receiver hunts for the next ``START``:

    - unknown command byte (``UNKNOWN_COMMAND``, at the command byte);
    - length above ``max_payload`` (``TOO_LONG``) or different from the command's fixed length
      (``BAD_LENGTH``), at the second length byte;
    - a CRC mismatch (``BAD_CRC``), at the end;
    - more than ``timeout`` cycles between two bytes of a frame (``TIMEOUT``);
    - a UART framing error inside a frame (``FRAMING``).

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
        Received bytes; always ready (bytes that arrive while a frame waits on ``frame`` or
        while the buffer is in use are dropped and counted on ``dropped``).
    framing_error : In(1)
        Strobe from the UART: a byte with a bad stop bit was lost.
    wr_addr : Out(range(max_payload)), wr_data : Out(8), wr_en : Out(1)
        Buffer write port (write-only; the consumer reads the buffer).
    frame : Out(stream.Signature(frame_request))
        Checked frames and refusals, in order. The consumer must raise ``ready`` only when it
        is idle: after taking a good frame, the receiver leaves the buffer alone until ``ready``
        is high again, i.e. until the consumer has finished with the frame.
    active : Out(1)
        A frame is being received.
    dropped : Out(1)
        Strobe: a byte was dropped.

    Timing: one byte per cycle at most inside a frame; a frame is offered 2 cycles after its last
    CRC byte, and bytes in the 3 cycles after it are dropped (a UART delivers a byte per 10 bit
    times, at least 40 cycles).
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
            "wr_addr":       Out(range(max_payload)),
            "wr_data":       Out(8),
            "wr_en":         Out(1),
            "frame":         Out(stream.Signature(frame_request)),
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
        length = Signal(16)
        count = Signal(16)
        timer = Signal(range(self._timeout + 1))
        error = Signal(8)
        m.d.comb += [
            self.frame.payload.cmd.eq(cmd),
            self.frame.payload.length.eq(length),
            self.frame.payload.error.eq(error),
            self.wr_addr.eq(count),
            self.wr_data.eq(byte),
            checker.data.eq(byte),
        ]

        known = Signal()
        fixed_ok = Signal()
        length_now = Cat(length[:8], byte)
        m.d.comb += known.eq(0)
        with m.Switch(byte):
            for code in self._lengths:
                with m.Case(code):
                    m.d.comb += known.eq(1)
        m.d.comb += fixed_ok.eq(1)
        with m.Switch(cmd):
            for code, fixed in self._lengths.items():
                if fixed is not None:
                    with m.Case(code):
                        m.d.comb += fixed_ok.eq(length_now == fixed)

        receiving = Signal()

        def refuse(code):
            m.d.sync += error.eq(code)
            m.next = "REPORT"

        def guard():
            # In a frame: refuse it after `timeout` idle cycles or on a UART framing error.
            m.d.comb += receiving.eq(1)
            with m.If(got):
                m.d.sync += timer.eq(self._timeout)
            with m.Elif(timer == 0):
                refuse(Error.TIMEOUT)
            with m.Else():
                m.d.sync += timer.eq(timer - 1)
            with m.If(self.framing_error):
                refuse(Error.FRAMING)

        with m.FSM(name="rx_frame") as fsm:
            with m.State("HUNT"):
                m.d.sync += timer.eq(self._timeout)
                with m.If(got & (byte == START)):
                    m.d.comb += checker.start.eq(1)
                    m.d.sync += [cmd.eq(0), length.eq(0), count.eq(0)]
                    m.next = "CMD"
            with m.State("CMD"):
                with m.If(got):
                    m.d.comb += checker.valid.eq(1)
                    m.d.sync += cmd.eq(byte)
                    with m.If(known):
                        m.next = "LEN_LO"
                    with m.Else():
                        refuse(Error.UNKNOWN_COMMAND)
                guard()
            with m.State("LEN_LO"):
                with m.If(got):
                    m.d.comb += checker.valid.eq(1)
                    m.d.sync += length[:8].eq(byte)
                    m.next = "LEN_HI"
                guard()
            with m.State("LEN_HI"):
                with m.If(got):
                    m.d.comb += checker.valid.eq(1)
                    m.d.sync += length.eq(length_now)
                    with m.If(length_now > self._max_payload):
                        refuse(Error.TOO_LONG)
                    with m.Elif(~fixed_ok):
                        refuse(Error.BAD_LENGTH)
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
                    m.d.sync += error.eq(Error.NONE)
                with m.Else():
                    m.d.sync += error.eq(Error.BAD_CRC)
                m.next = "REPORT"
            with m.State("REPORT"):
                m.d.comb += self.frame.valid.eq(1)
                with m.If(self.frame.ready):
                    with m.If(error == Error.NONE):
                        m.next = "HOLD"
                    with m.Else():
                        m.next = "HUNT"
            with m.State("HOLD"):
                # The consumer is executing the frame from the buffer: wait until it is idle.
                with m.If(self.frame.ready):
                    m.next = "HUNT"

        m.d.comb += [
            self.active.eq(receiving),
            self.dropped.eq(got & (fsm.ongoing("REPORT") | fsm.ongoing("HOLD")
                                   | fsm.ongoing("VERIFY"))),
        ]
        return m


class FrameSender(wiring.Component):
    """Frames payloads for sending: ``START``, code, length (u16 LE), payload, CRC (MSB first).

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

"""Host side of the board link: frames, CRC, errors, and transports (serial port, simulator)."""

import binascii
import time
import weakref
from dataclasses import dataclass

from pwconv.hw.link.protocol import (CRC_BYTES, HEADER_BYTES, LINK_ERRORS, MAX_LENGTH,
                                     OVERHEAD, START, Command, Error, Identity, MemoryInfo,
                                     Reply, Status, WireFormat)

__all__ = ["START", "OVERHEAD", "MAX_LENGTH", "HEADER_BYTES", "Command", "Reply", "Error",
           "LINK_ERRORS", "Identity", "MemoryInfo", "Status", "WireFormat", "crc16",
           "encode_frame", "Frame", "FrameDecoder", "read_frame", "drain", "link_clock",
           "LinkError", "LinkTimeout", "CorruptReply", "NackError", "SerialTransport",
           "SimTransport", "DEFAULT_BAUD", "frame_time"]

#: Baud rate of the iCEBreaker build (24 MHz / 4); the ULX3S build has its own (see
#: pwconv.hw.board.BOARD_LINKS).
DEFAULT_BAUD = 6_000_000


def crc16(data):
    """CRC-16/CCITT-FALSE of ``data``: poly 0x1021, init 0xFFFF, no reflection, no final XOR."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def encode_frame(code, payload=b"", tag=0):
    """One frame: START, ``code``, ``tag``, length (u16 LE), ``payload``, CRC (big-endian)."""
    payload = bytes(payload)
    if not 0 <= int(code) <= 0xFF:
        raise ValueError(f"Frame code must be a byte, not {code!r}")
    if not 0 <= int(tag) <= 0xFF:
        raise ValueError(f"Frame tag must be a byte, not {tag!r}")
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"Frame payload must be at most {MAX_LENGTH} bytes, not {len(payload)}")
    body = bytes([int(code), int(tag)]) + len(payload).to_bytes(2, "little") + payload
    return bytes([START]) + body + crc16(body).to_bytes(CRC_BYTES, "big")


@dataclass(frozen=True)
class Frame:
    """A decoded frame: its code (a :class:`Reply` or :class:`Command` value), payload and
    sequence tag."""

    code: int
    payload: bytes
    tag: int = 0

    @property
    def nack(self):
        """``(Error, command byte)`` if this is a NACK, else None."""
        if self.code != Reply.NACK:
            return None
        code = self.payload[0] if self.payload else 0
        try:
            code = Error(code)
        except ValueError:
            pass
        return code, (self.payload[1] if len(self.payload) > 1 else None)


class LinkError(RuntimeError):
    """The link to a board failed."""


class LinkTimeout(LinkError):
    """No (whole) reply within the time allowed, or a write that did not complete."""


class CorruptReply(LinkError):
    """A reply had a bad CRC or was not the one expected."""


class NackError(LinkError):
    """The device refused a frame; nothing of it was applied.

    Attributes
    ----------
    error : Error or int
        The reason code.
    command : int or None
        The command byte the device saw.
    """

    def __init__(self, error, command):
        self.error, self.command = error, command
        try:
            name = Command(command).name
        except (ValueError, TypeError):
            name = f"command {command!r}"
        if isinstance(error, Error):
            reason = f"{error.name}: {error.message}"
        else:
            reason = f"unknown error code {error}"
        super().__init__(f"Device refused {name}: {reason}")


class FrameDecoder:
    """Incremental frame parser: :meth:`feed` bytes, get whole frames.

    Bytes outside frames are skipped (counted in ``skipped``); a frame with a bad CRC is counted
    in ``bad_crc`` and the decoder resynchronizes on the byte after its start byte.
    """

    def __init__(self, max_payload=MAX_LENGTH):
        self.max_payload = max_payload
        self._buffer = bytearray()
        self.skipped = 0
        self.bad_crc = 0

    def feed(self, data):
        """Add ``data``; return the list of frames it completed."""
        self._buffer += data
        frames = []
        buf = self._buffer
        while True:
            start = buf.find(START)
            if start < 0:
                self.skipped += len(buf)
                buf.clear()
                break
            if start:
                self.skipped += start
                del buf[:start]
            if len(buf) < HEADER_BYTES:
                break
            length = int.from_bytes(buf[3:5], "little")
            if length > self.max_payload:
                self.skipped += 1
                del buf[:1]
                continue
            end = HEADER_BYTES + length + CRC_BYTES
            if len(buf) < end:
                break
            if crc16(buf[1:end]) != 0:
                self.bad_crc += 1
                del buf[:1]
                continue
            frames.append(Frame(buf[1], bytes(buf[HEADER_BYTES:end - CRC_BYTES]), buf[2]))
            del buf[:end]
        return frames


def link_clock(transport):
    """Seconds of link time now: ``transport.clock()`` (simulated time for a simulator), else
    the host's monotonic clock."""
    clock = getattr(transport, "clock", None)
    return clock() if clock is not None else time.monotonic()


def read_frame(transport, timeout, *, max_skip=4096):
    """Read one frame from ``transport``, skipping bytes before its start byte.

    ``timeout`` (seconds of link time) is a deadline for the whole frame, however its bytes
    trickle in. Raises :class:`LinkTimeout` if the frame does not arrive whole by then,
    :class:`CorruptReply` on a bad CRC or after ``max_skip`` stray bytes.
    """
    deadline = link_clock(transport) + timeout

    def read(n):
        data = bytearray()
        while len(data) < n:
            left = deadline - link_clock(transport)
            if left <= 0:
                break
            chunk = transport.read(n - len(data), left)
            if not chunk:
                # Nothing within the time left: the deadline has passed. (Looping on the clock
                # alone spun forever when a wait too short for the link's clock to tick
                # returned at once, e.g. 7e-18 s on the simulator's picosecond clock.)
                break
            data += chunk
        return bytes(data)

    skipped = 0
    while True:
        byte = read(1)
        if not byte:
            raise LinkTimeout(f"No reply from the device within {timeout:.3g} s"
                              + (f" ({skipped} stray bytes)" if skipped else ""))
        if byte[0] == START:
            break
        skipped += 1
        if skipped > max_skip:
            raise CorruptReply(f"No start byte in {skipped} bytes from the device")
    head = read(HEADER_BYTES - 1)
    if len(head) < HEADER_BYTES - 1:
        raise LinkTimeout(f"Reply truncated in its header (deadline {timeout:.3g} s)")
    length = int.from_bytes(head[2:4], "little")
    rest = read(length + CRC_BYTES)
    if len(rest) < length + CRC_BYTES:
        raise LinkTimeout(f"Reply truncated: {len(rest)} of {length + CRC_BYTES} bytes after "
                          f"its header within {timeout:.3g} s")
    if crc16(head + rest) != 0:
        raise CorruptReply(f"Reply CRC mismatch (code {head[0]:#04x}, {length} bytes)")
    return Frame(head[0], bytes(rest[:length]), head[1])


def drain(transport, quiet, limit):
    """Discard input until the line has been quiet for ``quiet`` seconds; return the number of
    bytes discarded. Raises :class:`LinkError` if it is not quiet within ``limit`` seconds
    (a device streaming without end: not a pwconv board, or another baud rate)."""
    start = link_clock(transport)
    discarded = 0
    while True:
        data = transport.read(1 << 16, quiet)
        if not data:
            return discarded
        discarded += len(data)
        if link_clock(transport) - start > limit:
            raise LinkError(f"The line did not go quiet for {quiet:.3g} s within {limit:.3g} s "
                            f"({discarded} bytes): is a pwconv board at "
                            f"{getattr(transport, 'baud', '?')} baud on it?")


class SerialTransport:
    """A board's USB-serial port, through pyserial.

    Parameters
    ----------
    port : str
        Device, e.g. ``/dev/ttyUSB1`` (the FT2232H's second channel on an iCEBreaker), or a
        pyserial URL (``socket://host:port``, ``loop://``). A device is opened exclusively:
        a second open, from this process or another, raises :class:`LinkError`.
    baud : int
        Baud rate; must match the gateware's (6 Mbaud iCEBreaker; see BOARD_LINKS).
    latency : float
        Seconds added to every reply's wait, and to every write's, for USB and OS latency.
    quiet : float
        Seconds of silence that mean the device has stopped sending (:func:`drain`).
    """

    def __init__(self, port, baud=DEFAULT_BAUD, *, latency=0.5, quiet=0.05):
        import serial
        self.port, self.baud, self.latency, self.quiet = port, int(baud), latency, quiet
        try:
            # Exclusive (an advisory flock on POSIX): a second process, or a second
            # BoardDevice, interleaving frames on one board would corrupt both conversations.
            self._serial = serial.serial_for_url(port, self.baud, timeout=latency,
                                                 write_timeout=latency, exclusive=True)
        except (serial.SerialException, ValueError) as error:
            if "exclusively lock" in str(error):
                raise LinkError(f"Serial port {port} is already open in another process (or "
                                f"another BoardDevice): one host at a time talks to a board") \
                    from None
            raise LinkError(f"Cannot open serial port {port} at {self.baud} baud: {error}") \
                from None
        try:
            # The FTDI driver otherwise holds short replies for up to 16 ms.
            self._serial.set_low_latency_mode(True)
        except (AttributeError, NotImplementedError, OSError, ValueError):
            pass

    def write(self, data):
        """Send ``data``; :class:`LinkTimeout` if it is not out within ``latency`` plus three
        times its time on the line (a port that does not drain: flow control, a hung bridge)."""
        import serial
        data = bytes(data)
        self._serial.write_timeout = self.latency + 3 * frame_time(len(data), self.baud)
        try:
            self._serial.write(data)
            self._serial.flush()
        except serial.SerialTimeoutException:
            raise LinkTimeout(f"Writing {len(data)} bytes to {self.port} timed out after "
                              f"{self._serial.write_timeout:.3g} s") from None

    def read(self, n, timeout):
        """Up to ``n`` bytes; fewer only if ``timeout`` seconds passed."""
        self._serial.timeout = max(0.0, timeout)
        return self._serial.read(n)

    def clock(self):
        """Seconds, for reply deadlines."""
        return time.monotonic()

    def close(self):
        self._serial.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"SerialTransport({self.port!r}, {self.baud})"


class SimTransport:
    """The board gateware (:class:`~pwconv.hw.board.BoardTop`, the same Verilog) running in
    Verilator under cocotb, its UART pins bridged to this object.

    Simulated time passes only while bytes are being sent or a :meth:`read` waits, so timeouts
    are in simulated seconds and nothing is lost to the host being slow. See
    :class:`pwconv.sim.board_runner.BoardSimulation` for the parameters.
    """

    #: Seconds (simulated) added to every reply's wait.
    latency = 0.002
    #: Simulated seconds of silence that mean the board has stopped sending: longer than its
    #: frame timeout and than it can execute a 4 KiB frame without sending.
    quiet = 0.004

    def __init__(self, cfg, **kwargs):
        from pwconv.sim.board_runner import BoardSimulation
        self._sim = BoardSimulation(cfg, **kwargs)
        self._sim.start()
        self._finalizer = weakref.finalize(self, _close_quietly, self._sim)
        self.baud = self._sim.baud

    @property
    def simulation(self):
        return self._sim

    def write(self, data):
        self._sim.write(bytes(data))

    def read(self, n, timeout):
        return self._sim.read(n, timeout)

    def clock(self):
        """Simulated seconds (when the last read returned: time only passes in reads)."""
        return self._sim.now

    def reset(self, cycles=4):
        """Pulse the board's reset for ``cycles`` clock cycles (a power cycle of the FPGA)."""
        self._sim.reset(cycles)

    def close(self):
        """Stop the simulator; raises RuntimeError if its cocotb bridge failed."""
        self._finalizer.detach()
        self._sim.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"SimTransport({self._sim!r})"


def _close_quietly(sim):
    try:
        sim.close()
    except RuntimeError:
        pass


def frame_time(nbytes, baud):
    """Seconds ``nbytes`` take on the line (10 bits per byte)."""
    return 10 * nbytes / baud


"""Host side of the board link: frames, CRC, errors, and transports (serial port, simulator)."""

import binascii
import time
import weakref
from dataclasses import dataclass

from pwconv.hw.link.protocol import (CRC_BYTES, HEADER_BYTES, MAX_LENGTH, OVERHEAD, START,
                                     Command, Error, Identity, Reply, Status, WireFormat)

__all__ = ["START", "OVERHEAD", "MAX_LENGTH", "Command", "Reply", "Error", "Identity", "Status",
           "WireFormat", "crc16", "encode_frame", "Frame", "FrameDecoder", "read_frame",
           "LinkError", "LinkTimeout", "CorruptReply", "NackError", "SerialTransport",
           "SimTransport", "DEFAULT_BAUD", "frame_time"]

#: Baud rate of the iCEBreaker build (12 MHz / 4); the ULX3S build runs at 1 Mbaud.
DEFAULT_BAUD = 3_000_000


def crc16(data):
    """CRC-16/CCITT-FALSE of ``data``: poly 0x1021, init 0xFFFF, no reflection, no final XOR."""
    return binascii.crc_hqx(bytes(data), 0xFFFF)


def encode_frame(code, payload=b""):
    """One frame: START, ``code``, length (u16 LE), ``payload``, CRC (big-endian)."""
    payload = bytes(payload)
    if not 0 <= int(code) <= 0xFF:
        raise ValueError(f"Frame code must be a byte, not {code!r}")
    if len(payload) > MAX_LENGTH:
        raise ValueError(f"Frame payload must be at most {MAX_LENGTH} bytes, not {len(payload)}")
    body = bytes([int(code)]) + len(payload).to_bytes(2, "little") + payload
    return bytes([START]) + body + crc16(body).to_bytes(CRC_BYTES, "big")


@dataclass(frozen=True)
class Frame:
    """A decoded frame: its code (a :class:`Reply` or :class:`Command` value) and payload."""

    code: int
    payload: bytes

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
    """No (whole) reply within the time allowed."""


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
            length = int.from_bytes(buf[2:4], "little")
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
            frames.append(Frame(buf[1], bytes(buf[HEADER_BYTES:end - CRC_BYTES])))
            del buf[:end]
        return frames


def read_frame(transport, timeout, *, max_skip=4096):
    """Read one frame from ``transport``, skipping bytes before its start byte.

    ``timeout`` (seconds of link time) bounds each read. Raises :class:`LinkTimeout` if the
    frame does not arrive whole, :class:`CorruptReply` on a bad CRC.
    """
    skipped = 0
    while True:
        byte = transport.read(1, timeout)
        if not byte:
            raise LinkTimeout(f"No reply from the device within {timeout:.3g} s"
                              + (f" ({skipped} stray bytes)" if skipped else ""))
        if byte[0] == START:
            break
        skipped += 1
        if skipped > max_skip:
            raise CorruptReply(f"No start byte in {skipped} bytes from the device")
    head = transport.read(HEADER_BYTES - 1, timeout)
    if len(head) < HEADER_BYTES - 1:
        raise LinkTimeout("Reply truncated in its header")
    length = int.from_bytes(head[1:3], "little")
    rest = transport.read(length + CRC_BYTES, timeout)
    if len(rest) < length + CRC_BYTES:
        raise LinkTimeout(f"Reply truncated: {len(rest)} of {length + CRC_BYTES} bytes after "
                          f"its header")
    if crc16(head + rest) != 0:
        raise CorruptReply(f"Reply CRC mismatch (code {head[0]:#04x}, {length} bytes)")
    return Frame(head[0], bytes(rest[:length]))


class SerialTransport:
    """A board's USB-serial port, through pyserial.

    Parameters
    ----------
    port : str
        Device, e.g. ``/dev/ttyUSB1`` (the FT2232H's second channel on an iCEBreaker), or a
        pyserial URL (``socket://host:port``, ``loop://``).
    baud : int
        Baud rate; must match the gateware's (3 Mbaud iCEBreaker, 1 Mbaud ULX3S).
    latency : float
        Seconds added to every reply's wait for USB and OS latency.
    """

    def __init__(self, port, baud=DEFAULT_BAUD, *, latency=0.5):
        import serial
        self.port, self.baud, self.latency = port, int(baud), latency
        try:
            self._serial = serial.serial_for_url(port, self.baud, timeout=latency,
                                                 write_timeout=None)
        except (serial.SerialException, ValueError) as error:
            raise LinkError(f"Cannot open serial port {port} at {self.baud} baud: {error}") \
                from None
        try:
            # The FTDI driver otherwise holds short replies for up to 16 ms.
            self._serial.set_low_latency_mode(True)
        except (AttributeError, NotImplementedError, OSError, ValueError):
            pass

    def write(self, data):
        """Send ``data``."""
        self._serial.write(bytes(data))
        self._serial.flush()

    def read(self, n, timeout):
        """Up to ``n`` bytes; fewer only if ``timeout`` seconds passed."""
        self._serial.timeout = timeout
        return self._serial.read(n)

    def clear(self):
        """Discard stray input."""
        time.sleep(0.05)
        self._serial.reset_input_buffer()

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

    def clear(self):
        self._sim.read(MAX_LENGTH * 16, 0.0)

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


"""A pwconv board over its serial link: identify it, load a layer, run passes, load memory."""

import sys
import zlib

import numpy as np

from pwconv.config import VERSION, ArrayConfig
from pwconv.hw.link.protocol import ACK_BIT
from pwconv.hw.link.protocol import MEM_ADDR_BYTES
from .link import (LINK_ERRORS, MAX_LENGTH, OVERHEAD, Command, CorruptReply, Error, Identity,
                   LinkError, MemoryInfo, NackError, Status, WireFormat, drain, encode_frame,
                   frame_time, link_clock, read_frame)
from .devices import Device, PassJob
from .program import pack_pixels, unpack_results

__all__ = ["BoardDevice", "BOARD_BACKENDS", "RETRIES", "open_board"]

#: Accelerator backends served by a :class:`BoardDevice`.
BOARD_BACKENDS = ("board", "board-sim")

#: Times a request is sent again after a link failure (no reply by its deadline, a corrupt
#: reply, or a NACK in :data:`~pwconv.hw.link.protocol.LINK_ERRORS`). Every request is
#: idempotent (a RUN recomputes the same results), so sending one again is safe.
RETRIES = 3

#: Seconds the line may keep talking before the host gives up draining it.
DRAIN_LIMIT = 2.0

#: Memory loads are verified (and written again on a mismatch) in blocks of this many bytes:
#: a block whose CRC-32 differs after writing is written once more, a second mismatch raises.
VERIFY_BLOCK = 1 << 16

#: Transfers of at least this many bytes show a progress bar (``progress=None``).
PROGRESS_BYTES = 1 << 16

class BoardDevice(Device):
    """Runs each on-chip pass on a pwconv board (or its simulation) over the link protocol.

    On creation it drains the line until it is quiet (a board may still be streaming a reply
    to a host that died), then asks the device for its identity and checks every field; the
    device's :class:`ArrayConfig` is the one used for packing. Frames wait for their reply
    (stop and wait), each request with the next sequence tag; a reply whose tag is not the
    awaited one is discarded. Long transfers are split into frames of at most the device's
    ``max_payload`` bytes, runs into whole pixels.

    Parameters
    ----------
    transport : SerialTransport or SimTransport
        The byte link (anything with ``write``, ``read(n, timeout)``, ``close``, ``baud``,
        ``latency`` and ``quiet``; ``clock()`` for link time if it is not the host's).
    cfg : ArrayConfig or None
        The host's configuration; if given it must equal the device's.
    max_payload : int or None
        Largest payload to put in one frame, if smaller than the device's.
    retries : int
        Times a request is sent again after a link failure (:data:`RETRIES`).

    Raises
    ------
    LinkError
        If the device does not answer, answers garbage or runs an incompatible gateware.
    ValueError
        If ``cfg`` differs from the device's configuration.
    """

    simulated = False

    def __init__(self, transport, cfg: ArrayConfig | None = None, *, max_payload=None,
                 retries=RETRIES):
        self.transport = transport
        self._max_payload = max_payload
        self.retries = retries
        self._dirty = True
        self._tag = 0
        self._quiet = getattr(transport, "quiet", 0.05)
        #: Link failures recovered by sending a request again, and replies discarded because
        #: their tag was not the awaited one.
        self.resent = 0
        self.stale_replies = 0
        #: Memory blocks written again because their CRC-32 differed after a write.
        self.crc_rewrites = 0
        self._memory_info = None
        self.identity = self.identify()
        ident = self.identity
        if ident.version[0] != VERSION[0]:
            raise LinkError(f"Device runs gateware version {ident.version[0]}.{ident.version[1]}"
                            f", this host speaks {VERSION[0]}.{VERSION[1]}")
        wire = WireFormat(ident.config)
        sizes = (ident.layer_bytes, ident.weight_bytes, ident.param_bytes)
        ours = (wire.layer_bytes, wire.weight_bytes, wire.param_bytes)
        if sizes != ours:
            raise LinkError(f"Device's word sizes (layer, weight, param bytes) {sizes} differ "
                            f"from this host's {ours} for the same configuration")
        if not wire.min_payload <= ident.max_payload <= MAX_LENGTH:
            raise LinkError(f"Device's max_payload {ident.max_payload} must be between "
                            f"{wire.min_payload} (its largest word or pixel) and {MAX_LENGTH}")
        if ident.clk_freq <= 0:
            raise LinkError(f"Device's clock frequency must be positive, not {ident.clk_freq}")
        baud = getattr(transport, "baud", None)
        if baud is not None and ident.baud != baud:
            raise LinkError(f"Device says it runs at {ident.baud} baud, but the port is set to "
                            f"{baud}")
        if not 0 < ident.timeout_s <= 1.0:
            raise LinkError(f"Device's frame timeout must be between 0 and 1 s, not "
                            f"{ident.timeout_s:.3g} s")
        if cfg is not None and cfg != ident.config:
            raise ValueError(f"The device is built for {ident.config}, but the host is set up "
                             f"for {cfg}; use the device's configuration "
                             f"({ident.config.cli_flags()})")
        self.cfg = cfg if cfg is not None else ident.config
        self.wire = wire
        # Silence long enough for the device to time out a partial frame and send its NACK.
        self._quiet = max(self._quiet, 4 * ident.timeout_s)

    @property
    def max_payload(self):
        """Largest payload this host puts in one frame."""
        if self._max_payload is None:
            return self.identity.max_payload
        return min(self._max_payload, self.identity.max_payload)

    def close(self):
        """Close the transport."""
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # Requests.

    def reply_timeout(self, nbytes):
        """Seconds to wait for a reply when ``nbytes`` cross the link in both directions."""
        return self.transport.latency + 3 * frame_time(nbytes, self.transport.baud)

    def resync(self):
        """Drain the line until it is quiet (stray replies, a partial frame the device is
        timing out), so that the next request starts on a clean line."""
        drain(self.transport, self._quiet, DRAIN_LIMIT)
        self._dirty = False

    def request(self, command, payload=b"", *, reply_bytes=0, compute=0.0):
        """Send one frame and return the reply's payload.

        The request carries the next sequence tag and only a reply with that tag is taken
        (others are discarded). After a link failure (no reply by the deadline, a corrupt reply,
        a NACK saying the frame did not arrive intact or the device was busy) the line is
        drained and the request sent again with a new tag, up to ``retries`` times. Raises
        :class:`NackError` if the device refused the frame (nothing of it applied),
        :class:`LinkTimeout` or :class:`CorruptReply` if the link still failed.
        ``compute`` (seconds) is added to the reply's deadline: the device's own time, e.g.
        for a MEM_CRC over a large region.
        """
        failure = None
        for _ in range(self.retries + 1):
            if failure is not None:
                self.resent += 1
            if self._dirty:
                self.resync()
            self._tag = (self._tag + 1) & 0xFF
            frame = encode_frame(command, payload, self._tag)
            timeout = self.reply_timeout(len(frame) + reply_bytes + OVERHEAD) + compute
            try:
                self.transport.write(frame)
                reply = self._await(self._tag, timeout)
            except LinkError as error:
                self._dirty = True
                failure = error
                continue
            nack = reply.nack
            if nack is not None:
                failure = NackError(*nack)
                if nack[0] in LINK_ERRORS:
                    self._dirty = True
                    continue
                raise failure
            if reply.code != int(command) | ACK_BIT:
                self._dirty = True
                raise CorruptReply(f"Reply {reply.code:#04x} with the tag of "
                                   f"{Command(command).name}")
            return reply.payload
        raise failure

    def _await(self, tag, timeout):
        """The reply tagged ``tag``, by ``timeout`` seconds from now; others are discarded."""
        deadline = link_clock(self.transport) + timeout
        while True:
            reply = read_frame(self.transport, max(0.0, deadline - link_clock(self.transport)))
            if reply.tag == tag:
                return reply
            self.stale_replies += 1

    def identify(self):
        """The device's :class:`Identity` (configuration, version, link parameters)."""
        payload = self.request(Command.IDENTIFY, reply_bytes=64)
        try:
            return Identity.unpack(payload)
        except ValueError as error:
            raise CorruptReply(f"The device's identity is not a pwconv board's ({error})") \
                from None

    def status(self):
        """The device's :class:`Status` counters."""
        return Status.unpack(self.request(Command.STATUS, reply_bytes=16))

    def set_layer(self, layer_word):
        """Set the layer word (``LayerProgram.layer_word``)."""
        self.request(Command.SET_LAYER, int(layer_word).to_bytes(self.wire.layer_bytes,
                                                                   "little"))

    def _load(self, command, words, nbytes):
        per_frame = max(1, self.max_payload // nbytes)
        for at in range(0, len(words), per_frame):
            chunk = words[at:at + per_frame]
            payload = b"".join(int(word).to_bytes(nbytes, "little") for word in chunk)
            count = int.from_bytes(self.request(command, payload, reply_bytes=2), "little")
            if count != len(chunk):
                self._dirty = True
                raise CorruptReply(f"Device took {count} of {len(chunk)} words")

    def load_weights(self, words):
        """Write weight words (``LayerProgram.weight_words``); the accelerator must be idle."""
        self._load(Command.LOAD_WEIGHTS, list(words), self.wire.weight_bytes)

    def load_params(self, words):
        """Write param words (``LayerProgram.param_words``)."""
        self._load(Command.LOAD_PARAMS, list(words), self.wire.param_bytes)

    def pixels_per_frame(self, beats, tiles, raw):
        """Most whole pixels one RUN frame carries (payload and RESULT size limits)."""
        pixel = beats * self.wire.beat_bytes
        result = self.wire.result_bytes(tiles, raw)
        return max(1, min(self.max_payload // pixel, MAX_LENGTH // result))

    def run(self, pixel_words, *, beats, tiles, raw):
        """Stream pixel beats (``beats`` per pixel) through the loaded layer; returns the
        result vectors as ints (``cols`` int32 lanes each), like the accelerator's ``o``."""
        pixel_words = list(pixel_words)
        if len(pixel_words) % beats:
            raise ValueError(f"{len(pixel_words)} pixel words is not a whole number of pixels "
                             f"of {beats} beats")
        cols, nbytes = self.cfg.cols, self.wire.beat_bytes
        per_frame = self.pixels_per_frame(beats, tiles, raw) * beats
        dtype = np.dtype("<i4") if raw else np.dtype(np.int8)
        results = []
        for at in range(0, len(pixel_words), per_frame):
            chunk = pixel_words[at:at + per_frame]
            want = len(chunk) // beats * self.wire.result_bytes(tiles, raw)
            payload = b"".join(int(word).to_bytes(nbytes, "little") for word in chunk)
            reply = self.request(Command.RUN, payload, reply_bytes=want)
            if len(reply) != want:
                self._dirty = True
                raise CorruptReply(f"RESULT of {len(reply)} bytes, expected {want}")
            lanes = np.frombuffer(reply, dtype=dtype).astype("<i4").reshape(-1, cols)
            results.extend(int.from_bytes(vector.tobytes(), "little") for vector in lanes)
        return results

    # Board memory (builds with a memory; docs/protocol.md, "Board memory").

    def memory_info(self):
        """The board memory's :class:`MemoryInfo` (size, word bytes), asked once.

        Raises :class:`LinkError` if the board has no memory (its gateware refuses the
        memory commands as unknown)."""
        if getattr(self, "_memory_info", None) is None:
            try:
                payload = self.request(Command.MEM_INFO, reply_bytes=8)
            except NackError as error:
                if error.error == Error.UNKNOWN_COMMAND:
                    raise LinkError("The board has no memory (its gateware has no memory "
                                    "commands)") from None
                raise
            try:
                self._memory_info = MemoryInfo.unpack(payload)
            except ValueError as error:
                raise CorruptReply(f"The device's memory info is not valid ({error})") \
                    from None
        return self._memory_info

    def _check_region(self, addr, n, what):
        size = self.memory_info().size
        for name, value in (("Address", addr), ("Length", n)):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
                    or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
        if addr + n > size:
            raise ValueError(f"Cannot {what} bytes {addr:#x}..{addr + n:#x} (end exclusive): "
                             f"the board memory is bytes 0x0..{size:#x}")
        return int(addr), int(n)

    def _memory_request(self, command, addr, n, payload, **kwargs):
        """A memory request; a BAD_RANGE NACK (the host's check passed, so the device's
        memory differs from what it said) names the range."""
        try:
            return self.request(command, payload, **kwargs)
        except NackError as error:
            if error.error == Error.BAD_RANGE:
                raise LinkError(f"Device refused {Command(command).name} of bytes {addr:#x}.."
                                f"{addr + n:#x}: {Error.BAD_RANGE.message} (it reports "
                                f"{self.memory_info().size:#x} bytes)") from None
            raise

    def _progress(self, total, desc, progress):
        if progress is False or (progress is None and total < PROGRESS_BYTES):
            return None
        from tqdm import tqdm
        return tqdm(total=total, unit="B", unit_scale=True, desc=desc, leave=True,
                    file=sys.stderr)

    def _write_block(self, addr, data, bar):
        chunk = self.max_payload - MEM_ADDR_BYTES
        if chunk < 1:
            raise ValueError(f"A MEM_WRITE needs a payload of at least {MEM_ADDR_BYTES + 1} "
                             f"bytes, but frames are limited to {self.max_payload}")
        for at in range(0, len(data), chunk):
            part = data[at:at + chunk]
            start = addr + at
            count = int.from_bytes(self._memory_request(
                Command.MEM_WRITE, start, len(part), start.to_bytes(MEM_ADDR_BYTES, "little")
                + part, reply_bytes=2), "little")
            if count != len(part):
                self._dirty = True
                raise CorruptReply(f"Device wrote {count} of {len(part)} bytes")
            if bar is not None:
                bar.update(len(part))

    def write_memory(self, addr, data, *, verify=True, progress=None):
        """Write ``data`` (bytes-like, or a NumPy array's bytes) to board memory at byte
        ``addr``, in frames of at most ``max_payload`` bytes (each CRC-checked by the link
        and sent again after a link failure; writes are idempotent).

        With ``verify`` (the default) every block of :data:`VERIFY_BLOCK` bytes is checked
        with the board's MEM_CRC against :func:`zlib.crc32` of what was sent; a block that
        differs is written again, and a second mismatch raises :class:`LinkError`. A bar
        shows the progress from 64 KiB on (``progress`` True or False forces it on or off).
        Raises ValueError, naming the range, if it is not inside the memory.
        """
        if isinstance(data, np.ndarray):
            data = data.tobytes()
        try:
            data = bytes(data)
        except TypeError:
            raise TypeError(f"Data must be bytes-like, not {type(data).__name__}") from None
        addr, n = self._check_region(addr, len(data), "write")
        bar = self._progress(n, "board memory write", progress)
        try:
            for at in range(0, n, VERIFY_BLOCK):
                block = data[at:at + VERIFY_BLOCK]
                for attempt in range(2):
                    self._write_block(addr + at, block, bar)
                    if not verify or self.memory_crc(addr + at, len(block)) \
                            == zlib.crc32(block):
                        break
                    if attempt == 0:
                        self.crc_rewrites += 1
                        if bar is not None:
                            bar.update(-len(block))
                else:
                    end = addr + at + len(block)
                    raise LinkError(f"Board memory bytes {addr + at:#x}..{end:#x} still differ "
                                    f"from the data after writing them twice (CRC-32 "
                                    f"mismatch): the memory or its port is faulty")
        finally:
            if bar is not None:
                bar.close()

    def read_memory(self, addr, n, *, progress=None):
        """``n`` bytes of board memory from byte ``addr``, in replies of at most
        ``max_payload`` bytes; a progress bar from 64 KiB on (as :meth:`write_memory`)."""
        addr, n = self._check_region(addr, n, "read")
        out = bytearray()
        bar = self._progress(n, "board memory read", progress)
        try:
            while len(out) < n:
                start = addr + len(out)
                want = min(self.max_payload, n - len(out))
                reply = self._memory_request(
                    Command.MEM_READ, start, want, start.to_bytes(MEM_ADDR_BYTES, "little")
                    + want.to_bytes(2, "little"), reply_bytes=want)
                if len(reply) != want:
                    self._dirty = True
                    raise CorruptReply(f"MEM_DATA of {len(reply)} bytes, expected {want}")
                out += reply
                if bar is not None:
                    bar.update(want)
        finally:
            if bar is not None:
                bar.close()
        return bytes(out)

    def memory_crc(self, addr, n):
        """The CRC-32 (:func:`zlib.crc32`) of ``n`` bytes of board memory from byte ``addr``,
        computed by the board (nothing is read back)."""
        addr, n = self._check_region(addr, n, "check")
        if n == 0:
            return zlib.crc32(b"")
        words = -(-n // self.memory_info().word_bytes) + 1
        # The board takes a word per cycle when its memory keeps up; allow 4 cycles a word.
        compute = 4 * words / self.identity.clk_freq
        reply = self._memory_request(
            Command.MEM_CRC, addr, n, addr.to_bytes(MEM_ADDR_BYTES, "little")
            + n.to_bytes(4, "little"), reply_bytes=4, compute=compute)
        if len(reply) != 4:
            self._dirty = True
            raise CorruptReply(f"MEM_CRC of {len(reply)} bytes, expected 4")
        return int.from_bytes(reply, "little")

    def run_pass(self, job, *args, **kwargs):
        """Run one pass: a :class:`PassJob`, or its fields (``x`` int8 [P, C], ``w``, folded
        ``bias``, ``multiplier``, ``shift``, keyword ``output_zero_point``,
        ``activation_min``, ``activation_max``, ``raw``). Returns (int32 [P, F], None): the
        link, not the array, sets the pace, so no cycle count is reported."""
        if not isinstance(job, PassJob):
            job = PassJob(job, *args, **kwargs)
        program = job.program(self.cfg)
        self.set_layer(program.layer_word)
        self.load_weights(program.weight_words)
        self.load_params(program.param_words)
        words = self.run(pack_pixels(self.cfg, job.x), beats=program.beats, tiles=program.tiles,
                         raw=program.raw)
        return unpack_results(self.cfg, words, job.x.shape[0], job.w.shape[1]), None


def open_board(backend, cfg=None, *, port=None, baud=None, **sim_options):
    """A :class:`BoardDevice` for ``board`` (a serial port) or ``board-sim`` (Verilator).

    ``cfg`` None takes the device's configuration (``board``) or the default one
    (``board-sim``, which builds the gateware for ``cfg``).
    """
    from .link import DEFAULT_BAUD, SerialTransport, SimTransport
    if backend == "board":
        transport = SerialTransport(port or "/dev/ttyUSB1", baud or DEFAULT_BAUD)
    elif backend == "board-sim":
        transport = SimTransport(cfg if cfg is not None else ArrayConfig(), **sim_options)
    else:
        raise ValueError(f"Board backend must be one of {', '.join(BOARD_BACKENDS)}, "
                         f"not {backend!r}")
    try:
        return BoardDevice(transport, cfg)
    except BaseException:
        transport.close()
        raise

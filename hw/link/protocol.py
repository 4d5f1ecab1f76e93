"""Wire format of the board link: frame layout, command, reply and error codes, payloads."""

import enum
import struct
from dataclasses import dataclass

from amaranth.hdl import Shape

from pwconv.config import MAC_STYLES, REQUANTIZERS, ROUNDINGS, VERSION, ArrayConfig
from pwconv.hw import layouts

__all__ = ["PROTOCOL", "START", "HEADER_BYTES", "CRC_BYTES", "OVERHEAD", "MAX_LENGTH", "MAGIC",
           "Command", "Reply", "Error", "LINK_ERRORS", "WireFormat", "Identity", "Status",
           "IDENTITY_BYTES", "STATUS_BYTES", "ACK_BIT", "FLAG_LAYER_SET",
           "FLAG_ACCELERATOR_IDLE", "FLAG_WEIGHTS_VALID", "FLAG_PARAMS_VALID",
           "ROUNDING_DOUBLE", "fixed_lengths", "rounding_mask", "MEMORY_COMMANDS",
           "MemoryInfo", "MEMORY_INFO_BYTES", "MEM_ADDR_BYTES", "PROGRAM_COMMANDS",
           "StopReason", "ProgramFault", "ProgramStop", "RUN_PROGRAM_BYTES",
           "PROGRAM_STOP_BYTES", "READ_COUNTERS_BYTES", "COUNTER_BYTES", "STOP_ESTIMATED",
           "pack_run_program",
           "unpack_run_program", "pack_read_counters", "unpack_read_counters",
           "pack_counters", "unpack_counters"]

#: Link protocol revision, reported in IDENTITY. Revision 2 added the sequence tag to every
#: frame, BUSY NACKs, one NACK per refused frame and weight/param validity (docs/protocol.md).
PROTOCOL = 2

#: First byte of every frame, both directions. A receiver hunts for it to (re)synchronize.
START = 0xA5

#: Start byte, command byte, sequence tag and the payload length (u16, little-endian). A reply
#: echoes the tag of the request it answers.
HEADER_BYTES = 5

#: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final XOR) over the command,
#: tag, length and payload bytes, sent most significant byte first, so that the CRC run over a whole
#: frame after its start byte leaves the register at zero.
CRC_BYTES = 2

#: Bytes a frame adds to its payload.
OVERHEAD = HEADER_BYTES + CRC_BYTES

#: Largest payload the length field can name.
MAX_LENGTH = 0xFFFF

#: First four bytes of the IDENTITY reply.
MAGIC = b"PWCV"


class Command(enum.IntEnum):
    """Request codes, host to device."""

    #: Empty payload; reply IDENTITY.
    IDENTIFY = 0x01
    #: Empty payload; reply STATUS.
    STATUS = 0x02
    #: The layer word (``layer_bytes``, little-endian); reply LAYER_SET, empty.
    SET_LAYER = 0x03
    #: Whole weight words, ``weight_bytes`` each; reply WEIGHTS_LOADED, u16 word count.
    LOAD_WEIGHTS = 0x04
    #: Whole param words, ``param_bytes`` each; reply PARAMS_LOADED, u16 word count.
    LOAD_PARAMS = 0x05
    #: Whole pixels, ``beats`` beats of ``rows`` bytes each; reply RESULT with their results.
    RUN = 0x06
    #: Board memory (builds with a memory only; others NACK them UNKNOWN_COMMAND). Empty
    #: payload; reply MEM_INFO: the memory's size in bytes (u32) and its word bytes (u8).
    MEM_INFO = 0x07
    #: Byte address (u32) then the bytes to write there (at least one); reply MEM_WRITTEN,
    #: u16 byte count.
    MEM_WRITE = 0x08
    #: Byte address (u32), byte count (u16, at least 1); reply MEM_DATA with the bytes.
    MEM_READ = 0x09
    #: Byte address (u32), byte count (u32, at least 1); reply MEM_CRC, the region's CRC-32
    #: (``zlib.crc32``) as a u32.
    MEM_CRC = 0x0A
    #: Layer program (builds with a command processor; others NACK them UNKNOWN_COMMAND).
    #: Start descriptor (u16), run number (u16), image id (u32); reply PROGRAM_STOPPED
    #: (:class:`ProgramStop`): where and why the program stopped, and its cycles.
    RUN_PROGRAM = 0x0B
    #: First descriptor (u16), descriptor count (u16, at least 1); reply COUNTERS: per
    #: descriptor of its last execution, cycles (u32) and SDRAM bytes moved (u32).
    READ_COUNTERS = 0x0C


#: Reply code of a command that succeeded: the command code with this bit set.
ACK_BIT = 0x80


class Reply(enum.IntEnum):
    """Reply codes, device to host: one reply per request frame (and per refused frame)."""

    IDENTITY = Command.IDENTIFY | ACK_BIT
    STATUS = Command.STATUS | ACK_BIT
    LAYER_SET = Command.SET_LAYER | ACK_BIT
    WEIGHTS_LOADED = Command.LOAD_WEIGHTS | ACK_BIT
    PARAMS_LOADED = Command.LOAD_PARAMS | ACK_BIT
    #: The result vectors of a RUN frame's pixels, in order: per vector ``cols`` lanes, one byte
    #: each (int8) or, in raw mode, four bytes each (int32, little-endian).
    RESULT = Command.RUN | ACK_BIT
    MEM_INFO = Command.MEM_INFO | ACK_BIT
    MEM_WRITTEN = Command.MEM_WRITE | ACK_BIT
    MEM_DATA = Command.MEM_READ | ACK_BIT
    MEM_CRC = Command.MEM_CRC | ACK_BIT
    PROGRAM_STOPPED = Command.RUN_PROGRAM | ACK_BIT
    COUNTERS = Command.READ_COUNTERS | ACK_BIT
    #: The frame was refused and nothing of it applied; payload: error code, command byte. Its
    #: tag is the refused frame's (as received: a garbled tag is echoed garbled).
    NACK = 0xFF


class Error(enum.IntEnum):
    """Reason codes of a NACK (and of STATUS ``last_error``)."""

    NONE = 0
    BAD_CRC = 1
    TIMEOUT = 2
    UNKNOWN_COMMAND = 3
    BAD_LENGTH = 4
    TOO_LONG = 5
    FRAMING = 6
    BAD_LAYER = 7
    NO_LAYER = 8
    BAD_ADDRESS = 9
    TOO_MANY = 10
    BUSY = 11
    NO_WEIGHTS = 12
    NO_PARAMS = 13
    #: A layer word asking for a rounding mode the build leaves out.
    BAD_ROUNDING = 14
    #: A memory command's byte range reaches outside the board memory (nothing written).
    BAD_RANGE = 15
    #: RUN_PROGRAM: the memory holds no program image (bad magic) or its header's image id is
    #: not the one the request names (a reset board, another model's image). Nothing ran.
    NO_IMAGE = 16
    #: RUN_PROGRAM: the start descriptor is past the program's end; READ_COUNTERS: the
    #: descriptors asked for are not all in the program.
    BAD_DESCRIPTOR = 17

    @property
    def message(self):
        """What the code means, for error messages."""
        return _MESSAGES[self]


_MESSAGES = {
    Error.NONE: "no error",
    Error.BAD_CRC: "frame CRC mismatch",
    Error.TIMEOUT: "frame truncated (inter-byte timeout)",
    Error.UNKNOWN_COMMAND: "unknown command",
    Error.BAD_LENGTH: "payload length wrong for the command (fixed-size command, or not a whole "
                      "number of words or pixels)",
    Error.TOO_LONG: "payload longer than the device's frame buffer",
    Error.FRAMING: "UART framing error inside a frame (baud rate mismatch or line noise)",
    Error.BAD_LAYER: "layer out of range (beats or tiles zero or above the maximum, or "
                     "beats * tiles above the weight depth)",
    Error.NO_LAYER: "RUN before any SET_LAYER",
    Error.BAD_ADDRESS: "a weight or param word names a row, address or tile that does not exist",
    Error.TOO_MANY: "the RUN frame's results would exceed one RESULT frame (65535 bytes)",
    Error.BUSY: "a frame arrived while the device was still executing the previous one",
    Error.NO_WEIGHTS: "RUN before any weights were loaded for the layer (since reset or the "
                      "last SET_LAYER of another shape)",
    Error.NO_PARAMS: "RUN before any params were loaded for the layer (since reset or the "
                     "last SET_LAYER of another shape)",
    Error.BAD_ROUNDING: "the layer's rounding mode is not one this build includes",
    Error.BAD_RANGE: "the address range is outside the board memory (nothing written)",
    Error.NO_IMAGE: "the board memory holds no program image, or another one than the request "
                    "names (nothing ran)",
    Error.BAD_DESCRIPTOR: "the descriptor index is outside the loaded program",
}

#: Reasons that say the frame did not arrive as sent (line noise, a lost byte, a busy device):
#: the host may send it again. Every other reason is the device's verdict on a frame that
#: arrived intact (its CRC matched), and sending it again gets the same NACK.
LINK_ERRORS = frozenset({Error.BAD_CRC, Error.TIMEOUT, Error.UNKNOWN_COMMAND, Error.BAD_LENGTH,
                         Error.TOO_LONG, Error.FRAMING, Error.BUSY})


def _bytes(shape):
    return (Shape.cast(shape).width + 7) // 8


@dataclass(frozen=True)
class WireFormat:
    """Byte sizes of the words on the link for one :class:`ArrayConfig`.

    Every word travels little-endian, padded with zero bits to whole bytes.
    """

    cfg: ArrayConfig

    @property
    def layer_bytes(self):
        """Bytes of the SET_LAYER payload (a ``runtime_config`` word)."""
        return _bytes(layouts.runtime_config(self.cfg))

    @property
    def weight_bytes(self):
        """Bytes per ``weight_word``."""
        return _bytes(layouts.weight_word(self.cfg))

    @property
    def param_bytes(self):
        """Bytes per ``param_word``."""
        return _bytes(layouts.param_word(self.cfg))

    @property
    def beat_bytes(self):
        """Bytes per pixel beat: one per row."""
        return self.cfg.rows

    def lane_bytes(self, raw):
        """Bytes per result lane: 4 (int32) in raw mode, else 1 (the int8 result)."""
        return 4 if raw else 1

    def result_bytes(self, tiles, raw):
        """RESULT payload bytes per pixel."""
        return tiles * self.cfg.cols * self.lane_bytes(raw)

    @property
    def max_pixel_bytes(self):
        """Bytes of the largest pixel (``max_beats`` beats)."""
        return self.cfg.max_beats * self.cfg.rows

    @property
    def max_result_bytes(self):
        """RESULT bytes of one pixel of the largest layer, raw."""
        return self.result_bytes(self.cfg.max_tiles, True)

    @property
    def min_payload(self):
        """Smallest frame buffer that takes any single word or pixel."""
        return max(self.layer_bytes, self.weight_bytes, self.param_bytes, self.max_pixel_bytes)


_IDENTITY = struct.Struct("<4sBBB9I3H4B")

#: Payload bytes of the IDENTITY reply.
IDENTITY_BYTES = _IDENTITY.size

#: IDENTITY ``roundings`` bit of the only requantization rounding this gateware has (TFLite's
#: reference "double rounding"). Bit ``i`` is reserved for ``ROUNDINGS[i]`` (issue 9).
ROUNDING_DOUBLE = 1 << ROUNDINGS.index("double")


def rounding_mask(cfg: ArrayConfig):
    """The build's rounding modes as a bit mask: bit i for :data:`ROUNDINGS` ``[i]``."""
    return sum(1 << ROUNDINGS.index(r) for r in cfg.roundings)


@dataclass(frozen=True)
class Identity:
    """What a device says about itself (the IDENTITY reply).

    Payload, little-endian: magic ``PWCV``; protocol revision (u8, :data:`PROTOCOL`); gateware
    version major, minor (u8); rows, cols, max_channels, max_filters, weight_depth,
    max_payload, clk_freq, baud, timeout (inter-byte frame timeout in clock cycles) (u32);
    layer_bytes, weight_bytes, param_bytes (u16); the mapping: mac_style (u8, an index into
    :data:`~pwconv.config.MAC_STYLES`), requantizer (u8, into
    :data:`~pwconv.config.REQUANTIZERS`), requant_steps (u8); roundings (u8, bit i set when
    the build includes the rounding mode :data:`~pwconv.config.ROUNDINGS` ``[i]``,
    :func:`rounding_mask`).
    """

    version: tuple
    config: ArrayConfig
    max_payload: int
    clk_freq: int
    baud: int
    layer_bytes: int
    weight_bytes: int
    param_bytes: int
    timeout: int
    protocol: int = PROTOCOL
    roundings: int = ROUNDING_DOUBLE

    @classmethod
    def of(cls, cfg: ArrayConfig, *, max_payload, clk_freq, baud, timeout):
        """The identity of a device built from ``cfg`` with this gateware version."""
        wire = WireFormat(cfg)
        return cls(tuple(VERSION), cfg, max_payload, clk_freq, baud, wire.layer_bytes,
                   wire.weight_bytes, wire.param_bytes, timeout, roundings=rounding_mask(cfg))

    @property
    def timeout_s(self):
        """The device's inter-byte frame timeout, in seconds."""
        return self.timeout / self.clk_freq

    def pack(self):
        cfg = self.config
        return _IDENTITY.pack(MAGIC, self.protocol, *self.version, cfg.rows, cfg.cols,
                              cfg.max_channels, cfg.max_filters, cfg.weight_depth,
                              self.max_payload, self.clk_freq, self.baud, self.timeout,
                              self.layer_bytes, self.weight_bytes, self.param_bytes,
                              MAC_STYLES.index(cfg.mac_style),
                              REQUANTIZERS.index(cfg.requantizer), cfg.requant_steps,
                              self.roundings)

    @classmethod
    def unpack(cls, payload):
        """Parse an IDENTITY payload; ValueError naming the field if it is not one of a
        protocol-2 pwconv device with a valid configuration."""
        if len(payload) != IDENTITY_BYTES:
            raise ValueError(f"IDENTITY payload must be {IDENTITY_BYTES} bytes, "
                             f"not {len(payload)}")
        (magic, protocol, major, minor, rows, cols, max_channels, max_filters, weight_depth,
         max_payload, clk_freq, baud, timeout, layer_bytes, weight_bytes, param_bytes,
         mac_style, requantizer, requant_steps, roundings) = _IDENTITY.unpack(payload)
        if magic != MAGIC:
            raise ValueError(f"IDENTITY magic must be {MAGIC!r}, not {magic!r}")
        if protocol != PROTOCOL:
            raise ValueError(f"IDENTITY protocol must be {PROTOCOL}, not {protocol}")
        if mac_style >= len(MAC_STYLES) or requantizer >= len(REQUANTIZERS):
            raise ValueError(f"IDENTITY mapping ({mac_style}, {requantizer}) is not one this "
                             f"host knows")
        if not roundings or roundings >> len(ROUNDINGS):
            raise ValueError(f"IDENTITY rounding modes {roundings:#04x} are not ones this host "
                             f"knows")
        try:
            cfg = ArrayConfig(rows=rows, cols=cols, max_channels=max_channels,
                              max_filters=max_filters, weight_depth=weight_depth,
                              mac_style=MAC_STYLES[mac_style],
                              requantizer=REQUANTIZERS[requantizer],
                              requant_steps=requant_steps,
                              roundings=tuple(r for i, r in enumerate(ROUNDINGS)
                                              if roundings >> i & 1))
        except (TypeError, ValueError) as error:
            raise ValueError(f"IDENTITY configuration is not valid: {error}") from None
        return cls((major, minor), cfg, max_payload, clk_freq, baud, layer_bytes,
                   weight_bytes, param_bytes, timeout, protocol, roundings)


_STATUS = struct.Struct("<BBHHHH")

#: Payload bytes of the STATUS reply.
STATUS_BYTES = _STATUS.size

#: STATUS ``flags`` bits.
FLAG_LAYER_SET = 0x01
FLAG_ACCELERATOR_IDLE = 0x02
FLAG_WEIGHTS_VALID = 0x04
FLAG_PARAMS_VALID = 0x08


@dataclass(frozen=True)
class Status:
    """Device counters (the STATUS reply), read as they are sent: ``frames_ok`` counts the
    STATUS itself. Counters are 16 bits and wrap.

    Payload, little-endian: flags (u8: bit 0 a layer is set, bit 1 the accelerator is idle,
    bit 2 the layer's weights are loaded, bit 3 its params are), last_error (u8, an
    :class:`Error`), frames_ok, frames_refused, uart_errors (framing errors on the line),
    dropped (received bytes lost: UART overruns, and refused frames whose NACK could not be
    queued because the previous refusal's NACK was still waiting) as u16.
    """

    layer_set: bool
    accelerator_idle: bool
    last_error: Error
    frames_ok: int
    frames_refused: int
    uart_errors: int
    dropped: int
    weights_valid: bool = False
    params_valid: bool = False

    @classmethod
    def unpack(cls, payload):
        if len(payload) != STATUS_BYTES:
            raise ValueError(f"STATUS payload must be {STATUS_BYTES} bytes, not {len(payload)}")
        flags, last, ok, refused, uart, dropped = _STATUS.unpack(payload)
        try:
            last = Error(last)
        except ValueError:
            raise ValueError(f"STATUS names unknown error code {last}") from None
        return cls(bool(flags & FLAG_LAYER_SET), bool(flags & FLAG_ACCELERATOR_IDLE), last, ok,
                   refused, uart, dropped, bool(flags & FLAG_WEIGHTS_VALID),
                   bool(flags & FLAG_PARAMS_VALID))


def fixed_lengths(cfg: ArrayConfig, *, memory=False):
    """Payload length each command must have, None where it varies (multiples of a word);
    the memory commands only for a build with a memory (``memory``)."""
    lengths = {
        Command.IDENTIFY: 0,
        Command.STATUS: 0,
        Command.SET_LAYER: WireFormat(cfg).layer_bytes,
        Command.LOAD_WEIGHTS: None,
        Command.LOAD_PARAMS: None,
        Command.RUN: None,
    }
    if memory:
        lengths.update({
            Command.MEM_INFO: 0,
            Command.MEM_WRITE: None,
            Command.MEM_READ: MEM_ADDR_BYTES + 2,
            Command.MEM_CRC: MEM_ADDR_BYTES + 4,
        })
    return lengths


#: The board-memory commands (builds with a memory).
MEMORY_COMMANDS = (Command.MEM_INFO, Command.MEM_WRITE, Command.MEM_READ, Command.MEM_CRC)

#: Bytes of the byte address that starts MEM_WRITE, MEM_READ and MEM_CRC payloads (u32 LE).
MEM_ADDR_BYTES = 4

_MEMORY_INFO = struct.Struct("<IB")

#: Payload bytes of the MEM_INFO reply.
MEMORY_INFO_BYTES = _MEMORY_INFO.size


@dataclass(frozen=True)
class MemoryInfo:
    """The board memory as the device reports it (the MEM_INFO reply).

    Payload, little-endian: size in bytes (u32), bytes per memory word (u8, the port's
    ``data_width // 8``). Byte ``a`` of the memory is byte ``a % word_bytes`` of word
    ``a // word_bytes``.
    """

    size: int
    word_bytes: int

    def pack(self):
        return _MEMORY_INFO.pack(self.size, self.word_bytes)

    @classmethod
    def unpack(cls, payload):
        if len(payload) != MEMORY_INFO_BYTES:
            raise ValueError(f"MEM_INFO payload must be {MEMORY_INFO_BYTES} bytes, "
                             f"not {len(payload)}")
        size, word_bytes = _MEMORY_INFO.unpack(payload)
        if word_bytes < 1 or word_bytes & (word_bytes - 1) or size < 1 or size % word_bytes:
            raise ValueError(f"MEM_INFO names a memory of {size} bytes in words of "
                             f"{word_bytes} bytes, not one this host can use")
        return cls(size, word_bytes)



# Layer program (docs/protocol.md, "Layer program"). Data only: the command processor that
# serves these commands is hw/engine/ (issue 25); host/resident.py speaks them.

#: The layer-program commands (builds with a command processor).
PROGRAM_COMMANDS = (Command.RUN_PROGRAM, Command.READ_COUNTERS)

_RUN_PROGRAM = struct.Struct("<HHI")
_PROGRAM_STOP = struct.Struct("<BBHHBBQ")
_READ_COUNTERS = struct.Struct("<HH")
_COUNTER = struct.Struct("<II")

#: Payload bytes of RUN_PROGRAM, of its PROGRAM_STOPPED reply, of READ_COUNTERS, and per
#: descriptor of the COUNTERS reply.
RUN_PROGRAM_BYTES = _RUN_PROGRAM.size
PROGRAM_STOP_BYTES = _PROGRAM_STOP.size
READ_COUNTERS_BYTES = _READ_COUNTERS.size
COUNTER_BYTES = _COUNTER.size

#: PROGRAM_STOPPED ``flags`` bit: the cycle counts (the reply's and COUNTERS') are a model's
#: estimate (board-golden: each op's roofline), not counted by gateware.
STOP_ESTIMATED = 0x01


class StopReason(enum.IntEnum):
    """Why a RUN_PROGRAM stopped."""

    #: The descriptor flagged LAST ran: the inference is done.
    END = 0
    #: A HOST descriptor: the host runs its segment and resumes at the next descriptor.
    HOST = 1
    #: A descriptor could not run (:class:`ProgramFault` says why); the outputs are undefined.
    FAULT = 2


class ProgramFault(enum.IntEnum):
    """Why a descriptor faulted (PROGRAM_STOPPED ``fault``, with reason FAULT)."""

    NONE = 0
    #: The descriptor does not decode (unknown op kind, a field out of range, nonzero unused
    #: fields).
    BAD_DESCRIPTOR = 1
    #: One of its views, weights or parameters reaches outside the memory.
    BAD_ADDRESS = 2
    #: Its rounding mode, op kind or shape is not one this build runs.
    UNSUPPORTED = 3
    #: The image header's ArrayConfig is not this build's.
    BAD_CONFIG = 4
    #: The program ran past its last descriptor without one flagged LAST.
    NO_END = 5

    @property
    def message(self):
        return _FAULT_MESSAGES[self]


_FAULT_MESSAGES = {
    ProgramFault.NONE: "no fault",
    ProgramFault.BAD_DESCRIPTOR: "the descriptor does not decode",
    ProgramFault.BAD_ADDRESS: "a view, weight or parameter address is outside the memory",
    ProgramFault.UNSUPPORTED: "the op, its shape or its rounding mode is not one this build runs",
    ProgramFault.BAD_CONFIG: "the image is compiled for another ArrayConfig than this build's",
    ProgramFault.NO_END: "the program has no descriptor flagged LAST",
}


def pack_run_program(start, run, image_id):
    """RUN_PROGRAM payload: start descriptor, run number (u16 each), image id (u32)."""
    return _RUN_PROGRAM.pack(start, run, image_id)


def unpack_run_program(payload):
    """``(start, run, image_id)``; ValueError if the length is wrong."""
    if len(payload) != RUN_PROGRAM_BYTES:
        raise ValueError(f"RUN_PROGRAM payload must be {RUN_PROGRAM_BYTES} bytes, "
                         f"not {len(payload)}")
    return _RUN_PROGRAM.unpack(payload)


def pack_read_counters(first, count):
    """READ_COUNTERS payload: first descriptor, count (u16 each)."""
    return _READ_COUNTERS.pack(first, count)


def unpack_read_counters(payload):
    """``(first, count)``; ValueError if the length is wrong."""
    if len(payload) != READ_COUNTERS_BYTES:
        raise ValueError(f"READ_COUNTERS payload must be {READ_COUNTERS_BYTES} bytes, "
                         f"not {len(payload)}")
    return _READ_COUNTERS.unpack(payload)


def pack_counters(counters):
    """COUNTERS payload from ``[(cycles, sdram_bytes), ...]`` (each saturated to u32)."""
    top = 0xFFFF_FFFF
    return b"".join(_COUNTER.pack(min(int(c), top), min(int(b), top)) for c, b in counters)


def unpack_counters(payload):
    """``[(cycles, sdram_bytes), ...]`` from a COUNTERS payload."""
    if len(payload) % COUNTER_BYTES:
        raise ValueError(f"COUNTERS payload must be a multiple of {COUNTER_BYTES} bytes, "
                         f"not {len(payload)}")
    return [_COUNTER.unpack_from(payload, at) for at in range(0, len(payload), COUNTER_BYTES)]


@dataclass(frozen=True)
class ProgramStop:
    """Where and why a RUN_PROGRAM stopped (the PROGRAM_STOPPED reply).

    Payload, little-endian (16 bytes): reason (u8, :class:`StopReason`), flags (u8, bit 0
    :data:`STOP_ESTIMATED`), descriptor (u16: the index of the HOST descriptor, of the faulting
    one, or of the LAST one), segment (u16: HOST's host segment number, else 0), fault (u8,
    :class:`ProgramFault`), a zero byte, cycles (u64: clock cycles from the start descriptor to
    the stop, this run only).
    """

    reason: StopReason
    descriptor: int
    cycles: int
    segment: int = 0
    fault: ProgramFault = ProgramFault.NONE
    estimated: bool = False

    def pack(self):
        return _PROGRAM_STOP.pack(int(self.reason), STOP_ESTIMATED if self.estimated else 0,
                                  self.descriptor, self.segment, int(self.fault), 0,
                                  self.cycles)

    @classmethod
    def unpack(cls, payload):
        if len(payload) != PROGRAM_STOP_BYTES:
            raise ValueError(f"PROGRAM_STOPPED payload must be {PROGRAM_STOP_BYTES} bytes, "
                             f"not {len(payload)}")
        reason, flags, descriptor, segment, fault, _, cycles = _PROGRAM_STOP.unpack(payload)
        try:
            reason, fault = StopReason(reason), ProgramFault(fault)
        except ValueError:
            raise ValueError(f"PROGRAM_STOPPED names an unknown reason {reason} or fault "
                             f"{fault}") from None
        return cls(reason, descriptor, cycles, segment, fault, bool(flags & STOP_ESTIMATED))

"""A compiled model resident on a board: compile once, load once, infer many (issue 25).

:class:`ResidentModel` binds a model compiled by host/compiler/ (``compile_model``) to a device
that holds its memory image. The image is loaded once (``write_memory``, verified with
``memory_crc``); before every inference the host asks the board for the CRC-32 of the image's
constant part (header with its image id, program, weights and parameters: one MEM_CRC frame)
and loads the image again if it differs (a reset board, another model's image). An inference
writes only the model input, runs the program with RUN_PROGRAM segment by segment (at a HOST
descriptor the host reads that segment's input tensors, computes its ops with the model's own
host kernels, writes the outputs back and resumes at the next descriptor), reads only the
output, and reads the per-descriptor cycle and SDRAM counters (READ_COUNTERS).

The device side is the abstract :class:`ProgramBoard`: the calls the link carries
(docs/protocol.md, "Memory" and "Layer program"). :class:`LinkedBoard` speaks them over any
transport; every byte of every frame, both directions, is counted, so the link figures are
exact. :class:`GoldenBoard` is a transport that serves the link in-process with the golden
executor (golden/program.py) on a bytearray memory, its cycles each op's roofline estimate
(flagged as estimates in every PROGRAM_STOPPED reply): ``--backend board-golden``. ``board-sim``
(Verilator) and ``board`` (a serial port) use :class:`LinkedBoard` unchanged over their
transports (host/link.py) once their gateware serves RUN_PROGRAM; until then they are refused
with one line (:func:`open_program_board`).

Sources relied on: host/board.py (``BoardDevice``: framing, retries, memory commands),
host/compiler/compile.py (``CompiledModel``, ``_HostRunner``, ``_Compiler._account`` for the
per-op SDRAM bytes), golden/program.py (``_execute``), hw/link/protocol.py (codes, payloads).
"""

from __future__ import annotations

import abc
import time
import zlib
from dataclasses import dataclass, field

import numpy as np

from pwconv.config import ArrayConfig
from pwconv.golden import program as gprog
from pwconv.hw.link import protocol as proto
from pwconv.hw.link.protocol import (Command, Error, Identity, MemoryInfo, ProgramFault,
                                     ProgramStop, StopReason)
from .board import BoardDevice
from .compiler import format as fmt
from .compiler.compile import (ARRAY_OPS, CompileError, _Compiler, _HostRunner,
                               _use_kernels, compile_model)
from .link import FrameDecoder, LinkError, NackError, encode_frame, frame_time
from .model.base import ModelError

__all__ = ["ProgramBoard", "LinkedBoard", "GoldenBoard", "ResidentModel", "ResidentRun",
           "OpCycles", "RESIDENT_BACKENDS", "open_program_board", "program_gateware",
           "NoProgramGateware", "SDRAM_BYTES_PER_CYCLE", "GOLDEN_CLOCK_HZ"]

#: Backends that run a whole compiled model from the board's memory.
RESIDENT_BACKENDS = ("board-golden", "board-sim", "board")

#: The ULX3S's SDRAM bytes per array clock cycle for board-golden's roofline estimates: a
#: 16-bit SDR bus at the array's clock (docs/program.md, "Accounting").
SDRAM_BYTES_PER_CYCLE = 2

#: board-golden's clock and link: the ULX3S build's (pwconv.hw.board.BOARD_LINKS["ulx3s"]).
GOLDEN_CLOCK_HZ = 100_000_000
GOLDEN_BAUD = 2_000_000


class NoProgramGateware(ValueError):
    """The chosen backend's gateware cannot run a layer program yet (one line)."""


# The device side: the calls the link carries.

class ProgramBoard(abc.ABC):
    """A device that holds a memory image and runs its layer program: what
    :class:`ResidentModel` needs. Every method is one or more link requests on a real board.

    Members
    -------
    cfg : ArrayConfig
        The array the device is built for (programs are compiled for it).
    clock_hz : int
        The clock its cycle counts are in.
    link_bytes : (int, int)
        Bytes sent to and received from the device so far, framing included.
    """

    cfg: ArrayConfig

    @property
    @abc.abstractmethod
    def clock_hz(self):
        """Clock of the cycle counters, in Hz."""

    @property
    @abc.abstractmethod
    def link_bytes(self):
        """``(sent, received)`` bytes on the link so far, every frame's bytes."""

    @abc.abstractmethod
    def memory_info(self):
        """The memory's :class:`MemoryInfo` (MEM_INFO)."""

    @abc.abstractmethod
    def write_memory(self, addr, data, *, verify=True, progress=None):
        """Write bytes at ``addr`` (MEM_WRITE frames; MEM_CRC per block with ``verify``)."""

    @abc.abstractmethod
    def read_memory(self, addr, n, *, progress=None):
        """``n`` bytes from ``addr`` (MEM_READ frames)."""

    @abc.abstractmethod
    def memory_crc(self, addr, n):
        """CRC-32 (zlib) of ``n`` bytes from ``addr``, computed on the device (MEM_CRC)."""

    @abc.abstractmethod
    def run_program(self, start, run, image_id, *, compute=1.0):
        """Run the program from descriptor ``start`` until a HOST descriptor, the LAST one or a
        fault (RUN_PROGRAM); returns the :class:`ProgramStop`. ``run`` numbers the request:
        a repeat of the last run number gets the last reply again without running (safe
        retries). ``compute``: seconds the device may take."""

    @abc.abstractmethod
    def read_counters(self, first, count):
        """``[(cycles, sdram_bytes)]`` of descriptors ``first..first+count-1``'s last
        executions (READ_COUNTERS)."""

    def close(self):
        """Release the device."""


class _Counted:
    """A transport that counts the bytes written to and read from it (forwards the rest)."""

    def __init__(self, transport):
        self._inner = transport
        self.sent = 0
        self.received = 0

    def write(self, data):
        self.sent += len(data)
        self._inner.write(data)

    def read(self, n, timeout):
        data = self._inner.read(n, timeout)
        self.received += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self._inner, name)


class LinkedBoard(BoardDevice, ProgramBoard):
    """A :class:`~pwconv.host.board.BoardDevice` that also runs layer programs: RUN_PROGRAM and
    READ_COUNTERS over the same framed link, every byte counted (``link_bytes``).

    Parameters are :class:`BoardDevice`'s; ``transport`` is wrapped to count its bytes.

    Raises
    ------
    NoProgramGateware
        From :meth:`run_program` / :meth:`read_counters` when the board's gateware does not
        know the program commands (it NACKs them UNKNOWN_COMMAND).
    """

    def __init__(self, transport, cfg=None, **kwargs):
        super().__init__(_Counted(transport), cfg, **kwargs)

    @property
    def clock_hz(self):
        return self.identity.clk_freq

    @property
    def link_bytes(self):
        return self.transport.sent, self.transport.received

    def _program_request(self, command, payload, **kwargs):
        try:
            return self.request(command, payload, **kwargs)
        except NackError as error:
            if error.error == Error.UNKNOWN_COMMAND:
                raise NoProgramGateware(
                    f"the board's gateware has no layer-program commands ({command.name} "
                    f"refused as unknown): it cannot run a compiled model yet") from None
            raise

    def run_program(self, start, run, image_id, *, compute=1.0):
        reply = self._program_request(Command.RUN_PROGRAM,
                                      proto.pack_run_program(start, run & 0xFFFF, image_id),
                                      reply_bytes=proto.PROGRAM_STOP_BYTES, compute=compute)
        try:
            return ProgramStop.unpack(reply)
        except ValueError as error:
            self._dirty = True
            raise LinkError(f"The board's PROGRAM_STOPPED reply is not valid ({error})") \
                from None

    def read_counters(self, first, count):
        per = max(1, self.max_payload // proto.COUNTER_BYTES)
        out = []
        for at in range(first, first + count, per):
            n = min(per, first + count - at)
            reply = self._program_request(Command.READ_COUNTERS,
                                          proto.pack_read_counters(at, n),
                                          reply_bytes=n * proto.COUNTER_BYTES)
            counters = proto.unpack_counters(reply)
            if len(counters) != n:
                self._dirty = True
                raise LinkError(f"COUNTERS reply has {len(counters)} descriptors, asked {n}")
            out += counters
        return out


# board-golden: the device side of the link, in-process.

class GoldenBoard:
    """A transport whose far end is a simulated pwconv board with a memory and a command
    processor: it decodes the host's frames, serves IDENTIFY, STATUS, MEM_INFO, MEM_WRITE,
    MEM_READ, MEM_CRC, RUN_PROGRAM and READ_COUNTERS (docs/protocol.md), and NACKs the rest
    UNKNOWN_COMMAND. Programs run with the golden executor (golden/program.py) on a bytearray;
    each descriptor's cycles are its roofline estimate, ``max(MACs / (rows * cols), minimum
    SDRAM bytes / SDRAM_BYTES_PER_CYCLE)``, and its SDRAM bytes what the compiler's scheme moves
    (host/compiler/compile.py ``_account``); replies flag them STOP_ESTIMATED.

    Time is simulated: the link clock advances by each frame's time on the line at ``baud``
    and by each run's estimated cycles at ``clock_hz``.

    Parameters
    ----------
    cfg : ArrayConfig
        The array it pretends to be built for.
    memory_bytes : int
        Memory size (default 32 MiB, the ULX3S SDRAM).
    max_payload : int
        Its frame buffer (default 4096, the board's).
    clock_hz, baud : int
        Its clock and link rate (default the ULX3S build's).
    """

    latency = 0.0
    quiet = 0.001

    def __init__(self, cfg=None, *, memory_bytes=fmt.SDRAM_BYTES, max_payload=4096,
                 clock_hz=GOLDEN_CLOCK_HZ, baud=GOLDEN_BAUD):
        self.cfg = cfg if cfg is not None else ArrayConfig()
        if not isinstance(memory_bytes, int) or memory_bytes < 2 or memory_bytes % 2:
            raise ValueError(f"memory_bytes must be a positive even integer, not "
                             f"{memory_bytes!r}")
        self.memory = bytearray(memory_bytes)
        self.baud, self.clock_hz = int(baud), int(clock_hz)
        self.identity = Identity.of(self.cfg, max_payload=max_payload, clk_freq=self.clock_hz,
                                    baud=self.baud, timeout=self.clock_hz // 50)
        self._decoder = FrameDecoder(max_payload)
        self._out = bytearray()
        self.now = 0.0
        self.frames = 0
        self.reset()

    def reset(self):
        """A power cycle: the memory's contents and the run state are lost."""
        self.memory[:] = bytes(len(self.memory))
        self._last_run = None
        self._counters = {}

    # Transport interface.

    def write(self, data):
        data = bytes(data)
        self.now += frame_time(len(data), self.baud)
        for frame in self._decoder.feed(data):
            self.frames += 1
            code, payload = self._serve(frame.code, frame.payload)
            reply = encode_frame(code, payload, frame.tag)
            self._out += reply

    def read(self, n, timeout):
        if not self._out:
            self.now += max(0.0, timeout)
            return b""
        data = bytes(self._out[:n])
        del self._out[:n]
        self.now += frame_time(len(data), self.baud)
        return data

    def clock(self):
        return self.now

    def close(self):
        pass

    # The device.

    def _nack(self, error, code):
        return proto.Reply.NACK, bytes([int(error), code & 0xFF])

    def _range(self, addr, n):
        return 0 <= addr and n >= 1 and addr + n <= len(self.memory)

    def _serve(self, code, payload):
        ack = code | proto.ACK_BIT
        try:
            command = Command(code)
        except ValueError:
            return self._nack(Error.UNKNOWN_COMMAND, code)
        if command == Command.IDENTIFY and not payload:
            return ack, self.identity.pack()
        if command == Command.STATUS and not payload:
            return ack, bytes([proto.FLAG_ACCELERATOR_IDLE, 0]) + bytes(8)
        if command == Command.MEM_INFO and not payload:
            return ack, MemoryInfo(len(self.memory), 2).pack()
        if command == Command.MEM_WRITE and len(payload) > proto.MEM_ADDR_BYTES:
            addr = int.from_bytes(payload[:4], "little")
            data = payload[4:]
            if not self._range(addr, len(data)):
                return self._nack(Error.BAD_RANGE, code)
            self.memory[addr:addr + len(data)] = data
            return ack, len(data).to_bytes(2, "little")
        if command == Command.MEM_READ and len(payload) == 6:
            addr, n = int.from_bytes(payload[:4], "little"), int.from_bytes(payload[4:], "little")
            if not self._range(addr, n):
                return self._nack(Error.BAD_RANGE, code)
            if n > self.identity.max_payload:
                return self._nack(Error.TOO_MANY, code)
            return ack, bytes(self.memory[addr:addr + n])
        if command == Command.MEM_CRC and len(payload) == 8:
            addr, n = int.from_bytes(payload[:4], "little"), int.from_bytes(payload[4:], "little")
            if not self._range(addr, n):
                return self._nack(Error.BAD_RANGE, code)
            self.now += n / SDRAM_BYTES_PER_CYCLE / self.clock_hz
            return ack, zlib.crc32(memoryview(self.memory)[addr:addr + n]).to_bytes(4, "little")
        if command == Command.RUN_PROGRAM and len(payload) == proto.RUN_PROGRAM_BYTES:
            return self._run(code, *proto.unpack_run_program(payload))
        if command == Command.READ_COUNTERS and len(payload) == proto.READ_COUNTERS_BYTES:
            first, count = proto.unpack_read_counters(payload)
            header = self._header()
            if header is None or count < 1 or first + count > header.descriptor_count:
                return self._nack(Error.BAD_DESCRIPTOR, code)
            if count * proto.COUNTER_BYTES > self.identity.max_payload:
                return self._nack(Error.TOO_MANY, code)
            return ack, proto.pack_counters(self._counters.get(i, (0, 0))
                                            for i in range(first, first + count))
        if command in (Command.IDENTIFY, Command.STATUS, Command.MEM_INFO, Command.MEM_WRITE,
                       Command.MEM_READ, Command.MEM_CRC, Command.RUN_PROGRAM,
                       Command.READ_COUNTERS):
            return self._nack(Error.BAD_LENGTH, code)
        return self._nack(Error.UNKNOWN_COMMAND, code)

    def _header(self):
        try:
            return fmt.decode_header(memoryview(self.memory))
        except fmt.FormatError:
            return None

    def _run(self, code, start, run, image_id):
        header = self._header()
        if header is None or header.image_id != image_id:
            return self._nack(Error.NO_IMAGE, code)
        if start >= header.descriptor_count:
            return self._nack(Error.BAD_DESCRIPTOR, code)
        if self._last_run is not None and self._last_run[0] == (start, run):
            return proto.Reply.PROGRAM_STOPPED, self._last_run[1]     # a retry: not run again
        stop = self._execute(header, start)
        self.now += stop.cycles / self.clock_hz
        reply = stop.pack()
        self._last_run = ((start, run), reply)
        return proto.Reply.PROGRAM_STOPPED, reply

    def _execute(self, header, start):
        cycles = 0
        if header.config != self.cfg:
            return ProgramStop(StopReason.FAULT, start, 0, fault=ProgramFault.BAD_CONFIG,
                               estimated=True)
        for index in range(start, header.descriptor_count):
            at = header.program_addr + index * fmt.DESCRIPTOR_BYTES
            try:
                d = fmt.decode_descriptor(self.memory[at:at + fmt.DESCRIPTOR_BYTES])
            except fmt.FormatError:
                return ProgramStop(StopReason.FAULT, index, cycles,
                                   fault=ProgramFault.BAD_DESCRIPTOR, estimated=True)
            if d.kind == "HOST":
                self._counters[index] = (0, 0)
                return ProgramStop(StopReason.HOST, index, cycles, segment=d.segment & 0xFFFF,
                                   estimated=True)
            if getattr(d, "rounding", "double") not in self.cfg.roundings:
                return ProgramStop(StopReason.FAULT, index, cycles,
                                   fault=ProgramFault.UNSUPPORTED, estimated=True)
            try:
                gprog._execute(self.cfg, self.memory, d, None)
            except fmt.FormatError:
                return ProgramStop(StopReason.FAULT, index, cycles,
                                   fault=ProgramFault.BAD_ADDRESS, estimated=True)
            except (ValueError, IndexError):
                return ProgramStop(StopReason.FAULT, index, cycles,
                                   fault=ProgramFault.UNSUPPORTED, estimated=True)
            estimate = roofline_estimate(self.cfg, d)
            self._counters[index] = estimate
            cycles += estimate[0]
            if d.last:
                return ProgramStop(StopReason.END, index, cycles, estimated=True)
        return ProgramStop(StopReason.FAULT, header.descriptor_count - 1, cycles,
                           fault=ProgramFault.NO_END, estimated=True)


def _array_blob(cfg, d, channels):
    """Weight and parameter bytes of a CONV / FULLY_CONNECTED descriptor's passes, and its
    pass, group and chunk counts (golden/program.py ``_passes``'s arithmetic)."""
    total = passes = 0
    groups = gprog.pass_sizes(cfg, d.output.c, d.group_filters)
    chunks = gprog.pass_sizes(cfg, channels, d.chunk_channels)
    for f0, f1 in groups:
        for c0, c1 in chunks:
            total += cfg.beats(c1 - c0) * cfg.tiles(f1 - f0) * cfg.load_groups * \
                cfg.load_width * cfg.cols + cfg.tiles(f1 - f0) * fmt.param_tile_bytes(cfg.cols)
            passes += 1
    if getattr(d, "residual", None) is not None:
        total += fmt.AddRecord.BYTES
    return total, dict(passes=passes, group=d.group_filters, chunks=len(chunks))


def roofline_estimate(cfg, d):
    """``(cycles, sdram_bytes)`` of board descriptor ``d``: the roofline's fewest cycles
    ``ceil(max(MACs / (rows * cols), minimum SDRAM bytes / SDRAM_BYTES_PER_CYCLE))`` and the
    SDRAM bytes the compiler's address generation moves (``_Compiler._account``)."""
    from .compiler.compile import OpReport
    extra, wp = {}, 0
    if d.kind in ("CONV", "FULLY_CONNECTED"):
        k = d.kernel if d.kind == "CONV" else (1, 1)
        wp, extra = _array_blob(cfg, d, k[0] * k[1] * d.input.c)
    elif d.kind == "DEPTHWISE":
        wp = d.kernel[0] * d.kernel[1] * d.input.c + 9 * d.input.c
    elif d.kind == "ADD":
        wp = fmt.AddRecord.BYTES
    elif d.kind == "MEAN":
        wp = fmt.MeanRecord.BYTES
    r = OpReport(0, d.kind, "", "board")
    _Compiler._account(None, r, d, wp, extra)
    cycles = max(-(-r.macs // cfg.macs), -(-r.min_bytes // SDRAM_BYTES_PER_CYCLE))
    return int(cycles), int(r.moved_bytes)


# Opening a device.

def program_gateware(backend):
    """Whether ``backend``'s gateware can serve RUN_PROGRAM: board-golden always; board-sim
    and board once the board top wires the command processor to the link
    (:data:`pwconv.hw.engine.SERVES_RUN_PROGRAM`)."""
    if backend == "board-golden":
        return True
    from pwconv.hw.engine import SERVES_RUN_PROGRAM
    return SERVES_RUN_PROGRAM


def open_program_board(backend, cfg=None, *, port=None, baud=None, memory_bytes=None):
    """A :class:`LinkedBoard` for ``backend``: ``board-golden`` (a :class:`GoldenBoard` of
    ``cfg``), ``board-sim`` (the board's gateware in Verilator) or ``board`` (``port``).
    ``memory_bytes``: the simulated memory's size (board-golden, board-sim).

    Raises :class:`NoProgramGateware` (one line) for board-sim and board while their gateware
    has no command processor, before anything is built or sent."""
    if backend not in RESIDENT_BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(RESIDENT_BACKENDS)}, not "
                         f"{backend!r}")
    if not program_gateware(backend):
        raise NoProgramGateware(
            f"--backend {backend}: the board's gateware cannot run a layer program yet (no "
            f"command processor serves RUN_PROGRAM; hw/engine/, issue 25); use --backend "
            f"board-golden, or `pwconv model --per-layer` to stream layers to the board")
    if backend == "board-golden":
        kwargs = {} if memory_bytes is None else {"memory_bytes": memory_bytes}
        return LinkedBoard(GoldenBoard(cfg, **kwargs), cfg)
    from .link import DEFAULT_BAUD, SerialTransport, SimTransport
    if backend == "board":
        transport = SerialTransport(port or "/dev/ttyUSB1", baud or DEFAULT_BAUD)
    else:
        sim = {} if memory_bytes is None else {"memory_bytes": memory_bytes}
        transport = SimTransport(cfg if cfg is not None else ArrayConfig(), **sim)
    try:
        return LinkedBoard(transport, cfg)
    except BaseException:
        transport.close()
        raise


# The host side.

@dataclass
class OpCycles:
    """One model op of a resident inference: where it ran, its MACs, its cycles on the board
    (None on the host; 0 for addressing-only ops and ADDs fused into their conv), the SDRAM
    bytes it moved, and its descriptor."""

    index: int
    op: str
    where: str
    macs: int
    cycles: int | None
    sdram_bytes: int = 0
    descriptor: int | None = None
    how: str = ""

    def as_dict(self):
        return {"index": self.index, "op": self.op, "where": self.where, "macs": self.macs,
                "cycles": self.cycles, "sdram_bytes": self.sdram_bytes,
                "descriptor": self.descriptor, "how": self.how}


@dataclass
class ResidentRun:
    """What :meth:`ResidentModel.run` returns."""

    output: np.ndarray
    ops: list
    cycles: int
    cycles_estimated: bool
    link_sent: int
    link_received: int
    sdram_bytes: int
    check_sdram_bytes: int
    memory_writes: list = field(default_factory=list)
    segments_run: int = 0
    reloaded: bool = False
    seconds: float = 0.0

    @property
    def link_bytes(self):
        """Bytes on the link for this inference, both directions, framing included."""
        return self.link_sent + self.link_received


class ResidentModel:
    """A compiled model bound to a :class:`ProgramBoard` that holds its image.

    Parameters
    ----------
    model : TFLiteModel
        The model (host/model/); compiled here for ``device.cfg``.
    device : ProgramBoard
        The board (or :class:`GoldenBoard` behind a :class:`LinkedBoard`).
    runtime : str, optional
        The runtime to be bit-exact with (``model.runtimes``).
    board_ops : tuple of str
        What the board runs (host/compiler ``ARRAY_OPS``, issue 25's engine, by default;
        ``BOARD_OPS`` with the depthwise and pooling engines of issue 26).
    progress : bool or None
        The image load's progress bar (``write_memory``'s).
    load : bool
        Load the image now (default).
    compiled : CompiledModel, optional
        ``model`` already compiled (for ``device.cfg``), e.g. to refuse a model that does not
        fit before a device is opened.

    Raises
    ------
    CompileError
        The model does not fit the device's memory, the program's limits or the build (one
        line: what and by how much); nothing has been sent then.
    """

    def __init__(self, model, device, *, runtime=None, board_ops=ARRAY_OPS, progress=None,
                 load=True, compiled=None):
        if not isinstance(device, ProgramBoard):
            raise TypeError(f"device must be a ProgramBoard, not {type(device).__name__}")
        self.model, self.device, self.progress = model, device, progress
        if compiled is None:
            compiled = compile_model(model, device.cfg, runtime=runtime, board_ops=board_ops)
        elif compiled.config != device.cfg:
            raise ValueError(f"the model is compiled for {compiled.config}, the board is "
                             f"{device.cfg}")
        self.compiled = compiled
        header = self.compiled.header
        size = device.memory_info().size
        if header.image_bytes > size:
            raise CompileError(f"{model.path.name}: the image needs {header.image_bytes:,} bytes "
                               f"of board memory, {header.image_bytes - size:,} more than the "
                               f"board's {size:,}")
        self.image_id = header.image_id
        self.const_bytes = header.weights_addr + header.weights_bytes
        self.const_crc = zlib.crc32(self.compiled.image[:self.const_bytes])
        self.loads = 0
        self._run_number = 0
        # Seconds per run the board may take: 4x the roofline estimate plus a second.
        roof = sum(self.compiled.roofline(SDRAM_BYTES_PER_CYCLE).values())
        self._compute = 1.0 + 4 * roof / device.clock_hz
        if load:
            self.load()

    def load(self):
        """Write the whole image (verified block by block, then as a whole by MEM_CRC)."""
        image = self.compiled.image
        self.device.write_memory(0, image, progress=self.progress)
        if self.device.memory_crc(0, len(image)) != zlib.crc32(image):
            raise LinkError(f"the board memory does not hold the image after loading it "
                            f"({len(image):,} bytes, CRC-32 mismatch)")
        self.loads += 1

    def holds_image(self):
        """Whether the board still holds this image's constant part (header with the image id,
        program, weights and parameters): one MEM_CRC on the board."""
        return self.device.memory_crc(0, self.const_bytes) == self.const_crc

    # Tensors through the link.

    def _read(self, t, counts):
        v = self.compiled.views[t]
        raw = self.device.read_memory(v.addr, v.span, progress=False)
        counts["read"] += v.span
        y = np.lib.stride_tricks.as_strided(np.frombuffer(raw, np.int8), (v.h, v.w, v.c),
                                            (v.row_pitch, v.pixel_stride, 1))
        return np.array(y).reshape(self.model.tensors[t].shape)

    def _write(self, t, y, counts):
        v = self.compiled.views[t]
        y = np.ascontiguousarray(np.asarray(y, np.int8).reshape(v.h, v.w, v.c))
        if v.is_dense:
            data = y.tobytes()
        else:                       # a window of a larger buffer: read, modify, write its span
            buf = bytearray(self.device.read_memory(v.addr, v.span, progress=False))
            counts["read"] += v.span
            gprog.write_view(buf, fmt.View(0, v.h, v.w, v.c, v.pixel_stride, v.row_pixels), y)
            data = bytes(buf)
        self.device.write_memory(v.addr, data, verify=False, progress=False)
        counts["written"] += len(data)
        counts["writes"].append((v.addr, len(data)))

    def _host_segment(self, segment, values, counts):
        """Run host segment ``segment``: its ops with the model's host kernels (as the
        compiler's _HostRunner), inputs read from the board, outputs the board reads written."""
        c, model = self.compiled, self.model
        offload = _HostRunner(c, values, {}).offload
        for i in c.segments[segment]:
            op, ins, outs, table = model.ops[i]
            args = []
            for t in ins:
                if t >= 0 and t not in values:
                    values[t] = self._read(t, counts)
                args.append(values[t] if t >= 0 else None)
            tin = [model.tensors[t] if t >= 0 else None for t in ins]
            mode = _use_kernels(model, i, c.runtime)
            try:
                y, _, _ = model._op(i, op, args, tin, model.tensors[outs[0]], table, offload,
                                    mode)
            except ModelError:
                raise
            except (ValueError, TypeError) as error:
                raise ModelError(f"{model._where(i)}: {error}") from None
            values[outs[0]] = y
            if outs[0] in c.views:
                self._write(outs[0], y, counts)

    def run(self, x, *, counters=True):
        """One inference: check the image (reload it if the board lost it), write ``x``, run
        the program segment by segment, read the output. Returns a :class:`ResidentRun`;
        ``counters`` False skips reading the per-op counters (one READ_COUNTERS frame)."""
        start_time = time.perf_counter()
        x = self.model.check_input(x)
        c, dev = self.compiled, self.device
        sent0, received0 = dev.link_bytes
        reloaded = False
        if not self.holds_image():
            self.load()
            reloaded = True
            sent0, received0 = dev.link_bytes
        counts = {"read": 0, "written": 0, "writes": []}
        values = {t.index: t.data for t in self.model.tensors if t.data is not None}
        inp, out = self.model.inputs[0], self.model.outputs[0]
        values[inp] = x
        if inp in c.views:
            self._write(inp, x, counts)
        total, estimated, segments, start = 0, False, 0, 0
        n = c.header.descriptor_count
        while True:
            self._run_number = (self._run_number + 1) & 0xFFFF
            stop = dev.run_program(start, self._run_number, self.image_id,
                                   compute=self._compute)
            total += stop.cycles
            estimated |= stop.estimated
            if stop.reason == StopReason.END:
                break
            if stop.reason == StopReason.FAULT:
                d = c.descriptors[stop.descriptor] if stop.descriptor < n else None
                raise LinkError(f"the board faulted at descriptor {stop.descriptor}"
                                f"{f' ({d.kind})' if d is not None else ''}: "
                                f"{stop.fault.message}")
            self._host_segment(stop.segment, values, counts)
            segments += 1
            if c.descriptors[stop.descriptor].last:      # a HOST descriptor ends the program
                break
            start = stop.descriptor + 1
        y = values[out] if out in values else self._read(out, counts)
        per = dev.read_counters(0, n) if counters else [(0, 0)] * n
        sent, received = dev.link_bytes
        ops = self._op_cycles(per if counters else None)
        program_sdram = sum(v[1] for v in per)
        return ResidentRun(
            output=np.asarray(y).reshape(self.model.tensors[out].shape), ops=ops, cycles=total,
            cycles_estimated=estimated, link_sent=sent - sent0,
            link_received=received - received0,
            sdram_bytes=program_sdram + counts["read"] + counts["written"],
            check_sdram_bytes=self.const_bytes, memory_writes=counts["writes"],
            segments_run=segments, reloaded=reloaded,
            seconds=time.perf_counter() - start_time)

    def _op_cycles(self, per):
        ops = []
        for r in self.compiled.ops:
            if r.where == "board":
                cyc, sd = (per[r.descriptor] if per is not None else (None, 0))
                ops.append(OpCycles(r.index, r.op, "board", r.macs, cyc, sd, r.descriptor))
            elif r.where in ("fused", "view"):
                ops.append(OpCycles(r.index, r.op, "board", r.macs, 0, 0, r.descriptor,
                                    how=r.where))
            else:
                ops.append(OpCycles(r.index, r.op, "host", r.macs, None, 0, None))
        return ops

    def close(self):
        self.device.close()


def format_table(model, run, device):
    """The per-op table and totals of a resident run, as text."""
    est = " (estimates: each op's roofline)" if run.cycles_estimated else ""
    lines = [f"{'#':>4} {'op':<18} {'where':<6} {'MACs':>12} {'cycles':>10} "
             f"{'SDRAM B':>10}  note"]
    for s in run.ops:
        cyc = "" if s.cycles is None else f"{s.cycles:,}"
        note = {"fused": "fused into its conv", "view": "addressing only"}.get(s.how, "")
        if s.descriptor is not None and s.where == "board" and not s.how:
            note = f"descriptor {s.descriptor}"
        lines.append(f"{s.index:>4} {s.op:<18} {s.where:<6} {s.macs:>12,} {cyc:>10} "
                     f"{s.sdram_bytes:>10,}  {note}".rstrip())
    board = sum(s.macs for s in run.ops if s.where == "board")
    ms = 1e3 * run.cycles / device.clock_hz
    lines += ["", f"MACs on the board: {board:,} (the compiler counts board ops' MACs only)",
              f"cycles per inference: {run.cycles:,}{est}, {ms:.3f} ms at "
              f"{device.clock_hz / 1e6:g} MHz",
              f"link bytes per inference: {run.link_bytes:,} ({run.link_sent:,} to the board, "
              f"{run.link_received:,} back, framing included)",
              f"SDRAM bytes per inference: {run.sdram_bytes:,} (+ {run.check_sdram_bytes:,} "
              f"read by the image check)"]
    return "\n".join(lines)


def report_dict(model, resident, run, device, bit_exact=None):
    """The ``--report`` JSON object."""
    return {"model": str(model.path.name), "cycles_per_inference": run.cycles,
            "cycles_estimated": run.cycles_estimated, "clock_hz": device.clock_hz,
            "ms_per_inference": 1e3 * run.cycles / device.clock_hz,
            "link_bytes_per_inference": run.link_bytes,
            "link_bytes_to_board": run.link_sent, "link_bytes_from_board": run.link_received,
            "sdram_bytes_per_inference": run.sdram_bytes,
            "image_check_sdram_bytes": run.check_sdram_bytes,
            "image_bytes": resident.compiled.header.image_bytes,
            "image_id": f"{resident.image_id:#010x}",
            "descriptors": resident.compiled.header.descriptor_count,
            "host_segments": len(resident.compiled.segments),
            "input_bytes": int(np.prod(model.input_shape)),
            "output_bytes": int(run.output.size),
            "bit_exact": bit_exact, "wall_seconds": run.seconds,
            "ops": [s.as_dict() for s in run.ops]}

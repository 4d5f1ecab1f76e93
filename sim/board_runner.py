"""Run the board top (BoardTop) in Verilator under cocotb, its UART pins bridged to a socket."""

import dataclasses
import hashlib
import json
import os
import math
import shutil
import socket
import struct
import tempfile
import threading
import time
from pathlib import Path

import cocotb
from cocotb_tools.runner import get_runner

from pwconv.config import ArrayConfig
from pwconv.hw.board import DEFAULT_MAX_PAYLOAD, BoardTop
from pwconv.sim.runner import (TIMESCALE, VERILATOR_ARGS, file_lock, read_failures, repo_path,
                               toolchain_env)

__all__ = ["SIM_CLK_FREQ", "SIM_BAUD", "SIM_FRAME_TIMEOUT", "TOPLEVEL", "TEST_MODULE",
           "write_board_verilog", "build_board", "BoardSimulation", "MESSAGE"]

#: Simulated clock and baud rate: 4 clock cycles per bit, the iCEBreaker's divisor (12 MHz,
#: 3 Mbaud) and the smallest the receiver takes; simulation time is mostly clock cycles.
SIM_CLK_FREQ = 8_000_000
SIM_BAUD = 2_000_000

#: Inter-byte timeout of the simulated board: 50 byte times, so truncated frames fail fast.
SIM_FRAME_TIMEOUT = 250e-6

#: Module name of the exported board top.
TOPLEVEL = "pwconv_board"

#: The cocotb module bridging the socket to the pins.
TEST_MODULE = "pwconv.sim.cocotb_board"

#: Bridge messages: opcode and body length, then the body. Host to simulator: ``W`` bytes to
#: send on ``uart_rx``; ``R`` (u32 count, u64 picoseconds) read up to count bytes from
#: ``uart_tx``, waiting at most that long once all ``W`` bytes are out; ``X`` (u32 cycles)
#: hold the board's reset that many cycles, at once (bytes still queued for ``uart_rx`` keep
#: going out, so a reset can fall inside a frame); ``Q`` quit. Simulator to host, for ``R``
#: and ``X``: ``D``, the simulated time (u64 picoseconds) then the bytes read.
MESSAGE = struct.Struct("<cI")
READ_REQUEST = struct.Struct("<IQ")
RESET_REQUEST = struct.Struct("<I")
TIME = struct.Struct("<Q")


def write_board_verilog(top: BoardTop, out_dir, *, name=TOPLEVEL):
    """Write ``<name>.v`` and ``<name>.json`` for ``top`` into ``out_dir``; return the .v path.

    The Verilog is rewritten only when it changes, so simulator builds stay cached.
    """
    from amaranth.back import verilog
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(top, name=name, emit_src=False)
    path = out_dir / f"{name}.v"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    meta = {"config": dataclasses.asdict(top.array_config), "toplevel": name,
            "divisor": top.divisor, "timeout_cycles": top.timeout_cycles,
            "max_payload": top.max_payload, "memory_size": top.memory_size}
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _board_key(cfg, **params):
    text = json.dumps({"config": dataclasses.asdict(cfg), **params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build_board(cfg: ArrayConfig, *, clk_freq=SIM_CLK_FREQ, baud=SIM_BAUD,
                max_payload=DEFAULT_MAX_PAYLOAD, frame_timeout=SIM_FRAME_TIMEOUT,
                build_root="build/board-sim", memory_bytes=None):
    """Export and Verilate a :class:`BoardTop` unless an identical build exists.

    ``memory_bytes``: a block-RAM board memory of that many bytes behind the link's memory
    commands (``BoardTop(block_ram_memory=...)``); None, none.

    Returns ``(build_dir, meta)``. The build lives in ``build_root/<key>/obj``, the key hashing
    the configuration and link parameters, and is redone only when the Verilog, the build
    arguments or cocotb's version change; concurrent builds of one key wait for each other.
    """
    top = BoardTop(cfg, clk_freq=clk_freq, baud=baud, max_payload=max_payload,
                   frame_timeout=frame_timeout, block_ram_memory=memory_bytes)
    # The memory joins the key only when there is one: builds without keep their keys.
    extra = {} if memory_bytes is None else {"memory_bytes": memory_bytes}
    root = repo_path(build_root) / _board_key(cfg, clk_freq=clk_freq, baud=baud,
                                            max_payload=max_payload,
                                            frame_timeout=frame_timeout, **extra)
    build_dir = root / "obj"
    artifact = build_dir / TOPLEVEL
    with file_lock(root / ".build.lock"):
        verilog = write_board_verilog(top, root)
        meta = json.loads(verilog.with_suffix(".json").read_text())
        meta.update(clk_freq=clk_freq, baud=baud)
        stamp_text = json.dumps({
            "args": list(VERILATOR_ARGS), "timescale": TIMESCALE, "cocotb": cocotb.__version__,
            "verilog": hashlib.sha256(verilog.read_bytes()).hexdigest(),
        }, sort_keys=True)
        stamp = build_dir / "pwconv.stamp"
        if artifact.is_file() and stamp.is_file() and stamp.read_text() == stamp_text:
            return build_dir, meta
        stamp.unlink(missing_ok=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        log = build_dir / "build.log"
        with toolchain_env(False):
            try:
                get_runner("verilator").build(
                    sources=[verilog], hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                    build_args=list(VERILATOR_ARGS), always=False, timescale=TIMESCALE,
                    log_file=log)
            except (RuntimeError, SystemExit) as error:
                raise RuntimeError(f"Verilator build of {verilog} failed ({error}); "
                                   f"log: {log}") from None
        stamp.write_text(stamp_text)
    return build_dir, meta


def _recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("Board simulation closed the link")
        data += chunk
    return bytes(data)


class BoardSimulation:
    """A :class:`BoardTop` in Verilator under cocotb, driven byte by byte from this process.

    The cocotb test (:mod:`pwconv.sim.cocotb_board`) connects to a Unix socket in the run
    directory, puts the bytes of :meth:`write` on ``uart_rx`` at the board's baud rate and
    decodes ``uart_tx``. Simulated time only advances while bytes are sent or a :meth:`read`
    waits; :attr:`now` is the simulated time in seconds when the last read returned, and
    :meth:`reset` pulses the board's reset.

    Parameters
    ----------
    cfg : ArrayConfig
        The accelerator configuration.
    clk_freq, baud, max_payload, frame_timeout
        :class:`BoardTop` parameters (defaults: 4 cycles per bit, 4 KiB frames, 0.25 ms).
    memory_bytes : int or None
        A block-RAM board memory of that many bytes (:func:`build_board`).
    sdram : bool
        Instead: the SDRAM (LiteDRAM on the timing-checked chip model, its controller at
        ``sdram_clock_hz``; :mod:`pwconv.sim.board_sdram`).
    sdram_clock_hz : int
        The SDRAM controller's clock (default the ULX3S's 50 MHz).
    plusargs : sequence of str
        Simulator plusargs, e.g. the SDRAM model's ``+sdram_load=FILE``, ``+sdram_dump=FILE``.
    build_root : str or Path
        Where builds are cached (relative paths are inside the repository).
    keep : bool
        Keep the run directory (socket, log, results) after :meth:`close`.
    start_timeout : float
        Seconds to wait for the simulator to connect.
    """

    def __init__(self, cfg: ArrayConfig, *, clk_freq=SIM_CLK_FREQ, baud=SIM_BAUD,
                 max_payload=DEFAULT_MAX_PAYLOAD, frame_timeout=SIM_FRAME_TIMEOUT,
                 build_root="build/board-sim", keep=False, start_timeout=120.0,
                 memory_bytes=None, sdram=False, sdram_clock_hz=50_000_000, plusargs=()):
        self.cfg = cfg
        self.memory_bytes = memory_bytes
        if sdram and memory_bytes is not None:
            raise ValueError("Give board-sim a block-RAM memory or the SDRAM, not both")
        self.sdram, self.sdram_clock_hz = bool(sdram), sdram_clock_hz
        self.plusargs = [str(arg) for arg in plusargs]
        self.clk_freq, self.baud = clk_freq, baud
        self.max_payload, self.frame_timeout = max_payload, frame_timeout
        self.build_root, self.keep, self.start_timeout = build_root, keep, start_timeout
        self.run_dir = self.log = None
        self._sock = self._thread = None
        self._crash = None
        self.now = 0.0

    def __repr__(self):
        return (f"BoardSimulation({self.cfg!r}, clk_freq={self.clk_freq}, baud={self.baud}, "
                f"max_payload={self.max_payload})")

    @property
    def running(self):
        return self._sock is not None

    def start(self):
        """Build (cached), launch the simulator and wait for it to connect."""
        if self.sdram:
            from .board_sdram import build_board_sdram
            build_dir, meta = build_board_sdram(
                self.cfg, clk_freq=self.clk_freq, baud=self.baud, max_payload=self.max_payload,
                frame_timeout=self.frame_timeout, memory_clock_hz=self.sdram_clock_hz,
                build_root=self.build_root)
        else:
            build_dir, meta = build_board(self.cfg, clk_freq=self.clk_freq, baud=self.baud,
                                          max_payload=self.max_payload,
                                          frame_timeout=self.frame_timeout,
                                          build_root=self.build_root,
                                          memory_bytes=self.memory_bytes)
        self.meta = meta
        self.run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir.parent))
        self.log = self.run_dir / "sim.log"
        path = str(self.run_dir / "link.sock")
        if len(path.encode()) > 100:     # sun_path limit: use the abstract namespace
            path = "\0pwconv-" + self.run_dir.name
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(path)
            listener.listen(1)
            listener.settimeout(0.2)
            env = {
                "PWCONV_LINK": path,
                "PWCONV_LINK_CLOCK_PS": str(round(1e12 / self.clk_freq)),
                "PWCONV_LINK_DIVISOR": str(meta["divisor"]),
            }
            if self.sdram:
                env["PWCONV_MEM_CLOCK_PS"] = str(round(1e12 / self.sdram_clock_hz))
            self._thread = threading.Thread(
                target=self._simulate, args=(build_dir, env), name="pwconv-board-sim",
                daemon=True)
            self._thread.start()
            deadline = time.monotonic() + self.start_timeout
            while self._sock is None:
                try:
                    self._sock, _ = listener.accept()
                except socket.timeout:
                    if not self._thread.is_alive() or time.monotonic() > deadline:
                        why = self._crash or "it did not connect in time"
                        raise RuntimeError(f"Board simulation did not start ({why}); "
                                           f"log: {self.log}") from None
        finally:
            listener.close()
        self._sock.settimeout(None)
        return self

    def _simulate(self, build_dir, env):
        xml = self.run_dir / "results.xml"
        try:
            get_runner("verilator").test(
                test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=self.run_dir, results_xml=str(xml),
                extra_env=env, waves=False, timescale=TIMESCALE, log_file=self.log,
                plusargs=list(self.plusargs))
        except BaseException as error:      # SystemExit from the runner under pytest, too
            self._crash = f"{type(error).__name__}: {error}"

    def _send(self, op, body=b""):
        if self._sock is None:
            raise RuntimeError("Board simulation is not running")
        try:
            self._sock.sendall(MESSAGE.pack(op, len(body)) + body)
        except OSError as error:
            raise RuntimeError(f"Board simulation link failed ({error}); log: {self.log}") \
                from None

    def write(self, data):
        """Queue ``data`` for ``uart_rx``."""
        if data:
            self._send(b"W", bytes(data))

    def read(self, n, timeout):
        """Up to ``n`` bytes from ``uart_tx``, waiting at most ``timeout`` simulated seconds
        after the last queued byte went out; fewer only on timeout. Updates :attr:`now`."""
        # At least one picosecond for any positive timeout: a wait of 0 returns at once.
        wait = max(0, math.ceil(timeout * 1e12)) if timeout > 0 else 0
        self._send(b"R", READ_REQUEST.pack(n, wait))
        return self._data()

    def reset(self, cycles=4):
        """Hold the board's reset for ``cycles`` clock cycles, now."""
        self._send(b"X", RESET_REQUEST.pack(int(cycles)))
        self._data()

    def _data(self):
        try:
            op, size = MESSAGE.unpack(_recv_exact(self._sock, MESSAGE.size))
            data = _recv_exact(self._sock, size)
        except (OSError, ConnectionError) as error:
            raise RuntimeError(f"Board simulation link failed ({error}); log: {self.log}") \
                from None
        if op != b"D" or size < TIME.size:
            raise RuntimeError(f"Board simulation sent {op!r}, not data")
        self.now = TIME.unpack(data[:TIME.size])[0] * 1e-12
        return data[TIME.size:]

    def close(self):
        """Stop the simulator and check that its cocotb test passed."""
        if self._sock is None:
            return
        try:
            self._send(b"Q")
        except RuntimeError:
            pass
        finally:
            self._sock.close()
            self._sock = None
        self._thread.join(timeout=60)
        outcome = read_failures(self.run_dir / "results.xml")
        failed = self._thread.is_alive() or outcome is None or outcome[1] != 0
        if failed:
            why = "; ".join(outcome[2]) if outcome and outcome[2] else (self._crash or "hung")
            raise RuntimeError(f"Board simulation ended badly ({why}); log: {self.log}")
        if not self.keep:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.close()

"""A memory behind a NativePortSignature for amaranth.sim: storage, latency, stalls, checks."""

import itertools
from collections import deque
from numbers import Real

import numpy as np

__all__ = ["NativeMemory", "NativeMemoryError"]


class NativeMemoryError(AssertionError):
    """The master broke the native port's contract (the message names the rule and the cycle)."""


def _pattern(stall, rng, name):
    """A per-cycle "stall now?" generator from a probability or a 0/1 pattern (cycled)."""
    if isinstance(stall, Real) and not isinstance(stall, bool):
        if not 0.0 <= stall < 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1) or a 0/1 pattern, "
                             f"not {stall!r}")
        if stall == 0.0:
            return itertools.repeat(False)
        return (rng.random() < stall for _ in itertools.count())
    try:
        steps = [bool(s) for s in stall]
    except TypeError:
        raise ValueError(f"{name} must be a probability in [0, 1) or a 0/1 pattern, "
                         f"not {stall!r}") from None
    if not steps or all(steps):
        raise ValueError(f"{name} pattern must be non-empty and not stall every cycle, "
                         f"not {stall!r}")
    return itertools.cycle(steps)


class NativeMemory:
    """A byte-addressable memory that answers a :class:`~pwconv.hw.memory.port.NativePortSignature`
    port in Amaranth's simulator, and checks that the master keeps the port's contract.

    The model is LiteDRAM's native user port (litedram/common.py ``LiteDRAMNativePort``, and the
    in-order crossbar of litedram/core/crossbar.py): one ``data_width``-bit word per command,
    commands executed in the order accepted, write data consumed in command order, read data
    returned in command order. Storage is :attr:`data`, a NumPy ``uint8`` array; word ``a`` is
    bytes ``a * data_width // 8`` onwards, little-endian; ``wdata.mask`` bit ``i`` enables byte
    ``i``.

    Timing (all outputs change right after a clock edge, as registers would):

    - An accepted command enters a queue of ``cmd_depth`` commands (``cmd.ready`` is low while it
      is full, or in a stall cycle). The queue's head executes, one per cycle: a write once its
      ``wdata`` beat is there; a read once fewer than ``max_reads`` read words are in flight.
    - A read executed at edge ``t`` offers its word on ``rdata`` from edge ``t + read_latency``
      (so ``read_latency`` cycles from command accepted to data offered on an idle memory).
    - ``wdata`` beats may come before, with or after their command: up to ``wdata_depth`` of them
      wait in a buffer (``wdata.ready`` is low while it is full, or in a stall cycle).
    - ``cmd_stall``, ``wdata_stall`` (ready withheld) and ``rdata_stall`` (valid withheld) are each
      a probability per cycle (drawn from a generator seeded with ``seed``) or a 0/1 pattern,
      1 = stall, repeated.

    Contract checks (a :class:`NativeMemoryError`, which stops the simulation, naming the rule and
    the cycle):

    - ``cmd`` and ``wdata``: once ``valid`` is offered it stays until taken, payload unchanged;
    - a command's address is inside the memory;
    - a write command waiting more than ``patience`` cycles for its ``wdata`` beat (a write
      command without its data never completes), or a read word offered and not taken for more
      than ``patience`` cycles;
    - with ``strict_rdata=True``, LiteDRAM's crossbar semantics: read data offered must be taken
      in the same cycle (``rdata.ready`` high), i.e. the master never issues a read it cannot
      take at once;
    - :meth:`check_idle`, at the end of a test: no command, ``wdata`` beat or read word left over.

    Parameters
    ----------
    port : interface with ``cmd``, ``wdata``, ``rdata`` streams
        The master's port (e.g. ``dut.bus``) or the memory side of it (same signals).
    size : int
        Bytes of storage (a multiple of the word size, at most ``2 ** addr_width`` words).
    data : array-like of uint8, optional
        Initial contents (length ``size``); zeros if omitted.
    read_latency : int
        Cycles from a read executing to its word offered, >= 1.
    max_reads : int
        Bound on read words in flight (executed, not yet taken by the master).
    cmd_depth, wdata_depth : int
        Command queue and early write-data buffer depths, >= 1.
    domain : str
        Clock domain of the port.

    Members
    -------
    data : numpy.ndarray
        The storage (read it after the run, or preload it before).
    reads, writes, cycles : int
        Read and write commands executed, cycles simulated.
    peak_reads : int
        Most read words in flight at once.

    Example
    -------
    >>> mem = NativeMemory(dut.bus, size=4096, read_latency=3, cmd_stall=0.2, seed=1)
    >>> mem.data[:16] = np.arange(16)
    >>> sim = Simulator(dut); sim.add_clock(1e-8); mem.add_to(sim)
    >>> sim.add_testbench(bench); sim.run()
    >>> mem.check_idle()
    """

    def __init__(self, port, *, size, data=None, read_latency=2, max_reads=8, cmd_depth=4,
                 wdata_depth=4, cmd_stall=0.0, wdata_stall=0.0, rdata_stall=0.0, seed=0,
                 strict_rdata=False, patience=2000, domain="sync"):
        self.port = port
        self.data_width = len(port.rdata.payload)
        self.addr_width = len(port.cmd.payload.addr)
        self.word_bytes = self.data_width // 8
        for name, value, low in (("Read latency", read_latency, 1), ("Max reads", max_reads, 1),
                                 ("Command depth", cmd_depth, 1),
                                 ("Write data depth", wdata_depth, 1),
                                 ("Patience", patience, 1)):
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
        if (not isinstance(size, int) or size < 1 or size % self.word_bytes
                or size // self.word_bytes > 1 << self.addr_width):
            raise ValueError(f"Size must be a positive multiple of {self.word_bytes} bytes, at "
                             f"most {self.word_bytes << self.addr_width}, not {size!r}")
        self.data = np.zeros(size, np.uint8)
        if data is not None:
            data = np.asarray(data, np.uint8).ravel()
            if data.size != size:
                raise ValueError(f"Initial data has {data.size} bytes, the memory {size}")
            self.data[:] = data
        self.words = size // self.word_bytes
        self.read_latency = read_latency
        self.max_reads = max_reads
        self.cmd_depth = cmd_depth
        self.wdata_depth = wdata_depth
        self.strict_rdata = strict_rdata
        self.patience = patience
        self.domain = domain
        rng = np.random.default_rng(seed)
        self._cmd_stall = _pattern(cmd_stall, rng, "cmd_stall")
        self._wdata_stall = _pattern(wdata_stall, rng, "wdata_stall")
        self._rdata_stall = _pattern(rdata_stall, rng, "rdata_stall")
        layout = port.cmd.payload.shape()
        self._addr_slice = (layout["addr"].offset, layout["addr"].offset + self.addr_width)
        self._we_bit = layout["we"].offset
        wlayout = port.wdata.payload.shape()
        self._wdata_slice = (wlayout["data"].offset, wlayout["data"].offset + self.data_width)
        self._mask_off = wlayout["mask"].offset
        self.reads = self.writes = self.cycles = self.peak_reads = 0
        self._cmds = deque()        # (addr, we, cycle accepted)
        self._wbuf = deque()        # (data, mask, cycle taken)
        self._rpipe = deque()       # (cycle offered from, word)
        self._offered = None        # (word, cycle first offered) while rdata.valid is high

    # --- storage ----------------------------------------------------------------------------

    def read_word(self, addr):
        """Word ``addr`` as an integer (little-endian)."""
        b = self.word_bytes
        return int.from_bytes(self.data[addr * b:(addr + 1) * b].tobytes(), "little")

    def write_word(self, addr, value, mask):
        """Write the bytes of ``value`` that ``mask`` enables into word ``addr``."""
        base = addr * self.word_bytes
        for i in range(self.word_bytes):
            if mask >> i & 1:
                self.data[base + i] = value >> (8 * i) & 0xff

    # --- simulation --------------------------------------------------------------------------

    def add_to(self, sim):
        """Add the model's process to Amaranth simulator ``sim``."""
        sim.add_process(self._process)

    def _fail(self, message):
        raise NativeMemoryError(f"native memory, cycle {self.cycles}: {message}")

    def _field(self, value, lo, hi):
        return value >> lo & ((1 << (hi - lo)) - 1)

    async def _process(self, ctx):
        p = self.port
        ctx.set(p.cmd.ready, 0)
        ctx.set(p.wdata.ready, 0)
        ctx.set(p.rdata.valid, 0)
        held_cmd = held_wdata = None   # payloads offered and not taken last cycle
        while True:
            (_, _, cv, cr, cpay, wv, wr, wpay, rv, rr) = await ctx.tick(self.domain).sample(
                p.cmd.valid, p.cmd.ready, p.cmd.payload.as_value(),
                p.wdata.valid, p.wdata.ready, p.wdata.payload.as_value(),
                p.rdata.valid, p.rdata.ready)
            now = self.cycles
            # Stream rule: an offer stays until taken, unchanged.
            if held_cmd is not None and not (cv and cpay == held_cmd):
                self._fail("cmd.valid dropped or cmd.payload changed before cmd.ready took it")
            if held_wdata is not None and not (wv and wpay == held_wdata):
                self._fail("wdata.valid dropped or wdata.payload changed before wdata.ready "
                           "took it")
            held_cmd = cpay if cv and not cr else None
            held_wdata = wpay if wv and not wr else None
            # Transfers at this edge.
            if cv and cr:
                addr = self._field(cpay, *self._addr_slice)
                we = cpay >> self._we_bit & 1
                if addr >= self.words:
                    self._fail(f"{'write' if we else 'read'} command to word {addr:#x}, beyond "
                               f"the memory's {self.words:#x} words")
                self._cmds.append((addr, we, now))
            if wv and wr:
                self._wbuf.append((self._field(wpay, *self._wdata_slice),
                                   wpay >> self._mask_off & ((1 << self.word_bytes) - 1), now))
            if rv:
                if rr:
                    self._rpipe.popleft()
                    self._offered = None
                elif self.strict_rdata:
                    self._fail("rdata offered and not taken (rdata.ready low): the master "
                               "issued a read it could not take at once")
                elif now - self._offered[1] >= self.patience:
                    self._fail(f"read word offered for {self.patience} cycles and never taken")
            # Execute the command queue's head (one per cycle).
            if self._cmds:
                addr, we, since = self._cmds[0]
                if we and self._wbuf:
                    value, mask, _ = self._wbuf.popleft()
                    self.write_word(addr, value, mask)
                    self._cmds.popleft()
                    self.writes += 1
                elif we and now - since >= self.patience:
                    self._fail(f"write command to word {addr:#x} accepted at cycle {since} never "
                               f"got its wdata beat ({self.patience} cycles)")
                elif not we and len(self._rpipe) < self.max_reads:
                    self._rpipe.append((now + self.read_latency, self.read_word(addr)))
                    self._cmds.popleft()
                    self.reads += 1
                    self.peak_reads = max(self.peak_reads, len(self._rpipe))
            self.cycles = now + 1
            # Outputs for the next cycle.
            ctx.set(p.cmd.ready, int(len(self._cmds) < self.cmd_depth
                                     and not next(self._cmd_stall)))
            ctx.set(p.wdata.ready, int(len(self._wbuf) < self.wdata_depth
                                       and not next(self._wdata_stall)))
            offer = bool(self._rpipe) and self._rpipe[0][0] <= self.cycles
            if offer and self._offered is None:
                if next(self._rdata_stall):
                    offer = False
                else:
                    self._offered = (self._rpipe[0][1], self.cycles)
            ctx.set(p.rdata.valid, int(offer))
            if offer:
                ctx.set(p.rdata.payload, self._rpipe[0][1])

    def check_idle(self):
        """Raise :class:`NativeMemoryError` if a command, a ``wdata`` beat or a read word is left
        over (call after the run: every write must have had its data, every read been taken)."""
        if self._cmds:
            addr, we, since = self._cmds[0]
            kind = "write command never got its wdata beat" if we else "read never executed"
            self._fail(f"{len(self._cmds)} command(s) left; the first, to word {addr:#x} "
                       f"(cycle {since}): {kind}")
        if self._wbuf:
            self._fail(f"{len(self._wbuf)} wdata beat(s) taken with no write command for them")
        if self._rpipe:
            self._fail(f"{len(self._rpipe)} read word(s) never taken by the master")

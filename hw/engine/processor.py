"""CommandProcessor: fetches a layer program's descriptors by DMA and runs them in order."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from pwconv.host.compiler import format as fmt
from ..memory.arbiter import PortArbiter
from ..memory.dma import DMAReader
from ..memory.port import NativePortSignature
from ..params import check_config, rejected
from .conv import ConvEngine
from .descriptor import OP_CODES, descriptor_layout

__all__ = ["CommandProcessor", "STATUS", "HEADER_FETCH_BYTES"]

#: ``error_code`` values of the processor.
STATUS = {
    "ok": 0,
    "header": 1,        # the header's magic is not format.MAGIC
    "unknown_op": 2,    # a descriptor's op code is not in format.OPS
    "unsupported": 3,   # a known op with no engine in this build (DEPTHWISE, ADD, pools, HOST)
    "engine": 4,        # the engine refused the descriptor (its code in ``engine_code``)
    "no_last": 5,       # descriptor_count ran out before a descriptor with FLAG_LAST
}
#: Header bytes fetched: magic .. descriptor_count (format.HEADER_FIELDS).
HEADER_FETCH_BYTES = 24


class CommandProcessor(wiring.Component):
    """Run a compiled layer program (host/compiler, docs/program.md) from memory, no CPU.

    On ``start`` it reads the first :data:`HEADER_FETCH_BYTES` of the header at ``base`` (magic,
    ``program_addr``, ``descriptor_count``), then fetches the descriptors one by one (64 bytes,
    one DMA row each), decodes each with :func:`~.descriptor.descriptor_layout` (derived from
    format.DESCRIPTOR_FIELDS) and dispatches it by op code: CONV and FULLY_CONNECTED to the
    :class:`~.conv.ConvEngine`. The next descriptor is fetched while the current op runs. The
    program ends after the descriptor with FLAG_LAST. Other engines (DEPTHWISE, ADD, pools,
    MEAN) plug in at the dispatch point (``_dispatch``); until they do, their ops stop the
    program with ``unsupported``, as HOST does (the host would run its segment and resume).

    Parameters
    ----------
    cfg : ArrayConfig
        The array the ConvEngine builds.
    port : NativePortSignature
        The memory port (shared by the descriptor fetch and the engines, arbitrated).
    max_ops : int
        Per-op cycle counters kept (descriptor indices ``0 .. max_ops - 1``).

    Members
    -------
    start : In(1), base : In(32)
        Start the program whose header is at byte ``base`` (ignored while ``busy``). The
        header's and descriptors' addresses are memory addresses (an image loaded at 0).
    busy : Out(1)
        From the cycle after ``start`` until ``done``.
    done : Out(1)
        One-cycle pulse: the program finished (``error`` low) or stopped (``error`` high).
    error : Out(1), error_code : Out(4), error_index : Out(16), engine_code : Out(4)
        Held from ``done`` to the next start: :data:`STATUS`, the descriptor index it concerns,
        and the engine's own refusal code (:data:`pwconv.hw.engine.conv.ERRORS`).
    ops_run : Out(16)
        Descriptors completed by the last program.
    cycles : Out(32)
        Cycles of the last program, start to done.
    counter_index : In(16), counter_value : Out(32)
        Read port of the per-op counters: ``counter_value`` is the cycles op
        ``counter_index`` took (dispatch to done) in the last program, one cycle after
        ``counter_index`` is set.
    bus : Out(NativePortSignature)
        The memory port.

    Timing: the header and the first descriptor cost two memory round trips before the first
    op starts; between ops, 2 cycles plus whatever of the next descriptor's fetch the current
    op did not hide.
    """

    def __init__(self, cfg: ArrayConfig, *, port, max_ops=256):
        check_config(self, cfg)
        if not isinstance(port, NativePortSignature):
            raise rejected(self, TypeError(f"Port must be a NativePortSignature, not {port!r}"))
        if not isinstance(max_ops, int) or not 1 <= max_ops <= fmt.MAX_DESCRIPTORS:
            raise rejected(self, TypeError(f"Max ops must be an integer from 1 to "
                                           f"{fmt.MAX_DESCRIPTORS}, not {max_ops!r}"))
        self._cfg = cfg
        self._port = port
        self._max_ops = max_ops
        super().__init__({
            "start": In(1),
            "base": In(32),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(4),
            "error_index": Out(16),
            "engine_code": Out(4),
            "ops_run": Out(16),
            "cycles": Out(32),
            "counter_index": In(16),
            "counter_value": Out(32),
            "bus": Out(port),
        })

    @property
    def max_ops(self):
        return self._max_ops

    def elaborate(self, platform):
        m = Module()
        port = self._port
        m.submodules.fetch = fetch = DMAReader(port, lanes=fmt.DESCRIPTOR_BYTES, depth=8)
        m.submodules.conv = conv = ConvEngine(self._cfg, port=port)
        m.submodules.arbiter = arbiter = PortArbiter(port, masters=2)
        wiring.connect(m, fetch.bus, arbiter.masters[0])
        wiring.connect(m, conv.bus, arbiter.masters[1])
        wiring.connect(m, arbiter.bus, wiring.flipped(self.bus))

        m.submodules.counters = counters = memory.Memory(shape=32, depth=self._max_ops, init=[])
        wr = counters.write_port()
        rd = counters.read_port()
        m.d.comb += [rd.addr.eq(self.counter_index), self.counter_value.eq(rd.data)]

        base = Signal(32)
        program_addr = Signal(32)
        count = Signal(32)
        index = Signal(16)
        next_addr = Signal(32)
        prefetched = Signal()
        desc = Signal(descriptor_layout())
        op_cycles = Signal(32)
        running = Signal()
        fetched = data.View(descriptor_layout(), fetch.o.payload.data.as_value())
        header = fetch.o.payload.data.as_value()
        magic = int.from_bytes(fmt.MAGIC, "little")

        m.d.comb += [self.busy.eq(running), conv.desc.eq(desc)]
        m.d.sync += self.done.eq(0)
        with m.If(running):
            m.d.sync += [self.cycles.eq(self.cycles + 1), op_cycles.eq(op_cycles + 1)]

        def stop(code, index_value=None):
            m.d.sync += [self.done.eq(1), running.eq(0), self.error.eq(code != 0),
                         self.error_code.eq(code)]
            if index_value is not None:
                m.d.sync += self.error_index.eq(index_value)
            m.next = "IDLE"

        def fetch_request(addr):
            m.d.comb += [
                fetch.req.valid.eq(1),
                fetch.req.payload.addr.eq(addr),
                fetch.req.payload.length.eq(fmt.DESCRIPTOR_BYTES),
                fetch.req.payload.count.eq(1),
                fetch.req.payload.stride.eq(0),
            ]

        with m.FSM(name="processor"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [base.eq(self.base), running.eq(1), self.cycles.eq(1),
                                 self.error.eq(0), self.error_code.eq(0), self.error_index.eq(0),
                                 self.engine_code.eq(0), self.ops_run.eq(0), index.eq(0),
                                 prefetched.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [
                    fetch.req.valid.eq(1),
                    fetch.req.payload.addr.eq(base),
                    fetch.req.payload.length.eq(HEADER_FETCH_BYTES),
                    fetch.req.payload.count.eq(1),
                    fetch.req.payload.stride.eq(0),
                ]
                with m.If(fetch.req.ready):
                    m.next = "HEADER_WAIT"
            with m.State("HEADER_WAIT"):
                m.d.comb += fetch.o.ready.eq(1)
                with m.If(fetch.o.valid):
                    m.d.sync += [program_addr.eq(header[128:160]),
                                 count.eq(header[160:192])]
                    with m.If(header[:32] != magic):
                        stop(STATUS["header"])
                    with m.Else():
                        m.next = "FIRST"
            with m.State("FIRST"):
                with m.If(count == 0):
                    stop(STATUS["no_last"], 0)
                with m.Else():
                    fetch_request(program_addr)
                    with m.If(fetch.req.ready):
                        m.d.sync += next_addr.eq(program_addr + fmt.DESCRIPTOR_BYTES)
                        m.next = "DESC_WAIT"
            with m.State("DESC_WAIT"):
                m.d.comb += fetch.o.ready.eq(1)
                with m.If(fetch.o.valid):
                    m.d.sync += [desc.eq(fetched), prefetched.eq(0), op_cycles.eq(0)]
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                self._dispatch(m, desc, conv, stop, index)
            with m.State("RUN"):
                # Fetch the next descriptor while the op runs (unless this one is the last).
                last = (desc.flags & fmt.FLAG_LAST) != 0
                more = index + 1 < count
                with m.If(~prefetched & ~last & more):
                    fetch_request(next_addr)
                    with m.If(fetch.req.ready):
                        m.d.sync += [prefetched.eq(1),
                                     next_addr.eq(next_addr + fmt.DESCRIPTOR_BYTES)]
                with m.If(conv.done):
                    m.d.comb += [wr.addr.eq(index), wr.data.eq(op_cycles),
                                 wr.en.eq(index < self._max_ops)]
                    with m.If(conv.error):
                        # Drop a prefetched descriptor before reporting, so the fetch DMA is
                        # empty when the next program starts.
                        m.d.sync += [self.engine_code.eq(conv.error_code),
                                     self.error_index.eq(index)]
                        m.next = "FLUSH"
                    with m.Else():
                        m.d.sync += [self.ops_run.eq(self.ops_run + 1), index.eq(index + 1)]
                        with m.If(last):
                            stop(STATUS["ok"])
                        with m.Elif(~more):
                            stop(STATUS["no_last"], index)
                        with m.Elif(prefetched):
                            m.next = "DESC_WAIT"
                        with m.Else():
                            m.next = "NEXT"
            with m.State("FLUSH"):
                m.d.comb += fetch.o.ready.eq(1)
                with m.If(~fetch.busy & ~fetch.o.valid):
                    stop(STATUS["engine"])
            with m.State("NEXT"):
                fetch_request(next_addr)
                with m.If(fetch.req.ready):
                    m.d.sync += next_addr.eq(next_addr + fmt.DESCRIPTOR_BYTES)
                    m.next = "DESC_WAIT"
        return m

    def _dispatch(self, m, desc, conv, stop, index):
        """The dispatch point: start the engine of ``desc.op`` and go to RUN, or stop. A new
        engine adds its op codes here (and its ``done``/``error`` to RUN)."""
        known = [code for name, code in OP_CODES.items()]
        with m.Switch(desc.op):
            with m.Case(OP_CODES["CONV"], OP_CODES["FULLY_CONNECTED"]):
                m.d.comb += conv.start.eq(1)
                m.next = "RUN"
            with m.Case(*known):
                stop(STATUS["unsupported"], index)
            with m.Default():
                stop(STATUS["unknown_op"], index)

"""DMA engines: 2-D byte requests to and from a NativePortSignature memory port, as byte streams."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO, SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.utils import bits_for, exact_log2

from ..params import rejected
from .port import NativePortSignature

__all__ = ["request_layout", "beat_layout", "RowAddresses", "DMAReader", "DMAWriter"]


def request_layout(byte_addr_width, length_width, count_width):
    """A 2-D transfer: ``count`` rows of ``length`` bytes, row ``r`` at byte address
    ``addr + r * stride`` (modulo the address space, so a stride of ``-s`` in two's complement
    walks backwards)."""
    return data.StructLayout({
        "addr": unsigned(byte_addr_width),
        "length": unsigned(length_width),
        "count": unsigned(count_width),
        "stride": unsigned(byte_addr_width),
    })


def beat_layout(lanes):
    """One beat of a byte stream: ``lanes`` bytes, of which lanes ``0 .. count - 1`` hold data.

    Every row starts at lane 0 of a new beat; all of a row's beats are full (``count ==
    lanes``) but its last, which has ``row_last`` set and may be partial. ``last`` marks the
    request's final beat (the last row's ``row_last`` beat)."""
    return data.StructLayout({
        "data": data.ArrayLayout(unsigned(8), lanes),
        "count": unsigned(bits_for(lanes)),
        "row_last": unsigned(1),
        "last": unsigned(1),
    })


def _check_common(component, port, lanes, length_width, count_width, counter_width):
    if not isinstance(port, NativePortSignature):
        raise rejected(component, TypeError(f"Port must be a NativePortSignature, not {port!r}"))
    word_bytes = port.data_width // 8
    if word_bytes & (word_bytes - 1):
        raise rejected(component, ValueError(
            f"Port data width must be 8 times a power of two, not {port.data_width}"))
    if not isinstance(lanes, int) or lanes < 1:
        raise rejected(component, TypeError(
            f"Lane count must be a positive integer, not {lanes!r}"))
    for name, value in (("Length width", length_width), ("Count width", count_width),
                        ("Counter width", counter_width)):
        if not isinstance(value, int) or not 1 <= value <= 64:
            raise rejected(component, TypeError(
                f"{name} must be an integer from 1 to 64, not {value!r}"))


class RowAddresses(wiring.Component):
    """Split 2-D requests into rows: one row per cycle, requests back to back.

    Parameters
    ----------
    byte_addr_width, length_width, count_width : int
        Field widths of :func:`request_layout`.

    Members
    -------
    i : In(stream.Signature(request_layout(...)))
        Taken when the previous request's last row leaves (or none is left). A request with
        ``length == 0`` or ``count == 0`` is taken and yields no row.
    o : Out(stream.Signature(StructLayout({addr, length, last})))
        One row: its byte address, its length, and ``last`` on the request's final row. Payload
        and valid are registers; the first row leaves the cycle after its request is taken,
        then one row per cycle.
    """

    def __init__(self, byte_addr_width, length_width, count_width):
        self._widths = (byte_addr_width, length_width, count_width)
        super().__init__({
            "i": In(stream.Signature(request_layout(byte_addr_width, length_width,
                                                    count_width))),
            "o": Out(stream.Signature(data.StructLayout({
                "addr": unsigned(byte_addr_width), "length": unsigned(length_width),
                "last": unsigned(1)}))),
        })

    def elaborate(self, platform):
        m = Module()
        baw, lw, cw = self._widths
        addr = Signal(baw)
        left = Signal(cw)
        length = Signal(lw)
        stride = Signal(baw)
        m.d.comb += [
            self.o.valid.eq(left != 0),
            self.o.payload.addr.eq(addr),
            self.o.payload.length.eq(length),
            self.o.payload.last.eq(left == 1),
            self.i.ready.eq((left == 0) | ((left == 1) & self.o.ready)),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [addr.eq(addr + stride), left.eq(left - 1)]
        with m.If(self.i.valid & self.i.ready):
            req = self.i.payload
            m.d.sync += [
                addr.eq(req.addr),
                left.eq(Mux(req.length == 0, 0, req.count)),
                length.eq(req.length),
                stride.eq(req.stride),
            ]
        return m


class DMAReader(wiring.Component):
    """Read 2-D byte regions from a memory port and stream their bytes, ``lanes`` per beat.

    Requests (:func:`request_layout`, byte addresses, any alignment of address, length and
    stride) become one read command per memory word the rows touch; the words' bytes come out
    packed as :func:`beat_layout` beats: each row starts at lane 0 of a fresh beat, so a
    consumer that takes a pixel's channels per row (the array's pixel input, an im2col line
    buffer filling one kernel tap per row) never has to realign; the row's final beat carries
    ``row_last`` and a byte ``count`` (valid bytes are lanes ``0 .. count - 1``, the rest are
    zero), the request's final beat ``last``.

    Parameters
    ----------
    port : NativePortSignature
        The memory port (``data_width`` 8 times a power of two).
    lanes : int
        Bytes per output beat. The reader keeps up with one port word per cycle when
        ``lanes >= data_width // 8``.
    depth : int
        Read-data FIFO words. The reader never has more than ``depth`` reads in flight plus
        buffered, so it always takes ``rdata`` at once (``rdata.ready`` is high whenever a
        word can arrive: LiteDRAM's crossbar does not wait); ``depth`` should exceed the
        memory's round trip in cycles for full throughput.
    length_width, count_width : int
        Widths of a request's ``length`` and ``count`` (bytes per row, rows).
    counter_width : int
        Width of the byte and cycle counters (they wrap).

    Members
    -------
    req : In(stream.Signature(request_layout(...)))
        Requests. Taken one per row cycle ahead: a new request is taken when the previous one's
        last row is issued, so requests run back to back. ``length == 0`` or ``count == 0``:
        taken, moves nothing, no beat.
    o : Out(stream.Signature(beat_layout(lanes)))
        The bytes. ``o.valid`` and ``o.payload`` are decoded from registers only (the unpack
        buffer and the row FIFO's head; no path from ``o.ready`` or the port); full
        backpressure: while ``o.ready`` is low the reader keeps reading until its FIFO is
        reserved full, then stops issuing commands.
    bus : Out(NativePortSignature)
        The memory port (reads only; ``wdata.valid`` is 0).
    bytes_moved : Out(counter_width)
        Bytes delivered on ``o`` since reset.
    cycles_busy : Out(counter_width)
        Cycles with any request, command, word or byte in flight since reset.
    busy : Out(1)
        The same condition, this cycle.

    Latency and throughput (in clock edges; measured in amaranth.sim): a request taken at edge
    ``t`` offers its first read command on ``bus.cmd`` right after edge ``t + 1`` (accepted at
    ``t + 2`` at the earliest); a word taken from ``bus.rdata`` at edge ``u`` is in a beat
    offered on ``o`` right after edge ``u + 1`` (taken at ``u + 2`` at the earliest). With no
    stall and ``lanes >= word bytes`` the reader takes one word per cycle, rows and requests
    back to back (a row change costs no cycle: the next row's bytes follow the last row's in
    the unpack buffer).

    The design follows LiteDRAM's ``LiteDRAMDMAReader`` (litedram/frontend/dma.py: reserve a
    FIFO slot per read command in flight) and VTA's 2-D load (x_size, y_size, x_stride).
    """

    def __init__(self, port, *, lanes, depth=16, length_width=16, count_width=16,
                 counter_width=32):
        _check_common(self, port, lanes, length_width, count_width, counter_width)
        if not isinstance(depth, int) or depth < 2:
            raise rejected(self, TypeError(f"FIFO depth must be an integer >= 2, not {depth!r}"))
        self._port = port
        self._lanes = lanes
        self._depth = depth
        self._length_width = length_width
        self._count_width = count_width
        self._byte_addr_width = port.addr_width + exact_log2(port.data_width // 8)
        super().__init__({
            "req": In(stream.Signature(request_layout(self._byte_addr_width, length_width,
                                                      count_width))),
            "o": Out(stream.Signature(beat_layout(lanes))),
            "bus": Out(port),
            "bytes_moved": Out(counter_width),
            "cycles_busy": Out(counter_width),
            "busy": Out(1),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def depth(self):
        return self._depth

    @property
    def byte_addr_width(self):
        return self._byte_addr_width

    def elaborate(self, platform):
        m = Module()
        W = self._port.data_width // 8
        wb = exact_log2(W)
        N = self._lanes
        B = N + W
        lw = self._length_width
        D = self._depth

        m.submodules.rows = rows = RowAddresses(self._byte_addr_width, lw, self._count_width)
        wiring.connect(m, wiring.flipped(self.req), rows.i)

        # --- issue: one read command per word of each row --------------------------------
        desc_layout = data.StructLayout({"off": unsigned(max(wb, 1)), "length": unsigned(lw),
                                         "last": unsigned(1)})
        m.submodules.desc = desc = SyncFIFO(width=desc_layout.size, depth=D + 2)
        m.submodules.words = words = SyncFIFO(width=self._port.data_width, depth=D)
        w_addr = Signal(self._port.addr_width)
        w_left = Signal(lw + 1)
        reserved = Signal(range(D + 1))
        row = rows.o.payload
        first_off = row.addr[:wb] if wb else Const(0, 1)
        row_words = ((first_off + row.length + (W - 1)) >> wb)[:lw + 1]

        cmd_fire = Signal()
        m.d.comb += [
            self.bus.cmd.valid.eq((w_left != 0) & (reserved < D)),
            self.bus.cmd.payload.addr.eq(w_addr),
            self.bus.cmd.payload.we.eq(0),
            cmd_fire.eq(self.bus.cmd.valid & self.bus.cmd.ready),
            self.bus.wdata.valid.eq(0),
        ]
        take_row = rows.o.valid & desc.w_rdy & ((w_left == 0) | ((w_left == 1) & cmd_fire))
        desc_w = data.View(desc_layout, desc.w_data)
        m.d.comb += [
            rows.o.ready.eq(take_row),
            desc.w_en.eq(take_row),
            desc_w.off.eq(first_off),
            desc_w.length.eq(row.length),
            desc_w.last.eq(row.last),
        ]
        with m.If(take_row):
            m.d.sync += [w_addr.eq(row.addr >> wb), w_left.eq(row_words)]
        with m.Elif(cmd_fire):
            m.d.sync += [w_addr.eq(w_addr + 1), w_left.eq(w_left - 1)]

        # Read data into the FIFO; every slot was reserved when its command left.
        m.d.comb += [
            words.w_data.eq(self.bus.rdata.payload),
            words.w_en.eq(self.bus.rdata.valid),
            self.bus.rdata.ready.eq(words.w_rdy),
        ]
        word_taken = Signal()
        m.d.sync += reserved.eq(reserved + cmd_fire - word_taken)

        # --- unpack: words to beats, each row from lane 0 ---------------------------------
        # The input side appends each row's bytes to ``buf`` right behind the previous row's
        # (so a row's last word and the next row's first word need no gap); the output side
        # knows from ``rowq`` where rows end and cuts beats at row ends.
        buf = Signal(8 * B)
        have = Signal(range(B + 1))
        in_left = Signal(lw)
        first = Signal()
        off = Signal(max(wb, 1))
        row_layout = data.StructLayout({"length": unsigned(lw), "last": unsigned(1)})
        m.submodules.rowq = rowq = SyncFIFO(width=row_layout.size, depth=4)

        # Output side: the head row of rowq, of which ``sent`` bytes are out.
        head = data.View(row_layout, rowq.r_data)
        sent = Signal(lw)
        rest = Signal(lw)
        count = Signal(range(N + 1))
        row_end = Signal()
        m.d.comb += [
            rest.eq(head.length - sent),
            row_end.eq(rest <= N),
            count.eq(Mux(row_end, rest, N)),
            self.o.valid.eq(rowq.r_rdy & (have >= count)),
            self.o.payload.data.eq(buf[:8 * N] & ((Const(1, 8 * N + 1) << (count * 8)) - 1)),
            self.o.payload.count.eq(count),
            self.o.payload.row_last.eq(row_end),
            self.o.payload.last.eq(row_end & head.last),
        ]
        fire = self.o.valid & self.o.ready
        take = Mux(fire, count, 0)
        m.d.comb += rowq.r_en.eq(fire & row_end)
        with m.If(fire):
            m.d.sync += sent.eq(Mux(row_end, 0, sent + N))

        # Input side: a new row's descriptor loads when the last one's bytes are all in.
        load = in_left == 0
        d = data.View(desc_layout, desc.r_data)
        c_left = Mux(load, d.length, in_left)
        c_skip = Mux(load, d.off, Mux(first, off, 0))
        c_ok = ~load | (desc.r_rdy & rowq.w_rdy)
        have_after = Signal(range(B + 1))
        avail = Signal(range(W + 1))
        n_in = Signal(range(W + 1))
        in_ok = Signal()
        loaded = Signal()
        m.d.comb += [
            loaded.eq(load & desc.r_rdy & rowq.w_rdy),
            have_after.eq(have - take),
            avail.eq(W - c_skip),
            n_in.eq(Mux(c_left < avail, c_left, avail)),
            in_ok.eq(words.r_rdy & c_ok & (c_left != 0) & (have_after + W <= B)),
            words.r_en.eq(in_ok),
            word_taken.eq(in_ok),
            desc.r_en.eq(loaded),
            rowq.w_en.eq(loaded),
            rowq.w_data.eq(Cat(d.length, d.last)),
        ]
        piece = Signal(8 * W)
        m.d.comb += piece.eq((words.r_data >> (c_skip * 8))
                             & ((Const(1, 8 * W + 1) << (n_in * 8)) - 1))
        m.d.sync += [
            buf.eq((buf >> (take * 8)) | Mux(in_ok, piece << (have_after * 8), 0)),
            have.eq(have_after + Mux(in_ok, n_in, 0)),
        ]
        with m.If(loaded | ~load):
            m.d.sync += [
                in_left.eq(c_left - Mux(in_ok, n_in, 0)),
                first.eq(Mux(load, ~in_ok, first & ~in_ok)),
            ]
        with m.If(loaded):
            m.d.sync += off.eq(d.off)

        # --- counters --------------------------------------------------------------------
        m.d.comb += self.busy.eq(rows.o.valid | (w_left != 0) | (reserved != 0) | desc.r_rdy
                                 | rowq.r_rdy)
        m.d.sync += [
            self.bytes_moved.eq(self.bytes_moved + take),
            self.cycles_busy.eq(self.cycles_busy + self.busy),
        ]
        return m


class DMAWriter(wiring.Component):
    """Write a byte stream into 2-D regions of a memory port, with byte masks for partial words.

    Each request (:func:`request_layout`, any byte alignment) takes ``ceil(length / lanes)``
    beats of ``i`` per row, a row starting at lane 0 of a fresh beat (the layout a
    :class:`DMAReader` produces, so a reader's ``o`` can feed a writer's ``i``); of a row's
    final beat only the first ``length % lanes`` bytes (all if 0) are written. ``count``,
    ``row_last`` and ``last`` of ``i`` are ignored: the request says where rows end. The bytes
    become one write command per memory word the row touches, with ``wdata.mask`` enabling
    exactly the row's bytes in its first and last words.

    Parameters
    ----------
    port : NativePortSignature
        The memory port (``data_width`` 8 times a power of two).
    lanes : int
        Bytes per input beat; one word per cycle needs ``lanes >= data_width // 8``.
    depth : int
        Depth of the command and write-data FIFOs in front of the port.
    length_width, count_width, counter_width : int
        As :class:`DMAReader`.
    max_pending : int
        Requests taken and not yet reported on ``done``; ``req`` waits while that many are.

    Members
    -------
    req : In(stream.Signature(request_layout(...)))
        Requests, back to back. ``length == 0`` or ``count == 0``: taken, writes nothing and is
        not reported on ``done``.
    i : In(stream.Signature(beat_layout(lanes)))
        The bytes. ``i.ready`` depends on ``i.valid`` (a beat is taken only if one is offered).
    done : Out(stream.Signature(0))
        One beat per request, in request order, once every write command and write-data beat
        of the request has been accepted by the port (after that, any later command on the
        same port sees the data: the port executes in order).
    bus : Out(NativePortSignature)
        The memory port (writes only; ``rdata.ready`` is 1). A command and its data beat enter
        separate FIFOs together, so they may be accepted in either order.
    bytes_moved : Out(counter_width)
        Bytes taken from ``i`` into memory words since reset.
    cycles_busy : Out(counter_width), busy : Out(1)
        Cycles with any request, byte, command or completion pending; that condition now.

    Latency and throughput (in clock edges; measured in amaranth.sim): a word completed by a
    beat taken at edge ``t`` has its command and data offered on the port right after edge
    ``t + 2`` (a request's first beat is taken one edge after the request at the earliest);
    one word per cycle with no stall and ``lanes >= word bytes``, a row change costing no
    cycle.

    The design follows LiteDRAM's ``LiteDRAMDMAWriter`` (litedram/frontend/dma.py) with
    byte-granular rows, as in VTA's store of 2-D tiles.
    """

    def __init__(self, port, *, lanes, depth=4, length_width=16, count_width=16,
                 counter_width=32, max_pending=15):
        _check_common(self, port, lanes, length_width, count_width, counter_width)
        if not isinstance(depth, int) or depth < 2:
            raise rejected(self, TypeError(f"FIFO depth must be an integer >= 2, not {depth!r}"))
        if not isinstance(max_pending, int) or max_pending < 1:
            raise rejected(self, TypeError(
                f"Max pending must be a positive integer, not {max_pending!r}"))
        self._port = port
        self._lanes = lanes
        self._depth = depth
        self._max_pending = max_pending
        self._length_width = length_width
        self._count_width = count_width
        self._byte_addr_width = port.addr_width + exact_log2(port.data_width // 8)
        super().__init__({
            "req": In(stream.Signature(request_layout(self._byte_addr_width, length_width,
                                                      count_width))),
            "i": In(stream.Signature(beat_layout(lanes))),
            "done": Out(stream.Signature(0)),
            "bus": Out(port),
            "bytes_moved": Out(counter_width),
            "cycles_busy": Out(counter_width),
            "busy": Out(1),
        })

    @property
    def lanes(self):
        return self._lanes

    @property
    def byte_addr_width(self):
        return self._byte_addr_width

    def elaborate(self, platform):
        m = Module()
        W = self._port.data_width // 8
        wb = exact_log2(W)
        N = self._lanes
        B = N + W
        lw = self._length_width
        aw = self._port.addr_width

        m.submodules.rows = rows = RowAddresses(self._byte_addr_width, lw, self._count_width)
        pending = Signal(range(self._max_pending + 1))
        req_taken = Signal()
        m.d.comb += [
            rows.i.payload.eq(self.req.payload),
            rows.i.valid.eq(self.req.valid & (pending < self._max_pending)),
            self.req.ready.eq(rows.i.ready & (pending < self._max_pending)),
            req_taken.eq(self.req.valid & self.req.ready & (self.req.payload.length != 0)
                         & (self.req.payload.count != 0)),
        ]

        cmd_layout = data.StructLayout({"addr": unsigned(aw), "last": unsigned(1)})
        wd_layout = data.StructLayout({"data": unsigned(8 * W), "mask": unsigned(W),
                                       "last": unsigned(1)})
        m.submodules.cmds = cmds = SyncFIFOBuffered(width=cmd_layout.size, depth=self._depth)
        m.submodules.wdata = wdf = SyncFIFOBuffered(width=wd_layout.size, depth=self._depth)

        # --- pack: beats to words at the row's byte offset --------------------------------
        buf = Signal(8 * B)
        mbuf = Signal(B)
        have = Signal(range(B + 1))
        in_left = Signal(lw)
        active = Signal()
        w_addr = Signal(aw)
        last_row = Signal()

        emit_ok = active & ((have >= W) | ((in_left == 0) & (have != 0)))
        emit = Signal()
        row_end = Signal()
        m.d.comb += [
            emit.eq(emit_ok & cmds.w_rdy & wdf.w_rdy),
            row_end.eq(emit & (in_left == 0) & (have <= W)),
        ]
        have_after = Signal(range(B + 1))
        m.d.comb += have_after.eq(Mux(emit, Mux(have >= W, have - W, 0), have))
        load = ~active | row_end
        row = rows.o.payload
        row_off = row.addr[:wb] if wb else Const(0, 1)
        c_left = Mux(load, row.length, in_left)
        c_pos = Signal(range(B + 1))
        m.d.comb += c_pos.eq(Mux(load, row_off, have_after))
        c_ok = ~load | rows.o.valid
        n_in = Signal(range(N + 1))
        in_ok = Signal()
        m.d.comb += [
            n_in.eq(Mux(c_left < N, c_left, N)),
            in_ok.eq(self.i.valid & c_ok & (c_left != 0) & (c_pos + N <= B)),
            self.i.ready.eq(in_ok),
            rows.o.ready.eq(load),
        ]
        byte_mask = Signal(N)
        m.d.comb += byte_mask.eq((Const(1, N + 1) << n_in) - 1)
        piece = Signal(8 * N)
        m.d.comb += piece.eq(self.i.payload.data.as_value()
                             & Cat(b.replicate(8) for b in byte_mask))
        shift = Mux(emit, W, 0)
        m.d.sync += [
            buf.eq((buf >> (shift * 8)) | Mux(in_ok, piece << (c_pos * 8), 0)),
            mbuf.eq((mbuf >> shift) | Mux(in_ok, byte_mask << c_pos, 0)),
        ]
        with m.If(load):
            m.d.sync += [
                active.eq(rows.o.valid),
                have.eq(Mux(rows.o.valid, c_pos + Mux(in_ok, n_in, 0), 0)),
                in_left.eq(c_left - Mux(in_ok, n_in, 0)),
                w_addr.eq(row.addr >> wb),
                last_row.eq(row.last),
            ]
        with m.Else():
            m.d.sync += [
                have.eq(c_pos + Mux(in_ok, n_in, 0)),
                in_left.eq(c_left - Mux(in_ok, n_in, 0)),
            ]
            with m.If(emit):
                m.d.sync += w_addr.eq(w_addr + 1)

        cmd_w = data.View(cmd_layout, cmds.w_data)
        wd_w = data.View(wd_layout, wdf.w_data)
        m.d.comb += [
            cmds.w_en.eq(emit), wdf.w_en.eq(emit),
            cmd_w.addr.eq(w_addr), cmd_w.last.eq(row_end & last_row),
            wd_w.data.eq(buf[:8 * W]), wd_w.mask.eq(mbuf[:W]), wd_w.last.eq(row_end & last_row),
        ]

        # --- the port -------------------------------------------------------------------------
        cmd_r = data.View(cmd_layout, cmds.r_data)
        wd_r = data.View(wd_layout, wdf.r_data)
        m.d.comb += [
            self.bus.cmd.valid.eq(cmds.r_rdy),
            self.bus.cmd.payload.addr.eq(cmd_r.addr),
            self.bus.cmd.payload.we.eq(1),
            cmds.r_en.eq(self.bus.cmd.ready),
            self.bus.wdata.valid.eq(wdf.r_rdy),
            self.bus.wdata.payload.data.eq(wd_r.data),
            self.bus.wdata.payload.mask.eq(wd_r.mask),
            wdf.r_en.eq(self.bus.wdata.ready),
            self.bus.rdata.ready.eq(1),
        ]

        # --- completion: a request is done when its last command and last data beat are in ---
        span = range(self._max_pending + 1)
        cmd_lasts = Signal(span)
        wd_lasts = Signal(span)
        cmd_last_in = self.bus.cmd.valid & self.bus.cmd.ready & cmd_r.last
        wd_last_in = self.bus.wdata.valid & self.bus.wdata.ready & wd_r.last
        m.d.comb += self.done.valid.eq((cmd_lasts != 0) & (wd_lasts != 0))
        done_fire = self.done.valid & self.done.ready
        m.d.sync += [
            cmd_lasts.eq(cmd_lasts + cmd_last_in - done_fire),
            wd_lasts.eq(wd_lasts + wd_last_in - done_fire),
            pending.eq(pending + req_taken - done_fire),
        ]

        m.d.comb += self.busy.eq((pending != 0) | rows.o.valid | active | cmds.r_rdy
                                 | wdf.r_rdy)
        m.d.sync += [
            self.bytes_moved.eq(self.bytes_moved + Mux(in_ok, n_in, 0)),
            self.cycles_busy.eq(self.cycles_busy + self.busy),
        ]
        return m

"""Im2col: a KxK convolution's input rows into an on-chip line buffer, gathered as pixel beats."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import exact_log2

from pwconv.config import ArrayConfig
from ..layouts import pixel_beat
from ..memory.dma import DMAReader
from ..memory.port import NativePortSignature
from ..params import check_config, rejected
from .descriptor import descriptor_layout

__all__ = ["Im2col"]


class Im2col(wiring.Component):
    """Gather the im2col pixels of a CONV descriptor from a line buffer filled by DMA.

    Output pixel ``(oy, ox)`` is ``K = kernel_h * kernel_w * in_c`` channels, channel ``(ky *
    kernel_w + kx) * in_c + c`` being input pixel ``(oy * stride_h - pad_top + ky *
    dilation_h, ox * stride_w - pad_left + kx * dilation_w)``, channel ``c``, or
    ``input_zero_point`` outside the image (golden/program.py ``im2col``). It leaves on ``o``
    as ``ceil(K / rows)`` pixel beats, the last zero-filled, pixels in NHWC order.

    The input rows enter a ring of ``slots`` rows of ``max_row_bytes`` bytes, each input byte
    read from memory once per run: row ``r`` through its view (``in_w`` DMA rows of ``in_c``
    bytes, ``in_pixel_stride`` apart) into slot ``r % slots``, as soon as the slot's previous
    row is no longer needed by the output row being gathered. An output row is gathered once
    the last input row it needs is in.

    Parameters
    ----------
    cfg : ArrayConfig
        The array (``rows``: bytes per pixel beat).
    port : NativePortSignature
        The memory port of the fill DMA.
    max_row_bytes : int
        Largest ``in_w * in_c``.
    slots : int
        Rows in the ring, a power of 2; must exceed ``(kernel_h - 1) * dilation_h + 1``
        (checked at ``start``: ``error``); one more than that lets the fill run ahead.

    Members
    -------
    desc : In(descriptor_layout())
        The CONV descriptor, stable from ``start`` to ``done``.
    start : In(1)
        Start a run (one pass over all output pixels).
    done : Out(1)
        One-cycle pulse after the run's last beat was taken on ``o`` (or at once with
        ``error``).
    error : Out(1)
        With ``done``: the kernel does not fit the ring or a row ``max_row_bytes``.
    o : Out(stream.Signature(pixel_beat(cfg)))
        The pixel beats.
    bus : Out(NativePortSignature)
        The fill DMA's memory port (reads only).

    Throughput: one byte of the im2col pixel per cycle into the beat being assembled, a beat
    per ``rows`` cycles (a ``rows``-byte wide buffer would give the array's pace: not yet);
    the fill moves one byte per cycle. Latency: the first beat after the first
    ``kernel_h``-ish input rows are in.

    Relied on: golden/program.py ``im2col`` (the channel order), hw/engine/depthwise.py (the
    idea of a ring of rows, which this keeps byte-addressed for any ``in_c``).
    """

    def __init__(self, cfg: ArrayConfig, *, port, max_row_bytes=4096, slots=4):
        check_config(self, cfg)
        if not isinstance(port, NativePortSignature):
            raise rejected(self, TypeError(f"Port must be a NativePortSignature, not {port!r}"))
        if not isinstance(max_row_bytes, int) or max_row_bytes < 1:
            raise rejected(self, TypeError(f"Max row bytes must be a positive integer, not "
                                           f"{max_row_bytes!r}"))
        if not isinstance(slots, int) or slots < 2 or slots & (slots - 1):
            raise rejected(self, TypeError(f"Slots must be a power of 2, at least 2, not "
                                           f"{slots!r}"))
        self._cfg = cfg
        self._port = port
        self._row_bytes = max_row_bytes
        self._slots = slots
        super().__init__({
            "desc": In(descriptor_layout()),
            "start": In(1),
            "done": Out(1),
            "error": Out(1),
            "o": Out(stream.Signature(pixel_beat(cfg))),
            "bus": Out(port),
        })

    def elaborate(self, platform):
        cfg, R, S = self._cfg, self._row_bytes, self._slots
        m = Module()
        d = self.desc
        m.submodules.fill = fill = DMAReader(self._port, lanes=1, depth=8)
        wiring.connect(m, fill.bus, wiring.flipped(self.bus))
        m.submodules.lines = lines = memory.Memory(shape=8, depth=R * S, init=[])
        wr = lines.write_port()
        rd = lines.read_port(domain="comb")
        sb = exact_log2(S)

        running = Signal()
        m.d.sync += self.done.eq(0)
        # The output row being gathered, and the first input row it needs (signed).
        oy = Signal(16)
        base_row = Signal(signed(20))
        m.d.comb += base_row.eq(oy * d.stride_h - d.pad_top)

        # --- fill: input row r into slot r % S ------------------------------------------
        r = Signal(16)
        filled = Signal(17)             # rows fully in
        k = Signal(range(R + 1))        # bytes of row r in
        row_addr = Signal(32)
        row_len = Signal(32)
        end_row = Signal(16)            # rows the run needs: min(in_h, last one needed + 1)
        rows_needed = Signal(signed(24))
        m.d.comb += rows_needed.eq((d.out_h - 1) * d.stride_h - d.pad_top
                                   + (d.kernel_h - 1) * d.dilation_h + 1)
        with m.FSM(name="fill"):
            with m.State("IDLE"):
                with m.If(running):
                    m.next = "REQ"
            with m.State("REQ"):
                with m.If(r == end_row):
                    m.next = "END"
                with m.Elif(r.as_signed() < base_row + S):
                    m.d.comb += [
                        fill.req.valid.eq(1),
                        fill.req.payload.addr.eq(row_addr),
                        fill.req.payload.length.eq(d.in_c),
                        fill.req.payload.count.eq(d.in_w),
                        fill.req.payload.stride.eq(d.in_pixel_stride),
                    ]
                    with m.If(fill.req.ready):
                        m.d.sync += k.eq(0)
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += fill.o.ready.eq(1)
                with m.If(fill.o.valid):
                    m.d.comb += [wr.addr.eq(_slot_address(r[:sb], k, R)),
                                 wr.data.eq(fill.o.payload.data[0]), wr.en.eq(1)]
                    m.d.sync += k.eq(k + 1)
                    with m.If(k + 1 == row_len):
                        m.d.sync += [r.eq(r + 1), filled.eq(r + 1),
                                     row_addr.eq(row_addr + d.in_row_pixels * d.in_pixel_stride)]
                        m.next = "REQ"
            with m.State("END"):
                with m.If(~running):
                    m.next = "IDLE"

        # --- gather: the im2col pixel, a byte per cycle -----------------------------------
        ox = Signal(16)
        c = Signal(16)
        kx = Signal(8)
        ky = Signal(8)
        j = Signal(32)                  # im2col channel
        depth = Signal(32)
        lane = Signal(range(cfg.rows))
        beat = Signal(pixel_beat(cfg))
        full = Signal()
        need = Signal(signed(20))
        iy = Signal(signed(20))
        ix = Signal(signed(20))
        inside = Signal()
        m.d.comb += [
            need.eq(base_row + (d.kernel_h - 1) * d.dilation_h),
            iy.eq(base_row + ky * d.dilation_h),
            ix.eq(ox * d.stride_w - d.pad_left + kx * d.dilation_w),
            inside.eq((iy >= 0) & (iy < d.in_h) & (ix >= 0) & (ix < d.in_w)),
            rd.addr.eq(_slot_address(iy[:sb], ix[:16] * d.in_c + c, R)),
            self.o.valid.eq(full),
            self.o.payload.eq(beat),
        ]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += [full.eq(0), beat.eq(0)]
        ready_row = (filled.as_signed() > Mux(need < d.in_h, need, d.in_h - 1)) \
            | (filled == end_row)
        with m.FSM(name="gather"):
            with m.State("IDLE"):
                with m.If(self.start):
                    fits = (((d.kernel_h - 1) * d.dilation_h + 1 < S)
                            & (d.in_w * d.in_c <= R))
                    m.d.sync += [oy.eq(0), ox.eq(0), c.eq(0), kx.eq(0), ky.eq(0), j.eq(0),
                                 lane.eq(0), full.eq(0), beat.eq(0), r.eq(0), filled.eq(0),
                                 row_addr.eq(d.in_addr), row_len.eq(d.in_w * d.in_c),
                                 end_row.eq(Mux(rows_needed < d.in_h, rows_needed, d.in_h)),
                                 depth.eq(d.kernel_h * d.kernel_w * d.in_c),
                                 self.error.eq(~fits), running.eq(fits)]
                    with m.If(fits):
                        m.next = "WAIT"
                    with m.Else():
                        m.d.sync += self.done.eq(1)
            with m.State("WAIT"):
                with m.If(ready_row):
                    m.next = "GATHER"
            with m.State("GATHER"):
                with m.If(~full):
                    m.d.sync += beat[lane].eq(Mux(inside, rd.data.as_signed(),
                                                  d.input_zero_point))
                    last_ch = j + 1 == depth
                    with m.If((lane == cfg.rows - 1) | last_ch):
                        m.d.sync += [full.eq(1), lane.eq(0)]
                    with m.Else():
                        m.d.sync += lane.eq(lane + 1)
                    m.d.sync += j.eq(j + 1)
                    with m.If(c + 1 == d.in_c):
                        m.d.sync += c.eq(0)
                        with m.If(kx + 1 == d.kernel_w):
                            m.d.sync += [kx.eq(0), ky.eq(ky + 1)]
                        with m.Else():
                            m.d.sync += kx.eq(kx + 1)
                    with m.Else():
                        m.d.sync += c.eq(c + 1)
                    with m.If(last_ch):
                        m.d.sync += [j.eq(0), c.eq(0), kx.eq(0), ky.eq(0)]
                        with m.If(ox + 1 == d.out_w):
                            m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
                            with m.If(oy + 1 == d.out_h):
                                m.next = "FLUSH"
                            with m.Else():
                                m.next = "WAIT"
                        with m.Else():
                            m.d.sync += ox.eq(ox + 1)
            with m.State("FLUSH"):
                with m.If(~full | self.o.ready):
                    m.d.sync += [self.done.eq(1), running.eq(0)]
                    m.next = "IDLE"
        return m


def _slot_address(slot, offset, row_bytes):
    """The line buffer address of byte ``offset`` of ring slot ``slot``."""
    return slot * row_bytes + offset

"""ConvEngine: runs one CONV (any KxK, stride, padding) or FULLY_CONNECTED descriptor by DMA."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from ..layouts import runtime_config
from ..memory.arbiter import PortArbiter
from ..memory.dma import DMAReader, DMAWriter
from ..memory.port import NativePortSignature
from ..params import check_config, rejected
from ..top import PointwiseConv
from .descriptor import OP_CODES, descriptor_layout
from .im2col import Im2col

__all__ = ["ConvEngine", "ERRORS"]

#: ``error_code`` values: why a descriptor was refused (nothing was read or written).
ERRORS = {
    "none": 0,
    "kernel": 1,        # a KxK kernel taller or a row wider than the im2col line buffer
    "chunks": 2,        # chunk_channels below the channels: partial sums (not built yet)
    "residual": 3,      # a fused residual ADD (FLAG_RESIDUAL; not built yet)
    "size": 4,          # channels or a filter group larger than the array holds
    "op": 5,            # not a CONV or FULLY_CONNECTED
}
_FLAG_RESIDUAL = 1


def _cdiv(value, const):
    """``ceil(value / const)`` for a constant divisor."""
    return (value + (const - 1)) // const


class ConvEngine(wiring.Component):
    """Run one decoded CONV (any kernel, stride, dilation and padding) or FULLY_CONNECTED
    descriptor of a layer program on a :class:`~pwconv.hw.top.PointwiseConv` array, fed from
    memory.

    The descriptor's layer is run as passes, one per filter group of ``group_filters`` (the
    last may be smaller), each over all the input channels (``chunk_channels`` must equal
    ``in_c``). For each pass three independent DMA engines share the memory port through a
    :class:`~pwconv.hw.memory.arbiter.PortArbiter`:

    - the *loader* reads the pass's weight words (``load_width * cols`` bytes each, stored
      pre-tiled at ``weight_addr`` by host/compiler: tile-major, then beat, then row group, as
      host/program.py ``compile_layer`` sends them) onto the array's ``weights`` port and its
      parameter words (``9 * cols`` bytes per column tile at ``param_addr``: bias, multiplier,
      shift; format.py ``param_tile_bytes``) onto ``params``, then commits the pass (two
      banks). With two weight banks the next pass's words go into the free bank while the
      array computes; with one bank the loader waits for the array to be idle;
    - the *pixel reader* reads the input through its view, one DMA row per output pixel
      (``in_c`` bytes at ``in_addr + (oy * stride_h * in_row_pixels + ox * stride_w) *
      in_pixel_stride``), so a strided 1x1 conv reads only the pixels it needs; each pixel
      starts at lane 0 of a ``rows``-byte beat, the last beat zero-filled: exactly the
      array's pixel beats. FULLY_CONNECTED is the same with stride 1. A CONV with a kernel
      other than 1x1 or with padding takes its pixels (``kernel_h * kernel_w * in_c``
      channels each) from :class:`~.im2col.Im2col` instead, which reads each input byte once
      per pass into its ring of rows;
    - the *writer* takes each pixel's ``ceil(nf / cols)`` result vectors (the low byte of
      each lane) and writes ``nf`` bytes at ``out_addr + f0 + (oy * out_row_pixels + ox) *
      out_pixel_stride`` for the group's filters ``f0 .. f0 + nf - 1``.

    The input zero point is folded into the stored bias by the compiler, so the engine
    ignores ``input_zero_point`` but for im2col's padding. The input is read once per filter
    group; ``chunk_channels`` must cover all the (im2col) channels: partial sums of channel
    chunks are not built yet (``error_code`` ``chunks``).

    Parameters
    ----------
    cfg : ArrayConfig
        The array to build.
    port : NativePortSignature
        The memory port.
    fifo_depth : int
        Read FIFO depth of each DMA reader (above the memory's round trip for full speed).
    max_row_bytes, slots : int
        The im2col line buffer (:class:`~.im2col.Im2col`): ``slots`` input rows of at most
        ``max_row_bytes`` bytes (``in_w * in_c``); a kernel of ``slots`` rows or more (with
        dilation) or a wider row is refused (``error_code`` ``kernel``).

    Members
    -------
    desc : In(descriptor_layout())
        The descriptor; sampled in the cycle ``start`` is high.
    start : In(1)
        Start the descriptor (ignored while ``busy``).
    busy : Out(1)
        From the cycle after ``start`` until ``done``.
    done : Out(1)
        One-cycle pulse: the descriptor is finished (every output byte accepted by the
        memory port, which executes commands in order) or refused (``error`` with it).
    error : Out(1), error_code : Out(4)
        With ``done``: the descriptor was refused (:data:`ERRORS`); held until the next start.
    cycles : Out(32)
        Cycles from ``start`` to ``done`` of the last descriptor (counting while busy).
    bus : Out(NativePortSignature)
        The memory port (all three DMA engines, arbitrated).

    Timing: a refused descriptor is done 3 cycles after ``start``. Otherwise the array takes a
    pixel beat per cycle whenever the pixel reader has one: a pass costs about
    ``pixels * ceil(in_c / rows) * ceil(nf / cols)`` cycles, or the memory's time to move the
    pass's bytes if longer; with im2col at least ``pixels * kernel_h * kernel_w * in_c``
    (its gather moves a byte per cycle). The loads of the first pass (and, with one bank, of
    every pass) are not hidden.

    Measured (amaranth.sim, 4x4 array, 16-bit port, no stalls; tests/test_engine_conv.py
    ``test_roofline_table``): 1x1 layers 95-99% of their roofline, a 3x3 one-pass layer
    73%, a two-pass one 80% (the input read twice), FULLY_CONNECTED of 8 pixels 53% (its
    weights load before any pixel computes).

    Relied on: hw/top.py (the array's ports and banks), host/program.py ``compile_layer`` and
    golden/program.py ``_passes`` (the order of the stored words), hw/memory/dma.py.
    """

    def __init__(self, cfg: ArrayConfig, *, port, fifo_depth=16, max_row_bytes=4096,
                 slots=4):
        check_config(self, cfg)
        if not isinstance(port, NativePortSignature):
            raise rejected(self, TypeError(f"Port must be a NativePortSignature, not {port!r}"))
        if not isinstance(fifo_depth, int) or fifo_depth < 2:
            raise rejected(self, TypeError(f"FIFO depth must be an integer >= 2, not "
                                           f"{fifo_depth!r}"))
        self._cfg = cfg
        self._port = port
        self._fifo_depth = fifo_depth
        self._im2col = dict(max_row_bytes=max_row_bytes, slots=slots)
        super().__init__({
            "desc": In(descriptor_layout()),
            "start": In(1),
            "busy": Out(1),
            "done": Out(1),
            "error": Out(1),
            "error_code": Out(4),
            "cycles": Out(32),
            "bus": Out(port),
        })

    @property
    def array_config(self):
        return self._cfg

    def elaborate(self, platform):
        cfg = self._cfg
        port = self._port
        m = Module()
        rows, cols = cfg.rows, cfg.cols
        wbytes = cfg.load_width * cols          # bytes of one stored weight word
        pbytes = 9 * cols                       # bytes of one stored parameter word
        lanes = max(wbytes, pbytes)

        m.submodules.array = array = PointwiseConv(cfg)
        m.submodules.loader = loader = DMAReader(port, lanes=lanes, depth=self._fifo_depth)
        m.submodules.pixels = pixels = DMAReader(port, lanes=rows, depth=self._fifo_depth)
        m.submodules.writer = writer = DMAWriter(port, lanes=cols)
        m.submodules.im2col = im2col = Im2col(cfg, port=port, **self._im2col)
        m.submodules.arbiter = arbiter = PortArbiter(port, masters=4)
        wiring.connect(m, im2col.bus, arbiter.masters[3])
        wiring.connect(m, loader.bus, arbiter.masters[0])
        wiring.connect(m, pixels.bus, arbiter.masters[1])
        wiring.connect(m, writer.bus, arbiter.masters[2])
        wiring.connect(m, arbiter.bus, wiring.flipped(self.bus))
        baw = loader.byte_addr_width

        # --- the descriptor and what follows from it, latched at start ----------------------
        d = Signal(descriptor_layout())
        is_fc = Signal()
        beats = Signal(range(cfg.max_beats + 1))
        channels = Signal(16)
        filters = Signal(16)
        group = Signal(16)
        pixels_n = Signal(32)
        in_row_step = Signal(baw)
        in_px_step = Signal(baw)
        out_row_pitch = Signal(baw)
        pass_beats = Signal(32)
        code = Signal(4)
        kxk = Signal()

        # Group counters of the three sides: loaded (committed), fed, written.
        ld_g = Signal(16)
        px_g = Signal(16)
        ld_f0 = Signal(17)
        px_f0 = Signal(17)
        wr_f0 = Signal(17)
        ld_done = Signal()
        px_done = Signal()
        wr_done = Signal()
        running = Signal()
        run = Signal()      # one cycle: the three sides start the descriptor

        m.d.comb += self.busy.eq(running)
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.sync += self.done.eq(0)

        with m.FSM(name="control"):
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [d.eq(self.desc), running.eq(1), self.cycles.eq(1),
                                 self.error.eq(0), self.error_code.eq(0)]
                    m.next = "SETUP"
            with m.State("SETUP"):
                m.d.comb += is_fc.eq(d.op == OP_CODES["FULLY_CONNECTED"])
                sh = Mux(is_fc, 1, d.stride_h)
                sw = Mux(is_fc, 1, d.stride_w)
                conv = d.op == OP_CODES["CONV"]
                taps = d.kernel_h * d.kernel_w
                windowed = conv & ((taps != 1) | (d.pad_top != 0) | (d.pad_left != 0)
                                   | (d.pad_bottom != 0) | (d.pad_right != 0))
                depth = Mux(conv, taps * d.in_c, d.in_c)
                g_tiles = _cdiv(d.group_filters, cols)
                c_beats = _cdiv(depth, rows)
                m.d.sync += [
                    channels.eq(d.in_c), filters.eq(d.out_c), group.eq(d.group_filters),
                    kxk.eq(windowed),
                    beats.eq(c_beats),
                    pixels_n.eq(d.out_h * d.out_w),
                    in_row_step.eq(d.in_row_pixels * d.in_pixel_stride * sh),
                    in_px_step.eq(d.in_pixel_stride * sw),
                    out_row_pitch.eq(d.out_row_pixels * d.out_pixel_stride),
                ]
                with m.If(~conv & ~is_fc):
                    m.d.sync += code.eq(ERRORS["op"])
                with m.Elif(windowed & (((d.kernel_h - 1) * d.dilation_h + 1
                                         >= self._im2col["slots"])
                                        | (d.in_w * d.in_c > self._im2col["max_row_bytes"]))):
                    m.d.sync += code.eq(ERRORS["kernel"])
                with m.Elif(d.flags & _FLAG_RESIDUAL):
                    m.d.sync += code.eq(ERRORS["residual"])
                with m.Elif(d.chunk_channels != depth):
                    m.d.sync += code.eq(ERRORS["chunks"])
                with m.Elif((depth > cfg.max_channels) | (d.group_filters == 0)
                            | (d.group_filters > cfg.max_filters)
                            | (c_beats * g_tiles > cfg.weight_depth)):
                    m.d.sync += code.eq(ERRORS["size"])
                with m.Else():
                    m.d.sync += code.eq(0)
                m.next = "CHECK"
            with m.State("CHECK"):
                m.d.sync += [pass_beats.eq(pixels_n * beats), ld_g.eq(0), px_g.eq(0),
                             ld_f0.eq(0), px_f0.eq(0), wr_f0.eq(0)]
                with m.If(code != 0):
                    m.d.sync += [self.error.eq(1), self.error_code.eq(code),
                                 self.done.eq(1), running.eq(0)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += run.eq(1)
                    m.next = "RUN"
            with m.State("RUN"):
                with m.If(ld_done & px_done & wr_done & ~writer.busy & array.idle):
                    m.d.sync += [self.done.eq(1), running.eq(0)]
                    m.next = "IDLE"

        # --- layer settings of the pass being loaded (latched by its commit with 2 banks) ---
        layer = Signal(runtime_config(cfg))
        m.d.comb += array.layer.eq(layer)

        # --- loader: weights and parameters of each pass, then its commit ------------------
        waddr = Signal(baw)
        paddr = Signal(baw)
        nf = Signal(17)
        ld_tiles = Signal(range(cfg.max_tiles + 1))
        nwords = Signal(32)
        w_left = Signal(32)
        p_left = Signal(range(cfg.max_tiles + 1))
        w_group = Signal(range(cfg.load_groups))
        w_addr = Signal(len(array.weights.payload.addr))
        p_addr = Signal(len(array.params.payload.addr))
        beat = loader.o.payload.data
        # Route the loader's beats: the pass's weight words first, then its parameter words.
        to_weights = w_left != 0
        to_params = (w_left == 0) & (p_left != 0)
        m.d.comb += [
            array.weights.payload.addr.eq(w_addr),
            array.weights.payload.row.eq(w_group),
            array.weights.payload.data.eq(beat.as_value()[:8 * wbytes]),
            array.weights.valid.eq(loader.o.valid & to_weights),
            array.params.payload.addr.eq(p_addr),
            array.params.valid.eq(loader.o.valid & to_params),
            loader.o.ready.eq(Mux(to_weights, array.weights.ready,
                                  to_params & array.params.ready)),
        ]
        raw = beat.as_value()
        for c in range(cols):
            m.d.comb += [
                array.params.payload.bias[c].eq(raw[32 * c:32 * c + 32]),
                array.params.payload.multiplier[c].eq(raw[32 * (cols + c):32 * (cols + c) + 32]),
                array.params.payload.shift[c].eq(raw[64 * cols + 8 * c:64 * cols + 8 * c + 8]
                                                 .as_signed()),
            ]
        with m.If(array.weights.valid & array.weights.ready):
            m.d.sync += w_left.eq(w_left - 1)
            with m.If(w_group == cfg.load_groups - 1):
                m.d.sync += [w_group.eq(0), w_addr.eq(w_addr + 1)]
            with m.Else():
                m.d.sync += w_group.eq(w_group + 1)
        with m.If(array.params.valid & array.params.ready):
            m.d.sync += [p_left.eq(p_left - 1), p_addr.eq(p_addr + 1)]

        one_bank = cfg.weight_banks == 1
        with m.FSM(name="loader"):
            with m.State("IDLE"):
                with m.If(run):
                    m.d.sync += ld_done.eq(0)
                    m.d.sync += [waddr.eq(d.weight_addr), paddr.eq(d.param_addr)]
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(ld_f0 >= filters):
                    m.d.sync += ld_done.eq(1)
                    m.next = "DONE"
                with m.Elif(((px_g == ld_g) & array.idle) if one_bank else 1):
                    left = filters - ld_f0
                    m.d.sync += nf.eq(Mux(left < group, left, group))
                    m.next = "SIZE"
            with m.State("SIZE"):
                tiles = _cdiv(nf, cols)
                m.d.sync += [
                    ld_tiles.eq(tiles),
                    nwords.eq(beats * tiles * cfg.load_groups),
                    layer.beats.eq(beats), layer.tiles.eq(tiles),
                    layer.output_zero_point.eq(d.output_zero_point),
                    layer.activation_min.eq(d.activation_min),
                    layer.activation_max.eq(d.activation_max),
                    layer.raw.eq(0), layer.rounding.eq(d.rounding),
                ]
                m.next = "WEIGHTS"
            with m.State("WEIGHTS"):
                m.d.comb += [
                    loader.req.valid.eq(1),
                    loader.req.payload.addr.eq(waddr),
                    loader.req.payload.length.eq(wbytes),
                    loader.req.payload.count.eq(nwords),
                    loader.req.payload.stride.eq(wbytes),
                ]
                with m.If(loader.req.ready):
                    m.d.sync += [w_left.eq(nwords), w_group.eq(0), w_addr.eq(0),
                                 waddr.eq(waddr + nwords * wbytes)]
                    m.next = "PARAMS"
            with m.State("PARAMS"):
                m.d.comb += [
                    loader.req.valid.eq(1),
                    loader.req.payload.addr.eq(paddr),
                    loader.req.payload.length.eq(pbytes),
                    loader.req.payload.count.eq(ld_tiles),
                    loader.req.payload.stride.eq(pbytes),
                ]
                with m.If(loader.req.ready):
                    m.d.sync += [p_left.eq(ld_tiles), p_addr.eq(0),
                                 paddr.eq(paddr + ld_tiles * pbytes)]
                    m.next = "STREAM"
            with m.State("STREAM"):
                with m.If((w_left == 0) & (p_left == 0)):
                    m.next = "NEXT" if one_bank else "COMMIT"
            if not one_bank:
                with m.State("COMMIT"):
                    m.d.comb += [array.commit.valid.eq(1),
                                 array.commit.payload.beats.eq(pass_beats)]
                    with m.If(array.commit.ready):
                        m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += [ld_g.eq(ld_g + 1), ld_f0.eq(ld_f0 + group)]
                m.next = "WAIT"
            with m.State("DONE"):
                m.next = "IDLE"

        # --- pixel reader: the input's pixels, once per pass --------------------------------
        row_addr = Signal(baw)
        oy = Signal(16)
        fed = Signal(32)
        m.d.comb += im2col.desc.eq(d)
        with m.If(kxk):
            m.d.comb += [
                array.i.payload.eq(im2col.o.payload),
                array.i.valid.eq(im2col.o.valid),
                im2col.o.ready.eq(array.i.ready),
            ]
        with m.Else():
            m.d.comb += [
                array.i.payload.as_value().eq(pixels.o.payload.data.as_value()),
                array.i.valid.eq(pixels.o.valid),
                pixels.o.ready.eq(array.i.ready),
            ]
        with m.FSM(name="pixels"):
            with m.State("IDLE"):
                with m.If(run):
                    m.d.sync += px_done.eq(0)
                    m.next = "WAIT"
            with m.State("WAIT"):
                m.d.sync += [row_addr.eq(d.in_addr), oy.eq(0), fed.eq(0)]
                with m.If(px_f0 >= filters):
                    m.d.sync += px_done.eq(1)
                    m.next = "DONE"
                with m.Elif((ld_g > px_g) if one_bank else 1):
                    # Two banks: the pass queue holds the pixels until their pass is
                    # committed, so they are fetched while its weights load.
                    with m.If(kxk):
                        m.d.comb += im2col.start.eq(1)
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += [
                    pixels.req.valid.eq(1),
                    pixels.req.payload.addr.eq(row_addr),
                    pixels.req.payload.length.eq(channels),
                    pixels.req.payload.count.eq(d.out_w),
                    pixels.req.payload.stride.eq(in_px_step),
                ]
                with m.If(pixels.req.ready):
                    m.d.sync += [row_addr.eq(row_addr + in_row_step), oy.eq(oy + 1)]
                    with m.If(oy + 1 == d.out_h):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(fed == pass_beats):
                    m.d.sync += [px_g.eq(px_g + 1), px_f0.eq(px_f0 + group)]
                    m.next = "WAIT"
            with m.State("DONE"):
                m.next = "IDLE"
        with m.If(array.i.valid & array.i.ready):
            m.d.sync += fed.eq(fed + 1)

        # --- writer: each pass's result vectors to its filters' bytes of the output --------
        out_addr = Signal(baw)
        wy = Signal(16)
        written = Signal(16)
        wnf = Signal(17)
        for c in range(cols):
            m.d.comb += writer.i.payload.data[c].eq(array.o.payload[c][:8])
        m.d.comb += [
            writer.i.payload.count.eq(cols),
            writer.i.valid.eq(array.o.valid),
            array.o.ready.eq(writer.i.ready),
            writer.done.ready.eq(1),
        ]
        with m.FSM(name="writer"):
            with m.State("IDLE"):
                with m.If(run):
                    m.d.sync += wr_done.eq(0)
                    m.next = "WAIT"
            with m.State("WAIT"):
                left = filters - wr_f0
                m.d.sync += [out_addr.eq(d.out_addr + wr_f0), wy.eq(0), written.eq(0),
                             wnf.eq(Mux(left < group, left, group))]
                with m.If(wr_f0 >= filters):
                    m.d.sync += wr_done.eq(1)
                    m.next = "DONE"
                with m.Else():
                    m.next = "ROWS"
            with m.State("ROWS"):
                m.d.comb += [
                    writer.req.valid.eq(1),
                    writer.req.payload.addr.eq(out_addr),
                    writer.req.payload.length.eq(wnf),
                    writer.req.payload.count.eq(d.out_w),
                    writer.req.payload.stride.eq(d.out_pixel_stride),
                ]
                with m.If(writer.req.ready):
                    m.d.sync += [out_addr.eq(out_addr + out_row_pitch), wy.eq(wy + 1)]
                    with m.If(wy + 1 == d.out_h):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(written == d.out_h):
                    m.d.sync += wr_f0.eq(wr_f0 + group)
                    m.next = "WAIT"
            with m.State("DONE"):
                m.next = "IDLE"
        with m.If(writer.done.valid):
            m.d.sync += written.eq(written + 1)
        return m

"""DepthwiseEngine: int8 DEPTHWISE_CONV_2D and pools from an NHWC stream through line buffers."""

import numbers

import numpy as np
from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ROUNDINGS, ArrayConfig
from pwconv.golden.ops import compute_padding
from ..layouts import SHIFT_SHAPE
from ..params import check_config, rejected
from ..requant_lane import RequantLane

__all__ = ["DepthwiseEngine", "KERNELS", "STRIDES", "PADDINGS", "OPS", "beat_layout",
           "layer_layout", "weight_layout", "param_layout", "layer_config", "weight_words",
           "param_words", "input_beats", "output_tensor", "layer_cycles"]

#: Kernel sizes (square) the engine computes.
KERNELS = (3, 5)
#: Strides (the same in both dimensions).
STRIDES = (1, 2)
#: TFLite's padding schemes; SAME pads with the input zero point.
PADDINGS = ("SAME", "VALID")

#: What the engine runs (``op`` of :func:`layer_layout`): DEPTHWISE_CONV_2D, MAX_POOL_2D and
#: AVERAGE_POOL_2D share the line buffers and the window walk.
OPS = ("conv", "max_pool", "average_pool")

#: The average pool divides by a multiply with ``ceil(2^shift / taps)`` and this shift.
_RECIPROCAL_SHIFT = 20


def _reciprocals(max_taps):
    """``(bits, table)``: ``table[n] = ceil(2^shift / n)`` for n in 1..max_taps (0 for 0), each
    checked to give ``floor(v / n)`` exactly for every ``v`` up to ``max_taps * 128 + n``
    (the largest |sum| + n / 2 of a window of int8 values)."""
    table = [0] + [-(-(1 << _RECIPROCAL_SHIFT) // n) for n in range(1, max_taps + 1)]
    for n in range(1, max_taps + 1):
        top = max_taps * 128 + n
        values = np.arange(top + 1, dtype=np.int64)
        if not np.array_equal((values * table[n]) >> _RECIPROCAL_SHIFT, values // n):
            raise AssertionError(f"reciprocal of {n} is not exact")
    return max(table).bit_length(), table


def _fabric_product(m, x, w, name):
    """``x * w`` for a signed 9-bit ``x`` and a signed 8-bit ``w`` from adders in fabric (no
    DSP): eight shifted partial products (``w``'s top bit weighs -128), summed by a tree of
    three adder levels whose first level is registered; the product is ready one cycle after
    ``x`` and ``w``, combinational from that register (as :func:`pwconv.hw.pe.fabric_product`,
    widened to the 9-bit ``x - zp``)."""
    terms = [Mux(w[i], x << i, 0) for i in range(7)] + [Mux(w[7], -(x << 7), 0)]
    level = 0
    while len(terms) > 1:
        level += 1
        sums = []
        for index in range(0, len(terms), 2):
            total = Signal(signed(18), name=f"{name}_l{level}_{index // 2}", reset_less=True,
                           attrs={"keep": 1})
            domain = m.d.sync if level == 1 else m.d.comb
            domain += total.eq(terms[index] + terms[index + 1])
            sums.append(total)
        terms = sums
    return terms[0][:17].as_signed()


def _shift_add(m, a, b, name):
    """``a * b`` for unsigned ``a`` and a constant-table ``b`` (both small) from adders in
    fabric: a balanced tree of ``b``'s shifted partial products, combinational."""
    terms = [Mux(b[i], a << i, 0) for i in range(len(b))]
    level = 0
    while len(terms) > 1:
        level += 1
        sums = []
        for index in range(0, len(terms) - 1, 2):
            total = Signal(len(a) + len(b), name=f"{name}_l{level}_{index // 2}",
                           attrs={"keep": 1})
            m.d.comb += total.eq(terms[index] + terms[index + 1])
            sums.append(total)
        if len(terms) % 2:
            sums.append(terms[-1])
        terms = sums
    return terms[0]


#: Largest tensor height and width an engine can be built for.
MAX_SIDE = 1 << 13


def _addr(depth):
    return unsigned(max(1, (depth - 1).bit_length()))


def _groups(channels, lanes):
    return -(-channels // lanes)


def beat_layout(lanes):
    """One beat of the input or output stream: ``lanes`` int8 channels of one pixel (lane ``i``
    is channel ``group * lanes + i``)."""
    return data.ArrayLayout(signed(8), lanes)


def layer_layout(engine):
    """The layer's run-time settings (:func:`layer_config` builds them), held stable while the
    engine is ``busy``.

    ``height``, ``width`` and ``groups`` = ceil(C / lanes) describe the input; ``out_height``,
    ``out_width``, ``pad_top`` and ``pad_left`` the padding (TFLite's ComputePaddingWithOffset,
    from SAME or VALID); ``kernel`` is 3 or 5, ``stride`` 1 or 2; ``rounding`` is the index of
    the requantization mode in :data:`pwconv.config.ROUNDINGS`; ``op`` the index in
    :data:`OPS` (a pool's kernel may be any size up to ``max_kernel``).
    """
    side_h = unsigned(engine.max_height.bit_length())
    side_w = unsigned(engine.max_width.bit_length())
    return data.StructLayout({
        "height":            side_h,
        "width":             side_w,
        "groups":            unsigned(engine.max_groups.bit_length()),
        "out_height":        side_h,
        "out_width":         side_w,
        "kernel":            unsigned(3),
        "stride":            unsigned(2),
        "pad_top":           unsigned(2),
        "pad_left":          unsigned(2),
        "input_zero_point":  signed(8),
        "output_zero_point": signed(8),
        "activation_min":    signed(8),
        "activation_max":    signed(8),
        "rounding":          unsigned(2),
        "op":                unsigned(2),
    })


def weight_layout(engine):
    """One transfer on ``weights``: the ``lanes`` weights of channel group ``g`` at filter tap
    (ky, kx), written at ``addr = (g * kernel + ky) * kernel + kx`` (the layer's kernel)."""
    return data.StructLayout({
        "addr": _addr(engine.max_groups * engine.max_kernel ** 2),
        "data": data.ArrayLayout(signed(8), engine.lanes),
    })


def param_layout(engine):
    """One transfer on ``params``: bias, multiplier and shift of the ``requant_lanes``
    channels of slice ``s`` of channel group ``g`` (channels ``g * lanes + s * requant_lanes +
    r``), at ``addr = g * requant_slices + s``: the words the shared lanes read, one per cycle
    (the multiplier holds a float32 scale's bits in the float mode)."""
    return data.StructLayout({
        "addr":       _addr(engine.max_groups * engine.requant_slices),
        "bias":       data.ArrayLayout(signed(32), engine.requant_lanes),
        "multiplier": data.ArrayLayout(signed(32), engine.requant_lanes),
        "shift":      data.ArrayLayout(SHIFT_SHAPE, engine.requant_lanes),
    })


class DepthwiseEngine(wiring.Component):
    """DEPTHWISE_CONV_2D, int8 per channel, depth multiplier 1, bit-exact with TFLite's
    ``reference_integer_ops::DepthwiseConvPerChannel`` (``tflite/kernels/internal/reference/
    integer_ops/depthwise_conv.h`` in google-ai-edge/LiteRT; :func:`pwconv.golden.ops.
    depthwise_conv2d`) in the ``"double"`` mode, and with the runtime each other mode of
    :func:`pwconv.golden.requantize` names::

        acc[oy, ox, c] = bias[c] + sum_{ky, kx} (x[oy*s - pt + ky, ox*s - pl + kx, c] - zp_in)
                                               * w[ky, kx, c]        (out-of-image taps: 0)
        y = clamp(rescale_c(acc) + zp_out, activation_min, activation_max)

    for kernels 3x3 and 5x5, stride 1 or 2, SAME or VALID padding (padding reads the input zero
    point, so its taps add nothing). The requantization is the array's own
    :class:`~pwconv.hw.requant_lane.RequantLane` with the build's ``cfg.roundings`` and
    ``cfg.requant_multiply``: ``requant_lanes`` of them, shared by the ``lanes`` channels (an
    output beat's sums take ``lanes / requant_lanes`` cycles through them, at most 9, while a
    3x3 conv makes a beat every 9 cycles).

    **Pools.** The same window walk runs MAX_POOL_2D and AVERAGE_POOL_2D (``op`` of the layer,
    any square kernel up to ``max_kernel``, stride 1 or 2), bit-exact with TFLite's
    ``reference_integer_ops::MaxPool`` and ``AveragePool`` (``reference/integer_ops/
    pooling.h``; :func:`pwconv.golden.ops.max_pool2d`, :func:`~pwconv.golden.ops.
    average_pool2d`): the MACs multiply by 1 and the accumulators keep the maximum (taps
    outside the image read -128) or the sum and the count of in-image taps, divided as C
    divides ``(sum +- count / 2) / count``, by an exact reciprocal multiply; then the
    activation clamp. A pool's results are computed beside the shared requantization lanes (a
    divider per lane, on the same slices) and leave with the same latency; a pool window of
    fewer taps than ``lanes / requant_lanes`` makes a beat every ``lanes / requant_lanes``
    cycles.

    **Data flow.** The input tensor arrives once, row by row in NHWC order, as beats of
    ``lanes`` channels of one pixel (``ceil(C / lanes)`` beats per pixel; lanes beyond C are
    ignored), the order in which the DMA reads a tensor whose C is a multiple of its lanes.
    Each beat is written once into a line buffer of ``max_kernel + 2`` row slots of
    ``max_row_bytes / lanes`` words (block RAM): ``kernel`` rows being read
    and up to two more being written ahead, so the rows of the next output row load while the
    current one computes. The compute loop reads one word (one filter tap of ``lanes``
    channels) and one weight word per cycle and multiply-accumulates them in ``lanes``
    parallel MACs (x - zp_in, 9 bits, times int8 w); after the last tap of an output beat the
    sums go to the requantization lanes. Results leave in NHWC order, a beat of ``lanes``
    channels per (output pixel, channel group).

    **Throughput.** ``lanes`` MACs per cycle: ``kernel**2 * ceil(C / lanes)`` cycles per output
    pixel once the first ``kernel - pad_top`` rows are in, input and compute overlapped (a
    layer takes about ``OH * OW * ceil(C / lanes) * kernel**2`` cycles, plus the first rows'
    load and the pipeline; :func:`layer_cycles`). With 16 lanes: 16 MACs/cycle. Measured
    (exported Verilog on Verilator, 16 lanes, no stalls, bit-exact): MobileNetV2 1.0/224's
    14x14x384 3x3 stride-1 layer in 43,034 cycles for 42,336 taps (15.7 MACs/cycle, 1.6% over),
    its 14x14x576 stride-2 layer in 17,414 for 15,876 (14.6 MACs/cycle: the first three rows,
    1,512 cycles, load before any output can start).

    **Balance** (MobileNetV2 1.0/224, counted from its layer table, Sandler et al. 2018): 300.8 M
    MACs, of which its 17 depthwise layers hold 20.7 M (6.89%). Next to the ULX3S array (192
    MACs/cycle, 1.46 M cycles for the other 280 M at full rate), 16 lanes take 1.29 M cycles:
    47% of the compute time, not a tenth; a tenth needs 128 MACs/cycle (32 lanes: 31%, 64: 18%,
    128: 10.0%). Unfused, however, the depthwise layers are bound by SDRAM traffic, not MACs:
    they move 6.04 MB (each input read once, each output written once), 3.02 M cycles at the
    16-bit SDRAM's 2 bytes per cycle, 2.3x the 1.29 M cycles of 16 lanes (a stride-1 3x3
    layer moves 2 bytes per 9 MACs: the SDRAM feeds at most 9 MACs/cycle of it). So 16 lanes
    keep the engine off the critical path of the unfused program; more lanes pay only once the
    expanded tensors stay on chip (fusion), where 64-128 lanes would balance it against the
    array.
    (0.35/96: 1.58 M of 11.9 M MACs, 13.2%, 0.10 M cycles at 16 lanes.)

    **Cost** (Yosys 0.50 ``synth_ecp5``, no place and route, the ULX3S configuration's
    rounding modes and fabric requantization lanes; 16 lanes, 2 shared requantization lanes,
    max_width 112, max_channels 960, max_row_bytes 10752, max_kernel 5, ``fabric_macs``):
    9,107 LUT4, 2,732 CCU2C, 6,482 flip-flops, 54 DP16KD (the line buffer about 40 of them),
    no MULT18X18D. Beside the ULX3S array (36,813 LUT4 slots, 124 DP16KD, all 156 DSPs) that
    fits the LFE5U-85F (83,640 LUT4, 208 DP16KD); timing is not measured yet.

    **Loading.** Weights (``weights``, :func:`weight_words`) and per-channel parameters
    (``params``, :func:`param_words`) load before the layer, while the engine is idle (their
    ``ready`` is low while ``busy``), a word per cycle.

    Parameters
    ----------
    cfg : ArrayConfig
        The build's configuration: its ``roundings`` and ``requant_multiply`` choose the lanes'
        modes and multiply (one source of truth with the array).
    lanes : int
        Channels processed in parallel (MACs and requantization lanes), 1..64.
    max_width, max_height : int
        Largest input width and height, 1..8192.
    max_channels : int
        Largest C, 1..65536.
    max_kernel : int
        3 or 5: the largest kernel the build supports (the line buffer holds ``max_kernel + 2``
        rows).
    requant_lanes : int or None
        :class:`~pwconv.hw.requant_lane.RequantLane` s, shared by the ``lanes`` channels: an
        output beat takes ``lanes / requant_lanes`` cycles through them, at most 9 (a 3x3
        conv makes a beat every 9 cycles). By default the fewest that keep up: 2 for 16 lanes
        (each lane is a 32 x 32 multiply, 4 DSPs or ~1,000 LUTs in fabric).
    fabric_macs : bool
        Build the ``lanes`` 9 x 8-bit products (and the pools' dividers) from adders in
        fabric instead of leaving them to synthesis (a DSP each): for the ULX3S, whose DSPs
        all go to the array. Same arithmetic and timing.
    max_row_bytes : int or None
        Largest input row, ``width * ceil(C / lanes) * lanes`` bytes (a row slot's size); by
        default ``max_width * ceil(max_channels / lanes) * lanes``. MobileNetV2 1.0/224 needs
        10752 (112 x 96): 7 slots are 75 KB of block RAM, where its largest width and
        channel count (112, 960) would make 753 KB.

    Members
    -------
    i : In(stream.Signature(beat_layout(lanes)))
        Input pixel beats, NHWC order, all H * W * ceil(C / lanes) of them per layer. Taken
        only while ``busy``, when a row slot is free; at most one per cycle.
    o : Out(stream.Signature(beat_layout(lanes)))
        Output beats, NHWC order, OH * OW * ceil(C / lanes) per layer; full backpressure (the
        compute loop holds an output beat's last tap until the output FIFO has room for it).
    weights : In(stream.Signature(weight_layout(self)))
    params : In(stream.Signature(param_layout(self)))
        Loads, ready while not ``busy``.
    layer : In(layer_layout(self))
        The layer (:func:`layer_config`); read from ``start`` on and held stable while ``busy``.
    start : In(1)
        Starts a layer when the engine is idle (ignored while ``busy``).
    busy : Out(1)
        From the cycle after ``start`` until the last output beat is taken and every input
        beat of the layer has been consumed.

    All in one clock domain, ``sync``. Raises ``TypeError`` or ``ValueError`` naming a bad
    parameter.
    """

    def __init__(self, cfg: ArrayConfig, *, lanes=16, max_width=112, max_height=112,
                 max_channels=960, max_kernel=5, max_row_bytes=None, requant_lanes=None,
                 fabric_macs=False):
        check_config(self, cfg)
        for name, value, lo, hi in (("Lane count", lanes, 1, 64),
                                    ("Maximum width", max_width, 1, MAX_SIDE),
                                    ("Maximum height", max_height, 1, MAX_SIDE),
                                    ("Maximum channel count", max_channels, 1, 1 << 16)):
            if not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise rejected(self, TypeError(
                    f"{name} must be a positive integer, not {value!r}"))
            if not lo <= value <= hi:
                raise rejected(self, ValueError(
                    f"{name} must be between {lo} and {hi}, not {value}"))
        if max_kernel not in KERNELS or isinstance(max_kernel, bool):
            raise rejected(self, ValueError(f"Maximum kernel must be 3 or 5, not {max_kernel!r}"))
        full_row = max_width * _groups(max_channels, lanes) * lanes
        if max_row_bytes is None:
            max_row_bytes = full_row
        if not isinstance(max_row_bytes, numbers.Integral) or isinstance(max_row_bytes, bool):
            raise rejected(self, TypeError(
                f"Maximum row bytes must be a positive integer, not {max_row_bytes!r}"))
        if not lanes <= max_row_bytes <= full_row or max_row_bytes % lanes:
            raise rejected(self, ValueError(
                f"Maximum row bytes must be a multiple of {lanes} (lanes) between {lanes} "
                f"and {full_row} (max_width * max_channels, rounded up to whole lanes), "
                f"not {max_row_bytes}"))
        self._max_row_bytes = int(max_row_bytes)
        if requant_lanes is None:       # the fewest that keep up with a 3x3 conv
            requant_lanes = min(r for r in range(1, lanes + 1)
                                if lanes % r == 0 and lanes // r <= 9)
        if (not isinstance(requant_lanes, numbers.Integral) or isinstance(requant_lanes, bool)
                or requant_lanes < 1 or lanes % requant_lanes
                or lanes // requant_lanes > 9):
            raise rejected(self, ValueError(
                f"Requantization lanes must divide the {lanes} lanes into at most 9 slices "
                f"(a 3x3 output beat every 9 cycles), not {requant_lanes!r}"))
        self._requant_lanes = int(requant_lanes)
        if fabric_macs not in (True, False) or not isinstance(fabric_macs, bool):
            raise rejected(self, TypeError(f"fabric_macs must be True or False, not "
                                           f"{fabric_macs!r}"))
        self._fabric_macs = fabric_macs
        self._cfg = cfg
        self._lanes = int(lanes)
        self._max_width = int(max_width)
        self._max_height = int(max_height)
        self._max_channels = int(max_channels)
        self._max_kernel = int(max_kernel)
        beat = beat_layout(self._lanes)
        super().__init__({
            "i":       In(stream.Signature(beat)),
            "o":       Out(stream.Signature(beat)),
            "weights": In(stream.Signature(weight_layout(self))),
            "params":  In(stream.Signature(param_layout(self))),
            "layer":   In(layer_layout(self)),
            "start":   In(1),
            "busy":    Out(1),
        })

    # Elaboration parameters, read only.
    @property
    def cfg(self):
        return self._cfg

    @property
    def lanes(self):
        return self._lanes

    @property
    def max_width(self):
        return self._max_width

    @property
    def max_height(self):
        return self._max_height

    @property
    def max_channels(self):
        return self._max_channels

    @property
    def max_kernel(self):
        return self._max_kernel

    @property
    def max_row_bytes(self):
        return self._max_row_bytes

    @property
    def max_groups(self):
        """Most beats per pixel: ``ceil(max_channels / lanes)``."""
        return _groups(self._max_channels, self._lanes)

    @property
    def row_slots(self):
        """Rows the line buffer holds: ``max_kernel + 2``."""
        return self._max_kernel + 2

    @property
    def line_buffer_bytes(self):
        """Bytes of line buffer (block RAM): ``row_slots * max_row_bytes``."""
        return self.row_slots * self._max_row_bytes

    @property
    def requant_latency(self):
        """Cycles of one requantization lane."""
        return RequantLane.latency_of(1, self._cfg.roundings, self._cfg.requant_multiply)

    @property
    def requant_lanes(self):
        """Requantization lanes, shared by the ``lanes`` channels."""
        return self._requant_lanes

    @property
    def requant_slices(self):
        """Cycles the requantization lanes take per output beat: ``lanes / requant_lanes``."""
        return self._lanes // self._requant_lanes

    @property
    def result_latency(self):
        """Cycles from an output beat's sums (stage D) to its result entering the FIFO."""
        return self.requant_slices + self.requant_latency

    @property
    def fifo_depth(self):
        """Output FIFO depth, the compute loop's credit: enough for the results in flight at
        one result per 4 cycles (a 2x2 pool's rate; a 3x3 conv makes one per 9)."""
        return max(4, -(-(self.result_latency + 9) // 4) + 2)

    @property
    def fabric_macs(self):
        return self._fabric_macs

    @property
    def macs(self):
        """Multiply-accumulates per cycle."""
        return self._lanes

    def elaborate(self, platform):
        lanes, slots = self._lanes, self.row_slots
        slot_words = self._max_row_bytes // lanes
        cfg = self.layer
        m = Module()

        word = unsigned(8 * lanes)
        m.submodules.line = line = memory.Memory(shape=word, depth=slots * slot_words, init=[])
        m.submodules.wmem = wmem = memory.Memory(
            shape=word, depth=self.max_groups * self._max_kernel ** 2, init=[])
        pshape = data.StructLayout({name: param_layout(self)[name].shape
                                    for name in ("bias", "multiplier", "shift")})
        m.submodules.pmem = pmem = memory.Memory(
            shape=pshape, depth=self.max_groups * self.requant_slices, init=[])
        line_w, line_r = line.write_port(), line.read_port(domain="sync")
        wmem_w, wmem_r = wmem.write_port(), wmem.read_port(domain="sync")
        pmem_w, pmem_r = pmem.write_port(), pmem.read_port(domain="sync")

        busy = Signal()
        m.d.comb += self.busy.eq(busy)

        # Loads, while idle.
        m.d.comb += [
            self.weights.ready.eq(~busy),
            wmem_w.addr.eq(self.weights.payload.addr),
            wmem_w.data.eq(self.weights.payload.data.as_value()),
            wmem_w.en.eq(self.weights.valid & ~busy),
            self.params.ready.eq(~busy),
            pmem_w.addr.eq(self.params.payload.addr),
            pmem_w.data.bias.eq(self.params.payload.bias),
            pmem_w.data.multiplier.eq(self.params.payload.multiplier),
            pmem_w.data.shift.eq(self.params.payload.shift),
            pmem_w.en.eq(self.params.valid & ~busy),
        ]

        kernel, stride, groups = cfg.kernel, cfg.stride, cfg.groups
        side_bits = max(self._max_width, self._max_height).bit_length() + 3
        side = signed(side_bits)
        slot_base = Array(Const(s * slot_words, _addr(slots * slot_words)) for s in range(slots))

        def wrap_slot(value):
            return Mux(value >= slots, value - slots, value)

        # The compute loop's position: output row and pixel, channel group, filter tap; the
        # input row and column of the tap, its row slot, its word within the row
        # (x * groups + g) and its weight address.
        oy, ox = Signal(side), Signal(side)
        iy0, ix0 = Signal(side), Signal(side)                  # oy*s - pt, ox*s - pl
        xg0 = Signal(signed(side_bits + self.max_groups.bit_length() + 1))   # ix0 * groups
        slot0 = Signal(range(slots))                            # slot of row iy0 (mod slots)
        g = Signal(range(self.max_groups))
        ky, kx = Signal(range(self._max_kernel)), Signal(range(self._max_kernel))
        iy, ix = Signal(side), Signal(side)
        xg = Signal.like(xg0)
        slot = Signal(range(slots))
        wa = Signal(_addr(self.max_groups * self._max_kernel ** 2))
        done = Signal()                                         # every tap issued

        # The writer: rows of input consumed, the slot and word the next beat goes to.
        rows_in = Signal(range(self._max_height + 1))
        wslot = Signal(range(slots))
        wx = Signal(range(self._max_width))
        wg = Signal(range(self.max_groups))
        wword = Signal(_addr(slot_words))

        outstanding = Signal(range(self.fifo_depth + 1))

        group_stride = Mux(stride == 2, groups << 1, groups)     # s * groups
        pad_left_words = Mux(cfg.pad_left == 2, groups << 1, Mux(cfg.pad_left == 1, groups, 0))

        with m.If(~busy & self.start):
            m.d.sync += [
                busy.eq(1), done.eq(0),
                oy.eq(0), ox.eq(0), g.eq(0), ky.eq(0), kx.eq(0), wa.eq(0),
                iy0.eq(-cfg.pad_top), iy.eq(-cfg.pad_top),
                ix0.eq(-cfg.pad_left), ix.eq(-cfg.pad_left),
                xg0.eq(-pad_left_words), xg.eq(-pad_left_words),
                slot0.eq(wrap_slot(slots - cfg.pad_top)), slot.eq(wrap_slot(slots - cfg.pad_top)),
                rows_in.eq(0), wslot.eq(0), wx.eq(0), wg.eq(0), wword.eq(0),
            ]

        # Writer: a beat is taken when its row's slot is free (no row still needed by the
        # current output row lives there), i.e. rows_in < first needed row + slots.
        first_row = Mux(iy0 < 0, 0, iy0)
        ahead = Signal(side)
        m.d.comb += ahead.eq(rows_in - first_row)
        take_ok = busy & (rows_in != cfg.height) & (done | (ahead < slots))
        m.d.comb += [
            self.i.ready.eq(take_ok),
            line_w.addr.eq(slot_base[wslot] + wword),
            line_w.data.eq(self.i.payload.as_value()),
            line_w.en.eq(self.i.valid & take_ok),
        ]
        with m.If(self.i.valid & take_ok):
            with m.If(wg + 1 != groups):
                m.d.sync += [wg.eq(wg + 1), wword.eq(wword + 1)]
            with m.Elif(wx + 1 != cfg.width):
                m.d.sync += [wg.eq(0), wx.eq(wx + 1), wword.eq(wword + 1)]
            with m.Else():
                m.d.sync += [wg.eq(0), wx.eq(0), wword.eq(0), rows_in.eq(rows_in + 1),
                             wslot.eq(wrap_slot(wslot + 1))]

        # Compute loop, stage 0: issue one tap per cycle when its rows are in and, for an
        # output beat's last tap, when the output FIFO has room for its result.
        last_kx, last_ky = kx + 1 == kernel, ky + 1 == kernel
        last_g, last_ox = g + 1 == groups, ox + 1 == cfg.out_width
        last_oy = oy + 1 == cfg.out_height
        tap_last = last_kx & last_ky
        rows_ok = (rows_in == cfg.height) | (rows_in > iy0 + kernel - 1)
        credit = outstanding < self.fifo_depth
        # An output beat's sums take `requant_slices` cycles to leave the capture registers:
        # the next beat's last tap waits that long (only a pool smaller than that waits).
        slices = self.requant_slices
        cooldown = Signal(range(slices))
        fire = Signal()
        m.d.comb += fire.eq(busy & ~done & rows_ok & (~tap_last | (credit & (cooldown == 0))))
        with m.If(fire & tap_last):
            m.d.sync += cooldown.eq(slices - 1)
        with m.Elif(cooldown != 0):
            m.d.sync += cooldown.eq(cooldown - 1)
        tap_ok = (iy >= 0) & (iy < cfg.height) & (ix >= 0) & (ix < cfg.width)
        m.d.comb += [
            line_r.addr.eq(slot_base[slot] + xg),
            wmem_r.addr.eq(wa),
        ]
        with m.If(fire):
            with m.If(~last_kx):
                m.d.sync += [kx.eq(kx + 1), ix.eq(ix + 1), xg.eq(xg + groups), wa.eq(wa + 1)]
            with m.Elif(~last_ky):
                m.d.sync += [kx.eq(0), ky.eq(ky + 1), iy.eq(iy + 1),
                             slot.eq(wrap_slot(slot + 1)), ix.eq(ix0), xg.eq(xg0 + g),
                             wa.eq(wa + 1)]
            with m.Elif(~last_g):
                m.d.sync += [kx.eq(0), ky.eq(0), iy.eq(iy0), slot.eq(slot0), ix.eq(ix0),
                             g.eq(g + 1), xg.eq(xg0 + g + 1), wa.eq(wa + 1)]
            with m.Elif(~last_ox):
                m.d.sync += [kx.eq(0), ky.eq(0), iy.eq(iy0), slot.eq(slot0), g.eq(0),
                             ox.eq(ox + 1), ix0.eq(ix0 + stride), ix.eq(ix0 + stride),
                             xg0.eq(xg0 + group_stride), xg.eq(xg0 + group_stride), wa.eq(0)]
            with m.Elif(~last_oy):
                next_slot = wrap_slot(slot0 + stride)
                m.d.sync += [kx.eq(0), ky.eq(0), g.eq(0), ox.eq(0), oy.eq(oy + 1),
                             iy0.eq(iy0 + stride), iy.eq(iy0 + stride),
                             slot0.eq(next_slot), slot.eq(next_slot),
                             ix0.eq(-cfg.pad_left), ix.eq(-cfg.pad_left),
                             xg0.eq(-pad_left_words), xg.eq(-pad_left_words), wa.eq(0)]
            with m.Else():
                m.d.sync += done.eq(1)

        # Stage A: the tap's word and weights are read (synchronous ports).
        v_a, ok_a, first_a, last_a = Signal(), Signal(), Signal(), Signal()
        g_a = Signal.like(g)
        m.d.sync += [v_a.eq(fire), ok_a.eq(tap_ok), first_a.eq((kx == 0) & (ky == 0)),
                     last_a.eq(tap_last), g_a.eq(g)]
        # Stage B: x - zp_in (0 for a tap outside the image), the weight beside it; for the
        # pools x itself times 1 (a tap outside the image: -128 for max, 0 for average).
        is_conv, is_max = cfg.op == OPS.index("conv"), cfg.op == OPS.index("max_pool")
        v_b, ok_b, first_b, last_b = Signal(), Signal(), Signal(), Signal()
        g_b = Signal.like(g)
        m.d.sync += [v_b.eq(v_a), ok_b.eq(ok_a), first_b.eq(first_a), last_b.eq(last_a),
                     g_b.eq(g_a)]
        diff_b = [Signal(signed(9), name=f"diff_b{i}", reset_less=True) for i in range(lanes)]
        w_b = [Signal(signed(8), name=f"w_b{i}", reset_less=True) for i in range(lanes)]
        for i in range(lanes):
            x_i = line_r.data[8 * i:8 * i + 8].as_signed()
            m.d.sync += [diff_b[i].eq(Mux(ok_a, Mux(is_conv, x_i - cfg.input_zero_point, x_i),
                                          Mux(is_max, -128, 0))),
                         w_b[i].eq(Mux(is_conv, wmem_r.data[8 * i:8 * i + 8].as_signed(), 1))]
        # Stages M and C: the products, two registers deep (a DSP's own output register and
        # one beside the adder; in fabric, after the adder tree's first level and after it).
        v_m, ok_m, first_m, last_m = Signal(), Signal(), Signal(), Signal()
        g_m = Signal.like(g)
        m.d.sync += [v_m.eq(v_b), ok_m.eq(ok_b), first_m.eq(first_b), last_m.eq(last_b),
                     g_m.eq(g_b)]
        v_c, ok_c, first_c, last_c = Signal(), Signal(), Signal(), Signal()
        g_c = Signal.like(g)
        m.d.sync += [v_c.eq(v_m), ok_c.eq(ok_m), first_c.eq(first_m), last_c.eq(last_m),
                     g_c.eq(g_m)]
        prod_c = [Signal(signed(17), name=f"prod_c{i}", reset_less=True) for i in range(lanes)]
        for i in range(lanes):
            if self._fabric_macs:
                product = _fabric_product(m, diff_b[i], w_b[i], f"mac{i}")
            else:
                product = Signal(signed(17), name=f"prod_m{i}", reset_less=True)
                m.d.sync += product.eq(diff_b[i] * w_b[i])
            m.d.sync += prod_c[i].eq(product)
        # Stage D: the accumulators; after an output beat's last tap they hold its sums, and
        # its group's parameters (read in stage C) are on the parameter port.
        acc = [Signal(signed(24), name=f"acc{i}", reset_less=True) for i in range(lanes)]
        sums_valid = Signal()
        m.d.sync += sums_valid.eq(v_c & last_c)
        g_d = Signal.like(g)                # the group whose sums are ready with sums_valid
        m.d.sync += g_d.eq(g_c)
        # The pools: the running maximum instead of the sum, and the count of in-image taps.
        taps = Signal(range(self._max_kernel ** 2 + 1))
        with m.If(v_c):
            m.d.sync += taps.eq(Mux(first_c, 0, taps) + ok_c)
            for i in range(lanes):
                with m.If(is_max):
                    m.d.sync += acc[i].eq(Mux(first_c | (prod_c[i] > acc[i]), prod_c[i],
                                              acc[i]))
                with m.Else():
                    m.d.sync += acc[i].eq(Mux(first_c, 0, acc[i]) + prod_c[i])

        # Requantization: the sums, their parameters and the tap count are captured, then fed
        # to the `requant_lanes` lanes (and pool dividers) a slice of channels per cycle (a
        # shift register moving down by one slice each cycle, no multiplexers); their results
        # are shifted into the output beat, which the last slice completes.
        shared = self._requant_lanes
        m.submodules.out_fifo = out_fifo = fifo.SyncFIFOBuffered(
            width=8 * lanes, depth=self.fifo_depth)
        hold = [Signal(signed(24), name=f"hold_sum{i}", reset_less=True) for i in range(lanes)]
        hold_taps = Signal.like(taps)
        feed = Signal(slices)               # feed[p]: slice p is at the bottom this cycle
        m.d.sync += feed.eq(Cat(sums_valid, feed[:slices - 1]))
        with m.If(sums_valid):
            m.d.sync += [hold_taps.eq(taps)] + [hold[i].eq(acc[i]) for i in range(lanes)]
        with m.Else():
            m.d.sync += [hold[i].eq(hold[i + shared]) for i in range(lanes - shared)]
        # The slices' parameters: word (g, p) read the cycle before slice p is fed.
        g_hold = Signal.like(g)
        next_slice = Signal(range(slices))
        with m.If(sums_valid):
            m.d.sync += [g_hold.eq(g_d), next_slice.eq(1 % slices)]
        with m.Elif(next_slice != 0):
            m.d.sync += next_slice.eq(Mux(next_slice == slices - 1, 0, next_slice + 1))
        m.d.comb += pmem_r.addr.eq(Mux(sums_valid, g_d * slices, g_hold * slices + next_slice))
        results = []
        for r in range(shared):
            lane = RequantLane(sum_shape=signed(24), steps=1, roundings=self._cfg.roundings,
                               multiply=self._cfg.requant_multiply)
            m.submodules[f"lane{r}"] = lane
            m.d.comb += [
                lane.valid.eq(feed.any()),
                lane.sum.eq(hold[r]),
                lane.bias.eq(pmem_r.data.bias[r]),
                lane.multiplier.eq(pmem_r.data.multiplier[r]),
                lane.shift.eq(pmem_r.data.shift[r]),
                lane.rounding.eq(cfg.rounding),
                lane.output_zero_point.eq(cfg.output_zero_point),
                lane.activation_min.eq(cfg.activation_min),
                lane.activation_max.eq(cfg.activation_max),
                lane.raw.eq(0),
            ]
            pooled = self._pool(m, hold[r], hold_taps, cfg, is_max, f"pool{r}")
            results.append(Mux(is_conv, lane.result[:8], pooled))
        # The last slice's result: its feed bit delayed by the lane's latency.
        marker = feed[slices - 1]
        for stage in range(self.requant_latency):
            delayed = Signal(name=f"last_slice{stage}")
            m.d.sync += delayed.eq(marker)
            marker = delayed
        beat = Cat(*results)
        if slices > 1:
            gathered = Signal(8 * (lanes - shared), reset_less=True)
            with m.If(m.submodules.lane0.result_valid):
                m.d.sync += gathered.eq(Cat(gathered[8 * shared:], beat))
            beat = Cat(gathered, beat)
        m.d.comb += [
            out_fifo.w_en.eq(marker),
            out_fifo.w_data.eq(beat),
            self.o.valid.eq(out_fifo.r_rdy),
            self.o.payload.eq(out_fifo.r_data),
            out_fifo.r_en.eq(self.o.ready),
        ]

        issued = fire & tap_last
        taken = self.o.valid & self.o.ready
        with m.If(issued & ~taken):
            m.d.sync += outstanding.eq(outstanding + 1)
        with m.Elif(taken & ~issued):
            m.d.sync += outstanding.eq(outstanding - 1)

        with m.If(busy & done & (rows_in == cfg.height) & (outstanding == 0) & ~issued):
            m.d.sync += busy.eq(0)
        return m

    def _pool(self, m, total, taps, cfg, is_max, name):
        """A pool's result for one channel of the slice at the bottom of the capture
        registers (``total``, its window's maximum or sum; ``taps``, the in-image taps), in
        step with the lane beside it (:attr:`requant_latency` cycles later): the maximum, or
        the average ``(sum +- taps / 2) / taps`` rounded as C divides (toward zero: TFLite's
        reference AveragePool), by a reciprocal multiply exact for every sum a window can
        make; then the activation clamp."""
        bits, scale = _reciprocals(self._max_kernel ** 2)
        table = Array(Const(r, bits) for r in scale)
        width = (self._max_kernel ** 2 * 128 + self._max_kernel ** 2).bit_length()
        # P1: |sum| + taps / 2, the sign, the reciprocal of the tap count.
        recip = Signal(bits, name=f"{name}_recip", reset_less=True)
        magnitude = Signal(unsigned(width), name=f"{name}_mag", reset_less=True)
        negative = Signal(name=f"{name}_neg", reset_less=True)
        keep = Signal(signed(9), name=f"{name}_max", reset_less=True)
        m.d.sync += [recip.eq(table[taps]),
                     magnitude.eq(Mux(total < 0, -total, total) + (taps >> 1)),
                     negative.eq(total < 0), keep.eq(total)]
        # P2: the quotient, signed; or the maximum.
        if self._fabric_macs:
            product = _shift_add(m, magnitude, recip, f"{name}_div")
        else:
            product = magnitude * recip
        quotient = Signal(signed(width + 1), name=f"{name}_q", reset_less=True)
        q = product >> _RECIPROCAL_SHIFT
        m.d.sync += quotient.eq(Mux(is_max, keep, Mux(negative, -q, q)))
        # P3: the clamp.
        out = Signal(signed(8), name=f"{name}_out", reset_less=True)
        m.d.sync += out.eq(Mux(quotient < cfg.activation_min, cfg.activation_min,
                               Mux(quotient > cfg.activation_max, cfg.activation_max,
                                   quotient)))
        result = out
        for stage in range(self.requant_latency - 3):
            delayed = Signal(8, name=f"{name}_delay{stage}", reset_less=True)
            m.d.sync += delayed.eq(result)
            result = delayed
        return result


def _check_int(name, value, lo, hi):
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be between {lo} and {hi}, not {value}")
    return int(value)


def layer_config(engine, *, height, width, channels, kernel, stride, padding,
                 input_zero_point=0, output_zero_point=0, activation_min=-128,
                 activation_max=127, rounding="double", op="conv"):
    """The ``layer`` setting of ``engine`` for one DEPTHWISE_CONV_2D layer, as a dict for
    ``layer_layout(engine).const(...)``; the padding from TFLite's rules
    (:func:`pwconv.golden.ops.compute_padding`).

    Raises
    ------
    TypeError, ValueError
        Naming the setting that does not fit the engine or TFLite's kernel.
    """
    height = _check_int("height", height, 1, engine.max_height)
    width = _check_int("width", width, 1, engine.max_width)
    channels = _check_int("channels", channels, 1, engine.max_channels)
    row_bytes = width * _groups(channels, engine.lanes) * engine.lanes
    if row_bytes > engine.max_row_bytes:
        raise ValueError(f"a row of {width} x {channels} channels takes {row_bytes} bytes of "
                         f"line buffer, more than the engine's {engine.max_row_bytes}")
    if op not in OPS:
        raise ValueError(f"op must be one of {', '.join(OPS)}, not {op!r}")
    if op == "conv" and (kernel not in KERNELS or isinstance(kernel, bool)):
        raise ValueError(f"kernel must be 3 or 5, not {kernel!r}")
    if op != "conv" and (not isinstance(kernel, numbers.Integral) or isinstance(kernel, bool)
                         or kernel < 1):
        raise ValueError(f"pool kernel must be a positive integer, not {kernel!r}")
    if kernel > engine.max_kernel:
        raise ValueError(f"kernel {kernel} is larger than the engine's maximum, "
                         f"{engine.max_kernel}")
    if stride not in STRIDES or isinstance(stride, bool):
        raise ValueError(f"stride must be 1 or 2, not {stride!r}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be SAME or VALID, not {padding!r}")
    for name, value in (("input_zero_point", input_zero_point),
                        ("output_zero_point", output_zero_point),
                        ("activation_min", activation_min), ("activation_max", activation_max)):
        _check_int(name, value, -128, 127)
    if activation_min > activation_max:
        raise ValueError(f"activation_min {activation_min} is above activation_max "
                         f"{activation_max}")
    if rounding not in engine.cfg.roundings:
        raise ValueError(f"rounding {rounding!r} is not in this build "
                         f"({', '.join(engine.cfg.roundings)})")
    out_h, pad_top = compute_padding(height, kernel, stride, 1, padding)
    out_w, pad_left = compute_padding(width, kernel, stride, 1, padding)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"input {height}x{width} is smaller than the {kernel}x{kernel} "
                         f"filter with VALID padding")
    return {
        "height": height, "width": width, "groups": _groups(channels, engine.lanes),
        "out_height": out_h, "out_width": out_w, "kernel": kernel, "stride": stride,
        "pad_top": pad_top, "pad_left": pad_left,
        "input_zero_point": int(input_zero_point), "output_zero_point": int(output_zero_point),
        "activation_min": int(activation_min), "activation_max": int(activation_max),
        "rounding": ROUNDINGS.index(rounding), "op": OPS.index(op),
    }


def _pad_channels(array, lanes, fill=0):
    """``array`` [..., C] padded with ``fill`` to [..., groups, lanes]."""
    array = np.asarray(array)
    groups = _groups(array.shape[-1], lanes)
    padded = np.full(array.shape[:-1] + (groups * lanes,), fill, dtype=np.int64)
    padded[..., :array.shape[-1]] = array
    return padded.reshape(array.shape[:-1] + (groups, lanes))


def weight_words(engine, w):
    """The ``weights`` transfers of a filter ``w`` (TFLite's int8 [1, K, K, C]), as integers of
    :func:`weight_layout` (``layout.const(...)`` bits)."""
    w = np.asarray(w)
    _, k, _, _ = w.shape
    layout = weight_layout(engine)
    per_tap = _pad_channels(w[0], engine.lanes)             # [K, K, groups, lanes]
    words = []
    for g in range(per_tap.shape[2]):
        for ky in range(k):
            for kx in range(k):
                words.append(layout.const({"addr": (g * k + ky) * k + kx,
                                           "data": per_tap[ky, kx, g].tolist()}).as_bits())
    return words


def param_words(engine, bias, multiplier, shift):
    """The ``params`` transfers of per-channel ``bias``, ``multiplier`` (or float32 scale bits
    as int32) and ``shift`` (each [C]), as integers of :func:`param_layout`."""
    layout = param_layout(engine)
    shared = engine.requant_lanes
    parts = [_pad_channels(np.asarray(a, np.int64), engine.lanes)
             for a in (bias, multiplier, shift)]
    words = []
    for g in range(parts[0].shape[0]):
        for p in range(engine.requant_slices):
            chosen = slice(p * shared, (p + 1) * shared)
            words.append(layout.const({
                "addr": g * engine.requant_slices + p, "bias": parts[0][g, chosen].tolist(),
                "multiplier": parts[1][g, chosen].tolist(),
                "shift": parts[2][g, chosen].tolist()}).as_bits())
    return words


def input_beats(engine, x):
    """The input beats of ``x`` (int8 [H, W, C]) in stream order, as integers of
    :func:`beat_layout`."""
    beats = _pad_channels(np.asarray(x, np.int64), engine.lanes).reshape(-1, engine.lanes)
    return [sum((int(v) & 0xff) << (8 * i) for i, v in enumerate(beat)) for beat in beats]


def output_tensor(engine, beats, out_height, out_width, channels):
    """The int8 [OH, OW, C] tensor of the output beats (integers of :func:`beat_layout`)."""
    groups = _groups(channels, engine.lanes)
    values = np.array([[(int(b) >> (8 * i)) & 0xff for i in range(engine.lanes)]
                       for b in beats], dtype=np.int64)
    values = np.where(values >= 128, values - 256, values).astype(np.int8)
    return values.reshape(out_height, out_width, groups * engine.lanes)[..., :channels]


def layer_cycles(engine, config):
    """The compute loop's cycles for a layer (its :func:`layer_config` dict): one tap per cycle,
    ``out_height * out_width * groups * kernel**2``; the first rows' load and the pipeline
    add a little."""
    return (config["out_height"] * config["out_width"] * config["groups"]
            * config["kernel"] ** 2)

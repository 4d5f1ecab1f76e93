"""The pwconv accelerator: sequencer, systolic array, requantizer and output queue."""

from dataclasses import replace

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .params import check_config
from .array import SystolicArray
from .layouts import (bank_address, param_word, pass_word, pixel_beat, result_vector,
                      runtime_config, weight_word)
from .pass_queue import PassQueue
from .requant import Requantizer
from .requant_serial import SerialRequantizer
from .sequencer import PixelSequencer

__all__ = ["PointwiseConv", "top_latency", "queue_depth", "bank_drain", "requantizer_config"]


def top_latency(cfg: ArrayConfig):
    """Cycles from a pixel's last accepted beat to its first result on ``o`` (no stalls)."""
    # 2 in the sequencer, the array, the requantizer, 1 into and 1 through the queue. A serial
    # requantizer takes column 0 as it leaves the array (cols - 1 cycles before the last), and
    # its columns take 2 more through their queue and 1 in the gather register.
    if cfg.requantizer == "parallel":
        return 2 + cfg.array_latency + Requantizer.latency_of(cfg) + 2
    return (2 + cfg.array_latency - (cfg.cols - 1) + SerialRequantizer.latency_of(cfg) + 3)


def queue_depth(cfg: ArrayConfig):
    """Output queue depth, in result vectors: enough credits to cover the latency at the
    fastest pace results can come (one per ``tile_interval`` cycles)."""
    return -(-top_latency(cfg) // cfg.tile_interval) + 2


def bank_drain(cfg: ArrayConfig):
    """Cycles after a pass's last beat is issued until no read of its weight or parameter bank
    can be left: the array, then the requantizer's parameter reads (one per ``tile_interval``
    cycles of the vector, the serial lane's columns), with a cycle to spare."""
    return 2 + cfg.array_latency + 2 + cfg.tile_interval + 1


def requantizer_config(cfg: ArrayConfig):
    """The configuration the requantizer is elaborated for. Its parameter memory holds one
    word per column tile address; with two banks that is ``2 * max_tiles`` addresses (bank b's
    tile t at ``b * max_tiles + t``, computed here and in the sequencer), so it is built for a
    configuration of twice the tiles and one bank. Everything else it reads (columns, sums,
    steps) is unchanged."""
    if cfg.weight_banks == 1:
        return cfg
    return replace(cfg, max_filters=cfg.param_depth * cfg.cols, weight_banks=1)


def _assign_fields(target, source):
    """Field-by-field assignment between views of two layouts with the same field names (the
    requantizer's, whose address fields are wider)."""
    return [target[name].eq(source[name]) for name, _ in source.shape()]


class PointwiseConv(wiring.Component):
    """An int8 pointwise (1x1) convolution accelerator, bit-exact with TFLite.

    For every pixel of C channels it computes F outputs
    ``y[f] = clamp(requant(bias[f] + sum_c x[c] * w[c, f]) + zp_out)`` (the input zero point is
    folded into the bias by the host). A pixel enters as ``beats = ceil(C / rows)`` transfers on
    ``i``; ``tiles = ceil(F / cols)`` result vectors leave on ``o``, tile by tile, pixel by pixel,
    in order. Channels beyond C and filters beyond F are zero-padded by the host.

    Parameters
    ----------
    cfg : ArrayConfig
        Array size, maximum layer size and weight memory depth.

    Members
    -------
    i : In(stream.Signature(pixel_beat))
        Pixel beats, ``rows`` int8 channels each.
    o : Out(stream.Signature(result_vector))
        Result vectors, ``cols`` int32 lanes each (int8-valued unless ``layer.raw``).
    weights : In(stream.Signature(weight_word))
        Weight writes; accepted only while ``idle`` (with one bank: from the cycle after one
        that was idle and took no pixel beat, and while a weight or parameter word is offered
        then, no pixel beat is taken). Address ``tile*beats + beat``, row ``r``, lane ``c``
        holds ``w[beat*rows + r, tile*cols + c]``.
    params : In(stream.Signature(param_word))
        Per-channel bias, multiplier and shift of one column tile; accepted as ``weights``.
    layer : In(runtime_config)
        Layer settings (beats, tiles, output zero point, activation range, raw mode); change
        them only while ``idle``.
    idle : Out(1)
        No pixel or partial result is inside (results may still wait in the output queue).

    Timing: one beat per cycle on ``i`` in steady state, i.e. ``rows * cols`` MACs per cycle
    whatever C and F are (with ``cfg.requantizer == "serial"``: while ``beats >=
    cfg.tile_interval``; below that, one (pixel, column tile) per ``tile_interval`` cycles);
    ``o`` may stall at any time (an internal queue of ``queue_depth`` vectors and credit-based
    issue keep the array from ever overflowing it, so nothing is dropped, duplicated or
    reordered). Latency from a pixel's last beat to its first result:
    ``latency`` cycles.
    """

    def __init__(self, cfg: ArrayConfig = ArrayConfig()):
        check_config(self, cfg)
        self._cfg = cfg
        ports = {
            "i":       In(stream.Signature(pixel_beat(cfg))),
            "o":       Out(stream.Signature(result_vector(cfg))),
            "weights": In(stream.Signature(weight_word(cfg))),
            "params":  In(stream.Signature(param_word(cfg))),
            "layer":   In(runtime_config(cfg)),
            "idle":    Out(1),
        }
        if cfg.weight_banks == 2:
            ports["commit"] = In(stream.Signature(pass_word(cfg)))
        super().__init__(ports)

    @property
    def array_config(self):
        return self._cfg

    @property
    def latency(self):
        """Cycles from a pixel's last accepted beat to its first result on ``o`` (no stalls)."""
        return top_latency(self._cfg)

    @property
    def queue_depth(self):
        """Output queue depth, in result vectors."""
        return queue_depth(self._cfg)

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        m.submodules.sequencer = sequencer = PixelSequencer(cfg)
        m.submodules.array = array = SystolicArray(cfg)
        # Pixel beats go to the sequencer unless a one-bank load is going in (below).
        pixels_held = Signal()
        m.d.comb += [
            sequencer.i.payload.eq(self.i.payload),
            sequencer.i.valid.eq(self.i.valid & ~pixels_held),
            self.i.ready.eq(sequencer.i.ready & ~pixels_held),
        ]
        m.d.comb += [
            array.beat.eq(sequencer.beat),
            array.beat_valid.eq(sequencer.beat_valid),
        ]
        if cfg.requantizer == "parallel":
            requant = self._parallel_output(m, array)
        else:
            requant = self._serial_output(m, array)
        m.d.comb += [
            requant.sums.eq(array.sums),
            *_assign_fields(requant.config, sequencer.settings),
            sequencer.drained.eq(~array.busy & ~requant.busy),
        ]

        # Credits: one per free queue entry not already promised to a result in flight.
        credits = Signal(range(self.queue_depth + 1), init=self.queue_depth)
        returned = self.o.valid & self.o.ready
        with m.If(sequencer.issue_last & ~returned):
            m.d.sync += credits.eq(credits - 1)
        with m.Elif(returned & ~sequencer.issue_last):
            m.d.sync += credits.eq(credits + 1)
        m.d.comb += sequencer.credit.eq(credits != 0)

        inside = Signal()
        m.d.comb += inside.eq(~sequencer.empty | array.busy | requant.busy)
        if cfg.weight_banks == 2:
            # Loads go into the free bank while the other computes.
            m.submodules.passes = passes = PassQueue(cfg, drain=bank_drain(cfg))
            wiring.connect(m, wiring.flipped(self.commit), passes.commit)
            wiring.connect(m, passes.context, sequencer.context)
            m.d.comb += [
                passes.layer.eq(self.layer),
                passes.pass_issued.eq(sequencer.pass_issued),
                passes.pass_bank.eq(sequencer.pass_bank),
            ]
            load_ok, load_bank = passes.load_ready, passes.load_bank
            m.d.comb += self.idle.eq(~inside & ~passes.busy)
        else:
            # Loads only while nothing is in flight, so no beat ever sees a half-written layer;
            # every pixel runs with the current layer settings, in bank 0. The gate is a
            # register, since it fans out across the chip (every weight memory's write enable,
            # the load streams' registers; combinational, from the pipeline's valid bits, it was
            # the ULX3S build's longest path): open in the cycle after one with nothing inside
            # and no pixel beat taken. While it is open and a load is offered, no pixel beat is
            # taken, so it stays right; the load always moves (weights at once, parameters a
            # column per cycle), so the pixels wait for it, never for ever.
            load_open = Signal()
            pixel_taken = self.i.valid & self.i.ready
            m.d.sync += load_open.eq(~inside & ~pixel_taken)
            m.d.comb += [
                pixels_held.eq(load_open & (self.weights.valid | self.params.valid)),
                sequencer.context.valid.eq(1),
                sequencer.context.payload.layer.eq(self.layer),
                self.idle.eq(~inside),
            ]
            load_ok, load_bank = load_open, 0
        m.d.comb += [
            self.weights.ready.eq(load_ok),
            array.weight.eq(self.weights.payload),
            array.weight_en.eq(self.weights.valid & load_ok),
            array.weight_bank.eq(load_bank),
            *_assign_fields(requant.param, self.params.payload),
            requant.param.addr.eq(bank_address(self.params.payload.addr, load_bank,
                                               cfg.max_tiles)),
            requant.param_valid.eq(self.params.valid & load_ok),
            self.params.ready.eq(load_ok & requant.param_ready),
        ]
        return m

    def _parallel_output(self, m, array):
        """A requantizer per column, then a queue of whole result vectors."""
        m.submodules.requant = requant = Requantizer(requantizer_config(self._cfg))
        m.d.comb += requant.sums_valid.eq(array.sums_valid)
        m.submodules.queue = queue = SyncFIFOBuffered(
            width=len(self.o.payload.as_value()), depth=self.queue_depth)
        m.d.comb += [
            queue.w_data.eq(requant.result),
            queue.w_en.eq(requant.result_valid),
            self.o.payload.eq(queue.r_data),
            self.o.valid.eq(queue.r_rdy),
            queue.r_en.eq(self.o.ready),
        ]
        return requant

    def _serial_output(self, m, array):
        """One shared requantizer, a queue of single columns (32 bits wide, so it stays in one
        or two block RAMs whatever ``cols`` is), and a register that gathers ``cols`` columns
        into the result vector on ``o``."""
        cols = self._cfg.cols
        m.submodules.requant = requant = SerialRequantizer(requantizer_config(self._cfg))
        m.d.comb += requant.column_done.eq(array.column_done)
        m.submodules.queue = queue = SyncFIFOBuffered(width=32, depth=self.queue_depth * cols)
        gathered = Signal(range(cols + 1))
        vector = Signal(self.o.payload.shape(), reset_less=True)
        full = Signal()
        take = Signal()
        m.d.comb += [
            queue.w_data.eq(requant.result),
            queue.w_en.eq(requant.result_valid),
            full.eq(gathered == cols),
            take.eq(queue.r_rdy & (~full | self.o.ready)),
            queue.r_en.eq(take),
            self.o.payload.eq(vector),
            self.o.valid.eq(full),
        ]
        # Columns shift in from the top lane, so after `cols` of them lane c holds column c.
        with m.If(take):
            m.d.sync += [vector[c].eq(vector[c + 1]) for c in range(cols - 1)]
            m.d.sync += vector[cols - 1].eq(queue.r_data)
        with m.If(full & self.o.ready):
            m.d.sync += gathered.eq(take)
        with m.Elif(take):
            m.d.sync += gathered.eq(gathered + 1)
        return requant

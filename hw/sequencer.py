"""Input sequencer: buffers each pixel's beats and replays them once per column tile."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .params import check_config
from .array import beat_layout
from .layouts import bank_address, pixel_beat, runtime_config

__all__ = ["PixelSequencer", "pixel_context", "output_settings_mask"]


def pixel_context(cfg: ArrayConfig):
    """What the sequencer needs to know of each pixel: the layer settings of its pass, the
    weight/parameter bank the pass was loaded into, and whether it is its pass's last pixel."""
    return data.StructLayout({
        "layer": runtime_config(cfg),
        "bank":  1,
        "last":  1,
    })


def output_settings_mask(cfg: ArrayConfig):
    """Bit mask of the :func:`runtime_config` fields the output stage reads (every field but
    ``beats`` and ``tiles``, which only the sequencer reads): results of two passes may share
    the pipeline only where these agree."""
    mask = 0
    for name, field in runtime_config(cfg):
        if name not in ("beats", "tiles"):
            mask |= ((1 << field.width) - 1) << field.offset
    return mask


class PixelSequencer(wiring.Component):
    """Turns a stream of pixel beats into the array's beat schedule, folding C and F in time.

    A pixel arrives as ``beats`` consecutive transfers on ``i``, its pass's settings on
    ``context`` (taken with the pixel's first beat). It is written to one bank of a
    double-buffered pixel buffer; once complete, the pixel is replayed ``tiles`` times, one beat
    per cycle (column tile ``j``, beat ``k``, weight address ``j*beats + k`` of its pass's weight
    bank, parameter address ``j`` of its parameter bank), while the next pixel fills the other
    bank. The first tile's replay may start before the pixel is complete, following the writer.
    In steady state one beat leaves every cycle, so the array's MACs are never idle for lack of
    input, also across passes of one layer: consecutive pixels may belong to different passes
    (different banks, beats and tiles).

    Members
    -------
    i : In(stream.Signature(pixel_beat))
        Pixel beats. ``ready`` is high while the bank being filled is free and, for a pixel's
        first beat, ``context`` is valid.
    context : In(stream.Signature(pixel_context))
        The settings of the pixel about to start; taken (``ready``) with its first beat.
    beat : Out(beat_layout), beat_valid : Out(1)
        The beat schedule for the array, registered; no handshake.
    settings : Out(runtime_config)
        The layer settings the output stage must apply to the results now in flight: those of
        the last pixel issued. A pixel whose output settings (:func:`output_settings_mask`)
        differ waits until ``drained`` before its first beat, and ``settings`` changes with it.
        With ``cfg.weight_banks == 1`` settings change only while idle: ``settings`` is the
        context's layer as it is.
    drained : In(1)
        No beat or result is inside the array or the output stage.
    credit : In(1)
        Room for one more result downstream: a beat that completes a (pixel, tile) is issued only
        while ``credit`` is high, and no sooner than ``cfg.tile_interval`` cycles after the
        previous such beat (the pace of a serial requantizer); other beats are issued
        regardless.
    issue_last : Out(1)
        A beat completing a (pixel, tile) is issued this cycle (consumes a credit).
    pass_issued : Out(1), pass_bank : Out(1)
        The last beat of a pass (of a pixel with ``context.last``) is issued this cycle; the
        pass used bank ``pass_bank``.
    empty : Out(1)
        No pixel, whole or partial, is held and no beat is in the output register.

    Timing: a beat is issued as early as the cycle after it is accepted (during the pixel's first
    column tile the reader follows the writer beat by beat); throughput one beat per cycle, or
    ``beats / tile_interval`` while ``beats < cfg.tile_interval``.
    """

    def __init__(self, cfg: ArrayConfig):
        check_config(self, cfg)
        self._cfg = cfg
        super().__init__({
            "i":           In(stream.Signature(pixel_beat(cfg))),
            "context":     In(stream.Signature(pixel_context(cfg))),
            "beat":        Out(beat_layout(cfg)),
            "beat_valid":  Out(1),
            "settings":    Out(runtime_config(cfg)),
            "drained":     In(1),
            "credit":      In(1),
            "issue_last":  Out(1),
            "pass_issued": Out(1),
            "pass_bank":   Out(1),
            "empty":       Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        beat_bits = max(1, (cfg.max_beats - 1).bit_length())
        m.submodules.buffer = buffer = memory.Memory(
            shape=pixel_beat(cfg), depth=2 << beat_bits, init=[])
        write = buffer.write_port()
        read = buffer.read_port(domain="sync")

        full = [Signal(name="bank0_full"), Signal(name="bank1_full")]
        # Each pixel bank's pixel context, written with the pixel's first beat. With one weight
        # bank the layer settings only change while the accelerator is idle: every pixel uses
        # the context as it is (no per-pixel copy, no settings switch; fewer cells on iCE40).
        banked = cfg.weight_banks == 2
        if banked:
            tags = [Signal(pixel_context(cfg), name=f"bank{b}_context") for b in (0, 1)]
        else:
            tags = [self.context.payload, self.context.payload]
        # Each bank's last beat and last tile index (`beats - 1`, `tiles - 1`), registers
        # written with its context: as a subtraction ahead of the reader's compares, the carry
        # chain ran on through `issue` into the weight address's enables (93.5 MHz, a full
        # ULX3S build). With one bank they follow the context a cycle behind, before any beat
        # of it is read.
        layer = self.context.payload.layer
        last_beats = [Signal(beat_bits, name=f"bank{b}_last_beat") for b in (0, 1)]
        last_tiles = [Signal(range(cfg.max_tiles), name=f"bank{b}_last_tile") for b in (0, 1)]
        if not banked:
            m.d.sync += [last_beats[0].eq(layer.beats - 1), last_tiles[0].eq(layer.tiles - 1)]
            last_beats[1], last_tiles[1] = last_beats[0], last_tiles[0]

        # Writer: fill bank `write_bank`, beat by beat.
        write_bank = Signal()
        write_beat = Signal(beat_bits)
        write_full = Signal()
        starting = Signal()
        write_beats = Signal.like(self.context.payload.layer.beats)
        accept = Signal()
        m.d.comb += [
            write_full.eq(Mux(write_bank, full[1], full[0])),
            starting.eq(write_beat == 0),
            self.i.ready.eq(~write_full & (~starting | self.context.valid)),
            self.context.ready.eq(self.i.valid & ~write_full & starting),
            write_beats.eq(Mux(starting, self.context.payload.layer.beats,
                               Mux(write_bank, tags[1].layer.beats, tags[0].layer.beats))),
            write.addr.eq(Cat(write_beat, write_bank)),
            write.data.eq(self.i.payload),
            accept.eq(self.i.valid & self.i.ready),
            write.en.eq(accept),
        ]
        if banked:
            with m.If(accept & starting):
                for b in (0, 1):
                    with m.If(write_bank == b):
                        m.d.sync += [tags[b].eq(self.context.payload),
                                     last_beats[b].eq(layer.beats - 1),
                                     last_tiles[b].eq(layer.tiles - 1)]
        pixel_written = Signal()
        with m.If(accept):
            with m.If(write_beat == write_beats - 1):
                m.d.comb += pixel_written.eq(1)
                m.d.sync += [write_beat.eq(0), write_bank.eq(~write_bank)]
            with m.Else():
                m.d.sync += write_beat.eq(write_beat + 1)

        # Reader: replay bank `read_bank` once per column tile, with that pixel's context.
        read_bank = Signal()
        tag = Signal(pixel_context(cfg))
        m.d.comb += tag.eq(Mux(read_bank, tags[1], tags[0]))
        last_beat = Mux(read_bank, last_beats[1], last_beats[0])
        last_tile = Mux(read_bank, last_tiles[1], last_tiles[0])
        read_beat = Signal(beat_bits)
        read_tile = Signal(range(cfg.max_tiles))
        weight_addr = Signal(range(cfg.weight_depth))
        is_last = Signal()
        issue = Signal()
        pixel_done = Signal()
        # A beat can be read once written: from a full bank, or during the first tile straight
        # behind the writer (so a pixel starts before it has fully arrived).
        available = Signal()
        m.d.comb += available.eq(Mux(read_bank, full[1], full[0])
                                 | ((read_bank == write_bank) & (read_tile == 0)
                                    & (read_beat < write_beat)))
        # A pixel whose output settings differ from those in flight waits for the output
        # stage to drain, then switches them (only at layer changes: passes of one layer agree).
        hold = Signal()
        if banked:
            mask = output_settings_mask(cfg)
            settings = Signal(runtime_config(cfg))
            m.d.comb += self.settings.eq(settings)
            other_settings = Signal()
            m.d.comb += other_settings.eq(
                (tag.layer.as_value() & mask) != (settings.as_value() & mask))
            pixel_start = Signal()
            m.d.comb += pixel_start.eq((read_beat == 0) & (read_tile == 0))
            m.d.comb += hold.eq(pixel_start & other_settings & ~self.drained)
            with m.If(available & pixel_start & self.drained):
                m.d.sync += settings.eq(tag.layer)
        else:
            m.d.comb += self.settings.eq(self.context.payload.layer)
        # The requantizer's pace: (pixel, tile)s complete at most once per `tile_interval`.
        paced = 1
        if cfg.tile_interval > 1:
            paced = Signal()
            cooldown = Signal(range(cfg.tile_interval))
            m.d.comb += paced.eq(cooldown == 0)
            with m.If(self.issue_last):
                m.d.sync += cooldown.eq(cfg.tile_interval - 1)
            with m.Elif(~paced):
                m.d.sync += cooldown.eq(cooldown - 1)
        m.d.comb += [
            is_last.eq(read_beat == last_beat),
            issue.eq(available & ~hold & (~is_last | (self.credit & paced))),
            self.issue_last.eq(issue & is_last),
            read.addr.eq(Cat(read_beat, read_bank)),
            self.pass_issued.eq(pixel_done & tag.last),
            self.pass_bank.eq(tag.bank),
        ]
        with m.If(issue):
            with m.If(is_last):
                with m.If(read_tile == last_tile):
                    m.d.comb += pixel_done.eq(1)
                    m.d.sync += [read_tile.eq(0), weight_addr.eq(0), read_bank.eq(~read_bank)]
                with m.Else():
                    m.d.sync += [read_tile.eq(read_tile + 1), weight_addr.eq(weight_addr + 1)]
                m.d.sync += read_beat.eq(0)
            with m.Else():
                m.d.sync += [read_beat.eq(read_beat + 1), weight_addr.eq(weight_addr + 1)]

        # Bank flags: the writer fills a free bank, the reader frees a full one; never the same.
        for bank in (0, 1):
            with m.If(pixel_written & (write_bank == bank)):
                m.d.sync += full[bank].eq(1)
            with m.Elif(pixel_done & (read_bank == bank)):
                m.d.sync += full[bank].eq(0)

        # Output register, aligned with the buffer's synchronous read.
        m.d.sync += [
            self.beat_valid.eq(issue),
            self.beat.addr.eq(bank_address(weight_addr, tag.bank, cfg.weight_depth)),
            self.beat.tile.eq(bank_address(read_tile, tag.bank, cfg.max_tiles)),
            self.beat.first.eq(read_beat == 0),
            self.beat.last.eq(is_last),
        ]
        m.d.comb += [
            self.beat.x.eq(read.data),
            self.empty.eq(~full[0] & ~full[1] & (write_beat == 0) & ~self.beat_valid),
        ]
        return m

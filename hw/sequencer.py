"""Input sequencer: buffers each pixel's beats and replays them once per column tile."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .params import check_config
from .array import beat_layout
from .layouts import pixel_beat, runtime_config

__all__ = ["PixelSequencer"]


class PixelSequencer(wiring.Component):
    """Turns a stream of pixel beats into the array's beat schedule, folding C and F in time.

    A pixel arrives as ``config.beats`` consecutive transfers on ``i``. It is written to one bank
    of a double-buffered pixel buffer; once complete, the pixel is replayed ``config.tiles``
    times, one beat per cycle (column tile ``j``, beat ``k``, weight address ``j*beats + k``),
    while the next pixel fills the other bank. The first tile's replay may start before the pixel
    is complete, following the writer. In steady state one beat leaves every cycle, so the
    array's MACs are never idle for lack of input.

    Members
    -------
    i : In(stream.Signature(pixel_beat))
        Pixel beats. ``ready`` is high while the bank being filled is free.
    beat : Out(beat_layout), beat_valid : Out(1)
        The beat schedule for the array, registered; no handshake.
    config : In(runtime_config)
        ``beats`` and ``tiles``, held stable while not ``empty``.
    credit : In(1)
        Room for one more result downstream: a beat that completes a (pixel, tile) is issued only
        while ``credit`` is high, and no sooner than ``cfg.tile_interval`` cycles after the
        previous such beat (the pace of a serial requantizer); other beats are issued
        regardless.
    issue_last : Out(1)
        A beat completing a (pixel, tile) is issued this cycle (consumes a credit).
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
            "i":          In(stream.Signature(pixel_beat(cfg))),
            "beat":       Out(beat_layout(cfg)),
            "beat_valid": Out(1),
            "config":     In(runtime_config(cfg)),
            "credit":     In(1),
            "issue_last": Out(1),
            "empty":      Out(1),
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
        beats, tiles = self.config.beats, self.config.tiles

        # Writer: fill bank `write_bank`, beat by beat.
        write_bank = Signal()
        write_beat = Signal(beat_bits)
        write_full = Signal()
        m.d.comb += [
            write_full.eq(Mux(write_bank, full[1], full[0])),
            self.i.ready.eq(~write_full),
            write.addr.eq(Cat(write_beat, write_bank)),
            write.data.eq(self.i.payload),
            write.en.eq(self.i.valid & self.i.ready),
        ]
        pixel_written = Signal()
        with m.If(self.i.valid & self.i.ready):
            with m.If(write_beat == beats - 1):
                m.d.comb += pixel_written.eq(1)
                m.d.sync += [write_beat.eq(0), write_bank.eq(~write_bank)]
            with m.Else():
                m.d.sync += write_beat.eq(write_beat + 1)

        # Reader: replay bank `read_bank` once per column tile.
        read_bank = Signal()
        read_beat = Signal(beat_bits)
        read_tile = Signal.like(self.beat.tile)
        weight_addr = Signal.like(self.beat.addr)
        is_last = Signal()
        issue = Signal()
        pixel_done = Signal()
        # A beat can be read once written: from a full bank, or during the first tile straight
        # behind the writer (so a pixel starts before it has fully arrived).
        available = Signal()
        m.d.comb += available.eq(Mux(read_bank, full[1], full[0])
                                 | ((read_bank == write_bank) & (read_tile == 0)
                                    & (read_beat < write_beat)))
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
            is_last.eq(read_beat == beats - 1),
            issue.eq(available & (~is_last | (self.credit & paced))),
            self.issue_last.eq(issue & is_last),
            read.addr.eq(Cat(read_beat, read_bank)),
        ]
        with m.If(issue):
            with m.If(is_last):
                with m.If(read_tile == tiles - 1):
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
            self.beat.addr.eq(weight_addr),
            self.beat.tile.eq(read_tile),
            self.beat.first.eq(read_beat == 0),
            self.beat.last.eq(is_last),
        ]
        m.d.comb += [
            self.beat.x.eq(read.data),
            self.empty.eq(~full[0] & ~full[1] & (write_beat == 0) & ~self.beat_valid),
        ]
        return m

"""The pass queue: which weight/parameter bank is loaded, committed, computed from, or free."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .params import check_config, rejected
from .layouts import pass_word, runtime_config
from .sequencer import pixel_context

__all__ = ["PassQueue"]


class PassQueue(wiring.Component):
    """Double-buffering control of the weight and parameter memories (``weight_banks == 2``).

    Each bank is free, loading, committed (waiting for its pixels), running, or draining. The
    host loads a pass into the *load bank* (weights and params while ``load_ready``), then
    commits it with the number of pixel beats that belong to it; the layer settings on
    ``layer`` are latched with the commit, and the load bank moves to the other bank, which
    may be loaded as soon as it is free, i.e. while the array computes the committed pass.
    Pixels then take their pass's settings from ``context``, one context per pixel, in commit
    order. A bank becomes free ``drain`` cycles after its pass's last beat entered the array
    (``pass_issued``), when no beat or result that reads it is left inside.

    Parameters
    ----------
    cfg : ArrayConfig
        With ``weight_banks == 2``.
    drain : int
        Cycles from a pass's last beat issued to the last read of its weights and parameters.

    Members
    -------
    layer : In(runtime_config)
        Settings of the pass being loaded; latched by its commit.
    commit : In(stream.Signature(pass_word))
        Commit the load bank: ``beats`` pixel beats on ``i`` belong to it (a whole number of its
        pixels). Send it after the pass's last weight and parameter word was accepted.
    load_ready : Out(1), load_bank : Out(1)
        The load bank (``load_bank``) is free: weights, parameters and the commit may go in.
    context : Out(stream.Signature(pixel_context))
        The context of the next pixel (layer settings, bank, last of its pass), one transfer per
        pixel; valid while a committed pass has pixels left.
    pass_issued : In(1), pass_bank : In(1)
        The last beat of the pass in bank ``pass_bank`` entered the array this cycle.
    busy : Out(1)
        Some bank is committed, running or draining.
    """

    def __init__(self, cfg: ArrayConfig, *, drain):
        check_config(self, cfg)
        if cfg.weight_banks != 2:
            raise rejected(self, ValueError(
                f"PassQueue needs weight_banks=2, not {cfg.weight_banks!r}"))
        self._cfg = cfg
        self._drain = drain
        super().__init__({
            "layer":       In(runtime_config(cfg)),
            "commit":      In(stream.Signature(pass_word(cfg))),
            "load_ready":  Out(1),
            "load_bank":   Out(1),
            "context":     Out(stream.Signature(pixel_context(cfg))),
            "pass_issued": In(1),
            "pass_bank":   In(1),
            "busy":        Out(1),
        })

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()
        entry = data.StructLayout({"layer": runtime_config(cfg), "beats": 32})
        passes = [Signal(entry, name=f"bank{b}_pass") for b in (0, 1)]
        # committed: the pass's pixels have not all been handed out; in_use: not yet free.
        committed = [Signal(name=f"bank{b}_committed") for b in (0, 1)]
        in_use = [Signal(name=f"bank{b}_in_use") for b in (0, 1)]
        drains = [Signal(range(self._drain + 1), name=f"bank{b}_drain") for b in (0, 1)]

        load_bank = Signal()
        m.d.comb += [
            self.load_bank.eq(load_bank),
            self.load_ready.eq(~Mux(load_bank, in_use[1], in_use[0])),
            self.commit.ready.eq(self.load_ready),
        ]
        with m.If(self.commit.valid & self.commit.ready):
            m.d.sync += load_bank.eq(~load_bank)
            for b in (0, 1):
                with m.If(load_bank == b):
                    m.d.sync += [
                        passes[b].layer.eq(self.layer),
                        passes[b].beats.eq(self.commit.payload.beats),
                        committed[b].eq(1),
                        in_use[b].eq(1),
                    ]

        # Pixels, in commit order: `run_bank` is the pass whose pixels come next.
        run_bank = Signal()
        handed = Signal(32)     # pixel beats of the pass handed out so far
        current = Signal(entry)
        remaining = Signal(33)
        m.d.comb += [
            current.eq(Mux(run_bank, passes[1], passes[0])),
            remaining.eq(current.beats - handed),
            self.context.valid.eq(Mux(run_bank, committed[1], committed[0])
                                  & (current.beats != 0)),
            self.context.payload.layer.eq(current.layer),
            self.context.payload.bank.eq(run_bank),
            self.context.payload.last.eq(remaining <= current.layer.beats),
        ]
        finished = Signal()
        with m.If(self.context.valid & self.context.ready):
            with m.If(self.context.payload.last):
                m.d.comb += finished.eq(1)
            with m.Else():
                m.d.sync += handed.eq(handed + current.layer.beats)
        empty_pass = Signal()
        m.d.comb += empty_pass.eq(Mux(run_bank, committed[1], committed[0])
                                  & (current.beats == 0))
        with m.If(finished | empty_pass):
            m.d.sync += [run_bank.eq(~run_bank), handed.eq(0)]
            for b in (0, 1):
                with m.If(run_bank == b):
                    m.d.sync += committed[b].eq(0)

        # Draining: a bank is free `drain` cycles after its last beat was issued (at once for
        # a pass without pixels).
        for b in (0, 1):
            with m.If(self.pass_issued & (self.pass_bank == b)):
                m.d.sync += drains[b].eq(self._drain)
            with m.Elif(drains[b] != 0):
                m.d.sync += drains[b].eq(drains[b] - 1)
                with m.If(drains[b] == 1):
                    m.d.sync += in_use[b].eq(0)
            with m.If(empty_pass & (run_bank == b)):
                m.d.sync += in_use[b].eq(0)
        m.d.comb += self.busy.eq(in_use[0] | in_use[1])
        return m

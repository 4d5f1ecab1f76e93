"""Round-robin arbiter: several NativePortSignature masters share one memory port."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..params import rejected
from .port import NativePortSignature

__all__ = ["PortArbiter"]


class PortArbiter(wiring.Component):
    """Share one memory port among ``masters`` ports, command by command, round robin.

    Each cycle the arbiter offers the port one master's command: while a command waits for
    ``bus.cmd.ready`` the grant holds (payload unchanged, as the stream contract requires); once
    it is taken the next grant goes to the first master with a command after the one just served
    (round robin), so a master alone gets every cycle and ``n`` busy masters get one command in
    ``n`` each. The master index of every accepted write command enters a write tag FIFO and of
    every read a read tag FIFO: write data beats are taken from the masters in command order
    (a master's ``wdata`` is taken after its command has been accepted, which the port allows),
    and read words are handed back to the master that asked, in order. Nothing is dropped,
    duplicated or reordered; each master's own commands keep their order.

    Parameters
    ----------
    port : NativePortSignature
        The shared port's signature (every master has the same).
    masters : int
        Number of master ports, >= 1.
    read_tags : int
        Reads in flight through the arbiter (accepted, word not yet handed back); no read is
        granted while that many are. Keep it above the memory's read round trip for full
        throughput.
    write_tags : int
        Write commands accepted whose data beat has not passed yet.

    Members
    -------
    masters : In(port).array(masters)
        The masters' ports (each a DMA engine's ``bus``). ``cmd.ready`` of master ``i`` is
        ``bus.cmd.ready`` while ``i`` holds the grant (combinational). ``rdata`` of the master
        owning the oldest read follows ``bus.rdata`` (combinational both ways: a master that can
        always take its reads keeps ``bus.rdata.ready`` high).
    bus : Out(port)
        The shared port.

    Latency: none on commands (combinational grant) and read data; write data passes one cycle
    after its command is accepted at the earliest. Throughput one command per cycle.

    Modelled on LiteDRAM's crossbar (litedram/core/crossbar.py: round-robin per bank, read data
    routed back with the master's id) and LiteX's ``stream.Arbiter`` (litex/soc/interconnect/
    stream.py), simplified to one in-order port.
    """

    def __init__(self, port, *, masters, read_tags=16, write_tags=8):
        if not isinstance(port, NativePortSignature):
            raise rejected(self, TypeError(f"Port must be a NativePortSignature, not {port!r}"))
        if not isinstance(masters, int) or masters < 1:
            raise rejected(self, TypeError(
                f"Master count must be a positive integer, not {masters!r}"))
        for name, value in (("Read tag depth", read_tags), ("Write tag depth", write_tags)):
            if not isinstance(value, int) or value < 1:
                raise rejected(self, TypeError(f"{name} must be a positive integer, not {value!r}"))
        self._port = port
        self._n = masters
        self._read_tags = read_tags
        self._write_tags = write_tags
        super().__init__({"masters": In(port).array(masters), "bus": Out(port)})

    @property
    def count(self):
        return self._n

    def elaborate(self, platform):
        m = Module()
        n = self._n
        bits = max(1, (n - 1).bit_length())
        m.submodules.rtags = rtags = SyncFIFO(width=bits, depth=self._read_tags)
        m.submodules.wtags = wtags = SyncFIFO(width=bits, depth=self._write_tags)

        # --- grant -----------------------------------------------------------------------
        after = Signal(range(n))        # the master after the last served: first in line
        held = Signal()                 # a command offered and not taken last cycle
        held_idx = Signal(range(n))
        pick = Signal(range(n))
        with m.Switch(after):
            for start in range(n):
                with m.Case(start):
                    order = [(start + k) % n for k in range(n)]
                    for k in reversed(order):     # the last assignment wins: first in order
                        with m.If(self.masters[k].cmd.valid):
                            m.d.comb += pick.eq(k)
        grant = Signal(range(n))
        m.d.comb += grant.eq(Mux(held, held_idx, pick))

        cmd = self.bus.cmd
        blocked = Signal()
        with m.Switch(grant):
            for k in range(n):
                with m.Case(k):
                    mc = self.masters[k].cmd
                    # A read needs a read tag, a write a write tag.
                    m.d.comb += blocked.eq(Mux(mc.payload.we, ~wtags.w_rdy, ~rtags.w_rdy))
                    m.d.comb += [
                        cmd.valid.eq(mc.valid & ~blocked),
                        cmd.payload.eq(mc.payload),
                        mc.ready.eq(cmd.ready & ~blocked),
                    ]
        fire = cmd.valid & cmd.ready
        m.d.sync += [held.eq(cmd.valid & ~cmd.ready), held_idx.eq(grant)]
        with m.If(fire):
            m.d.sync += after.eq(Mux(grant == n - 1, 0, grant + 1))
        m.d.comb += [
            rtags.w_data.eq(grant), rtags.w_en.eq(fire & ~cmd.payload.we),
            wtags.w_data.eq(grant), wtags.w_en.eq(fire & cmd.payload.we),
        ]

        # --- write data, in command order ------------------------------------------------
        wd = self.bus.wdata
        with m.If(wtags.r_rdy):
            with m.Switch(wtags.r_data):
                for k in range(n):
                    with m.Case(k):
                        mw = self.masters[k].wdata
                        m.d.comb += [wd.valid.eq(mw.valid), wd.payload.eq(mw.payload),
                                     mw.ready.eq(wd.ready)]
        m.d.comb += wtags.r_en.eq(wd.valid & wd.ready)

        # --- read data, back to its master -----------------------------------------------
        rd = self.bus.rdata
        with m.If(rtags.r_rdy):
            with m.Switch(rtags.r_data):
                for k in range(n):
                    with m.Case(k):
                        mr = self.masters[k].rdata
                        m.d.comb += [mr.valid.eq(rd.valid), rd.ready.eq(mr.ready)]
        for k in range(n):
            m.d.comb += self.masters[k].rdata.payload.eq(rd.payload)
        m.d.comb += rtags.r_en.eq(rd.valid & rd.ready)
        return m


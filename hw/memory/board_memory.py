"""BoardMemory: the SDRAM controller in a clock domain of its own, its port carried to ``sync``.

Composes :class:`.sdram.SDRAMController` (renamed into ``memory_domain``) and
:class:`.port_cdc.NativePortCDC`, and holds the ``sync`` side's commands until the controller
reports its init sequence done (LiteDRAM ignores its user port while the init sequencer owns the
SDRAM, so a command taken earlier would be lost).
"""

from amaranth.hdl import DomainRenamer, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ..stream_register import StreamRegister
from .port import NativePortSignature
from .port_cdc import NativePortCDC
from .sdram import SDRAMController, SDRAMPinsSignature

__all__ = ["BoardMemory"]


class BoardMemory(wiring.Component):
    """The board's SDRAM as one ``sync``-domain native port, the controller in its own domain.

    Why two domains: LiteDRAM alone placed and routed at 89.8-106.1 MHz on the LFE5U-85F-6
    (``make sdram-fmax``, eight seeds, six under 100 MHz; :class:`.sdram.SDRAMController`),
    so in the full design beside the 100 MHz array it runs slower, in ``memory_domain`` (the
    ULX3S: 50 MHz, :data:`pwconv.synth.boards.ULX3S`), generated for that clock.

    Parameters
    ----------
    controller : SDRAMController
        The controller, built for ``memory_domain``'s clock (its core's ``sys_clk_freq``); it is
        renamed from ``sync`` into ``memory_domain`` here.
    memory_domain : str
        The controller's clock domain (defined by the caller; not ``sync``).
    depth : int
        Depth of each of the :class:`.port_cdc.NativePortCDC`'s FIFOs.

    Members
    -------
    user : In(NativePortSignature(controller.core.addr_width, 16)), ``sync`` domain
        The memory port. Commands are held (``cmd.ready`` low) until ``init_done``.
        Timing: a beat per cycle of the slower domain on each stream; a read takes about 10
        cycles more than on the controller (the CDC's synchronizers and a register slice on
        each stream, so every ready, valid and payload at this port is a flip-flop).
    pins : Out(SDRAMPinsSignature()), only for a controller with ``target="sim"``
        The SDRAM pins (``memory_domain``).
    init_done, init_error : Out(1), ``sync`` domain
        The controller's, through 2-flop synchronizers.

    Raises
    ------
    TypeError, ValueError
        For a controller that is not an :class:`SDRAMController`, a bad domain or depth.
    """

    def __init__(self, controller, *, memory_domain="sdram", depth=8):
        self._MustUse__silence = True
        if not isinstance(controller, SDRAMController):
            raise TypeError(f"Controller must be an SDRAMController, not {controller!r}")
        if not isinstance(memory_domain, str) or not memory_domain or memory_domain == "sync":
            raise ValueError(f"Memory domain must be a domain name other than 'sync', "
                             f"not {memory_domain!r}")
        self._controller = controller
        self._domain = memory_domain
        self._cdc = NativePortCDC(addr_width=controller.core.addr_width, data_width=16,
                                  master_domain="sync", memory_domain=memory_domain,
                                  depth=depth)
        members = {
            "user": In(NativePortSignature(addr_width=controller.core.addr_width,
                                           data_width=16)),
            "init_done": Out(1), "init_error": Out(1),
        }
        if controller.target == "sim":
            members["pins"] = Out(SDRAMPinsSignature())
        super().__init__(members)
        self._MustUse__silence = False

    @property
    def controller(self):
        return self._controller

    def elaborate(self, platform):
        m = Module()
        ctrl = self._controller
        m.submodules.ctrl = DomainRenamer(self._domain)(ctrl)
        m.submodules.cdc = cdc = self._cdc
        m.submodules.done_sync = FFSynchronizer(ctrl.init_done, self.init_done)
        m.submodules.error_sync = FFSynchronizer(ctrl.init_error, self.init_error)

        # A register slice on each stream at the sync side (StreamRegister, a skid buffer): the
        # first ULX3S build with the SDRAM missed 100 MHz (91.8 MHz) on the path from the CDC's
        # command FIFO (its w_rdy, a Gray-pointer compare) through cmd.ready into the link's
        # memory-command logic (10.9 ns, 17 steps). One cycle more each way; a beat per cycle.
        regs = {}
        for name in ("cmd", "wdata", "rdata"):
            regs[name] = m.submodules[f"{name}_reg"] = StreamRegister(
                getattr(self.user, name).payload.shape())
        wiring.connect(m, wiring.flipped(self.user.cmd), regs["cmd"].i)
        wiring.connect(m, wiring.flipped(self.user.wdata), regs["wdata"].i)
        wiring.connect(m, regs["rdata"].o, wiring.flipped(self.user.rdata))
        # Commands pass only once the SDRAM is up; write data and read data pass freely (no
        # read returns before its command, and write data waits in the CDC's FIFO).
        ready = Signal()
        m.d.comb += [
            ready.eq(self.init_done),
            cdc.master.cmd.payload.eq(regs["cmd"].o.payload),
            cdc.master.cmd.valid.eq(regs["cmd"].o.valid & ready),
            regs["cmd"].o.ready.eq(cdc.master.cmd.ready & ready),
        ]
        wiring.connect(m, regs["wdata"].o, cdc.master.wdata)
        wiring.connect(m, cdc.master.rdata, regs["rdata"].i)
        wiring.connect(m, cdc.memory, ctrl.user)
        if ctrl.target == "sim":
            wiring.connect(m, ctrl.pins, wiring.flipped(self.pins))
        return m

"""NativePortCDC: a NativePortSignature port carried from one clock domain to another.

For a memory controller that cannot run at its master's clock: LiteDRAM's 1:1 SDR controller
alone on the ULX3S's LFE5U-85F-6 placed and routed at 89.8-106.1 MHz (two netlists, nextpnr
seeds 1-4 each: six of eight placements short of 100 MHz; ``make sdram-fmax``), so beside the
array it may need a domain of its own, slower than the array's 100 MHz.
"""

from amaranth.hdl import Module, Value
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from .port import NativePortSignature

__all__ = ["NativePortCDC"]


class NativePortCDC(wiring.Component):
    """Carries a native memory port across clock domains with three ``AsyncFIFO`` s.

    ``cmd`` and ``wdata`` go from ``master_domain`` to ``memory_domain``, ``rdata`` back; each
    stream keeps full backpressure (a full FIFO holds its ``ready`` low). The order of
    commands, write words and read words is kept, so the port's contract holds on both sides.

    Timing: a beat crosses in the ``AsyncFIFO``'s synchronizer latency (about 3 cycles of the
    receiving domain, plus one of the sending domain); each stream moves a beat per cycle of
    the slower domain. A read therefore takes about 8 cycles longer than on the memory itself.

    Parameters
    ----------
    addr_width, data_width : int
        Of the :class:`.port.NativePortSignature` carried.
    master_domain, memory_domain : str
        The two clock domains (different names).
    depth : int
        Depth of each FIFO (at least 4; ``AsyncFIFO`` rounds it to a power of two).

    Members
    -------
    master : In(NativePortSignature(addr_width, data_width)), in ``master_domain``
        The port the master (DMA engine, arbiter) drives.
    memory : Out(NativePortSignature(addr_width, data_width)), in ``memory_domain``
        The port to the memory (``SDRAMController.user``).

    Raises
    ------
    TypeError, ValueError
        For widths :class:`.port.NativePortSignature` refuses, equal or non-string domain
        names, or a depth below 4.
    """

    def __init__(self, *, addr_width, data_width, master_domain="sync", memory_domain="sdram",
                 depth=8):
        self._MustUse__silence = True       # not an error if a parameter check fails below
        signature = NativePortSignature(addr_width=addr_width, data_width=data_width)
        for name, domain in (("Master", master_domain), ("Memory", memory_domain)):
            if not isinstance(domain, str) or not domain:
                raise TypeError(f"{name} domain must be a non-empty string, not {domain!r}")
        if master_domain == memory_domain:
            raise ValueError(f"Master and memory domains must differ, not both "
                             f"{master_domain!r}")
        if not isinstance(depth, int) or depth < 4:
            raise ValueError(f"FIFO depth must be an integer of at least 4, not {depth!r}")
        self._domains = (master_domain, memory_domain)
        self._depth = depth
        super().__init__({"master": In(signature), "memory": Out(signature)})
        self._MustUse__silence = False

    @property
    def master_domain(self):
        return self._domains[0]

    @property
    def memory_domain(self):
        return self._domains[1]

    def elaborate(self, platform):
        m = Module()
        master, memory = self._domains
        for name, src, dst in (("cmd", self.master.cmd, self.memory.cmd),
                               ("wdata", self.master.wdata, self.memory.wdata),
                               ("rdata", self.memory.rdata, self.master.rdata)):
            forward = name != "rdata"
            payload = Value.cast(src.payload)
            cdc = fifo.AsyncFIFO(width=len(payload), depth=self._depth,
                                 w_domain=master if forward else memory,
                                 r_domain=memory if forward else master)
            m.submodules[name] = cdc
            m.d.comb += [
                cdc.w_data.eq(payload), cdc.w_en.eq(src.valid),
                src.ready.eq(cdc.w_rdy),
                dst.payload.eq(cdc.r_data), dst.valid.eq(cdc.r_rdy), cdc.r_en.eq(dst.ready),
            ]
        return m

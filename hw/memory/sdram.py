"""SDRAMController: LiteDRAM's SDR core behind one NativePortSignature port, brought up in gateware.

The one place (with :mod:`.litedram_core`, which generates it) that names LiteDRAM's signals.
"""

import re

from amaranth.hdl import ClockSignal, Instance, Module, Mux, ResetSignal, Signal
from amaranth.lib import fifo, io, wiring
from amaranth.lib.wiring import In, Out

from .litedram_core import LiteDRAMCore, generate
from .port import NativePortSignature
from .sdram_init import SDRAMInitSequencer, init_program

__all__ = ["SDRAMController", "SDRAMPinsSignature", "TARGETS"]

#: ``sim``: split DQ pins for Verilator; ``board``: the ULX3S's ``sdram`` resource.
TARGETS = ("sim", "board")


class SDRAMPinsSignature(wiring.Signature):
    """The SDR SDRAM's pins with DQ split in two directions, as the controller drives them.

    Names follow the simulation model ``sdram_model`` (sim/sdram/): the controller's ``dq_o``
    and ``dq_oe`` go to the model's ``dq_i`` and ``dq_oe``, the model's ``dq_o`` (when its
    ``dq_o_en``) comes back as ``dq_i``. The SDRAM clock is not a member: it is the controller's
    clock inverted (see :class:`SDRAMController`).

    Members
    -------
    cke, cs_n, ras_n, cas_n, we_n : Out(1)
    ba : Out(2)
    a : Out(13)
    dqm : Out(2)
    dq_o : Out(16)
    dq_oe : Out(1)
    dq_i : In(16)
    """

    def __init__(self):
        super().__init__({
            "cke": Out(1), "cs_n": Out(1), "ras_n": Out(1), "cas_n": Out(1), "we_n": Out(1),
            "ba": Out(2), "a": Out(13), "dqm": Out(2),
            "dq_o": Out(16), "dq_oe": Out(1), "dq_i": In(16),
        })


class SDRAMController(wiring.Component):
    """The ULX3S's SDR SDRAM through LiteDRAM, with full-backpressure streams and its own bring-up.

    Wraps the core :func:`.litedram_core.generate` builds (LiteDRAM 2024.12, GENSDRPHY,
    ``litedram/core/crossbar.py`` and ``frontend`` native port) and an
    :class:`.sdram_init.SDRAMInitSequencer` that runs its init sequence after reset. Everything
    runs in the ``sync`` domain (100 MHz on the ULX3S, the array's clock). The SDRAM's clock pin
    is that clock inverted (a 180-degree shift, as LiteX's ULX3S target does with a shifted PLL
    output): commands leave the FPGA's output registers on a rising edge and the SDRAM samples
    them half a cycle later; read data it drives on its edge is captured by the input registers
    half a cycle after. On the board an ``ODDRX1F`` (``io.DDRBuffer``, 0 then 1) makes that
    clock in the I/O tile; in simulation the test top feeds the model ``~clk`` (sim/sdram_tb.v:
    with the model clocked in phase every read came back a word late). That 180-degree phase
    is the cycle-level model; the board's real margins (tAC, tOH, pad and trace delays) are
    not simulated and remain to be checked on hardware.

    Clock: placed and routed alone at 100 MHz on the LFE5U-85F-6 (``make sdram-fmax``), this
    component reached 89.8-106.1 MHz over eight placements, six short of 100 MHz (the paths
    are inside LiteDRAM's bank machines and command multiplexer). Beside the array it may need
    a slower domain of its own: ``DomainRenamer`` it, generate the core for that clock
    (:class:`.litedram_core.LiteDRAMConfig` ``sys_clk_freq``) and reach it through
    :class:`.port_cdc.NativePortCDC` (simulated at 50 MHz behind a 100 MHz port: 0.48 words
    per port cycle sequentially, 0.96 of the SDRAM's peak).

    LiteDRAM's native port has no backpressure on read data (``rdata.valid`` is a pulse,
    ``rdata.ready`` ignored) and takes write data when the bank machine issues the write,
    whether ``wdata.valid`` is set or not. This wrapper makes both proper streams: commands
    wait in a ``command_buffer``-deep queue, whose head goes to LiteDRAM only once a slot of
    the ``read_buffer``-word read FIFO is free for it (a read) or its data word waits in the
    ``write_buffer``-word write FIFO (a write). So write data may come before, with or after
    its command (up to ``command_buffer`` write commands ahead of their data).

    Parameters
    ----------
    core : LiteDRAMCore or None
        The generated core (default: :func:`.litedram_core.generate` of the default config).
    target : str
        ``"sim"`` (split DQ pins, :attr:`sim_sources`) or ``"board"`` (requests the platform's
        ``sdram`` resource and adds the core's Verilog to the platform).
    powerup_cycles : int or None
        Power-up wait of the init sequence (default 200 us; at least 100 us).
    read_buffer, write_buffer, command_buffer : int
        Depths of the read-data, write-data and command FIFOs (powers of two, at least 4).
    clock_domain : str or None
        ``target="board"`` only: the domain whose clock drives the SDRAM clock pin through an
        ``ODDRX1F`` (1 then 0), as LiteX's ULX3S target does with its ``sys_ps`` PLL output
        (the controller's clock shifted 180 degrees; litex-boards ``radiona_ulx3s.py``).
        None: the controller's own clock, inverted in the I/O tile (0 then 1).

    Members
    -------
    user : In(NativePortSignature(addr_width, 16))
        The memory port (``sync`` domain). Word ``addr`` = bank, row, column as LiteDRAM maps
        them (``ROW_BANK_COL``: column in the low 9 bits, then 2 bank bits, then the row).
        Commands are accepted only after ``init_done``. Measured on the MT48LC16M16A2 model at
        100 MHz (tests/test_memory_sdram.py, ``test_sim_throughput``): 2,048 sequential words
        (4 bank/row changes, refreshes included) in 0.962 words/cycle writing and 0.959
        reading; a lone read's word is taken 13 cycles after its command.
    pins : Out(SDRAMPinsSignature()), ``target="sim"`` only
        The SDRAM pins, DQ split.
    init_done : Out(1)
        High once the init sequence ran and the controller owns the SDRAM.
    init_error : Out(1)
        High if the init sequence failed (a control-port write was not acknowledged).

    Raises
    ------
    ValueError, TypeError
        For an unknown ``target``, a bad buffer depth or power-up wait, or a core whose user
        port is not 16 bits wide.
    """

    def __init__(self, core=None, *, target="sim", powerup_cycles=None, read_buffer=16,
                 write_buffer=16, command_buffer=4, clock_domain=None):
        self._MustUse__silence = True       # not an error if a parameter check fails below
        if target not in TARGETS:
            raise ValueError(f"Target must be one of {', '.join(TARGETS)}, not {target!r}")
        for name, depth in (("Read buffer", read_buffer), ("Write buffer", write_buffer),
                            ("Command buffer", command_buffer)):
            if not isinstance(depth, int) or depth < 4 or depth & (depth - 1):
                raise ValueError(f"{name} depth must be a power of two of at least 4, "
                                 f"not {depth!r}")
        core = generate() if core is None else core
        if not isinstance(core, LiteDRAMCore):
            raise TypeError(f"Core must be a LiteDRAMCore, not {core!r}")
        if core.data_width != 16:
            raise ValueError(f"User port must be 16 bits wide (no width conversion here), "
                             f"not {core.data_width}")
        _check_pins(core)
        if clock_domain is not None and (target != "board" or not isinstance(clock_domain, str)
                                         or not clock_domain):
            raise ValueError(f"Clock domain must be a domain name, and only for the board "
                             f"target, not {clock_domain!r}")
        self._clock_domain = clock_domain
        self._core = core
        self._target = target
        self._program = init_program(core, powerup_cycles=powerup_cycles)
        self._depths = (read_buffer, write_buffer, command_buffer)
        members = {
            "user": In(NativePortSignature(addr_width=core.addr_width, data_width=16)),
            "init_done": Out(1), "init_error": Out(1),
        }
        if target == "sim":
            members["pins"] = Out(SDRAMPinsSignature())
        super().__init__(members)
        self._MustUse__silence = False

    @property
    def core(self):
        return self._core

    @property
    def target(self):
        return self._target

    @property
    def init_cycles(self):
        """Cycles the init program's waits add up to (its writes add about 4 each)."""
        return sum(op.cycles for op in self._program)

    @property
    def sim_sources(self):
        """The Verilog files a simulator needs besides this component's own export."""
        return [self._core.sim_verilog, self._core.sim_cells]

    def elaborate(self, platform):
        m = Module()
        core = self._core
        read_depth, write_depth, _ = self._depths

        m.submodules.init = init = SDRAMInitSequencer(self._program, addr_width=30)
        m.submodules.rfifo = rfifo = fifo.SyncFIFO(width=16, depth=read_depth)
        m.submodules.wfifo = wfifo = fifo.SyncFIFO(width=18, depth=write_depth)

        # Write data: queued here; LiteDRAM pops a word when it issues a write.
        core_wdata_ready = Signal()
        m.d.comb += [
            wfifo.w_data.eq(self.user.wdata.payload.as_value()),
            wfifo.w_en.eq(self.user.wdata.valid),
            self.user.wdata.ready.eq(wfifo.w_rdy),
            wfifo.r_en.eq(core_wdata_ready),
        ]
        # Read data: LiteDRAM pushes without looking; a read is accepted only with room for it.
        core_rdata_valid = Signal()
        core_rdata = Signal(16)
        m.d.comb += [
            rfifo.w_data.eq(core_rdata),
            rfifo.w_en.eq(core_rdata_valid),
            self.user.rdata.payload.eq(rfifo.r_data),
            self.user.rdata.valid.eq(rfifo.r_rdy),
            rfifo.r_en.eq(self.user.rdata.ready),
        ]

        writes_waiting = Signal(range(write_depth + 1))     # accepted, data not yet taken
        reads_in_flight = Signal(range(read_depth + 1))     # accepted, data not yet back
        write_ok = Signal()
        read_ok = Signal()
        m.d.comb += [
            write_ok.eq(wfifo.level > writes_waiting),
            read_ok.eq(reads_in_flight + rfifo.level < read_depth),
        ]
        # Commands: queued here, so that a write may be accepted before its data; the queue's
        # head goes to LiteDRAM once its data waits (a write) or its word has room (a read).
        m.submodules.cfifo = cfifo = fifo.SyncFIFO(width=core.addr_width + 1,
                                                   depth=self._depths[2])
        head_addr = cfifo.r_data[:core.addr_width]
        head_we = cfifo.r_data[core.addr_width]
        m.d.comb += [
            cfifo.w_data.eq(self.user.cmd.payload.as_value()),
            cfifo.w_en.eq(self.user.cmd.valid),
            self.user.cmd.ready.eq(cfifo.w_rdy),
        ]
        core_cmd_valid = Signal()
        core_cmd_ready = Signal()
        allowed = Signal()
        m.d.comb += [
            allowed.eq(Mux(head_we, write_ok, read_ok)),
            core_cmd_valid.eq(cfifo.r_rdy & allowed),
            cfifo.r_en.eq(core_cmd_ready & allowed),
        ]
        taken = Signal()
        m.d.comb += taken.eq(core_cmd_valid & core_cmd_ready)
        m.d.sync += [
            writes_waiting.eq(writes_waiting + (taken & head_we) - core_wdata_ready),
            reads_in_flight.eq(reads_in_flight + (taken & ~head_we) - core_rdata_valid),
        ]

        core_init_done = Signal()
        core_init_error = Signal()
        m.d.comb += [
            self.init_done.eq(core_init_done & init.done),
            self.init_error.eq(core_init_error | init.error),
        ]
        ports = dict(
            i_clk=ClockSignal("sync"), i_rst=ResetSignal("sync", allow_reset_less=True),
            o_init_done=core_init_done, o_init_error=core_init_error,
            i_wb_ctrl_adr=init.bus.adr, i_wb_ctrl_dat_w=init.bus.dat_w,
            o_wb_ctrl_dat_r=init.bus.dat_r, i_wb_ctrl_sel=init.bus.sel,
            i_wb_ctrl_cyc=init.bus.cyc, i_wb_ctrl_stb=init.bus.stb, i_wb_ctrl_we=init.bus.we,
            o_wb_ctrl_ack=init.bus.ack, o_wb_ctrl_err=init.bus.err,
            i_wb_ctrl_cti=0, i_wb_ctrl_bte=0,
            i_user_port_native_0_cmd_valid=core_cmd_valid,
            o_user_port_native_0_cmd_ready=core_cmd_ready,
            i_user_port_native_0_cmd_we=head_we,
            i_user_port_native_0_cmd_addr=head_addr,
            i_user_port_native_0_wdata_valid=wfifo.r_rdy,
            o_user_port_native_0_wdata_ready=core_wdata_ready,
            i_user_port_native_0_wdata_data=wfifo.r_data[:16],
            i_user_port_native_0_wdata_we=wfifo.r_data[16:],
            o_user_port_native_0_rdata_valid=core_rdata_valid,
            i_user_port_native_0_rdata_ready=1,
            o_user_port_native_0_rdata_data=core_rdata,
        )
        if self._target == "sim":
            pins = self.pins
            ports.update(
                o_sdram_a=pins.a, o_sdram_ba=pins.ba, o_sdram_cas_n=pins.cas_n,
                o_sdram_cke=pins.cke, o_sdram_cs_n=pins.cs_n, o_sdram_dm=pins.dqm,
                o_sdram_ras_n=pins.ras_n, o_sdram_we_n=pins.we_n,
                o_sdram_dq_o=pins.dq_o, o_sdram_dq_oe=pins.dq_oe, i_sdram_dq_i=pins.dq_i)
        else:
            if platform is None:
                raise ValueError("SDRAMController(target='board') needs a platform with an "
                                 "'sdram' resource (amaranth-boards' ULX3S)")
            pins = platform.request("sdram", 0, dir="-")
            # PinsN pins (cs, we, ras, cas): the raw port carries the active-low level, which
            # is what LiteDRAM drives, so the inversion amaranth-boards records is not applied.
            ports.update(
                o_sdram_a=pins.a.io, o_sdram_ba=pins.ba.io, o_sdram_cas_n=pins.cas.io,
                o_sdram_cke=pins.clk_en.io, o_sdram_cs_n=pins.cs.io, o_sdram_dm=pins.dqm.io,
                o_sdram_ras_n=pins.ras.io, o_sdram_we_n=pins.we.io, io_sdram_dq=pins.dq.io)
            if self._clock_domain is None:
                m.submodules.sdram_clk = clk = io.DDRBuffer("o", pins.clk)
                m.d.comb += [clk.o[0].eq(0), clk.o[1].eq(1)]
            else:
                m.submodules.sdram_clk = clk = io.DDRBuffer("o", pins.clk,
                                                            o_domain=self._clock_domain)
                m.d.comb += [clk.o[0].eq(1), clk.o[1].eq(0)]
            platform.add_file(f"{core.name}.v", core.board_verilog.read_text())
        m.submodules.litedram = Instance(core.name, **ports)
        return m


def _check_pins(core):
    """Check that the generated core's SDRAM pins have the widths of SDRAMPinsSignature."""
    text = core.sim_verilog.read_text()
    for name, width in (("sdram_a", 13), ("sdram_ba", 2), ("sdram_dm", 2), ("sdram_dq_o", 16)):
        mt = re.search(rf"output\s+wire\s+\[(\d+):0\] {name},", text)
        if mt is None or int(mt[1]) + 1 != width:
            raise ValueError(f"generated core: pin {name} is not {width} bits wide")

"""The board-level top: the board's clock, its USB-serial pins and LED wired to BoardTop."""

from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer

from pwconv.hw.board import BoardTop
from .boards import Board

__all__ = ["BoardToplevel"]


class BoardToplevel(Elaboratable):
    """What a board's bitstream holds: :class:`~pwconv.hw.board.BoardTop` on the board's pins.

    ``uart_rx`` comes from ``platform.request("uart").rx`` through a 2-flop synchronizer,
    ``uart_tx`` and ``status_led`` drive ``uart.tx`` and ``led`` 0. The ``sync`` domain is the
    platform's default one (its oscillator with a power-on reset) when ``board.clk_freq`` equals
    ``board.osc_freq``; otherwise a PLL makes it (see :mod:`.clocks`).

    With ``board.sdram_clk_freq`` (the ULX3S) the board's SDRAM is BoardTop's memory: a
    :class:`~pwconv.hw.memory.board_memory.BoardMemory` (LiteDRAM generated for that clock, on
    the ``sdram`` resource, in the PLL's ``sdram`` domain; its clock pin from the 180-degree
    ``sdram_ps`` output) on BoardTop's ``mem`` port.

    Parameters
    ----------
    board : Board
        Board, clock and baud rate; ``board.config`` is the accelerator's configuration.
    work_dir : path-like
        Where the PLL calculator writes its file (a PLL build only; not under /tmp).
    pll_tool : str or None
        The PLL calculator command (``yowasp-ecppll``), for a PLL build only.
    """

    def __init__(self, board: Board, *, work_dir=".", pll_tool=None):
        self._board = board
        self._work_dir = work_dir
        self._pll_tool = pll_tool
        self.memory = None
        memory = None
        if board.sdram_clk_freq is not None:
            from pwconv.hw.memory.board_memory import BoardMemory
            from pwconv.hw.memory.litedram_core import LiteDRAMConfig, generate
            from pwconv.hw.memory.port import NativePortSignature
            from pwconv.hw.memory.sdram import SDRAMController
            core = generate(LiteDRAMConfig(sys_clk_freq=board.sdram_clk_freq))
            self.memory = BoardMemory(SDRAMController(core, target="board",
                                                      clock_domain="sdram_ps"))
            memory = NativePortSignature(addr_width=core.addr_width, data_width=16)
        self.core = BoardTop(board.config, clk_freq=board.clk_freq, baud=board.baud,
                             register_streams=board.register_streams, memory=memory)

    @property
    def board(self):
        return self._board

    def elaborate(self, platform):
        m = Module()
        if self.memory is not None and self._board.clk_freq == self._board.osc_freq:
            raise ValueError(f"{self._board.name}: the SDRAM's clocks come from the PLL; build "
                             f"at a clock other than the oscillator's")
        if self._board.clk_freq != self._board.osc_freq:
            from .clocks import pll_domain
            m.domains.sync = ClockDomain("sync")
            if self.memory is not None:
                m.domains.sdram = ClockDomain("sdram")
                m.domains.sdram_ps = ClockDomain("sdram_ps", reset_less=True)
            m.submodules.clocks = pll_domain(platform, self._board, work_dir=self._work_dir,
                                             tool=self._pll_tool)
        m.submodules.core = core = self.core
        if self.memory is not None:
            m.submodules.memory = self.memory
            wiring.connect(m, core.mem, self.memory.user)
        uart = platform.request("uart", 0, dir="-")
        m.submodules.rx_buf = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.tx_buf = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.led_buf = led_buf = io.Buffer("o", platform.request("led", 0, dir="-"))
        m.submodules.rx_sync = FFSynchronizer(rx_buf.i, core.uart_rx, init=1)
        m.d.comb += [
            tx_buf.o.eq(core.uart_tx),
            led_buf.o.eq(core.status_led),
        ]
        return m

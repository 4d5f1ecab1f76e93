"""board-sim with the SDRAM: BoardTop on LiteDRAM and the timing-checked chip model, in Verilator.

:func:`build_board_sdram` exports :class:`BoardWithSDRAM` (BoardTop's ``mem`` port on a
:class:`pwconv.hw.memory.board_memory.BoardMemory`: LiteDRAM's sim variant in the ``sdram``
domain, clocked by ``clk_mem``, behind NativePortCDC) as ``pwconv_board_core``, and Verilates it
with sim/board_sdram_tb.v (module ``pwconv_board``, board-sim's ports plus ``clk_mem``) and
sim/sdram/sdram_model.v with the part's timing parameters at the memory clock, checks fatal.
The build is cached under ``build/board-sim/sdram-<key>/`` (about two minutes the first time).
Run it with :class:`pwconv.sim.board_runner.BoardSimulation` ``(sdram=True)``; the model's
backdoor (``+sdram_load`` / ``+sdram_dump``, sim/sdram/sdram_model.v) through its
``plusargs``.
"""

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import cocotb
from amaranth.hdl import ClockDomain, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb_tools.runner import get_runner

from pwconv.hw.board import BoardTop
from pwconv.hw.memory.board_memory import BoardMemory
from pwconv.hw.memory.litedram_core import LiteDRAMConfig, generate
from pwconv.hw.memory.port import NativePortSignature
from pwconv.hw.memory.sdram import SDRAMController, SDRAMPinsSignature
from . import cache
from .runner import TIMESCALE, VERILATOR_ARGS, file_lock, repo_path, toolchain_env
from .sdram.parts import model_parameters

__all__ = ["ULX3S_CLK_FREQ", "ULX3S_SDRAM_CLK_FREQ", "SDRAM_PART", "CORE_NAME",
           "BoardWithSDRAM", "build_board_sdram"]

#: The ULX3S's clocks (pwconv.synth.boards.ULX3S): the array's and the SDRAM's.
ULX3S_CLK_FREQ = 100_000_000
ULX3S_SDRAM_CLK_FREQ = 50_000_000
#: The ULX3S's usual SDRAM chip (sim/sdram/parts.py).
SDRAM_PART = "MT48LC16M16A2-6A"
#: Name of the Amaranth export inside sim/board_sdram_tb.v.
CORE_NAME = "pwconv_board_core"
SIM_DIR = Path(__file__).resolve().parent
#: LiteDRAM's generated Verilog leaves widths and pins to Verilator's warnings.
EXTRA_ARGS = ("-Wno-WIDTH", "-Wno-PINMISSING", "-Wno-CASEINCOMPLETE")


class BoardWithSDRAM(wiring.Component):
    """BoardTop with its memory port on a BoardMemory (simulation pins), the ``sdram`` domain
    clocked by ``clk_mem`` and reset with ``sync``.

    Members
    -------
    uart_rx : In(1)
    uart_tx, status_led : Out(1)
        BoardTop's.
    clk_mem : In(1)
        The SDRAM controller's clock.
    init_done : Out(1)
        The controller's init sequence is done (``sync`` domain).
    pins : Out(SDRAMPinsSignature())
        To the chip model (``clk_mem`` domain; the chip is clocked by ``~clk_mem``).
    """

    def __init__(self, top: BoardTop, memory: BoardMemory):
        self._top, self._memory = top, memory
        super().__init__({
            "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1), "status_led": Out(1),
            "clk_mem": In(1), "init_done": Out(1), "pins": Out(SDRAMPinsSignature()),
        })

    def elaborate(self, platform):
        m = Module()
        m.domains.sdram = sdram = ClockDomain()
        m.d.comb += [sdram.clk.eq(self.clk_mem), sdram.rst.eq(ResetSignal("sync"))]
        m.submodules.top = top = self._top
        m.submodules.memory = memory = self._memory
        wiring.connect(m, top.mem, memory.user)
        wiring.connect(m, memory.pins, wiring.flipped(self.pins))
        m.d.comb += [
            top.uart_rx.eq(self.uart_rx),
            self.uart_tx.eq(top.uart_tx),
            self.status_led.eq(top.status_led),
            self.init_done.eq(memory.init_done),
        ]
        return m


def build_board_sdram(cfg, *, clk_freq, baud, max_payload, frame_timeout,
                      memory_clock_hz=ULX3S_SDRAM_CLK_FREQ, part=SDRAM_PART,
                      build_root="build/board-sim"):
    """Export and Verilate board-sim with the SDRAM unless an identical build exists.

    Returns ``(build_dir, meta)`` like :func:`pwconv.sim.board_runner.build_board`; ``meta``
    also holds ``memory_clock_hz``, ``memory_size`` (bytes), ``part`` and the model's
    ``params``.
    """
    params = model_parameters(part, memory_clock_hz)
    core = generate(LiteDRAMConfig(sys_clk_freq=memory_clock_hz))
    controller = SDRAMController(core, target="sim", powerup_cycles=params["T_INIT"])
    memory = BoardMemory(controller)
    top = BoardTop(cfg, clk_freq=clk_freq, baud=baud, max_payload=max_payload,
                   frame_timeout=frame_timeout,
                   memory=NativePortSignature(addr_width=core.addr_width, data_width=16))
    key_text = json.dumps({"config": dataclasses.asdict(cfg), "clk_freq": clk_freq,
                           "baud": baud, "max_payload": max_payload,
                           "frame_timeout": frame_timeout, "memory_clock_hz": memory_clock_hz,
                           "part": part, "core": core.config.key()}, sort_keys=True)
    root = repo_path(build_root) / f"sdram-{hashlib.sha256(key_text.encode()).hexdigest()[:12]}"
    build_dir = root / "obj"
    meta = {"config": dataclasses.asdict(cfg), "toplevel": "pwconv_board",
            "divisor": top.divisor, "timeout_cycles": top.timeout_cycles,
            "max_payload": top.max_payload, "memory_size": top.memory_size,
            "clk_freq": clk_freq, "baud": baud, "memory_clock_hz": memory_clock_hz,
            "part": part, "params": params, "init_cycles": controller.init_cycles}
    args = list(VERILATOR_ARGS) + list(EXTRA_ARGS)
    with file_lock(root / ".build.lock"):
        cache.mark_used(root)
        from amaranth.back import verilog
        os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
        text = verilog.convert(BoardWithSDRAM(top, memory), name=CORE_NAME, emit_src=False)
        export = root / f"{CORE_NAME}.v"
        if not export.is_file() or export.read_text() != text:
            export.write_text(text)
        sources = [export, *controller.sim_sources, SIM_DIR / "sdram" / "sdram_model.v",
                   SIM_DIR / "board_sdram_tb.v"]
        digest = hashlib.sha256()
        for source in sources:
            digest.update(Path(source).read_bytes())
        stamp_text = json.dumps({"sources": digest.hexdigest(), "params": params, "args": args,
                                 "timescale": TIMESCALE, "cocotb": cocotb.__version__},
                                sort_keys=True)
        stamp = build_dir / "pwconv.stamp"
        if (build_dir / "pwconv_board").is_file() and stamp.is_file() \
                and stamp.read_text() == stamp_text:
            return build_dir, meta
        stamp.unlink(missing_ok=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        log = build_dir / "build.log"
        with toolchain_env(False):
            try:
                get_runner("verilator").build(
                    sources=[str(s) for s in sources], hdl_toplevel="pwconv_board",
                    build_dir=build_dir, build_args=args, parameters=params, always=False,
                    timescale=TIMESCALE, log_file=log)
            except (RuntimeError, SystemExit) as error:
                raise RuntimeError(f"Verilator build of board-sim with the SDRAM failed "
                                   f"({error}); log: {log}") from None
        cache.drop_intermediates(build_dir)
        stamp.write_text(stamp_text)
    return build_dir, meta

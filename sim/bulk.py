"""Fast simulation: pwconv_top inside a Verilog feeder/collector (sim/bulk_tb.v), no Python per
cycle, under cocotb (Verilator or Icarus) or as a plain `verilator --binary` baseline."""

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from cocotb_tools.runner import get_runner

from pwconv.config import ArrayConfig
from pwconv.hw import layouts
from pwconv.hw.export import TOPLEVEL
from .runner import (TIMESCALE, VERILATOR_ARGS, _anchor, _export, _failures, _locked,
                     _toolchain_env, config_hash)

__all__ = ["run_bulk", "run_standalone", "MAX_WORDS"]

BENCH = Path(__file__).with_name("bulk_tb.v")
#: Most words of each kind (weights, params, pixel beats) one bulk run takes.
MAX_WORDS = 1 << 16


def _parameters(cfg: ArrayConfig):
    return {
        "PIX_W": layouts.pixel_beat(cfg).size, "RES_W": layouts.result_vector(cfg).size,
        "WGT_W": layouts.weight_word(cfg).size, "PRM_W": layouts.param_word(cfg).size,
        "LAYER_W": layouts.runtime_config(cfg).size, "MAX_WORDS": MAX_WORDS,
    }


def _build(cfg, simulator, toplevel, build_root):
    root = _anchor(build_root) / simulator / config_hash(cfg)
    verilog = _export(cfg, root)
    build_dir = root / f"obj_{toplevel}"
    stamp = build_dir / "pwconv.stamp"
    stamp_text = json.dumps({"v": verilog.stat().st_mtime_ns, "tb": BENCH.stat().st_mtime_ns,
                             "params": _parameters(cfg)}, sort_keys=True)
    with _locked(root / f".{build_dir.name}.lock"):
        if stamp.is_file() and stamp.read_text() == stamp_text:
            return build_dir
        build_dir.mkdir(parents=True, exist_ok=True)
        log = build_dir / "build.log"
        with _toolchain_env(False):
            if toplevel == "pwconv_bulk_main":
                args = ["verilator", "--binary", "--timing", "-O3", "-Wno-fatal", "--top-module",
                        toplevel, "-Mdir", str(build_dir), "-o", "bench",
                        "-j", "2", "--x-assign", "fast", "--x-initial", "fast",
                        "-CFLAGS", "-fcoroutines"]
                args += [f"-G{k}={v}" for k, v in _parameters(cfg).items()]
                args += [str(verilog), str(BENCH)]
                with open(log, "w") as f:
                    done = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT)
                if done.returncode:
                    raise RuntimeError(f"verilator --binary build failed; log: {log}")
            else:
                try:
                    get_runner(simulator).build(
                        sources=[verilog, BENCH], hdl_toplevel=toplevel, build_dir=build_dir,
                        build_args=list(VERILATOR_ARGS) if simulator == "verilator" else [],
                        parameters=_parameters(cfg), always=False, timescale=TIMESCALE,
                        log_file=log)
                except (RuntimeError, SystemExit) as error:
                    raise RuntimeError(f"{simulator} build failed ({error}); log: {log}") from None
        stamp.write_text(stamp_text)
    return build_dir


def _stimulus(run_dir, program, pixel_words, *, expected, seed, in_idle, out_stall, timeout):
    for name, words in (("weights", program.weight_words), ("params", program.param_words),
                        ("pixels", pixel_words)):
        if len(words) > MAX_WORDS:
            raise ValueError(f"{len(words)} {name} words exceed the bulk bench's {MAX_WORDS}; "
                             f"split the run")
        (run_dir / f"{name}.hex").write_text("".join(f"{w:x}\n" for w in words) or "0\n")
    return [
        f"+WEIGHTS={run_dir / 'weights.hex'}", f"+N_WEIGHTS={len(program.weight_words)}",
        f"+PARAMS={run_dir / 'params.hex'}", f"+N_PARAMS={len(program.param_words)}",
        f"+PIXELS={run_dir / 'pixels.hex'}", f"+N_PIXELS={len(pixel_words)}",
        f"+RESULTS={run_dir / 'results.hex'}", f"+EXPECTED={expected}",
        f"+LAYER={program.layer_word:x}", f"+IDLE={int(in_idle * 65536)}",
        f"+STALL={int(out_stall * 65536)}", f"+SEED={seed & 0x7fffffff}",
        f"+TIMEOUT={timeout}",
    ]


def _plan(program, pixel_words, timeout):
    pixel_words = [int(word) for word in pixel_words]
    if len(pixel_words) % program.beats:
        raise ValueError(f"{len(pixel_words)} pixel words is not a whole number of pixels of "
                         f"{program.beats} beats")
    expected = len(pixel_words) // program.beats * program.tiles
    if timeout is None:
        timeout = 50 * (len(pixel_words) * program.tiles + len(program.weight_words)) + 10000
    return pixel_words, expected, timeout


def _read_results(run_dir, expected):
    lines = (run_dir / "results.hex").read_text().split()
    if len(lines) != expected:
        raise RuntimeError(f"expected {expected} result vectors, got {len(lines)}")
    return [int(line, 16) for line in lines]


def run_bulk(cfg: ArrayConfig, program, pixel_words, *, simulator="verilator", seed=0,
             in_idle=0.0, out_stall=0.0, timeout=None, build_root="build/sim", stats=None):
    """Like :func:`pwconv.sim.runner.run_on_simulator`, with the feeder in Verilog.

    Returns ``(result_words, cycles)``; ``stats`` (a dict) receives ``cycles_per_s``.
    """
    pixel_words, expected, timeout = _plan(program, pixel_words, timeout)
    build_dir = _build(cfg, simulator, "pwconv_bulk", build_root)
    run_dir = Path(tempfile.mkdtemp(prefix="bulk-", dir=build_dir.parent))
    try:
        plusargs = _stimulus(run_dir, program, pixel_words, expected=expected, seed=seed,
                             in_idle=in_idle, out_stall=out_stall, timeout=timeout)
        result, xml, log = run_dir / "result.json", run_dir / "results.xml", run_dir / "sim.log"
        with _toolchain_env(False):
            try:
                get_runner(simulator).test(
                    test_module="pwconv.sim.bulk_cocotb", hdl_toplevel="pwconv_bulk",
                    hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                    results_xml=str(xml), seed=seed, plusargs=plusargs,
                    extra_env={"PWCONV_RESULT": str(result)}, timescale=TIMESCALE,
                    log_file=log)
            except (RuntimeError, SystemExit):
                pass
        outcome = _failures(xml)
        if outcome is None or outcome[1] or not result.is_file():
            why = "; ".join(outcome[2]) if outcome else "the simulator ended abnormally"
            keep = run_dir.with_name(run_dir.name + "-failed")
            shutil.move(run_dir, keep)
            raise RuntimeError(f"bulk run on {simulator} failed: {why}; log: {keep / 'sim.log'}")
        data = json.loads(result.read_text())
        words = _read_results(run_dir, expected)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if stats is not None:
        stats.update(cycles=data["cycles"], wall_s=data["wall_s"],
                     cycles_per_s=data["cycles"] / data["wall_s"] if data["wall_s"] else None)
    return words, data["cycles"]


def run_standalone(cfg: ArrayConfig, program, pixel_words, *, seed=0, in_idle=0.0,
                   out_stall=0.0, timeout=None, build_root="build/sim", stats=None):
    """The same run as a plain ``verilator --binary`` executable: no cocotb, no Python at all
    while simulating. The baseline that cocotb runs are compared against."""
    pixel_words, expected, timeout = _plan(program, pixel_words, timeout)
    build_dir = _build(cfg, "verilator", "pwconv_bulk_main", build_root)
    run_dir = Path(tempfile.mkdtemp(prefix="bin-", dir=build_dir.parent))
    try:
        plusargs = _stimulus(run_dir, program, pixel_words, expected=expected, seed=seed,
                             in_idle=in_idle, out_stall=out_stall, timeout=timeout)
        start = time.perf_counter()
        done = subprocess.run([str(build_dir / "bench"), *plusargs], capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("PWCONV_DONE")]
        if done.returncode or not line:
            raise RuntimeError(f"standalone bench failed: {done.stdout[-500:]}{done.stderr[-500:]}")
        fields = dict(kv.split("=") for kv in line[0].split()[1:])
        if int(fields["error"]):
            raise RuntimeError(f"standalone bench timed out after {fields['taken']} results")
        words = _read_results(run_dir, expected)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    cycles = int(fields["cycles"])
    if stats is not None:
        stats.update(cycles=cycles, wall_s=wall, cycles_per_s=cycles / wall)
    return words, cycles

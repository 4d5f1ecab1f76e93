"""Fast simulation: pwconv_top inside a Verilog feeder/collector (sim/bulk_tb.v), no Python per
cycle, under cocotb (Verilator or Icarus) or as a plain `verilator --binary` baseline. One
simulator run executes a whole list of passes."""

import contextlib
import json
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from cocotb_tools.runner import get_runner

from pwconv.config import ArrayConfig
from pwconv.hw import layouts
from . import cache
from .runner import (TIMESCALE, VERILATOR_ARGS, config_hash, export_once, file_lock,
                     read_failures, repo_path, toolchain_env)

__all__ = ["run_bulk", "run_passes", "prepare", "LIMITS"]

BENCH = Path(__file__).with_name("bulk_tb.v")
#: The bench's cocotb top level: it clocks itself, so cocotb only waits for `done`.
TOPLEVEL = "pwconv_bulk_clocked"
#: Verilator flags of the cocotb bulk build. cocotb marks every signal public
#: (--public-flat-rw), which stops Verilator optimizing; the bench needs only its ports public.
BUILD_FLAGS = (*VERILATOR_ARGS, "--public-depth", "1", "-O3", "--x-assign", "fast",
               "--x-initial", "fast", "--timing", "-CFLAGS", "-fcoroutines")
#: Capacity of one bulk run: words of each kind over all its passes, and passes. Large enough
#: for all of MobileNetV2's pointwise layers in one run at 8x8 (loads overlap across layers
#: only within a run).
LIMITS = {"pixels": 1 << 20, "weights": 1 << 19, "params": 1 << 14, "segments": 1 << 10}


def _parameters(cfg: ArrayConfig):
    return {
        "PIX_W": layouts.pixel_beat(cfg).size, "RES_W": layouts.result_vector(cfg).size,
        "WGT_W": layouts.weight_word(cfg).size, "PRM_W": layouts.param_word(cfg).size,
        "LAYER_W": layouts.runtime_config(cfg).size, "MAX_PIXELS": LIMITS["pixels"],
        "MAX_WEIGHTS": LIMITS["weights"], "MAX_PARAMS": LIMITS["params"],
        "MAX_SEGMENTS": LIMITS["segments"], "BANKS": cfg.weight_banks,
    }


def _defines(cfg: ArrayConfig):
    """Preprocessor defines of the bench: ``PWCONV_ONE_BANK`` for a single-bank top (no commit
    port; see sim/bulk_tb.v)."""
    return {"PWCONV_ONE_BANK": 1} if cfg.weight_banks == 1 else {}


def _artifact(simulator, toplevel, build_dir):
    """The file a finished build leaves: its absence means the build must be redone."""
    if toplevel == "pwconv_bulk_main":
        return build_dir / "bench"
    return build_dir / (toplevel if simulator == "verilator" else "sim.vvp")


def _build(cfg, simulator, toplevel, build_root, log=None):
    """Build the bench of ``cfg`` unless an identical build exists; return its directory.

    ``log`` (a callable taking a line, or None) is told before a build starts what is built
    and why, so that a first run is never silent; see :mod:`pwconv.sim.cache`.
    """
    root = repo_path(build_root) / simulator / config_hash(cfg)
    build_dir = root / f"obj_{toplevel}"
    stamp = build_dir / "pwconv.stamp"
    artifact = _artifact(simulator, toplevel, build_dir)
    what = "model" if toplevel == "pwconv_bulk_main" else "cocotb model"
    announced = not (stamp.is_file() and artifact.is_file())
    if announced:       # say so before the export, which takes seconds itself
        reason = ("first use of this configuration" if not stamp.is_file()
                  else "its binary is missing")
        cache.announce_build(log, simulator, cfg, reason, root, what)
    verilog = export_once(cfg, root, four_state=simulator == "icarus")
    stamp_text = json.dumps({"v": verilog.stat().st_mtime_ns, "tb": BENCH.stat().st_mtime_ns,
                             "params": _parameters(cfg), "flags": BUILD_FLAGS}, sort_keys=True)
    with file_lock(root / f".{build_dir.name}.lock"):
        cache.mark_used(root)
        if stamp.is_file() and stamp.read_text() == stamp_text and artifact.is_file():
            return build_dir
        if not announced:
            cache.announce_build(log, simulator, cfg, "its Verilog or bench changed", root,
                                 what)
        stamp.unlink(missing_ok=True)
        build_dir.mkdir(parents=True, exist_ok=True)
        log_file = build_dir / "build.log"
        with toolchain_env(False):
            if toplevel == "pwconv_bulk_main":
                args = ["verilator", "--binary", "--timing", "-O3", "-Wno-fatal", "--top-module",
                        toplevel, "-Mdir", str(build_dir), "-o", "bench",
                        "-j", "2", "--x-assign", "fast", "--x-initial", "fast",
                        "-CFLAGS", "-fcoroutines"]
                args += [f"-G{k}={v}" for k, v in _parameters(cfg).items()]
                args += [f"-D{name}" for name in _defines(cfg)]
                args += [str(verilog), str(BENCH)]
                with open(log_file, "w") as f:
                    done = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT)
                if done.returncode:
                    raise RuntimeError(f"verilator --binary build failed; log: {log_file}")
            else:
                build_args = list(BUILD_FLAGS) if simulator == "verilator" else []
                try:
                    get_runner(simulator).build(
                        sources=[verilog, BENCH], hdl_toplevel=toplevel, build_dir=build_dir,
                        build_args=build_args,
                        parameters=_parameters(cfg), defines=_defines(cfg), always=False,
                        timescale=TIMESCALE,
                        log_file=log_file)
                except (RuntimeError, SystemExit) as error:
                    raise RuntimeError(f"{simulator} build failed ({error}); "
                                       f"log: {log_file}") from None
        cache.drop_intermediates(build_dir)
        stamp.write_text(stamp_text)
    cache.prune(repo_path(build_root))
    return build_dir


def prepare(cfg: ArrayConfig, *, simulator="verilator", standalone=None, build_root="build/sim",
            log=None):
    """Build what :func:`run_passes` will run (if not cached), so that a caller can time the
    build apart from the simulation. Returns the seconds spent."""
    start = time.perf_counter()
    if standalone is None:
        standalone = simulator == "verilator"
    if standalone:
        _build(cfg, "verilator", "pwconv_bulk_main", build_root, log)
    else:
        _build(cfg, simulator, TOPLEVEL, build_root, log)
    return time.perf_counter() - start


@contextlib.contextmanager
def _watch_results(cfg, run_dir, batch, progress, interval=0.25):
    """While the simulator runs, count the result lines it has written to results.hex and call
    ``progress(pixels)`` with the pixels completed since the last call (a pixel is complete
    when all its column tiles' results are out). The bench's C stdio buffers some results,
    so updates come every few dozen results; the last one comes when the run ends."""
    if progress is None:
        yield
        return
    line = -(-layouts.result_vector(cfg).size // 4) + 1      # "%h\n": fixed-width hex
    bounds, at = [], 0          # (first result of the segment, tiles, pixels)
    for _, program, words in batch:
        pixels = len(words) // program.beats
        bounds.append((at, program.tiles, pixels))
        at += pixels * program.tiles
    path, stop, shown = run_dir / "results.hex", threading.Event(), [0]

    def poll():
        try:
            taken = path.stat().st_size // line
        except OSError:
            return
        done = sum(min(pixels, max(0, taken - first) // tiles) for first, tiles, pixels in bounds)
        if done > shown[0]:
            progress(done - shown[0])
            shown[0] = done

    def loop():
        while not stop.wait(interval):
            poll()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        poll()


def _batches(jobs):
    """Split ``[(program, pixel_words)]`` into runs that fit :data:`LIMITS`, as lists of
    ``(job index, program, words)``; a pass with more pixels than one run holds is split by
    whole pixels (its weights are loaded again)."""
    pieces = []
    for index, job in enumerate(jobs):
        if job is None:
            continue
        program, words = job
        words = [int(word) for word in words]
        if len(words) % program.beats:
            raise ValueError(f"{len(words)} pixel words is not a whole number of pixels of "
                             f"{program.beats} beats")
        step = LIMITS["pixels"] // program.beats * program.beats
        pieces += [(index, program, words[at:at + step])
                   for at in range(0, len(words), step)]
    batch, used = [], dict.fromkeys(LIMITS, 0)
    for index, program, words in pieces:
        need = {"pixels": len(words), "weights": len(program.weight_words),
                "params": len(program.param_words), "segments": 1}
        if need["weights"] > LIMITS["weights"] or need["params"] > LIMITS["params"]:
            raise ValueError(f"a pass of {need['weights']} weight words exceeds the bulk "
                             f"bench's {LIMITS['weights']}")
        if batch and any(used[k] + need[k] > LIMITS[k] for k in LIMITS):
            yield batch
            batch, used = [], dict.fromkeys(LIMITS, 0)
        batch.append((index, program, words))
        used = {k: used[k] + need[k] for k in LIMITS}
    if batch:
        yield batch


def _stimulus(cfg, run_dir, batch, *, seed, in_idle, out_stall, timeout):
    """Write the batch's files; return (plusargs, expected results per pass)."""
    expected = [len(words) // program.beats * program.tiles for _, program, words in batch]
    segments = [(program.layer_word << 128) | (len(program.weight_words) << 96)
                | (len(program.param_words) << 64) | (len(words) << 32) | count
                for (_, program, words), count in zip(batch, expected)]
    files = {
        "segments": segments,
        "weights": [w for _, program, _ in batch for w in program.weight_words],
        "params": [w for _, program, _ in batch for w in program.param_words],
        "pixels": [w for _, _, words in batch for w in words],
    }
    for name, words in files.items():
        (run_dir / f"{name}.hex").write_text("".join(f"{w:x}\n" for w in words) or "0\n")
    if timeout is None:
        # A result takes max(beats, tile_interval) cycles, a pass its load cycles.
        timeout = 50 * (sum(expected) * max(max(p.beats, cfg.tile_interval) for _, p, _ in batch)
                        + sum(cfg.load_cycles(p.channels, p.filters) for _, p, _ in batch)
                        ) + 10000 * len(batch)
    plusargs = [f"+{name.upper()}={run_dir / (name + '.hex')}" for name in files]
    plusargs += [
        f"+N_SEGMENTS={len(segments)}", f"+RESULTS={run_dir / 'results.hex'}",
        f"+CYCLES={run_dir / 'cycles.txt'}",
        f"+IDLE={int(in_idle * 65536)}", f"+STALL={int(out_stall * 65536)}",
        f"+SEED={seed & 0x7fffffff}", f"+TIMEOUT={timeout}",
    ]
    return plusargs, expected


def _read_results(run_dir, expected):
    """``[(result words, busy cycles, span cycles)]`` per segment from the run's output files."""
    lines = (run_dir / "results.hex").read_text().split()
    if len(lines) != sum(expected):
        raise RuntimeError(f"expected {sum(expected)} result vectors, got {len(lines)}")
    cycles = [tuple(int(n) for n in line.split())
              for line in (run_dir / "cycles.txt").read_text().splitlines() if line.strip()]
    out, at = [], 0
    for count, (busy, span) in zip(expected, cycles, strict=True):
        out.append(([int(line, 16) for line in lines[at:at + count]], busy, span))
        at += count
    return out


def _run_cocotb(cfg, batch, simulator, *, seed, in_idle, out_stall, timeout, build_root,
                log=None, progress=None):
    build_dir = _build(cfg, simulator, TOPLEVEL, build_root, log)
    run_dir = Path(tempfile.mkdtemp(prefix="bulk-", dir=build_dir.parent))
    try:
        plusargs, expected = _stimulus(cfg, run_dir, batch, seed=seed, in_idle=in_idle,
                                       out_stall=out_stall, timeout=timeout)
        result, xml, log = run_dir / "result.json", run_dir / "results.xml", run_dir / "sim.log"
        with toolchain_env(False), _watch_results(cfg, run_dir, batch, progress):
            try:
                get_runner(simulator).test(
                    test_module="pwconv.sim.bulk_cocotb", hdl_toplevel=TOPLEVEL,
                    hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                    results_xml=str(xml), seed=seed, plusargs=plusargs,
                    extra_env={"PWCONV_RESULT": str(result)}, timescale=TIMESCALE,
                    log_file=log)
            except (RuntimeError, SystemExit):
                pass
        outcome = read_failures(xml)
        if outcome is None or outcome[1] or not result.is_file():
            why = "; ".join(outcome[2]) if outcome else "the simulator ended abnormally"
            keep = run_dir.with_name(run_dir.name + "-failed")
            shutil.move(run_dir, keep)
            run_dir = keep
            raise RuntimeError(f"bulk run on {simulator} failed: {why}; log: {keep / 'sim.log'}")
        data = json.loads(result.read_text())
        words = _read_results(run_dir, expected)
    finally:
        if not run_dir.name.endswith("-failed"):
            shutil.rmtree(run_dir, ignore_errors=True)
    return words, data


def _run_binary(cfg, batch, simulator, *, seed, in_idle, out_stall, timeout, build_root,
                log=None, progress=None):
    """The batch on the plain ``verilator --binary`` build of ``pwconv_bulk_main``."""
    build_dir = _build(cfg, "verilator", "pwconv_bulk_main", build_root, log)
    run_dir = Path(tempfile.mkdtemp(prefix="bin-", dir=build_dir.parent))
    try:
        plusargs, expected = _stimulus(cfg, run_dir, batch, seed=seed, in_idle=in_idle,
                                       out_stall=out_stall, timeout=timeout)
        start = time.perf_counter()
        with _watch_results(cfg, run_dir, batch, progress):
            done = subprocess.run([str(build_dir / "bench"), *plusargs], capture_output=True,
                                  text=True)
        wall = time.perf_counter() - start
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("PWCONV_DONE")]
        if done.returncode or not line:
            raise RuntimeError(f"standalone bench failed: {done.stdout[-500:]}"
                               f"{done.stderr[-500:]}")
        fields = {key: int(value) for key, value in
                  (kv.split("=") for kv in line[0].split()[1:])}
        if fields["error"]:
            raise RuntimeError(f"standalone bench failed after {fields['taken']} results "
                               f"(timeout or an extra result): {done.stdout[-500:]}")
        segments = _read_results(run_dir, expected)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    return segments, {**fields, "wall_s": wall}


def run_passes(cfg: ArrayConfig, jobs, *, simulator="verilator", seed=0, in_idle=0.0,
               out_stall=0.0, timeout=None, build_root="build/sim", stats=None,
               standalone=None, log=None, progress=None):
    """Run ``jobs``, a list of ``(LayerProgram, pixel_words)`` passes, in as few simulator runs
    as fit, loading each pass while the previous one computes (two weight banks). Returns
    ``[(result_words, cycles, span)]`` per job: ``cycles`` from the pass's first pixel beat
    taken to its last result taken, ``span`` from the previous pass's last result (the first
    pass of a run: from its start) to its own, loads included, so spans add up to the runs'
    cycles. A pass without pixels gives ``([], 0, 0)``. ``stats`` (a dict) receives ``cycles``,
    ``total_cycles`` (loads included), ``wall_s`` and ``cycles_per_s``.

    On Verilator the runs use the plain ``verilator --binary`` bench (``standalone``, the
    default there), about 7x faster than the same bench under cocotb, whose Verilator main loop
    costs more per cycle than the design; ``standalone=False`` runs it under cocotb instead.

    ``log`` (a callable taking one line) is told about any simulator build before it starts;
    ``progress(n)`` is called while the simulator runs with the pixels of passes completed
    since the last call.
    """
    if standalone is None:
        standalone = simulator == "verilator"
    if standalone and simulator != "verilator":
        raise ValueError(f"Only Verilator has a standalone bench, not {simulator!r}")
    run = _run_binary if standalone else _run_cocotb
    out = [([], 0, 0) for _ in jobs]
    total, wall = 0, 0.0
    # Passes without pixels have no results and take no time: the bench leaves them out.
    busy = [(program, words) if len(words) else None for program, words in jobs]
    for batch in _batches(busy):
        segments, data = run(cfg, batch, simulator, seed=seed, in_idle=in_idle,
                             out_stall=out_stall, timeout=timeout, build_root=build_root,
                             log=log, progress=progress)
        for (index, _, _), (words, cycles, span) in zip(batch, segments):
            out[index] = (out[index][0] + words, out[index][1] + cycles, out[index][2] + span)
        total, wall = total + data["total"], wall + data["wall_s"]
    if stats is not None:
        stats.update(cycles=sum(c for _, c, _ in out), total_cycles=total, wall_s=wall,
                     cycles_per_s=total / wall if wall else None)
    return out


def run_bulk(cfg: ArrayConfig, program, pixel_words, **kwargs):
    """One pass: like :func:`pwconv.sim.runner.run_on_simulator` with the feeder in Verilog.
    Returns ``(result_words, cycles)``."""
    [(words, cycles, _)] = run_passes(cfg, [(program, pixel_words)], **kwargs)
    return words, cycles

"""Issue 12, a newcomer's first hour: sizes, empty inputs, progress, the simulator build cache."""

import os
import re
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pwconv.config import ArrayConfig
from pwconv.host.accelerator import Accelerator
from pwconv.host.layer import golden_output, random_layer
from pwconv.host.program import compile_layer
from pwconv.host.tiling import plan_passes
from pwconv.sim import bulk, cache
from pwconv.sim.runner import config_hash, repo_path

#: A small array whose max_channels (10) is not a multiple of its rows (4).
ODD = ArrayConfig(rows=4, cols=4, max_channels=10, max_filters=8, weight_depth=8)
#: Build root of this file's own simulator builds (kept apart from build/sim).
ROOT = "build/test_first_hour"


@pytest.mark.parametrize("kind", [np.int64, np.int32, np.uint16])
def test_config_accepts_numpy_integers(kind):
    cfg = ArrayConfig(rows=kind(4), cols=kind(2), max_channels=kind(64), weight_depth=kind(8))
    assert cfg == ArrayConfig(rows=4, cols=2, max_channels=64, weight_depth=8)
    assert type(cfg.rows) is int and config_hash(cfg) == config_hash(ArrayConfig(
        rows=4, cols=2, max_channels=64, weight_depth=8))


@pytest.mark.parametrize("value", [True, np.True_, 4.0, "4"])
def test_config_wrong_rows_type(value):
    message = rf"^rows must be an integer, not {re.escape(repr(value))}$"
    with pytest.raises(TypeError, match=message):
        ArrayConfig(rows=value)


@pytest.mark.parametrize("cfg", [ODD, ArrayConfig(rows=8, cols=8, max_channels=100),
                                 ArrayConfig(rows=8, cols=2, max_channels=5, weight_depth=3)])
def test_tiling_max_channels_not_multiple_of_rows(cfg):
    """Every planned pass compiles (it used to raise 'does not fit on chip ... tile it')."""
    x, layer = random_layer((1, 1, 3 * cfg.max_channels + 1), 2 * cfg.cols + 1, seed=1)
    for p in plan_passes(cfg, layer.channels, layer.filters):
        assert cfg.fits(p.c1 - p.c0, p.f1 - p.f0), p
        compile_layer(cfg, layer.w[p.c0:p.c1, p.f0:p.f1], layer.bias[p.f0:p.f1],
                      layer.quant.output_multiplier[p.f0:p.f1],
                      layer.quant.output_shift[p.f0:p.f1], raw=p.raw)


def test_tiling_odd_max_channels_on_verilator():
    x, layer = random_layer((2, 3, 23), 9, seed=5, relu=True)
    acc = Accelerator("verilator", ODD, progress=False)
    np.testing.assert_array_equal(acc.run_layer(x, layer), golden_output(x, layer))
    assert acc.last_run.passes > 1


@pytest.mark.parametrize("shape", [(0, 3, 5), (2, 0, 5), (0, 2, 2, 5), (1, 2, 0, 5)])
@pytest.mark.parametrize("backend", ["golden", "amaranth", "verilator", "icarus"])
def test_zero_pixels_same_on_every_backend(backend, shape):
    x, layer = random_layer((1, 1, 5), 3, seed=0)
    acc = Accelerator(backend, ODD, progress=False)
    y = acc.conv1x1(np.zeros(shape, np.int8), layer.w, layer.bias, layer.quant)
    assert y.dtype == np.int8 and y.shape == shape[:-1] + (3,)
    assert acc.last_run.pixels == 0 and acc.last_run.passes == 0


@pytest.mark.parametrize("name, value", [("in_idle", 1.0), ("out_stall", float("nan")),
                                         ("in_idle", -0.5), ("out_stall", "0.1")])
def test_api_stall_probabilities_checked(name, value):
    with pytest.raises(ValueError, match=rf"^{name} must be a probability in \[0, 1\), "
                                         rf"not {re.escape(repr(value))}$"):
        Accelerator("verilator", **{name: value})


def test_results_watcher_reports_pixels_while_running(tmp_path):
    """The bulk benches' progress: pixels are counted from results.hex as the simulator writes
    it, not once at the end of the run."""
    cfg = ArrayConfig(rows=2, cols=2, max_channels=8, max_filters=8, weight_depth=16)
    x, layer = random_layer((1, 10, 8), 5, seed=0)     # 4 beats, 3 column tiles per pixel
    program = compile_layer(cfg, layer.w, layer.bias, layer.quant.output_multiplier,
                            layer.quant.output_shift)
    batch = [(0, program, [0] * (10 * program.beats))]
    line = "0" * -(-(2 * 32) // 4) + "\n"
    seen = []
    with bulk._watch_results(cfg, tmp_path, batch, seen.append, interval=0.01):
        with open(tmp_path / "results.hex", "w") as f:
            for _ in range(10 * program.tiles):
                f.write(line)
                f.flush()
                time.sleep(0.005)
            seen_before_end = list(seen)
    assert sum(seen) == 10 and len(seen_before_end) >= 3, seen


def test_progress_bar_counts_pixels_and_stays(capsys):
    x, layer = random_layer((3, 4, 9), 10, seed=2)
    acc = Accelerator("verilator", ODD, progress=True)
    np.testing.assert_array_equal(acc.run_layer(x, layer), golden_output(x, layer))
    err = capsys.readouterr().err
    passes = acc.last_run.passes
    # The bar's last state is left on screen (leave=True) with all pixels of all passes.
    assert re.search(rf"pwconv verilator, {passes} passes: 100%.*\b{12 * passes}/"
                     rf"{12 * passes} \[", err), err


def test_amaranth_progress_during_a_pass():
    from pwconv.host.devices import PassJob, SimulatedDevice
    cfg = ArrayConfig(rows=2, cols=2, max_channels=8, max_filters=8, weight_depth=8)
    x, layer = random_layer((6, 4), 3, seed=0)
    q = layer.quant
    job = PassJob(x, layer.w, layer.bias, q.output_multiplier, q.output_shift,
                  output_zero_point=q.output_zero_point, activation_min=q.activation_min,
                  activation_max=q.activation_max, raw=False)
    seen = []
    [(y, cycles)] = SimulatedDevice(cfg, "amaranth").run_passes([job], seen.append)
    assert seen == [1] * 6 and cycles > 0      # one pass, six updates inside it


def _fresh(cfg):
    shutil.rmtree(repo_path(ROOT) / "verilator" / config_hash(cfg), ignore_errors=True)


def test_build_announced_cached_and_rebuilt_when_binary_deleted():
    cfg = ArrayConfig(rows=2, cols=3, max_channels=6, max_filters=6, weight_depth=8)
    _fresh(cfg)
    lines = []
    start = time.perf_counter()
    first = []
    log = lambda line: (lines.append(line), first.append(time.perf_counter() - start))  # noqa
    seconds = bulk.prepare(cfg, build_root=ROOT, log=log)
    where = f"{ROOT}/verilator/{config_hash(cfg)}"
    assert lines and re.match(
        rf"building the Verilator model for 2x3 parallel \(first use of this configuration; "
        rf"once, ~\d+ s; cached in .*{where}\)$", lines[0]), lines
    assert first[0] < 2.0 < seconds        # said at once, before the slow part
    build_dir = repo_path(ROOT) / "verilator" / config_hash(cfg) / "obj_pwconv_bulk_main"
    assert not list(build_dir.glob("*.gch"))
    lines.clear()
    assert bulk.prepare(cfg, build_root=ROOT, log=lines.append) < 2.0 and not lines
    # A deleted binary is rebuilt (it used to raise FileNotFoundError); bulk is dropped.
    (build_dir / "bench").unlink()
    (build_dir / "leftover.gch").write_bytes(b"0" * 1000)
    bulk.prepare(cfg, build_root=ROOT, log=lines.append)
    assert re.match(r"building the Verilator model for 2x3 parallel \(its binary is missing; ",
                    lines[0]), lines
    assert (build_dir / "bench").is_file() and not (build_dir / "leftover.gch").exists()
    x, layer = random_layer((1, 2, 5), 4, seed=0)
    program = compile_layer(cfg, layer.w, layer.bias, layer.quant.output_multiplier,
                            layer.quant.output_shift)
    from pwconv.host.program import pack_pixels
    bulk.run_bulk(cfg, program, pack_pixels(cfg, x.reshape(2, 5)), build_root=ROOT)


def _fake_config(root, name, age_s, now):
    path = root / "verilator" / name
    path.mkdir(parents=True)
    (path / "pwconv_top.json").write_text("{}")
    cache.mark_used(path)
    os.utime(path / ".last_used", (now - age_s, now - age_s))
    return path


def test_cache_keeps_most_recent_configurations(tmp_path, monkeypatch):
    now = time.time()
    old = [_fake_config(tmp_path, f"old{i}", 3600 * (i + 1), now) for i in range(5)]
    recent = [_fake_config(tmp_path, f"new{i}", 60 * i, now) for i in range(3)]
    (tmp_path / "verilator" / "not-a-config").mkdir()
    deleted = cache.prune(tmp_path, keep=4, now=now)
    # The 4 most recently used survive, and so does anything used in the grace period.
    assert sorted(deleted) == sorted(old[1:])
    assert all(p.is_dir() for p in recent + old[:1])
    assert (tmp_path / "verilator" / "not-a-config").is_dir()
    monkeypatch.setenv("PWCONV_SIM_CACHE_KEEP", "2")
    assert cache.keep_count() == 2
    monkeypatch.setenv("PWCONV_SIM_CACHE_KEEP", "zero")
    with pytest.raises(ValueError, match=r"^PWCONV_SIM_CACHE_KEEP must be a positive integer, "
                                         r"not 'zero'$"):
        cache.keep_count()


def test_first_demo_says_what_it_builds_at_once():
    """A first `pwconv demo` (a configuration never built) names the build as it starts it,
    and its wall time leaves the build out."""
    import subprocess
    import sys
    cfg = ArrayConfig(rows=3, cols=2, max_channels=24, max_filters=48, weight_depth=200)
    shutil.rmtree(repo_path("build/sim") / "verilator" / config_hash(cfg), ignore_errors=True)
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "pwconv.cli", "demo", "--backend",
                             "verilator", *cfg.cli_flags().split()], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=repo_path("."))
    first = proc.stderr.readline()
    said_after = time.perf_counter() - start
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert first.startswith("pwconv: building the Verilator model for 3x2 parallel (first use "
                            "of this configuration; once, ~"), first
    match = re.search(r"wall time: (\d+\.\d+) s, .* cycles/s \(not counting (\d+\.\d) s "
                      r"building the simulator model\)", out)
    assert match and float(match[1]) < float(match[2]), out
    # Said before the build, not after: within a small part of the build's own time (Python's
    # start-up alone takes seconds on a loaded machine, the build tens of seconds).
    assert said_after < 0.25 * float(match[2]), (said_after, match[2])

"""Soak test: millions of pixel beats through pwconv_top under random and bursty idles and
stalls (sim/soak_tb.v on `verilator --binary`), every result checked against golden/."""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from pwconv.config import ArrayConfig
from pwconv.hw import layouts
from .runner import config_hash, export_once, file_lock, repo_path, toolchain_env

__all__ = ["MAPPINGS", "PATTERNS", "PASS_PIXELS", "soak", "main"]

BENCH = Path(__file__).with_name("soak_tb.v")

#: The mappings soaked: the 8x8 parallel array with one weight bank (the bench loads while the
#: array is idle), the default 8x8 top with two banks (passes of :data:`PASS_PIXELS` pixels,
#: each loaded, into the free bank, and committed while earlier passes compute, alternating
#: between two programs), and the iCEBreaker's (4x4, dual 8x8 multipliers, serial requantizer
#: with 4 steps, one bank), each with a layer that gives 8 (16) beats per pixel and 2 column
#: tiles.
MAPPINGS = {
    "8x8-parallel": (ArrayConfig(weight_banks=1), 64, 16),
    "8x8-banked": (ArrayConfig(weight_banks=2), 64, 16),
    "icebreaker": (ArrayConfig(rows=4, cols=4, max_channels=512, max_filters=256,
                               weight_depth=256, mac_style="ice40_dual8x8",
                               requantizer="serial", requant_steps=4, weight_banks=1), 64, 8),
}

#: Pixels per pass with two weight banks: short passes (128 beats on 8x8), so that the pass
#: queue switches banks, and loads wait for a free one, every few hundred cycles.
PASS_PIXELS = 16

#: Idle/stall patterns: per-cycle probabilities (of 65536) of an input idle and an output
#: stall, and of a burst starting (input held idle / output stalled for 1..burst_max cycles).
PATTERNS = {
    "random": {"idle": 0.2, "stall": 0.3, "burst": 0.0, "burst_max": 1},
    "bursty": {"idle": 0.05, "stall": 0.05, "burst": 0.004, "burst_max": 400},
}


def _build(cfg, build_root):
    root = repo_path(build_root) / config_hash(cfg)
    verilog = export_once(cfg, root)
    build_dir = root / "obj_soak"
    params = {"PIX_W": layouts.pixel_beat(cfg).size, "RES_W": layouts.result_vector(cfg).size,
              "WGT_W": layouts.weight_word(cfg).size, "PRM_W": layouts.param_word(cfg).size,
              "LAYER_W": layouts.runtime_config(cfg).size, "BANKED": int(cfg.weight_banks == 2)}
    stamp = build_dir / "pwconv.stamp"
    stamp_text = json.dumps({"v": verilog.read_text(), "tb": BENCH.read_text(),
                             "params": params}, sort_keys=True)
    with file_lock(root / ".soak.lock"):
        if stamp.is_file() and stamp.read_text() == stamp_text:
            return build_dir
        build_dir.mkdir(parents=True, exist_ok=True)
        log = build_dir / "build.log"
        args = ["verilator", "--binary", "--timing", "-O3", "-Wno-fatal", "--top-module",
                "pwconv_soak", "-Mdir", str(build_dir), "-o", "soak", "-j", "2",
                "--x-assign", "fast", "--x-initial", "fast", "-CFLAGS", "-fcoroutines"]
        args += [f"-G{k}={v}" for k, v in params.items()]
        if params["BANKED"]:
            args.append("-DPWCONV_BANKED")
        args += [str(verilog), str(BENCH)]
        with toolchain_env(False), open(log, "w") as f:
            done = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT)
        if done.returncode:
            raise RuntimeError(f"verilator --binary build of the soak bench failed; log: {log}")
        stamp.write_text(stamp_text)
    return build_dir


def soak(mapping, pattern, beats, *, seed=1, build_root="build/soak"):
    """Stream at least ``beats`` pixel beats of one random layer through ``mapping`` (a key of
    :data:`MAPPINGS`) under ``pattern`` (of :data:`PATTERNS`). Returns a dict: beats, vectors,
    cycles, stall fraction (cycles the output was offered but stalled), idle fraction,
    hold_errors (stream-rule violations), extra vectors, wrong vectors (against golden), wall
    seconds."""
    from pwconv.host.layer import Layer, golden_output, random_layer
    from pwconv import golden
    from pwconv.host.program import compile_layer, pack_pixels, unpack_results

    cfg, channels, filters = MAPPINGS[mapping]
    program_beats = -(-channels // cfg.rows)
    pixels = -(-beats // program_beats)
    x, layer = random_layer((pixels, channels), filters, seed=seed, relu=True)
    banked = cfg.weight_banks == 2
    # Two banks: odd passes run a second program (channels reversed, so other weights).
    layers = [layer, Layer(np.flip(layer.w, axis=0), layer.bias, layer.quant)][:1 + banked]
    q = layer.quant
    programs = []
    for one in layers:
        folded = golden.fold_input_zero_point(one.w, one.bias, q.input_zero_point)
        programs.append(compile_layer(
            cfg, one.w, folded, q.output_multiplier, q.output_shift,
            output_zero_point=q.output_zero_point, activation_min=q.activation_min,
            activation_max=q.activation_max))
    program = programs[0]
    words = pack_pixels(cfg, x)
    expected_vectors = pixels * program.tiles
    build_dir = _build(cfg, build_root)
    p = PATTERNS[pattern]
    with tempfile.TemporaryDirectory(dir=build_dir.parent) as run:
        run = Path(run)
        weights = [w for one in programs for w in one.weight_words]
        params = [w for one in programs for w in one.param_words]
        for name, items in (("weights", weights), ("params", params), ("pixels", words)):
            (run / f"{name}.hex").write_text("\n".join(f"{int(w):x}" for w in items) + "\n")
        plusargs = [
            f"+LAYER={program.layer_word:x}", f"+WEIGHTS={run / 'weights.hex'}",
            f"+N_WEIGHTS={len(program.weight_words)}", f"+PARAMS={run / 'params.hex'}",
            f"+N_PARAMS={len(program.param_words)}", f"+PIXELS={run / 'pixels.hex'}",
            f"+N_PIXELS={len(words)}", f"+N_RESULTS={expected_vectors}",
            f"+RESULTS={run / 'results.hex'}", f"+IDLE={int(p['idle'] * 65536)}",
            f"+STALL={int(p['stall'] * 65536)}", f"+BURST={int(p['burst'] * 65536)}",
            f"+BURST_MAX={p['burst_max']}", f"+SEED={seed}",
            f"+TIMEOUT={200 * len(words) * max(1, cfg.tile_interval)}",
            f"+PASS_BEATS={PASS_PIXELS * program_beats}",
        ]
        start = time.perf_counter()
        done = subprocess.run([str(build_dir / "soak"), *plusargs], capture_output=True,
                              text=True)
        wall = time.perf_counter() - start
        line = [ln for ln in done.stdout.splitlines() if ln.startswith("PWCONV_SOAK")]
        if done.returncode or not line:
            raise RuntimeError(f"soak bench failed: {done.stdout[-500:]}{done.stderr[-500:]}")
        fields = {k: int(v) for k, v in (kv.split("=") for kv in line[0].split()[1:])}
        got = [int(ln, 16) for ln in (run / "results.hex").read_text().split()]
    wrong = expected_vectors
    if len(got) == expected_vectors:
        y = unpack_results(cfg, got, pixels, filters)
        want = golden_output(x, layer)
        if banked:
            odd = (np.arange(pixels) // PASS_PIXELS) % 2 == 1
            want[odd] = golden_output(x[odd], layers[1])
        wrong = int(np.count_nonzero(np.any(y != want, axis=1)))
    return {"mapping": mapping, "pattern": pattern, "beats": fields["beats"],
            "vectors": fields["vectors"], "cycles": fields["cycles"],
            "stall_fraction": fields["stalled"] / max(1, fields["cycles"]),
            "idle_fraction": fields["idle"] / max(1, fields["cycles"]),
            "hold_errors": fields["hold_errors"], "extra": fields["extra"],
            "timeout": fields["timeout"], "wrong_pixels": wrong,
            "errors": (fields["hold_errors"] + fields["extra"] + fields["timeout"] + wrong
                       + (fields["vectors"] != expected_vectors)),
            "wall_s": round(wall, 1)}


def main(argv=None):
    """``python -m pwconv.sim.soak [--beats N] [--seed S] [--out FILE]``: soak every mapping
    under every pattern, print the table, exit 1 on any error."""
    parser = argparse.ArgumentParser(prog="python -m pwconv.sim.soak")
    parser.add_argument("--beats", type=int, default=1_000_000,
                        help="input beats per mapping and pattern (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    print(f"{'mapping':14} {'pattern':8} {'beats':>9} {'vectors':>9} {'cycles':>10} "
          f"{'stalled':>8} {'idle':>6} {'errors':>6} {'wall s':>7}", flush=True)
    for mapping in MAPPINGS:
        for pattern in PATTERNS:
            r = soak(mapping, pattern, args.beats, seed=args.seed)
            rows.append(r)
            print(f"{mapping:14} {pattern:8} {r['beats']:9,} {r['vectors']:9,} "
                  f"{r['cycles']:10,} {r['stall_fraction']:8.1%} {r['idle_fraction']:6.1%} "
                  f"{r['errors']:6} {r['wall_s']:7.1f}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

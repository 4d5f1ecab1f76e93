"""`make bench`: MobileNetV2's 35 pointwise layers through the cycle-accurate Verilator model."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pwconv import golden
from pwconv.config import ArrayConfig
from .accelerator import Accelerator
from .layer import golden_output, random_layer
from .program import compile_layer, pack_pixels
from .tiling import plan_passes

__all__ = ["MOBILENETV2_POINTWISE", "run_bench", "simulator_speed"]


@dataclass(frozen=True)
class Shape:
    """One 1x1 convolution of the network: input H x W x C, F output channels."""

    name: str
    height: int
    width: int
    channels: int
    filters: int


def _mobilenetv2():
    """The 1x1 convolutions of MobileNetV2 (1.0, 224x224), in network order (35 layers)."""
    layers = [Shape("block0/project", 112, 112, 32, 16)]
    # (expansion t, output channels c, repeats n, first stride s) of the inverted residuals
    size, cin, block = 112, 16, 1
    for t, c, n, s in [(6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                       (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            layers.append(Shape(f"block{block}/expand", size, size, cin, cin * t))
            size //= stride
            layers.append(Shape(f"block{block}/project", size, size, cin * t, c))
            cin, block = c, block + 1
    layers.append(Shape("conv_1x1", 7, 7, 320, 1280))
    layers.append(Shape("logits", 1, 1, 1280, 1000))
    return layers


MOBILENETV2_POINTWISE = _mobilenetv2()


def _load_cycles(cfg, shape):
    """Cycles spent loading weights (one word per cycle) and parameters over all passes."""
    total = 0
    for p in plan_passes(cfg, shape.channels, shape.filters):
        beats, tiles = cfg.beats(p.c1 - p.c0), cfg.tiles(p.f1 - p.f0)
        total += beats * tiles * cfg.rows + tiles * cfg.param_word_cycles
    return total


def run_bench(cfg: ArrayConfig, *, max_pixels=None, out_dir="reports", backend="verilator",
              layers=None, progress=print):
    """Run every layer (H x W reduced to at most ``max_pixels`` pixels where given), check it
    bit-exact against golden, and write ``bench_mobilenetv2.{json,md,png}`` to ``out_dir``."""
    rows = []
    for index, shape in enumerate(layers or MOBILENETV2_POINTWISE):
        h, w = shape.height, shape.width
        while max_pixels and h * w > max_pixels:
            h, w = (h + 1) // 2, (w + 1) // 2
        x, layer = random_layer((h, w, shape.channels), shape.filters, seed=index, relu=True)
        acc = Accelerator(backend, cfg, progress=False)
        start = time.perf_counter()
        y = acc.run_layer(x, layer)
        wall = time.perf_counter() - start
        exact = np.array_equal(y, golden_output(x, layer))
        stats = acc.last_run
        load = _load_cycles(cfg, shape)
        row = {
            "layer": shape.name, "input": f"{shape.height}x{shape.width}x{shape.channels}",
            "filters": shape.filters, "simulated_hw": f"{h}x{w}", "full_size": (h, w) == (
                shape.height, shape.width), "passes": stats.passes, "cycles": stats.cycles,
            "ideal_cycles": stats.ideal_cycles, "utilization": stats.utilization,
            "load_cycles": load,
            "utilization_with_load": stats.ideal_cycles / (stats.cycles + load),
            "bit_exact": bool(exact), "wall_s": wall,
            "sim_cycles_per_s": stats.cycles / wall,
        }
        rows.append(row)
        progress(f"{index + 1:2d}/{len(layers or MOBILENETV2_POINTWISE)} {shape.name:16s} "
                 f"{row['input']:>13s} -> {shape.filters:4d} @ {h}x{w}: {stats.cycles:8d} cycles, "
                 f"utilization {100 * stats.utilization:5.1f}%, "
                 f"{'exact' if exact else 'MISMATCH'}, {wall:.1f} s")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"config": cfg.__dict__, "backend": backend, "max_pixels": max_pixels,
               "layers": rows}
    (out / "bench_mobilenetv2.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "bench_mobilenetv2.md").write_text(_markdown(cfg, rows, max_pixels))
    _plot(rows, out / "bench_mobilenetv2.png", cfg)
    return rows


def _markdown(cfg, rows, max_pixels):
    utils = [r["utilization"] for r in rows]
    command = ("make bench" if cfg == ArrayConfig() else
               f"pwconv bench {cfg.cli_flags()}" + (f" --max-pixels {max_pixels}"
                                                    if max_pixels else ""))
    sizes = (f"Layers simulated at reduced HxW are marked (max {max_pixels} pixels)."
             if max_pixels else "Every layer at full size.")
    rate = ("one word per cycle" if cfg.param_word_cycles == 1 else
            f"one word per cycle, a parameter word in {cfg.param_word_cycles}")
    lines = [
        f"# MobileNetV2 pointwise layers on a {cfg.rows}x{cfg.cols} pwconv array",
        "",
        f"Measured by `{command}` (Verilator, cycle-accurate; {cfg.mac_style} multipliers, "
        f"{cfg.requantizer} requantizer, weight depth {cfg.weight_depth} words per PE). "
        f"Cycles count from the first pixel beat offered to the last result taken, summed over "
        f"passes; `load` is the weight/parameter load ({rate}, not overlapped with "
        f"compute). Utilization = ideal cycles (P*C*F / {cfg.macs} MACs) / cycles. {sizes}",
        "",
        f"Utilization: {100 * min(utils):.1f}% to {100 * max(utils):.1f}% "
        f"(mean {100 * np.mean(utils):.1f}%); all bit-exact: "
        f"{'yes' if all(r['bit_exact'] for r in rows) else 'NO'}.",
        "",
        "| # | layer | input | F | simulated HxW | passes | cycles | ideal | utilization "
        "| load | util. incl. load | exact | sim cycles/s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        lines.append(
            f"| {i + 1} | {r['layer']} | {r['input']} | {r['filters']} | {r['simulated_hw']}"
            f"{'' if r['full_size'] else ' (reduced)'} | {r['passes']} | {r['cycles']} | "
            f"{r['ideal_cycles']:.0f} | {100 * r['utilization']:.1f}% | {r['load_cycles']} | "
            f"{100 * r['utilization_with_load']:.1f}% | {'yes' if r['bit_exact'] else 'NO'} | "
            f"{r['sim_cycles_per_s']:,.0f} |")
    return "\n".join(lines) + "\n"


def _plot(rows, path, cfg):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 4.5))
    index = np.arange(len(rows))
    ax.bar(index, [100 * r["utilization"] for r in rows], label="compute")
    ax.plot(index, [100 * r["utilization_with_load"] for r in rows], "o-", color="C1",
            label="incl. weight load")
    ax.axhline(95, color="grey", linestyle="--", linewidth=1, label="95% target")
    ax.set_xticks(index, [r["layer"] for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("MAC utilization (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"MobileNetV2 1x1 layers on a {cfg.rows}x{cfg.cols} pwconv array (Verilator)")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def simulator_speed(cfg: ArrayConfig, *, pixels=4096, channels=64, filters=64):
    """Array-cycles per second of one layer on Verilator: the Verilog feeder as a plain
    `verilator --binary` (what `--backend verilator` uses) and under cocotb, and the cocotb
    Python stream drivers (a Python write and read every cycle)."""
    from pwconv.sim.bulk import run_bulk
    from pwconv.sim.runner import run_on_simulator
    x, layer = random_layer((1, pixels, channels), filters, seed=1)
    q = layer.quant
    folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
    program = compile_layer(cfg, layer.w, folded, q.output_multiplier, q.output_shift,
                            output_zero_point=q.output_zero_point)
    words = pack_pixels(cfg, x.reshape(pixels, channels))
    results = {}
    for name, standalone in (("verilator --binary + Verilog feeder (no Python)", True),
                             ("cocotb + Verilog feeder (no Python per cycle)", False)):
        stats = {}
        run_bulk(cfg, program, words, stats=stats, standalone=standalone)
        results[name] = stats["cycles_per_s"]
    stats = {}
    small = words[:len(words) // 8]
    run_on_simulator(cfg, program, small, simulator="verilator", stats=stats)
    results["cocotb Python stream drivers"] = stats["cycles_per_s"]
    return results

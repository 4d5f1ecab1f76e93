"""The `pwconv` command line: runs, errors as one line naming the problem, exit codes."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pwconv.cli import main
from pwconv.host.layer import golden_output, load_layer, random_layer, save_layer




def test_layer_then_run_golden(tmp_path, capsys):
    assert main(["layer", str(tmp_path / "l.npz"), "--shape", "3x5x20", "--filters", "7"]) == 0
    assert main(["run", str(tmp_path / "l.npz"), "--backend", "golden",
                 "--out", str(tmp_path / "y.npy")]) == 0
    x, layer = load_layer(tmp_path / "l.npz")
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == np.int8 and y.shape == (3, 5, 7)
    np.testing.assert_array_equal(y, golden_output(x, layer))
    assert "15 pixels x C=20 -> F=7" in capsys.readouterr().out


@pytest.mark.parametrize("mutate, message", [
    (lambda a: a.pop("bias"), "pwconv: error: bias: missing from"),
    (lambda a: a.update(w=a["w"].astype(np.float32)),
     "pwconv: error: w: expected dtype int8, got float32"),
    (lambda a: a.update(output_shift=np.full(4, -40)),
     "pwconv: error: output_shift: -40 is out of range [-31, 30]"),
])
def test_run_bad_file_one_line(tmp_path, capsys, mutate, message):
    x, layer = random_layer((2, 2, 3), 4, seed=0)
    save_layer(tmp_path / "l.npz", x, layer)
    arrays = dict(np.load(tmp_path / "l.npz"))
    mutate(arrays)
    np.savez(tmp_path / "bad.npz", **arrays)
    assert main(["run", str(tmp_path / "bad.npz"), "--backend", "golden"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_bad_config_one_line(capsys):
    assert main(["demo", "--backend", "golden", "--rows", "0"]) == 2
    assert capsys.readouterr().err == "pwconv: error: rows must be between 1 and 64, not 0\n"


def test_console_script_installed():
    done = subprocess.run([sys.executable, "-m", "pwconv.cli", "demo", "--backend", "golden"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "bit-exact vs golden (TFLite int8 reference arithmetic): yes" in done.stdout


def test_verilog_export(tmp_path):
    out = "build/test_cli_verilog"
    assert main(["verilog", "--out", out, "--rows", "2", "--cols", "2",
                 "--max-channels", "8", "--max-filters", "8", "--weight-depth", "8"]) == 0
    text = Path(out, "pwconv_top.v").read_text()
    assert "module pwconv_top" in text and "i__payload" in text


def test_verilog_wrong_mapping_is_one_line(capsys):
    assert main(["verilog", "--out", "build/test_cli_verilog", "--requant-steps", "4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["pwconv: error: requant_steps must be 1 with the parallel requantizer, "
                   "not 4"]


def test_mobilenet_sized_layer_on_verilator(tmp_path, capsys):
    """Issue 'any layer shape': a 7x7x160 -> 960 layer through `pwconv run --backend verilator`
    on the default array, bit-exact against golden, with the MACs kept busy."""
    x, layer = random_layer((7, 7, 160), 960, seed=42, relu=True)
    save_layer(tmp_path / "l.npz", x, layer)
    assert main(["run", str(tmp_path / "l.npz"), "--backend", "verilator",
                 "--out", str(tmp_path / "y.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), golden_output(x, layer))
    out = capsys.readouterr().out
    utilization = float(out.split("MAC utilization ")[1].split("%")[0])
    assert utilization >= 95.0, out

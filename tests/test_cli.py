"""The `pwconv` command line: runs, errors as one line naming the problem, exit codes."""

import re
import shutil
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
    # golden against golden is no bit-exactness claim: the demo says what it did compare.
    assert "bit-exact" not in done.stdout
    assert ("no hardware simulated (use --backend verilator); host path (passes, folded zero "
            "point) vs golden.conv1x1: yes\n") in done.stdout


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


def _one_line_error(capsys, argv, pattern):
    """``argv`` exits with status 2 and exactly one stderr line matching ``pattern``."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and re.match(pattern, err), err
    return err


def _write(path, make):
    x, layer = random_layer((2, 2, 3), 4, seed=0)
    save_layer(path, x, layer)
    arrays = dict(np.load(path))
    data = make(path.read_bytes(), arrays)
    if isinstance(data, dict):
        np.savez(path, **data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("make, pattern", [
    (lambda raw, a: b"", r"pwconv: error: .*l\.npz: is empty, not a \.npz file$"),
    (lambda raw, a: raw[:200], r"pwconv: error: .*l\.npz: truncated or corrupted \.npz file "),
    (lambda raw, a: raw[:100] + bytes([raw[100] ^ 0xFF]) + raw[101:],
     r"pwconv: error: .*l\.npz: truncated or corrupted \.npz file \(BadZipFile: Bad CRC-32"),
    (lambda raw, a: b"\x93NUMPY" + raw[6:], r"pwconv: error: .*l\.npz: is a \.npy file "),
    (lambda raw, a: b"hello\n", r"pwconv: error: .*l\.npz: not a \.npz file "),
    (lambda raw, a: {**a, "bias": a["bias"].astype(">i4")},
     r"pwconv: error: bias: expected dtype int32 in this machine's \(little-endian\) byte "
     r"order, got big-endian int32"),
    (lambda raw, a: {**a, "output_multiplier": a["output_multiplier"][:3]},
     r"pwconv: error: output_multiplier: expected shape \(4,\) to match F of w, got \(3,\)$"),
])
def test_run_unreadable_file_one_line(tmp_path, capsys, make, pattern):
    path = _write(tmp_path / "l.npz", make)
    _one_line_error(capsys, ["run", str(path), "--backend", "golden"], pattern)


def test_run_dev_null_and_npy(tmp_path, capsys):
    _one_line_error(capsys, ["run", "/dev/null", "--backend", "golden"],
                    r"pwconv: error: /dev/null: is empty, not a \.npz file$")
    np.save(tmp_path / "x.npy", np.zeros(3))
    _one_line_error(capsys, ["run", str(tmp_path / "x.npy"), "--backend", "golden"],
                    r"pwconv: error: .*x\.npy: is a \.npy file \(one array\), not a \.npz archive")


@pytest.mark.parametrize("flag", ["--in-idle", "--out-stall"])
@pytest.mark.parametrize("value", ["2", "1.0", "-0.1", "nan", "inf"])
def test_stall_flags_name_the_flag(capsys, flag, value):
    _one_line_error(capsys, ["demo", "--backend", "verilator", flag, value],
                    rf"pwconv: error: {flag}: must be a probability in \[0, 1\), not "
                    rf"{re.escape(str(float(value)))}$")


def test_run_out_written_exactly_as_given(tmp_path, capsys):
    save_layer(tmp_path / "L", *random_layer((2, 2, 3), 4, seed=0))
    assert (tmp_path / "L").is_file() and not (tmp_path / "L.npz").exists()
    assert main(["run", str(tmp_path / "L"), "--backend", "golden",
                 "--out", str(tmp_path / "Y")]) == 0
    assert f"wrote {tmp_path / 'Y'}: int8 [2, 2, 4]" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["L", "Y"]
    assert np.load(tmp_path / "Y").shape == (2, 2, 4)
    assert main(["layer", str(tmp_path / "M"), "--shape", "1x1x3", "--filters", "2"]) == 0
    assert f"wrote {tmp_path / 'M'}: " in capsys.readouterr().out
    assert load_layer(tmp_path / "M")[1].filters == 2


def test_bad_outputs_refused_before_running(tmp_path, capsys, monkeypatch):
    save_layer(tmp_path / "l.npz", *random_layer((2, 2, 3), 4, seed=0))
    (tmp_path / "file").write_text("")
    ran = []
    monkeypatch.setattr("pwconv.host.accelerator.Accelerator.run_layer",
                        lambda *a, **k: ran.append(1))
    run = ["run", str(tmp_path / "l.npz"), "--backend", "verilator", "--out"]
    for out, pattern in [
        (f"{tmp_path}/", r"--out: .*/ is a directory; give a file name$"),
        (str(tmp_path), r"--out: .* is a directory; give a file name$"),
        (f"{tmp_path}/no/y.npy", r"--out: cannot write .*/no/y\.npy: directory .*/no does not "
                                 r"exist$"),
        (f"{tmp_path}/file/y.npy", r"--out: cannot write .*/file/y\.npy: a part of its "
                                   r"directory is a file$"),
        ("/proc/y.npy", r"--out: cannot create files in /proc$"),
    ]:
        _one_line_error(capsys, run + [out], "pwconv: error: " + pattern)
    assert not ran and sorted(p.name for p in tmp_path.iterdir()) == ["file", "l.npz"]
    _one_line_error(capsys, ["layer", str(tmp_path)],
                    r"pwconv: error: layer file: .* is a directory; give a file name$")
    _one_line_error(capsys, ["layer", f"{tmp_path}/file/l.npz"],
                    r"pwconv: error: layer file: cannot write .*: a part of its directory is "
                    r"a file$")
    _one_line_error(capsys, ["verilog", "--out", str(tmp_path / "file")],
                    r"pwconv: error: --out: .*/file exists and is not a directory$")
    _one_line_error(capsys, ["verilog", "--out", f"{tmp_path}/file/v"],
                    r"pwconv: error: --out: cannot create .*/file/v: a part of it is a file$")
    _one_line_error(capsys, ["verilog", "--out", "/proc/v"],
                    r"pwconv: error: --out: cannot write to /proc/v: ")


def test_verilog_says_what_it_does(capsys):
    assert main(["verilog", "--out", "build/test_cli_verilog", "--rows", "2", "--cols", "2",
                 "--max-channels", "8", "--max-filters", "8", "--weight-depth", "8"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert re.match(r"exporting the Verilog of the 2x2 parallel array \(4 MACs\) to "
                    r"build/test_cli_verilog/: Amaranth elaboration and Yosys conversion, ~\d+ s",
                    out[0]), out
    assert re.match(r"wrote build/test_cli_verilog/pwconv_top\.v and "
                    r"build/test_cli_verilog/pwconv_top\.json in \d+\.\d s$", out[1]), out


def _options(parser):
    import argparse
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from ((f"{name} {opt}", act) for opt, act in _options(sub))
        elif not isinstance(action, argparse._HelpAction):
            yield (action.option_strings or [action.dest])[0], action


def test_help_text_and_defaults_for_every_flag(capsys):
    from pwconv.cli import build_parser
    parser = build_parser()
    missing = [name for name, action in _options(parser)
               if name.split()[0] in ("run", "demo", "verilog", "layer") and not action.help]
    assert not missing, missing
    for command in ("run", "demo", "verilog", "layer"):
        with pytest.raises(SystemExit):
            parser.parse_args([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: 8)" in text or command == "layer", text     # --rows
        if command in ("run", "demo"):
            assert "(default: verilator)" in text and "~600k cycles/s" in text
            assert "icarus: the Verilog in Icarus, ~" in text


TINY = ["--rows", "2", "--cols", "2", "--max-channels", "8", "--max-filters", "8",
        "--weight-depth", "8"]


def _waves(tmp_path, capsys, backend, suffix):
    save_layer(tmp_path / "l.npz", *random_layer((1, 2, 5), 3, seed=0))
    assert main(["run", str(tmp_path / "l.npz"), "--backend", backend, "--waves", *TINY]) == 0
    paths = re.findall(r"^waves: (.*)$", capsys.readouterr().out, re.M)
    assert len(paths) == 1 and paths[0].endswith(suffix), paths
    assert Path(paths[0]).stat().st_size > 100
    shutil.rmtree(Path(paths[0]).parent)


def test_waves_path_printed_icarus(tmp_path, capsys):
    _waves(tmp_path, capsys, "icarus", ".fst")


@pytest.mark.slow
def test_waves_fst_on_verilator(tmp_path, capsys):
    """FST, not VCD: `make setup` installs the lz4 and zlib headers Verilator's writer needs."""
    _waves(tmp_path, capsys, "verilator", "dump.fst")


def test_write_failure_is_one_line(tmp_path, capsys):
    """An output that passed the up-front check but fails while written (here /dev/full, a
    full disk) is one line and status 1, not a traceback."""
    save_layer(tmp_path / "l.npz", *random_layer((2, 2, 3), 4, seed=0))
    assert main(["run", str(tmp_path / "l.npz"), "--backend", "golden",
                 "--out", "/dev/full"]) == 1
    assert capsys.readouterr().err == ("pwconv: run failed: cannot write /dev/full: No space "
                                       "left on device\n")
    assert main(["layer", "/dev/full"]) == 1
    assert capsys.readouterr().err == ("pwconv: layer failed: cannot write /dev/full: No space "
                                       "left on device\n")


@pytest.mark.parametrize("backend", ["golden", "verilator"])
def test_run_zero_pixels(tmp_path, capsys, backend):
    x, layer = random_layer((1, 1, 3), 4, seed=0)
    save_layer(tmp_path / "l.npz", np.zeros((0, 2, 3), np.int8), layer)
    assert main(["run", str(tmp_path / "l.npz"), "--backend", backend,
                 "--out", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (0, 2, 4)
    out = capsys.readouterr().out
    assert "nothing to compute: the input has no pixels (nothing was run)\n" in out
    assert "wall time" not in out

"""Rounding modes end to end: host API, LAYER.npz, CLI, simulators, board-sim, real runtimes."""

import numpy as np
import pytest

from pwconv import golden
from pwconv.cli import main
from pwconv.config import ROUNDINGS, ArrayConfig
from pwconv.host.accelerator import Accelerator
from pwconv.host.layer import (Layer, LayerError, Quantization, golden_output, load_layer,
                               random_layer, save_layer)

#: A parallel and a serial requantizer with every mode (one simulator build each).
PARALLEL = ArrayConfig(rows=3, cols=4, max_channels=12, max_filters=16, weight_depth=6)
SERIAL = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=24, weight_depth=16,
                     mac_style="ice40_dual8x8", requantizer="serial", requant_steps=4)


@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("cfg", [PARALLEL, SERIAL], ids=["parallel", "serial"])
@pytest.mark.parametrize("backend", ["amaranth", "verilator", "icarus"])
def test_every_mode_matches_golden(backend, cfg, rounding):
    """Each mode, chosen per layer at run time on one build; the C split (raw partial sums,
    requantized on the host) and F split included on Verilator."""
    shapes = [((2, 3, 7), 9)]
    if backend == "verilator":
        shapes += [((1, 2, 40 if cfg is SERIAL else 20), 30)]
    for index, (shape, filters) in enumerate(shapes):
        x, layer = random_layer(shape, filters, seed=index + len(rounding), relu=index == 1,
                                rounding=rounding)
        acc = Accelerator(backend, cfg, in_idle=0.2, out_stall=0.3, progress=False)
        np.testing.assert_array_equal(acc.run_layer(x, layer), golden_output(x, layer))


def test_modes_give_different_outputs():
    """A tie-heavy layer (effective scales 2^-1, 2^-2) gives each mode its own result, so a
    run in the wrong mode cannot pass the test above."""
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, size=(4, 4, 3), dtype=np.int8)
    w = rng.integers(-2, 3, size=(3, 8), dtype=np.int8)
    bias = rng.integers(-20, 20, size=8).astype(np.int32)
    outputs = {}
    for rounding in ROUNDINGS:
        m, s, sc = golden.layer_requant_params(0.5, np.exp2(-rng.integers(0, 2, 8)), 1.0,
                                               rounding)
        q = Quantization(m, s, input_zero_point=3, rounding=rounding, scale=sc)
        outputs[rounding] = Accelerator("verilator", PARALLEL, progress=False).conv1x1(
            x, w, bias, q)
        np.testing.assert_array_equal(outputs[rounding],
                                      golden_output(x, Layer(w, bias, q)))
    for a in ROUNDINGS:
        for b in ROUNDINGS:
            if a < b:
                assert (outputs[a] != outputs[b]).any(), (a, b)


def test_mode_not_in_build_is_refused():
    cfg = ArrayConfig(rows=3, cols=4, max_channels=12, max_filters=16, weight_depth=6,
                      roundings=("double", "ruy"))
    x, layer = random_layer((2, 2, 5), 3, rounding="float")
    for backend in ("golden", "verilator"):
        with pytest.raises(ValueError, match=r"^rounding 'float' is not in this build \(it has "
                                             r"double, ruy\); rebuild with --roundings "
                                             r"including it$"):
            Accelerator(backend, cfg, progress=False).run_layer(x, layer)


def test_quantization_validation():
    mult, shift = np.full(3, 1 << 30, np.int32), np.full(3, -2, np.int32)
    with pytest.raises(LayerError, match=r"^rounding: expected one of double, single, ruy, "
                                         r"float, got 'nearest'$"):
        Quantization(mult, shift, rounding="nearest")
    with pytest.raises(LayerError, match=r"^scale: missing$"):
        Quantization(None, None, rounding="float")
    with pytest.raises(LayerError, match=r"^scale: expected dtype float32, got float64$"):
        Quantization(None, None, rounding="float", scale=np.ones(3))
    for bad in (np.nan, np.inf, 0.0, -1.0, 1e-41):
        with pytest.raises(LayerError, match=r"^scale: .* is not a finite, positive, normal "
                                             r"float32$"):
            Quantization(None, None, rounding="float",
                         scale=np.array([1.0, bad, 1.0], np.float32))
    with pytest.raises(LayerError, match=r"^output_multiplier: not used with rounding 'float' "
                                         r"\(give scale\)$"):
        Quantization(mult, None, rounding="float", scale=np.ones(3, np.float32))
    with pytest.raises(LayerError, match=r"^scale: only used with rounding 'float', not "
                                         r"'ruy'$"):
        Quantization(mult, shift, rounding="ruy", scale=np.ones(3, np.float32))
    q = Quantization(None, None, rounding="float", scale=np.ones(3, np.float32))
    w = np.zeros((2, 4), np.int8)
    with pytest.raises(LayerError, match=r"^scale: expected shape \(4,\) to match F of w, got "
                                         r"\(3,\)$"):
        Layer(w, np.zeros(4, np.int32), q)


def test_layer_file_round_trip_and_errors(tmp_path):
    x, layer = random_layer((2, 2, 5), 3, rounding="float")
    path = tmp_path / "L.npz"
    save_layer(path, x, layer)
    x2, layer2 = load_layer(path)
    assert layer2.quant.rounding == "float"
    np.testing.assert_array_equal(layer2.quant.scale, layer.quant.scale)
    np.testing.assert_array_equal(x2, x)
    # A file without the key is double (files from before the modes existed).
    x, layer = random_layer((2, 2, 5), 3)
    arrays = dict(x=x, w=layer.w, bias=layer.bias, input_zero_point=np.int32(0),
                  output_zero_point=np.int32(0), activation_min=np.int32(-128),
                  activation_max=np.int32(127), output_multiplier=layer.quant.output_multiplier,
                  output_shift=layer.quant.output_shift)
    np.savez(tmp_path / "old.npz", **arrays)
    assert load_layer(tmp_path / "old.npz")[1].quant.rounding == "double"
    assert load_layer(tmp_path / "old.npz", rounding="ruy")[1].quant.rounding == "ruy"
    with pytest.raises(LayerError, match=r"^scale: missing from .*old\.npz \(needed with "
                                         r"rounding 'float'\)$"):
        load_layer(tmp_path / "old.npz", rounding="float")
    np.savez(tmp_path / "bad.npz", rounding=np.int32(3), **arrays)
    with pytest.raises(LayerError, match=r"^rounding: expected a string scalar in .*bad\.npz, "
                                         r"got int32 of shape \(\)$"):
        load_layer(tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", rounding=np.str_("round"), **arrays)
    with pytest.raises(LayerError, match=r"^rounding: expected one of double, single, ruy, "
                                         r"float, got 'round'$"):
        load_layer(tmp_path / "bad2.npz")


def test_cli_run_rounding(tmp_path, capsys):
    layer_file = tmp_path / "L.npz"
    assert main(["layer", str(layer_file), "--shape", "2x2x6", "--filters", "5",
                 "--rounding", "float"]) == 0
    out = tmp_path / "Y.npy"
    flags = ["--rows", "3", "--cols", "4", "--max-channels", "12", "--max-filters", "16",
             "--weight-depth", "6"]
    assert main(["run", str(layer_file), "--backend", "verilator", "--out", str(out)]
                + flags) == 0
    x, layer = load_layer(layer_file)
    np.testing.assert_array_equal(np.load(out), golden_output(x, layer))
    # A mode the build leaves out: one line, status 2.
    capsys.readouterr()
    assert main(["run", str(layer_file), "--backend", "golden", "--roundings", "double,ruy"]
                + flags) == 2
    assert capsys.readouterr().err == ("pwconv: error: rounding 'float' is not in this build "
                                       "(it has double, ruy); rebuild with --roundings "
                                       "including it\n")
    assert main(["run", str(layer_file), "--backend", "golden", "--rounding", "ruy"]) == 2
    assert "output_multiplier: missing from" in capsys.readouterr().err
    assert main(["run", str(layer_file), "--roundings", "double,nearest"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pwconv: error: ") and err.count("\n") == 1
    assert "expected a comma-separated list of double, single, ruy, float" in err


def test_board_sim_float_and_ruy():
    """A non-default mode through the board gateware, UART and all (the board-sim build of
    tests/test_board_sim.py)."""
    from pwconv.host.board import BoardDevice
    from pwconv.host.link import SimTransport

    with SimTransport(SERIAL) as link:
        device = BoardDevice(link, SERIAL, max_payload=64)
        for rounding in ("float", "ruy"):
            x, layer = random_layer((1, 3, 10), 6, seed=2, rounding=rounding)
            acc = Accelerator("board-sim", SERIAL, device=device, progress=False)
            np.testing.assert_array_equal(acc.run_layer(x, layer), golden_output(x, layer))


# --------------------------------------------------------------------------------------------
# Bit-exact on the simulated hardware against the real runtimes, in the matching mode.
# --------------------------------------------------------------------------------------------


def _runtime_layers(count, seed):
    from pwconv.host.runtimes import random_scales
    rng = np.random.default_rng(seed)
    for _ in range(count):
        channels, filters = int(rng.integers(1, 40)), int(rng.integers(1, 30))
        w = rng.integers(-127, 128, size=(channels, filters), dtype=np.int8)
        bias = rng.integers(-30000, 30000, size=filters).astype(np.int32)
        s_in, s_w, s_out = random_scales(rng, filters, channels)
        zi, zo = int(rng.integers(-128, 128)), int(rng.integers(-40, 40))
        h, wd = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        x = rng.integers(-128, 128, size=(1, h, wd, channels), dtype=np.int8)
        yield x, w, bias, (s_in, s_w, s_out), zi, zo


@pytest.mark.parametrize("runtime", ["tflite-reference", "tflite-ruy", "tflite-xnnpack",
                                     "onnxruntime"])
def test_verilator_matches_runtime(runtime):
    pytest.importorskip("ai_edge_litert")
    pytest.importorskip("onnxruntime")
    from pwconv.host.runtimes import run_runtime
    rounding = golden.RUNTIME_ROUNDING[runtime]
    acc = Accelerator("verilator", PARALLEL, progress=False)
    outputs = 0
    for x, w, bias, scales, zi, zo in _runtime_layers(12, seed=len(runtime)):
        y_rt = run_runtime(runtime, x, w, bias, scales, zi, zo)
        m, s, sc = golden.layer_requant_params(*scales, rounding)
        q = Quantization(m, s, input_zero_point=zi, output_zero_point=zo, rounding=rounding,
                         scale=sc)
        np.testing.assert_array_equal(acc.conv1x1(x, w, bias, q), y_rt)
        outputs += y_rt.size
    assert outputs > 500

"""`pwconv model` and host.model: whole .tflite models end to end against ai-edge-litert."""

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite")

from tflite_builder import ModelBuilder  # noqa: E402

from pwconv.cli import main  # noqa: E402
from pwconv.host.accelerator import Accelerator  # noqa: E402
from pwconv.host.layer import Quantization, load_layer  # noqa: E402
from pwconv.host.model import ModelError, load_model  # noqa: E402

MODELS = Path(__file__).parent / "models"
MOBILENET = MODELS / "mobilenetv2_035_96.tflite"
OPS = MODELS / "ops.tflite"


def _input(path):
    return np.load(path.with_suffix(".input.npy"))


@pytest.mark.parametrize("path", [MOBILENET, OPS], ids=["mobilenetv2", "ops"])
def test_golden_matches_tflite_reference(path):
    model = load_model(path)
    x = _input(path)
    run = model.run(x, Accelerator("golden"))
    ref, layers, inputs = model.reference(x, "tflite-reference")
    assert run.output.dtype == ref.dtype and run.output.shape == ref.shape
    assert np.array_equal(run.output, ref)
    assert set(run.offloaded) <= set(layers) and set(run.offloaded) <= set(inputs)
    for name, y in run.offloaded.items():
        assert np.array_equal(y, layers[name]), name
        assert np.array_equal(run.layer_sources[name], inputs[name]), name


def test_every_pointwise_layer_is_offloaded():
    model = load_model(MOBILENET)
    run = model.run(_input(MOBILENET), Accelerator("golden"))
    on = [s for s in run.ops if s.where == "pwconv"]
    assert len(on) == 35                 # 34 1x1 convs + the classifier
    assert {s.op for s in on} == {"CONV_2D", "FULLY_CONNECTED"}
    first = run.ops[0]
    assert first.op == "CONV_2D" and first.where == "host"     # the 3x3 stride-2 stem


def test_ops_model_uses_every_supported_op():
    from pwconv.host.model.tflite_model import SUPPORTED_OPS
    model = load_model(OPS)
    used = {op for op, *_ in model.ops}
    assert used >= set(SUPPORTED_OPS) - {"PADV2"}


def test_verilator_matches_tflite_reference(tmp_path):
    out = tmp_path / "y.npy"
    assert main(["model", str(OPS), "--backend", "verilator", "--input",
                 str(OPS.with_suffix(".input.npy")), "--out", str(out)]) == 0
    model = load_model(OPS)
    ref = model.reference(_input(OPS), "tflite-reference")[0]
    assert np.array_equal(np.load(out), ref)


def test_cli_table_and_replayable_layers(tmp_path, capsys):
    layers = tmp_path / "layers"
    assert main(["model", str(OPS), "--backend", "golden", "--layers-out", str(layers)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^\s+3 CONV_2D\s+1x8x8x16\s+pwconv\s+16,384", text, re.M)
    assert re.search(r"^\s+1 CONV_2D\s+1x8x8x16\s+host\s+27,648", text, re.M)
    assert re.search(r"^MACs: [\d,]+ in all, [\d,]+ \(\d+\.\d%\) on pwconv in 3 layers$", text,
                     re.M)
    assert "bit-exact vs tflite-reference: yes (final output)" in text
    npz = sorted(layers.glob("*.npz"))
    assert [p.name for p in npz] == ["003_conv_2d.npz", "011_conv_2d.npz",
                                     "013_fully_connected.npz"]
    y = tmp_path / "replay.npy"
    assert main(["run", str(npz[1]), "--backend", "golden", "--out", str(y)]) == 0
    assert np.array_equal(np.load(y), np.load(npz[1].with_suffix(".y.npy")))
    x, _ = load_layer(npz[1])
    assert x.dtype == np.int8


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def _one_op_model(op, options=None, dtype=np.int8, quantized=True, **fields):
    b = ModelBuilder()
    q = (0.1, 0) if quantized else (None, 0)
    x = b.tensor("x", (1, 4, 4, 2), dtype, *q)
    y = b.tensor("y", (1, 4, 4, 2), dtype, *q)
    b.op(op, [x], [y], options, **fields)
    return b.finish([x], [y])


def test_cli_rejects_bad_models(tmp_path, capsys):
    corrupt = _write(tmp_path, "corrupt.tflite", b"\x00" * 4 + b"TFL3" + b"\xff" * 40)
    assert re.match(r"^pwconv: error: .*corrupt\.tflite: not a valid \.tflite flatbuffer",
                    _error(capsys, ["model", str(corrupt), "--backend", "golden"]))
    text = _write(tmp_path, "text.tflite", b"hello, not a model")
    assert re.match(r"^pwconv: error: .*text\.tflite: not a valid \.tflite flatbuffer "
                    r"\(no TFL3 file identifier\)$",
                    _error(capsys, ["model", str(text), "--backend", "golden"]))
    tanh = _write(tmp_path, "tanh.tflite", _one_op_model("TANH"))
    assert re.match(r"^pwconv: error: tanh\.tflite: op 0 \(TANH\) is not supported \(pwconv "
                    r"runs CONV_2D, ", _error(capsys, ["model", str(tanh)]))
    unquant = _write(tmp_path, "unquant.tflite", _one_op_model(
        "MAX_POOL_2D", "Pool2DOptions", quantized=False, strideW=1, strideH=1, filterWidth=1,
        filterHeight=1))
    assert _error(capsys, ["model", str(unquant)]) == (
        "pwconv: error: unquant.tflite: op 0 (MAX_POOL_2D): int8 tensor 'x' has no "
        "quantization parameters")
    floating = _write(tmp_path, "float.tflite", _one_op_model(
        "MAX_POOL_2D", "Pool2DOptions", dtype=np.float32, quantized=False, strideW=1,
        strideH=1, filterWidth=1, filterHeight=1))
    assert _error(capsys, ["model", str(floating)]) == (
        "pwconv: error: float.tflite: op 0 (MAX_POOL_2D) has float32 tensor 'x': a float "
        "model; pwconv runs full-int8 models")
    assert _error(capsys, ["model", str(tmp_path / "missing.tflite")]) == (
        f"pwconv: error: {tmp_path / 'missing.tflite'}: no such file")


def test_float_conv_weights_are_a_float_model(tmp_path, capsys):
    b = ModelBuilder()
    x = b.tensor("x", (1, 2, 2, 3), np.float32)
    w = b.const("w", np.ones((4, 1, 1, 3), np.float32))
    y = b.tensor("y", (1, 2, 2, 4), np.float32)
    b.op("CONV_2D", [x, w, -1], [y], "Conv2DOptions", strideW=1, strideH=1)
    path = _write(tmp_path, "fconv.tflite", b.finish([x], [y]))
    assert _error(capsys, ["model", str(path)]) == (
        "pwconv: error: fconv.tflite: op 0 (CONV_2D) has float32 weights: a float model; "
        "pwconv runs full-int8 models (convert with a representative dataset and "
        "TFLITE_BUILTINS_INT8)")


def test_cli_validates_input(tmp_path, capsys):
    bad_dtype = tmp_path / "x.npy"
    np.save(bad_dtype, np.zeros((1, 16, 16, 3), np.int8))
    assert _error(capsys, ["model", str(OPS), "--input", str(bad_dtype)]) == (
        f"pwconv: error: {bad_dtype}: expected dtype float32 for ops.tflite, got int8")
    np.save(bad_dtype, np.zeros((1, 16, 15, 3), np.float32))
    assert _error(capsys, ["model", str(OPS), "--input", str(bad_dtype)]) == (
        f"pwconv: error: {bad_dtype}: expected shape [1, 16, 16, 3] for ops.tflite, "
        f"got [1, 16, 15, 3]")
    assert _error(capsys, ["model", str(OPS), "--runtime", "onnxruntime"]) == (
        "pwconv: error: --runtime: 'onnxruntime' cannot run ops.tflite (choose from "
        "tflite-reference, tflite-ruy, tflite-xnnpack)")


def test_load_model_rejects_unknown_suffix(tmp_path):
    path = _write(tmp_path, "m.pb", b"")
    with pytest.raises(ModelError, match=r"^.*m\.pb: unknown model format '\.pb' \(expected "
                       r"\.tflite or \.onnx\)$"):
        load_model(path)


def test_no_tensorflow_needed():
    code = ("import sys; import pwconv.host.model.tflite_model, ai_edge_litert.interpreter; "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_mobilenet_on_verilator_matches_tflite_reference(tmp_path):
    out = tmp_path / "y.npy"
    assert main(["model", str(MOBILENET), "--backend", "verilator", "--input",
                 str(MOBILENET.with_suffix(".input.npy")), "--out", str(out)]) == 0
    ref = load_model(MOBILENET).reference(_input(MOBILENET), "tflite-reference")[0]
    assert np.array_equal(np.load(out), ref)


def test_strided_1x1_conv_runs_on_pwconv(tmp_path):
    """ResNet's downsampling shortcut: a 1x1 stride-2 conv is the 1x1 conv of the subsampled
    input, so it is offloaded, bit-exact with the reference kernels (odd and even sizes)."""
    rng = np.random.default_rng(5)
    for h, w, padding in ((7, 6, 0), (8, 5, 1)):
        b = ModelBuilder()
        x = b.tensor("x", (1, h, w, 6), np.int8, 0.04, 3)
        ws = rng.uniform(0.005, 0.02, 10).astype(np.float32)
        wt = b.const("w", rng.integers(-127, 128, (10, 1, 1, 6), dtype=np.int8), ws, 0)
        bt = b.const("b", rng.integers(-999, 999, 10).astype(np.int32), ws * np.float32(0.04))
        y = b.tensor("y", (1, (h + 1) // 2, (w + 1) // 2, 10), np.int8, 0.05, -4)
        b.op("CONV_2D", [x, wt, bt], [y], "Conv2DOptions", padding=padding, strideW=2,
             strideH=2, fusedActivationFunction=1)
        path = _write(tmp_path, f"s2_{h}.tflite", b.finish([x], [y]))
        model = load_model(path)
        xin = model.random_input(h)
        run = model.run(xin, Accelerator("golden"))
        assert [s.where for s in run.ops] == ["pwconv"]
        ref = model.reference(xin, "tflite-reference")[0]
        assert np.array_equal(run.output, ref)


def test_ruy_report_compares_only_layers_fed_alike(capsys):
    """Against the optimized kernels, whose host-side ops round differently too, a layer is
    compared only where ruy fed it exactly what pwconv did."""
    assert main(["model", str(MOBILENET), "--backend", "golden", "--runtime", "tflite-ruy",
                 "--input", str(MOBILENET.with_suffix(".input.npy"))]) in (0, 1)
    text = capsys.readouterr().out
    m = re.search(r"^bit-exact vs tflite-ruy: (yes|NO) \((\d+) of (\d+) offloaded layers", text,
                  re.M)
    assert m, text
    skipped = re.search(r"^(\d+) offloaded layer\(s\) not compared: tflite-ruy fed them", text,
                        re.M)
    assert int(m.group(3)) + (int(skipped.group(1)) if skipped else 0) == 35


HOST_ROUNDING = any(f.name == "rounding" for f in dataclasses.fields(Quantization))


@pytest.mark.skipif(not HOST_ROUNDING, reason="the accelerator has no rounding modes yet")
@pytest.mark.parametrize("runtime", ["tflite-ruy", "tflite-xnnpack"])
def test_other_runtimes_match_their_rounding_mode(runtime):
    """With the mode golden.RUNTIME_ROUNDING names, every offloaded layer fed alike equals the
    optimized kernels' output (ruy); XNNPACK keeps no intermediate tensors, so only the run's
    mode is checked there."""
    from pwconv import golden
    model = load_model(MOBILENET)
    x = _input(MOBILENET)
    run = model.run(x, Accelerator("golden"), runtime=runtime)
    assert run.rounding == golden.RUNTIME_ROUNDING[runtime]
    _, layers, inputs = model.reference(x, runtime)
    compared = 0
    for name, y in run.offloaded.items():
        if name in inputs and np.array_equal(inputs[name].reshape(-1),
                                             run.layer_sources[name].reshape(-1)):
            assert np.array_equal(y, layers[name]), name
            compared += 1
    assert compared >= (10 if runtime == "tflite-ruy" else 0)


def test_padv2_and_requantizing_quantize(tmp_path):
    """The two ops the bundled models lack: PADV2 (an explicit pad value) and QUANTIZE from
    int8 to int8 (a requantization), through the model runner against the reference kernels."""
    b = ModelBuilder()
    x = b.tensor("x", (1, 3, 3, 4), np.int8, 0.07, -5)
    pads = b.const("pads", np.array([[0, 0], [2, 1], [1, 0], [0, 0]], np.int32))
    value = b.const("value", np.array([17], np.int8), 0.07, -5)
    p = b.tensor("p", (1, 6, 4, 4), np.int8, 0.07, -5)
    q = b.tensor("q", (1, 6, 4, 4), np.int8, 0.03, 9)
    b.op("PADV2", [x, pads, value], [p])
    b.op("QUANTIZE", [p], [q])
    path = _write(tmp_path, "padv2.tflite", b.finish([x], [q]))
    model = load_model(path)
    xin = model.random_input(4)
    run = model.run(xin, Accelerator("golden"))
    ref = model.reference(xin, "tflite-reference")[0]
    assert np.array_equal(run.output, ref)
    assert int((ref == ref[0, 0, 0, 0]).sum()) >= 2 * 4 * 4      # the padded rows


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_fully_connected_batch_on_pwconv(tmp_path, per_channel):
    """FULLY_CONNECTED with a batch of 3: per-tensor weights take GetQuantizedConvolution-
    Multipler's float32 product, per-channel ones PopulateConvolutionQuantizationParams'."""
    rng = np.random.default_rng(9)
    b = ModelBuilder()
    x = b.tensor("x", (3, 20), np.int8, 0.05, 4)
    ws = rng.uniform(0.002, 0.03, 7 if per_channel else 1).astype(np.float32)
    w = b.const("w", rng.integers(-127, 128, (7, 20), dtype=np.int8), ws, 0, axis=0)
    bias = b.const("b", rng.integers(-500, 500, 7).astype(np.int32),
                   np.broadcast_to(ws * np.float32(0.05), (7,)))
    y = b.tensor("y", (3, 7), np.int8, 0.1, -2)
    b.op("FULLY_CONNECTED", [x, w, bias], [y], "FullyConnectedOptions",
         fusedActivationFunction=3)
    model = load_model(_write(tmp_path, "fc.tflite", b.finish([x], [y])))
    xin = model.random_input(1)
    run = model.run(xin, Accelerator("golden"))
    assert [(s.where, s.macs) for s in run.ops] == [("pwconv", 3 * 20 * 7)]
    assert np.array_equal(run.output, model.reference(xin, "tflite-reference")[0])

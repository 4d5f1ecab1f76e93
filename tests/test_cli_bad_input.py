"""`pwconv model` and the API on bad input: each is refused with one line (issue 27, part 2)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from tflite_builder import ModelBuilder  # noqa: E402

from pwconv.cli import main  # noqa: E402
from pwconv.host.accelerator import Accelerator  # noqa: E402
from pwconv.host.layer import LayerError, random_layer  # noqa: E402
from pwconv.host.model import ModelError, load_model  # noqa: E402

MODELS = Path(__file__).parent / "models"
OPS = MODELS / "ops.tflite"                 # float32 input, every supported op
QDQ = MODELS / "pointwise_qdq.onnx"         # float32 input
GOLDEN = ["--backend", "golden"]


def _error(capsys, argv, pattern):
    """``argv`` exits with status 2 and exactly one stderr line ``pwconv: error: `` +
    ``pattern`` (a regex matched to the end of the line)."""
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert re.fullmatch("pwconv: error: " + pattern, err.rstrip("\n")), err
    return err


def _conv_model(path, *, filters=4, w_dtype=np.int8, w_scales=None, bias_dtype=np.int32,
                act_dtype=np.int8, y_dtype=None, stride=(1, 1), inputs=None,
                float_input=False, graph=None):
    """A one-CONV_2D (1x1) .tflite: x [1, 2, 2, 3] -> y [1, 2, 2, filters]; the keywords plant
    one defect each. ``inputs(x, w, bias)`` gives the conv's input tensor indices;
    ``graph(x, y)`` the subgraph's (inputs, outputs)."""
    b = ModelBuilder()
    x = b.tensor("x", (1, 2, 2, 3), act_dtype, 0.1, 1)
    scales = np.linspace(0.01, 0.02, filters) if w_scales is None else w_scales
    w = b.const("w", (np.arange(filters * 3).reshape(filters, 1, 1, 3) % 7).astype(w_dtype),
                scales)
    bias = b.const("bias", np.arange(filters).astype(bias_dtype), 0.001)
    y = b.tensor("y", (1, 2, 2, filters), act_dtype if y_dtype is None else y_dtype, 0.2, -1)
    first = x
    if float_input:
        first = b.tensor("x_float", (1, 2, 2, 3), np.float32)
        b.op("QUANTIZE", [first], [x])
    b.op("CONV_2D", [x, w, bias] if inputs is None else inputs(x, w, bias), [y],
         "Conv2DOptions", strideW=stride[1], strideH=stride[0], dilationWFactor=1,
         dilationHFactor=1)
    ins, outs = ([first], [y]) if graph is None else graph(first, y)
    path.write_bytes(b.finish(ins, outs))
    return path


# Outputs: written under exactly the name given, checked before anything runs.

def test_model_out_written_exactly_as_given(tmp_path, capsys):
    model = _conv_model(tmp_path / "m.tflite")
    assert main(["model", str(model), *GOLDEN, "--out", str(tmp_path / "y.bin")]) == 0
    assert f"wrote {tmp_path / 'y.bin'}: int8 [1, 2, 2, 4]" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.tflite", "y.bin"]
    y = np.load(tmp_path / "y.bin")
    x = load_model(model).random_input(0)
    assert np.array_equal(y, load_model(model).reference(x, "tflite-reference")[0])


def test_model_bad_outputs_refused_before_running(tmp_path, capsys, monkeypatch):
    model = _conv_model(tmp_path / "m.tflite")
    (tmp_path / "file").write_text("")
    ran = []
    monkeypatch.setattr("pwconv.host.accelerator.Accelerator.run_layer",
                        lambda *a, **k: ran.append(1))
    argv = ["model", str(model), *GOLDEN]
    layers = ["--layers-out", str(tmp_path / "layers")]
    for out, pattern in [
        (f"{tmp_path}/", r"--out: .*/ is a directory; give a file name"),
        (str(tmp_path), r"--out: .* is a directory; give a file name"),
        (f"{tmp_path}/no/y.npy", r"--out: cannot write .*/no/y\.npy: directory .*/no does not "
                                 r"exist"),
        (f"{tmp_path}/file/y.npy", r"--out: cannot write .*/file/y\.npy: a part of its "
                                   r"directory is a file"),
        ("/proc/y.npy", r"--out: cannot create files in /proc"),
    ]:
        _error(capsys, argv + layers + ["--out", out], pattern)
    for out, pattern in [
        (str(tmp_path / "file"), r"--layers-out: .*/file exists and is not a directory"),
        (f"{tmp_path}/file/layers", r"--layers-out: cannot create .*/file/layers: a part of it "
                                    r"is a file"),
        ("/proc/layers", r"--layers-out: cannot write to /proc/layers: .*"),
    ]:
        _error(capsys, argv + ["--layers-out", out, "--out", str(tmp_path / "y.npy")], pattern)
    assert not ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "m.tflite"]


# Non-finite and wrongly ordered float inputs.

@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("path", [OPS, QDQ], ids=["tflite", "onnx"])
def test_non_finite_input_refused(tmp_path, capsys, path, value):
    x = np.load(path.with_suffix(".input.npy")).copy()
    x.flat[5] = value
    np.save(tmp_path / "x.npy", x)
    _error(capsys, ["model", str(path), *GOLDEN, "--input", str(tmp_path / "x.npy")],
           r".*/x\.npy: 1 of \d+ values is NaN or infinite; the input must be finite")
    with pytest.raises(ModelError, match=r"^input: 1 of \d+ values is NaN or infinite"):
        load_model(path).run(x, Accelerator("golden"))


def test_big_endian_input_named(tmp_path, capsys):
    x = np.load(OPS.with_suffix(".input.npy")).astype(">f4")
    np.save(tmp_path / "x.npy", x)
    _error(capsys, ["model", str(OPS), *GOLDEN, "--input", str(tmp_path / "x.npy")],
           r".*/x\.npy: expected float32 in this machine's \(little-endian\) byte order for "
           r"ops\.tflite, got big-endian float32; convert it with \.astype\(np\.float32\)")


def test_input_seed_names_the_flag(capsys):
    _error(capsys, ["model", str(OPS), *GOLDEN, "--input-seed=-1"],
           r"--input-seed: must be a non-negative integer, not -1")


# Malformed .tflite models.

@pytest.mark.parametrize("make, pattern", [
    (lambda p: _conv_model(p, inputs=lambda x, w, b: [x, 99, b]),
     r"m\.tflite: op 0 \(CONV_2D\): input 1 is tensor 99, but the model has 4 tensors"),
    (lambda p: _conv_model(p, inputs=lambda x, w, b: [x, -5, b]),
     r"m\.tflite: op 0 \(CONV_2D\): input 1 is tensor -5, not a tensor index \(0 to 3, or -1 "
     r"for an omitted optional input\)"),
    (lambda p: _conv_model(p, inputs=lambda x, w, b: [x, -1, b]),
     r"m\.tflite: op 0 \(CONV_2D\): input 1 \(the weights\) is missing \(tensor index -1\)"),
    (lambda p: _conv_model(p, graph=lambda x, y: ([x], [12])),
     r"m\.tflite: the model's output is tensor 12, but the model has 4 tensors"),
    (lambda p: _conv_model(p, act_dtype=np.bool_),
     r"m\.tflite: the model's input 'x' is bool; pwconv runs models with an int8 or float32 "
     r"input"),
    (lambda p: _conv_model(p, y_dtype=np.bool_),
     r"m\.tflite: op 0 \(CONV_2D\): tensor 'y' holds bool activations; pwconv runs int8 "
     r"activations \(full-int8 models\)"),
    (lambda p: _conv_model(p, y_dtype=np.int32),
     r"m\.tflite: op 0 \(CONV_2D\): tensor 'y' holds int32 activations; pwconv runs int8 "
     r"activations \(full-int8 models\)"),
    (lambda p: _conv_model(p, float_input=True, act_dtype=np.int32, y_dtype=np.int8),
     r"m\.tflite: op 0 \(QUANTIZE\): tensor 'x' holds int32 activations; pwconv runs int8 "
     r"activations \(full-int8 models\)"),
    (lambda p: _conv_model(p, w_dtype=np.uint8),
     r"m\.tflite: op 0 \(CONV_2D\) has uint8 weights 'w': pwconv runs int8 weights "
     r"\(full-int8 models: convert with TFLITE_BUILTINS_INT8\)"),
    (lambda p: _conv_model(p, filters=16, w_scales=[0.01, 0.02, 0.03]),
     r"m\.tflite: op 0 \(CONV_2D\): weights 'w' have 3 scales for 16 filters \(expected 1 or "
     r"16\)"),
    (lambda p: _conv_model(p, stride=(0, 1)),
     r"m\.tflite: op 0 \(CONV_2D\): stride 0x1: both must be at least 1"),
    (lambda p: _conv_model(p, bias_dtype=np.int64),
     r"m\.tflite: op 0 \(CONV_2D\): bias 'bias' is int64; TFLite's int8 kernels take an int32 "
     r"bias"),
], ids=["index-out-of-range", "negative-index", "missing-weights", "output-out-of-range",
        "bool-input", "bool-activations", "int32-output", "int32-activations", "uint8-weights",
        "weight-scales", "zero-stride", "int64-bias"])
def test_malformed_tflite_one_line(tmp_path, capsys, make, pattern):
    path = make(tmp_path / "m.tflite")
    _error(capsys, ["model", str(path), *GOLDEN], pattern)


def test_model_is_a_directory(tmp_path, capsys):
    (tmp_path / "m.tflite").mkdir()
    _error(capsys, ["model", str(tmp_path / "m.tflite"), *GOLDEN],
           r".*/m\.tflite: is a directory, not a model file")


def _onnx_model(path, *, extra=None, opset=13):
    """A QDQ pointwise conv (float input and output) that pwconv offloads, then ``extra``
    nodes (they read ``y`` and must write ``z``)."""
    rng = np.random.default_rng(0)
    c, f = 4, 6
    inits = [numpy_helper.from_array(np.float32(0.05), "s"),
             numpy_helper.from_array(np.int8(0), "zp"),
             numpy_helper.from_array(rng.integers(-127, 128, (f, c, 1, 1), dtype=np.int8), "w"),
             numpy_helper.from_array(np.full(f, 0.01, np.float32), "ws"),
             numpy_helper.from_array(np.zeros(f, np.int8), "wzp")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wzp"], ["wd"], axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["c"], kernel_shape=[1, 1]),
             helper.make_node("QuantizeLinear", ["c", "s", "zp"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "s", "zp"], ["y"])]
    out = "y"
    imports = [helper.make_opsetid("", opset)]
    if extra is not None:
        nodes.append(extra)
        out = "z"
        imports.append(helper.make_opsetid(extra.domain, 1))
    graph = helper.make_graph(
        nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 3, 3])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, [1, f, 3, 3])], inits)
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_onnx_model_builder_runs(tmp_path, capsys):
    """The ONNX model the next tests break is itself fine: it runs, offloaded, bit-exact."""
    assert main(["model", str(_onnx_model(tmp_path / "m.onnx")), *GOLDEN]) == 0
    assert "bit-exact vs onnxruntime: yes (final output)" in capsys.readouterr().out


def test_onnx_unknown_custom_op(tmp_path, capsys):
    custom = helper.make_node("Frobnicate", ["y"], ["z"], domain="com.example")
    path = _onnx_model(tmp_path / "m.onnx", extra=custom)
    _error(capsys, ["model", str(path), *GOLDEN],
           r"m\.onnx: onnxruntime cannot run this model \(.*Frobnicate.*\)")


def test_onnx_unsupported_opset(tmp_path, capsys):
    path = _onnx_model(tmp_path / "m.onnx", opset=99)
    _error(capsys, ["model", str(path), *GOLDEN], r".*m\.onnx: .*opset.*99.*")


# `pwconv layer` and `pwconv bench`.

@pytest.mark.parametrize("args, pattern", [
    (["--shape", "1000000x1000000x1000"],
     r"--shape 1000000x1000000x1000: x would hold 1,000,000,000,000,000 values, over the limit "
     r"of 268,435,456 per array"),
    (["--filters", "1000000000000"],
     r"--filters 1000000000000: w would hold 32,000,000,000,000 values, over the limit of "
     r"268,435,456 per array"),
    (["--shape", "1000x1000x1", "--filters", "1000"],
     r"--filters 1000: the output would hold 1,000,000,000 values, over the limit of "
     r"268,435,456 per array"),
])
def test_layer_too_large_refused(tmp_path, capsys, args, pattern):
    _error(capsys, ["layer", str(tmp_path / "l.npz"), *args], pattern)
    assert not (tmp_path / "l.npz").exists()


def test_bench_empty_layers_refused(capsys, monkeypatch):
    monkeypatch.setattr("pwconv.host.bench.run_bench", lambda *a, **k: pytest.fail("ran"))
    _error(capsys, ["bench", "--layers", ""],
           r"--layers must be comma-separated numbers 1\.\.35, not ''")


# The Python API.

def test_run_layer_validates_x():
    x, layer = random_layer((2, 2, 3), 4, seed=0)
    acc = Accelerator("golden")
    for bad, dtype in [(x.astype(np.float64), "float64"), (x.astype(np.int32), "int32")]:
        with pytest.raises(LayerError, match=rf"^x: expected dtype int8, got {dtype}$"):
            acc.run_layer(bad, layer)
    with pytest.raises(LayerError, match=r"^x: shape \(2, 2, 5\) has C = 5, but the layer's "
                       r"w \(3, 4\) has C = 3$"):
        acc.run_layer(np.zeros((2, 2, 5), np.int8), layer)
    with pytest.raises(TypeError, match=r"^layer: expected a pwconv\.host\.layer\.Layer, "
                       r"not tuple$"):
        acc.run_layer(x, (layer.w, layer.bias))


def test_model_run_takes_a_backend_name(tmp_path):
    model = load_model(_conv_model(tmp_path / "m.tflite"))
    x = model.random_input(0)
    expected = model.run(x, Accelerator("golden")).output
    assert np.array_equal(model.run(x, "golden").output, expected)
    with pytest.raises(ValueError, match=r"^backend must be one of golden, .*, not 'gold'$"):
        model.run(x, "gold")
    with pytest.raises(TypeError, match=r"^accelerator: expected an Accelerator or a backend "
                       r"name \(golden, .*\), not int$"):
        model.run(x, 3)


# argparse's own errors, and a closed pipe.

@pytest.mark.parametrize("argv, pattern", [
    ([], r"the following arguments are required: command"),
    (["model"], r"the following arguments are required: model"),
    (["model", str(OPS), "--backend", "nope"],
     r"argument --backend: invalid choice: 'nope' \(choose from .*\)"),
    (["layer", "l.npz", "--filters", "many"], r"argument --filters: invalid int value: 'many'"),
    (["frobnicate"], r"argument command: invalid choice: 'frobnicate' \(choose from .*\)"),
])
def test_argparse_errors_are_one_line(capsys, argv, pattern):
    _error(capsys, argv, pattern)


def test_closed_pipe_exits_quietly():
    """`pwconv model ... | head`: the reader goes away before the report is written."""
    proc = subprocess.Popen([sys.executable, "-m", "pwconv.cli", "model", str(OPS), *GOLDEN],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONWARNINGS": ""})
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=120) == 141 and err == b""


def test_first_build_estimate_is_measured():
    """`make demo` announced "once, ~12 s" and built for 29.5 s: the estimate now comes from
    fresh 8x8 Verilator builds measured on an idle 2-core machine (29.0, 23.2, 23.3 s; 4x4
    17.9 s, see sim/cache.py)."""
    from pwconv.config import ArrayConfig
    from pwconv.sim.cache import build_estimate
    assert 23 <= build_estimate("verilator", ArrayConfig()) <= 30
    assert 15 <= build_estimate("verilator", ArrayConfig(rows=4, cols=4)) <= 21

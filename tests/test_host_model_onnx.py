"""`pwconv model M.onnx`: QDQ and QLinearConv models against onnxruntime."""

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from pwconv import golden  # noqa: E402
from pwconv.cli import main  # noqa: E402
from pwconv.host.accelerator import Accelerator  # noqa: E402
from pwconv.host.layer import Quantization  # noqa: E402
from pwconv.host.model import load_model  # noqa: E402
from pwconv.host.model.onnx_model import ONNXModel  # noqa: E402

QDQ = Path(__file__).parent / "models" / "pointwise_qdq.onnx"
X = np.load(QDQ.with_suffix(".input.npy"))
HOST_FLOAT = any(f.name == "rounding" for f in dataclasses.fields(Quantization))


def test_finds_every_pointwise_conv():
    model = load_model(QDQ)
    assert [g.op for g in model.groups] == ["Conv (QDQ)"] * 3
    kinds = [kind for kind, _ in model.steps]
    assert kinds == ["onnxruntime", "pwconv", "pwconv", "onnxruntime", "pwconv", "onnxruntime"]
    assert not model.notes
    run = model.run(X, Accelerator("golden"))
    assert run.pwconv_macs == run.total_macs == 12 * 12 * (16 * 32 + 32 * 32 + 32 * 24)


def _float_convs(monkeypatch):
    """Make offloaded convs compute what ONNX Runtime computes (golden's "float" mode)."""
    def float_conv(self, g, x_q, offload, rounding):
        layer = self._layer(g, "double")
        _, _, scale = golden.layer_requant_params(
            g.x_q[0], np.broadcast_to(g.w_scale, (layer.filters,)), g.y_q[0], "float")
        sh, sw = g.stride
        x8 = (x_q.astype(np.int16) - (128 if g.uint8_in else 0)).astype(np.int8)
        y = golden.conv1x1(x8[:, :, ::sh, ::sw].transpose(0, 2, 3, 1), layer.w, layer.bias,
                           input_zero_point=layer.quant.input_zero_point,
                           output_zero_point=layer.quant.output_zero_point,
                           output_multiplier=None, output_shift=None, rounding="float",
                           scale=scale)
        y = np.ascontiguousarray(y.transpose(0, 3, 1, 2))
        return (y.astype(np.int16) + 128).astype(np.uint8) if g.uint8_out else y
    monkeypatch.setattr(ONNXModel, "_offload", float_conv)


def test_partition_is_exact_with_onnxruntime_arithmetic(monkeypatch):
    """The onnxruntime segments between the offloaded convs reproduce the whole model exactly
    when the convs compute what ONNX Runtime computes."""
    _float_convs(monkeypatch)
    model = load_model(QDQ)
    run = model.run(X, Accelerator("golden"))
    assert np.array_equal(run.output, model.reference(X)[0])


@pytest.mark.parametrize("backend", ["golden", "verilator"])
def test_end_to_end_against_onnxruntime(backend):
    model = load_model(QDQ)
    run = model.run(X, Accelerator(backend))
    ref, layers, _ = model.reference(X, "onnxruntime", run)
    assert run.output.shape == ref.shape and run.output.dtype == ref.dtype
    assert set(layers) == set(run.offloaded)
    if HOST_FLOAT:
        assert run.rounding == "float"
        assert np.array_equal(run.output, ref)
        for name, y in run.offloaded.items():
            assert np.array_equal(y, layers[name]), name
    else:
        # Until the accelerator has the float mode: "double" rounds within one step of it.
        for name, y in run.offloaded.items():
            diff = np.abs(y.astype(np.int64) - layers[name].astype(np.int64))
            assert diff.max() <= 1 and np.count_nonzero(diff) < 0.01 * diff.size, name


def _qlinearconv_model(path, uint8):
    rng = np.random.default_rng(3)
    c, f = 8, 12
    qt, dt = (TensorProto.UINT8, np.uint8) if uint8 else (TensorProto.INT8, np.int8)
    zp = 130 if uint8 else 2
    w = rng.integers(-127, 128, (f, c, 1, 1), dtype=np.int8)
    inits = [numpy_helper.from_array(np.float32(0.05), "xs"),
             numpy_helper.from_array(np.asarray(zp, dt), "xzp"),
             numpy_helper.from_array(w, "w"),
             numpy_helper.from_array(rng.uniform(0.002, 0.02, f).astype(np.float32), "ws"),
             numpy_helper.from_array(np.zeros(f, np.int8), "wzp"),
             numpy_helper.from_array(np.float32(0.2), "ys"),
             numpy_helper.from_array(np.asarray(zp - 5, dt), "yzp"),
             numpy_helper.from_array(rng.integers(-999, 999, f).astype(np.int32), "b"),
             numpy_helper.from_array(np.float32(0.2), "os")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xzp"], ["xq"]),
             helper.make_node("QLinearConv", ["xq", "xs", "xzp", "w", "ws", "wzp", "ys", "yzp",
                                              "b"], ["yq"], kernel_shape=[1, 1]),
             helper.make_node("DequantizeLinear", ["yq", "ys", "yzp"], ["y"])]
    graph = helper.make_graph(
        nodes, "qlinear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, 5, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, f, 5, 7])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    del qt
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("uint8", [False, True], ids=["int8", "uint8"])
def test_qlinearconv_runs_on_pwconv(tmp_path, uint8):
    path = _qlinearconv_model(tmp_path / "q.onnx", uint8)
    model = load_model(path)
    assert [g.op for g in model.groups] == ["QLinearConv"]
    x = model.random_input(1)
    run = model.run(x, Accelerator("golden"))
    ref, layers, _ = model.reference(x, "onnxruntime", run)
    (y,) = run.offloaded.values()
    (y_ref,) = layers.values()
    assert y.dtype == y_ref.dtype == (np.uint8 if uint8 else np.int8)
    diff = np.abs(y.astype(np.int64) - y_ref.astype(np.int64))
    assert diff.max() <= (0 if HOST_FLOAT else 1)


def _error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_cli_rejects_bad_onnx(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not protobuf\xff\xff")
    assert re.match(r"^pwconv: error: .*bad\.onnx: not a valid ONNX model \(",
                    _error(capsys, ["model", str(bad), "--backend", "golden"]))
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "float",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    floating = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), floating)
    assert _error(capsys, ["model", str(floating)]) == (
        "pwconv: error: float.onnx: no quantized 1x1 convolution to run on pwconv (needs QDQ "
        "DequantizeLinear -> Conv -> QuantizeLinear with int8 weights, or QLinearConv)")
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((1, 16, 12, 12), np.int8))
    assert _error(capsys, ["model", str(QDQ), "--input", str(x)]) == (
        f"pwconv: error: {x}: expected dtype float32 for pointwise_qdq.onnx, got int8")


def test_cli_prints_the_onnx_table(capsys):
    code = main(["model", str(QDQ), "--backend", "golden", "--input",
                 str(QDQ.with_suffix(".input.npy"))])
    text = capsys.readouterr().out
    assert re.search(r"^\s+9 Conv \(QDQ\)\s+1x32x12x12\s+pwconv\s+73,728", text, re.M)
    assert re.search(r"^\s+15 Add\s+1x32x12x12\s+host", text, re.M)
    assert re.search(r"^bit-exact vs onnxruntime: (yes|NO)", text, re.M)
    if HOST_FLOAT:
        assert code == 0 and "bit-exact vs onnxruntime: yes (final output)" in text
    else:
        assert code == 0 and re.search(r"^note: onnxruntime rounds with the 'float' mode", text,
                                       re.M)


def _mixed_qdq_model(path):
    """3x3 conv, pointwise convs (one strided), Resize, Relu, GlobalAveragePool and Gemm,
    quantized to QDQ by onnxruntime.quantization: pwconv takes the 1x1 convs, ONNX Runtime the
    rest."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)
    rng = np.random.default_rng(11)

    def init(name, *shape, scale=0.3):
        return numpy_helper.from_array((rng.standard_normal(shape) * scale).astype(np.float32),
                                       name)
    inits = [init("w3", 16, 3, 3, 3), init("b3", 16), init("wa", 24, 16, 1, 1),
             init("ba", 24), init("wb", 24, 16, 1, 1), init("bb", 24), init("wg", 24, 10),
             init("bg", 10), numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "up")]
    nodes = [helper.make_node("Conv", ["x", "w3", "b3"], ["c3"], kernel_shape=[3, 3],
                              pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c3"], ["r3"]),
             helper.make_node("Conv", ["r3", "wa", "ba"], ["ca"], kernel_shape=[1, 1]),
             helper.make_node("Conv", ["c3", "wb", "bb"], ["cb0"], kernel_shape=[1, 1],
                              strides=[2, 2]),             # a strided 1x1 on the 8x8 map
             helper.make_node("Resize", ["cb0", "", "up"], ["cb"], mode="nearest"),
             helper.make_node("Relu", ["cb"], ["rb"]),
             helper.make_node("Add", ["ca", "rb"], ["s"]),
             helper.make_node("GlobalAveragePool", ["s"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("Gemm", ["f", "wg", "bg"], ["y"])]
    graph = helper.make_graph(
        nodes, "mixed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    fmodel = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fpath = path.with_suffix(".float.onnx")
    onnx.save(fmodel, fpath)
    samples = iter([{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)}
                    for _ in range(8)])

    class Reader(CalibrationDataReader):
        def get_next(self):
            return next(samples, None)
    quantize_static(str(fpath), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8,
                    weight_type=QuantType.QInt8)
    return path


def test_mixed_model_partition_is_exact(tmp_path, monkeypatch):
    path = _mixed_qdq_model(tmp_path / "mixed.onnx")
    model = load_model(path)
    assert sorted(g.stride for g in model.groups) == [(1, 1), (2, 2)]  # 1x1s; 3x3 stays
    x = model.random_input(2)
    run = model.run(x, Accelerator("golden"))
    where = {s.op: s.where for s in run.ops}
    assert where["Conv (QDQ)"] == "pwconv" and where["GlobalAveragePool"] == "host"
    host_conv = [s for s in run.ops if s.where == "host" and s.macs]
    assert host_conv and host_conv[0].macs == 8 * 8 * 16 * 3 * 3 * 3
    _float_convs(monkeypatch)
    exact = load_model(path).run(x, Accelerator("golden"))
    assert np.array_equal(exact.output, model.reference(x)[0])


def test_onnx_layers_replay(tmp_path, capsys):
    layers = tmp_path / "layers"
    assert main(["model", str(QDQ), "--backend", "golden", "--layers-out", str(layers)]) == 0
    names = sorted(p.name for p in layers.glob("*.npz"))
    assert names == ["009_conv_qdq.npz", "012_conv_qdq.npz", "019_conv_qdq.npz"]
    y = tmp_path / "y.npy"
    assert main(["run", str(layers / names[1]), "--backend", "golden", "--out", str(y)]) == 0
    assert np.array_equal(np.load(y), np.load(layers / "012_conv_qdq.y.npy"))


def test_convs_onnxruntime_runs_in_float_stay_there(capsys):
    """With int8 activations ONNX Runtime on x86 rewrites only some Q/DQ pairs to uint8; the two
    convs beside the residual's shared tensor then have mixed types, are not fused and run in
    float. pwconv leaves them to onnxruntime, says so, and stays bit-exact."""
    path = QDQ.with_name("pointwise_qdq_s8.onnx")
    model = load_model(path)
    assert [g.y for g in model.groups] == ["conv2_QuantizeLinear_Output"]
    assert re.match(r"^2 pointwise conv\(s\) stay in onnxruntime, which does not fuse them",
                    model.notes[0])
    x = np.load(path.with_suffix(".input.npy"))
    run = model.run(x, Accelerator("golden"))
    assert run.rounding == ("float" if HOST_FLOAT else "double")
    if HOST_FLOAT:
        assert np.array_equal(run.output, model.reference(x)[0])

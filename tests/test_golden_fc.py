"""FULLY_CONNECTED bit-exact with ai-edge-litert's reference kernel on trained-like MLPs.

TFLite's reference FULLY_CONNECTED rounds ``acc * s_in * s_w / s_out`` once in float64
(golden.round_double_scale); its CONV_2D and TFLite Micro's FULLY_CONNECTED round twice in fixed
point. These tests build MLPs the way TFLite's converter quantizes a trained one (weights with a
realistic spread, per-tensor and per-channel scales, activation ranges from a float forward pass,
ten layers) and check golden and the accelerator against the interpreter on many inputs.
"""

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite")

from tflite_builder import ModelBuilder, run_reference  # noqa: E402

from pwconv import golden  # noqa: E402
from pwconv.config import ArrayConfig  # noqa: E402
from pwconv.golden import ops  # noqa: E402
from pwconv.host.accelerator import Accelerator  # noqa: E402
from pwconv.host.model import load_model  # noqa: E402


def _affine(lo, hi):
    """TFLite's converter's asymmetric int8 quantization of a float range."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = np.float32((hi - lo) / 255.0)
    zp = int(np.clip(np.round(-128 - lo / float(scale)), -128, 127))
    return scale, zp


def mlp_model(seed, widths, batch, per_channel=False, relu_last=False):
    """A trained-like int8 MLP of ``len(widths) - 1`` FULLY_CONNECTED layers: returns the
    .tflite bytes and a batch of int8 inputs drawn like its calibration data."""
    rng = np.random.default_rng(seed)
    xf = rng.normal(0.0, 1.0, (512, widths[0])).astype(np.float32)
    b = ModelBuilder()
    s_in, zp_in = _affine(float(xf.min()), float(xf.max()))
    x = first = b.tensor("x", (batch, widths[0]), np.int8, s_in, zp_in)
    h = xf
    for n, (c, f) in enumerate(zip(widths, widths[1:])):
        w = (rng.normal(0.0, 1.0, (f, c)) / np.sqrt(c) * rng.uniform(0.5, 2.0)).astype(np.float32)
        bias_f = rng.normal(0.0, 0.1, f).astype(np.float32)
        last = n == len(widths) - 2
        relu = relu_last or not last
        h = h @ w.T + bias_f
        if relu:
            h = np.maximum(h, 0.0)
        s_out, zp_out = _affine(float(h.min()), float(h.max()))
        if per_channel:
            s_w = (np.abs(w).max(axis=1) / 127.0).astype(np.float32)
        else:
            s_w = np.float32(np.abs(w).max() / 127.0)
        wq = np.clip(np.round(w / np.reshape(s_w, (-1, 1))), -127, 127).astype(np.int8)
        bias_scale = np.float32(s_in) * np.asarray(s_w, np.float32)
        bq = np.round(bias_f / bias_scale).astype(np.int32)
        wt = b.const(f"w{n}", wq, s_w, 0, axis=0)
        bt = b.const(f"b{n}", bq, bias_scale, 0)
        y = b.tensor(f"y{n}", (batch, f), np.int8, s_out, zp_out)
        b.op("FULLY_CONNECTED", [x, wt, bt], [y], "FullyConnectedOptions",
             fusedActivationFunction=1 if relu else 0)
        x, s_in = y, s_out
    data = b.finish([first], [x])
    xq = np.clip(np.round(rng.normal(0.0, 1.0, (batch, widths[0])) / float(
        _affine(float(xf.min()), float(xf.max()))[0])) + zp_in, -128, 127).astype(np.int8)
    return data, xq


def _layers(data):
    """(input tensor, weight, bias, output tensor) details of each FC of a built model."""
    import tflite
    model = tflite.Model.GetRootAsModel(data, 0)
    g = model.Subgraphs(0)
    for i in range(g.OperatorsLength()):
        yield [int(v) for v in g.Operators(i).InputsAsNumpy()], int(g.Operators(i).Outputs(0))


def _quant(interp, index):
    d = interp._get_tensor_details(index, 0)["quantization_parameters"]
    return d["scales"], d["zero_points"]


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_every_layer_matches_reference_kernel(per_channel):
    """Each FC of a 10-layer MLP, fed the interpreter's own input tensor: golden's
    reference FULLY_CONNECTED gives exactly the interpreter's output on all of them, where the
    fixed-point formula of TFLite Micro misses (which is what pwconv computed before)."""
    data, xq = mlp_model(1 + per_channel, [64, 256, 256, 128, 128, 96, 96, 64, 64, 32, 16], 64,
                         per_channel)
    (_,), interp = run_reference(data, [xq])
    exact = outputs = tflm_off = 0
    layers = list(_layers(data))
    for n, ((xi, wi, bi), yi) in enumerate(layers):
        x, w, bias, y = (interp.get_tensor(t) for t in (xi, wi, bi, yi))
        (s_in,), (zp_in,) = _quant(interp, xi)
        s_w, _ = _quant(interp, wi)
        (s_out,), (zp_out,) = _quant(interp, yi)
        lo, hi = ops.activation_range("RELU" if n < len(layers) - 1 else "NONE", s_out, zp_out)
        scale = golden.double_scales(s_in, s_w, s_out)
        got = ops.fully_connected(x, w, bias, input_zero_point=zp_in, output_zero_point=zp_out,
                                  scale=scale, activation_min=lo, activation_max=hi)
        exact += int(np.sum(got == y))
        outputs += y.size
        if per_channel:
            mult, shift = golden.per_channel_multipliers(s_in, s_w, s_out)
        else:
            mult, shift = ops.fully_connected_multiplier(s_in, float(s_w[0]), s_out)
        tflm = ops.fully_connected(x, w, bias, input_zero_point=zp_in, output_zero_point=zp_out,
                                   multiplier=mult, shift=shift, rounding="double",
                                   activation_min=lo, activation_max=hi)
        tflm_off += int(np.sum(tflm != y))
    assert exact == outputs, f"{outputs - exact} of {outputs} FC outputs differ"
    assert tflm_off > 0       # the two-rounding formula is not what the interpreter computes


@pytest.mark.parametrize("backend", ["golden", "verilator"])
def test_mlp_model_matches_reference_on_many_inputs(tmp_path, backend):
    """A whole 10-layer MLP through `TFLiteModel.run`: every FC on the accelerator (in the
    mode that reproduces the reference's float64 rounding), bit-exact on a batch of 64."""
    data, xq = mlp_model(7, [40, 160, 160, 96, 96, 64, 64, 48, 48, 24, 10], 64)
    path = tmp_path / "mlp.tflite"
    path.write_bytes(data)
    model = load_model(path)
    run = model.run(xq, Accelerator(backend))
    assert [s.where for s in run.ops] == ["pwconv"] * 10
    ref, layers, _ = model.reference(xq, "tflite-reference")
    for name, y in run.offloaded.items():
        assert np.array_equal(y, layers[name]), name
    assert np.array_equal(run.output, ref)


def test_fc_without_an_exact_mode_runs_on_the_host(tmp_path):
    """A build with only the "double" mode cannot always reproduce the reference's rounding:
    such a layer runs on the host (bit-exact), the others on the accelerator."""
    data, xq = mlp_model(11, [96, 192, 192, 64, 10], 32)
    path = tmp_path / "mlp.tflite"
    path.write_bytes(data)
    model = load_model(path)
    run = model.run(xq, Accelerator("golden", ArrayConfig(roundings=("double",))))
    ref, _, _ = model.reference(xq, "tflite-reference")
    assert np.array_equal(run.output, ref)
    run_all = model.run(xq, Accelerator("golden"))
    assert [s.where for s in run_all.ops] == ["pwconv"] * 4
    assert np.array_equal(run_all.output, ref)


def _brute_force_case(rng, rounding):
    f = 4
    scale = np.exp(rng.uniform(np.log(1e-5), np.log(0.7), f))
    if rng.random() < 0.3:
        scale = np.ldexp(1.0, -rng.integers(2, 14, f))          # exact ties are common
    acc_lo = rng.integers(-300_000, 0, f)
    acc_hi = acc_lo + rng.integers(1, 300_000, f)
    zp = int(rng.integers(-128, 128))
    act_lo = int(rng.integers(-128, 0))
    act_hi = int(rng.integers(act_lo, 128))
    found = golden.match_double_scale(scale, acc_lo, acc_hi, act_lo - zp, act_hi - zp, rounding)
    return scale, acc_lo, acc_hi, act_lo - zp, act_hi - zp, found


@pytest.mark.parametrize("rounding", ["single", "double"])
def test_match_double_scale_is_exact_on_every_accumulator(rounding):
    """Brute force over every accumulator of each range: the parameters found reproduce
    round_double_scale exactly (ties and the clamp included)."""
    rng = np.random.default_rng(5)
    matched = 0
    for _ in range(40):
        scale, acc_lo, acc_hi, lo, hi, found = _brute_force_case(rng, rounding)
        if found is None:
            continue
        matched += 1
        for f in range(scale.size):
            acc = np.arange(acc_lo[f], acc_hi[f] + 1)
            want = np.clip(golden.round_double_scale(acc, scale[f]), lo, hi)
            got = golden.multiply_by_quantized_multiplier(acc, found[0][f], found[1][f],
                                                          rounding=rounding)
            assert np.array_equal(np.clip(got, lo, hi), want)
    assert matched == 40 if rounding == "single" else matched > 10


def test_round_double_scale_rounds_ties_away_and_casts_like_x86():
    assert golden.round_double_scale([5, -5, 3, -3], 0.5).tolist() == [3, -3, 2, -2]
    assert golden.round_double_scale([2**31 - 1, -2**31], 4.0).tolist() == [-2**31, -2**31]

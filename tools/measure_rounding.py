"""How TFLite's three kernel paths round a model's pointwise layers, against golden's modes.

    .venv/bin/python tools/measure_rounding.py tests/models/mobilenetv2_035_96.tflite

For every layer pwconv offloads (CONV_2D 1x1 stride 1, FULLY_CONNECTED) it takes the layer's
input from the reference interpreter's run of the whole model, runs the layer alone (a one-op
.tflite with the model's weights, scales and activation) through ai-edge-litert with the
reference kernels (BUILTIN_REF), the optimized ruy kernels (BUILTIN_WITHOUT_DEFAULT_DELEGATES)
and the XNNPACK delegate (BUILTIN), and counts the outputs that differ from golden's "double"
mode (what `--runtime tflite-reference` runs) and from the mode golden.RUNTIME_ROUNDING names for
that path. Prints a Markdown table.
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from tflite_builder import ModelBuilder, run_reference  # noqa: E402

from pwconv import golden  # noqa: E402
from pwconv.host.model import load_model  # noqa: E402
from pwconv.host.model.tflite_model import TFLITE_RUNTIMES  # noqa: E402


def one_layer(model, op, ins, outs, table, x):
    """``op`` alone as .tflite bytes, with ``x`` (its input in the whole model) as input."""
    t = model.tensors
    xin, w, out = t[ins[0]], t[ins[1]], t[outs[0]]
    b = ModelBuilder()
    xi = b.tensor("x", x.shape, np.int8, xin.scale, xin.zp())
    wi = b.const("w", w.data, w.scale, 0, axis=0)
    bi = b.const("b", t[ins[2]].data, t[ins[2]].scale, 0) if len(ins) > 2 and ins[2] >= 0 \
        else -1
    yi = b.tensor("y", out.shape, np.int8, out.scale, out.zp())
    if op == "CONV_2D":
        opt = model._options(table, "Conv2DOptions")
        b.op("CONV_2D", [xi, wi, bi], [yi], "Conv2DOptions", padding=opt.Padding(),
             strideW=1, strideH=1, fusedActivationFunction=opt.FusedActivationFunction(),
             dilationWFactor=1, dilationHFactor=1)
    else:
        opt = model._options(table, "FullyConnectedOptions")
        b.op("FULLY_CONNECTED", [xi, wi, bi], [yi], "FullyConnectedOptions",
             fusedActivationFunction=opt.FusedActivationFunction())
    return b.finish([xi], [yi])


def golden_layer(model, op, ins, outs, table, x, rounding):
    """The layer in golden with ``rounding``, parameters computed as pwconv's host does."""
    from pwconv.golden import ops as gops
    t = model.tensors
    xin, wt, out = t[ins[0]], t[ins[1]], t[outs[0]]
    w = wt.data[:, 0, 0, :] if op == "CONV_2D" else wt.data
    f, c = w.shape
    scales = np.broadcast_to(wt.scale, (f,))
    opt = model._options(table, "Conv2DOptions" if op == "CONV_2D" else "FullyConnectedOptions")
    lo, hi = model._activation(opt, out)
    mult, shift, scale = golden.layer_requant_params(xin.s(), scales, out.s(), rounding)
    if rounding != "float" and op == "FULLY_CONNECTED" and wt.scale.size == 1:
        m, s = gops.fully_connected_multiplier(xin.s(), wt.s(), out.s())
        mult, shift = np.full(f, m, np.int32), np.full(f, s, np.int32)
    bias = t[ins[2]].data if len(ins) > 2 and ins[2] >= 0 else np.zeros(f, np.int32)
    y = golden.conv1x1(x.reshape(-1, c), np.ascontiguousarray(w.T), bias,
                       input_zero_point=xin.zp(), output_zero_point=out.zp(),
                       output_multiplier=mult, output_shift=shift, activation_min=lo,
                       activation_max=hi, rounding=rounding, scale=scale)
    return y.reshape(out.shape)


def main(path):
    model = load_model(path)
    x = np.load(Path(path).with_suffix(".input.npy"))
    (_,), interp = run_reference(Path(path).read_bytes(), [x])
    rows = {rt: [0, 0, 0, 0] for rt in TFLITE_RUNTIMES}      # differ(double), differ(own), max
    total = 0
    for op, ins, outs, table in model.ops:
        if op not in ("CONV_2D", "FULLY_CONNECTED"):
            continue
        w = model.tensors[ins[1]]
        if op == "CONV_2D" and w.shape[1:3] != (1, 1):
            continue
        xl = interp.get_tensor(ins[0])
        data = one_layer(model, op, ins, outs, table, xl)
        ref_double = golden_layer(model, op, ins, outs, table, xl, "double")
        total += ref_double.size
        for rt, resolver in TFLITE_RUNTIMES.items():
            (y,), _ = run_reference(data, [xl], resolver, preserve=False)
            own = golden.RUNTIME_ROUNDING[rt]
            mine = golden_layer(model, op, ins, outs, table, xl, own)
            rows[rt][0] += int(np.count_nonzero(y != ref_double))
            rows[rt][1] += int(np.count_nonzero(y != mine))
            rows[rt][2] = max(rows[rt][2], int(np.abs(y.astype(int) - ref_double).max()))
    print(f"Pointwise layers of {Path(path).name}: {total:,} outputs, each layer on the "
          f"reference run's input (`python tools/measure_rounding.py {path}`)\n")
    print("| runtime (ai-edge-litert resolver) | outputs != golden 'double' | max diff | "
          "golden mode | outputs != that mode |")
    print("|---|---|---|---|---|")
    for rt, resolver in TFLITE_RUNTIMES.items():
        d, own, mx, _ = rows[rt]
        print(f"| {rt} ({resolver}) | {d:,} ({100 * d / total:.3f}%) | {mx} | "
              f"{golden.RUNTIME_ROUNDING[rt]} | {own:,} |")
    from pwconv.host.accelerator import Accelerator
    run = model.run(x, Accelerator("golden"))
    print(f"\nWhole model, pwconv (--runtime tflite-reference) against each runtime's final "
          f"output ({run.output.size} values):\n")
    for rt in TFLITE_RUNTIMES:
        ref = model.reference(x, rt)[0]
        d = int(np.count_nonzero(ref != run.output))
        print(f"- {rt}: {d} differ (max |diff| {int(np.abs(ref.astype(int) - run.output).max())})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/models/mobilenetv2_035_96.tflite")

"""Whole .tflite models bit for bit against ai-edge-litert in all three runtime modes.

`pwconv model --backend golden` with ``--runtime tflite-reference`` (BUILTIN_REF),
``tflite-ruy`` (BUILTIN_WITHOUT_DEFAULT_DELEGATES: TFLite's optimized kernels) and
``tflite-xnnpack`` (``Interpreter(model_path=...)`` with no resolver option: the XNNPACK delegate,
and the optimized kernels for what it does not take). The bundled models end in SOFTMAX or
DEQUANTIZE; to compare wide int8 tensors too, copies of MobileNetV2 are cut at inner tensors
(the subgraph's output index rewritten in the flatbuffer) and checked on several inputs.
"""

import warnings
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
tflite = pytest.importorskip("tflite")

from pwconv.host.accelerator import Accelerator  # noqa: E402
from pwconv.host.model import load_model  # noqa: E402
from pwconv.host.model.tflite_model import TFLITE_RUNTIMES, TFLiteModel  # noqa: E402

MODELS = Path(__file__).parent / "models"
BUNDLED = sorted(MODELS.glob("*.tflite"))
RUNTIMES = tuple(TFLITE_RUNTIMES)


def default_interpreter(path, x):
    """The interpreter a user gets with no options: ai-edge-litert's default (XNNPACK)."""
    from ai_edge_litert.interpreter import Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x)
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"])


def cut_at(data, tensor):
    """A copy of .tflite bytes ``data`` whose (single) output is tensor index ``tensor``."""
    graph = tflite.Model.GetRootAsModel(data, 0).Subgraphs(0)
    offset = flatbuffers.number_types.UOffsetTFlags.py_type(graph._tab.Offset(8))
    position = graph._tab.Vector(offset)
    out = bytearray(data)
    out[position:position + 4] = np.int32(tensor).astype("<i4").tobytes()
    return bytes(out)


@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.stem)
def test_bundled_model_bit_exact(path, runtime):
    model = load_model(path)
    acc = Accelerator("golden")
    inputs = [np.load(path.with_suffix(".input.npy"))] + [model.random_input(s)
                                                          for s in range(3)]
    for x in inputs:
        run = model.run(x, acc, runtime=runtime)
        expected = model.reference(x, runtime, run)[0]
        assert np.array_equal(run.output, expected), \
            f"{int((run.output != expected).sum())} of {expected.size} differ"
        if runtime == "tflite-xnnpack":
            # The resolver pwconv asks for (BUILTIN) is what a user gets with no option.
            assert np.array_equal(default_interpreter(path, x), expected)


def _cut_points(model):
    """Inner int8 tensors of the bundled MobileNetV2 worth comparing: the output of each of
    the last ADD, the last DEPTHWISE_CONV_2D, the MEAN and the FULLY_CONNECTED."""
    points = {}
    for op, ins, outs, _ in model.ops:
        if op in ("ADD", "DEPTHWISE_CONV_2D", "MEAN", "FULLY_CONNECTED"):
            points[op] = outs[0]
    return points


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_mobilenet_inner_tensors_bit_exact(tmp_path, runtime):
    path = MODELS / "mobilenetv2_035_96.tflite"
    model = TFLiteModel(path)
    acc = Accelerator("golden")
    compared = 0
    for op, tensor in _cut_points(model).items():
        cut = tmp_path / f"cut_{op.lower()}.tflite"
        cut.write_bytes(cut_at(path.read_bytes(), tensor))
        sub = TFLiteModel(cut)
        for seed in range(3):
            x = sub.random_input(seed)
            run = sub.run(x, acc, runtime=runtime)
            expected = sub.reference(x, runtime, run)[0]
            assert expected.shape == run.output.shape
            assert np.array_equal(run.output, expected), \
                f"{op}: {int((run.output != expected).sum())} of {expected.size} differ"
            compared += expected.size
    assert compared > 10_000


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_cli_says_bit_exact(runtime, capsys):
    """`pwconv model --runtime R --backend golden` on the bundled MobileNetV2: status 0, the
    final output bit-exact, and no excuse note (XNNPACK used to print one)."""
    from pwconv.cli import main
    path = MODELS / "mobilenetv2_035_96.tflite"
    status = main(["model", str(path), "--backend", "golden", "--runtime", runtime,
                   "--input", str(path.with_suffix(".input.npy"))])
    out = capsys.readouterr().out
    assert status == 0, out
    assert f"bit-exact vs {runtime}: yes (final output)" in out
    assert "note:" not in out


BUILT = sorted((MODELS.parent.parent / "build" / "models").glob("*.tflite"))


@pytest.mark.slow
@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("path", BUILT or [None], ids=lambda p: p.stem if p else "none")
def test_built_model_bit_exact(tmp_path, path, runtime):
    """The models tools/make_models.py writes to build/models/ (--full, --v1, --resnet,
    --efflite; not bundled: they need tensorflow to make), golden, on their input and a random
    one, cut after the last op of each type too (`make models-runtimes`)."""
    if path is None:
        pytest.skip("no models in build/models/ (tools/make_models.py makes them)")
    model = TFLiteModel(path)
    acc = Accelerator("golden")
    last = {op: outs[0] for op, _, outs, _ in model.ops}
    cuts = [path]
    for op, tensor in last.items():
        if tensor != model.outputs[0] and model.tensors[tensor].type == 9:
            cut = tmp_path / f"cut_{op.lower()}.tflite"
            cut.write_bytes(cut_at(path.read_bytes(), tensor))
            cuts.append(cut)
    for p in cuts:
        sub = model if p == path else TFLiteModel(p)
        for x in (np.load(path.with_suffix(".input.npy")), sub.random_input(1)):
            run = sub.run(x, acc, runtime=runtime)
            expected = sub.reference(x, runtime, run)[0]
            assert np.array_equal(run.output, expected), \
                f"{p.name}: {int((run.output != expected).sum())} of {expected.size} differ"

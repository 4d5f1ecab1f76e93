"""A compiled model resident on a board (host/resident.py) on board-golden: load once / infer many,
image checks and reloads, bit-exact outputs against ai-edge-litert BUILTIN_REF, exact link
accounting, the program commands, the CLI, and a short soak (``make soak-board`` runs 1,000)."""

import json
import os
import random
import re
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite")

from tflite_builder import ModelBuilder, run_reference  # noqa: E402

from pwconv.cli import main  # noqa: E402
from pwconv.config import ArrayConfig  # noqa: E402
from pwconv.host import resident as res  # noqa: E402
from pwconv.host.compiler import format as fmt  # noqa: E402
from pwconv.host.compiler.compile import BOARD_OPS, CompileError  # noqa: E402
from pwconv.host.link import NackError  # noqa: E402
from pwconv.host.model import load_model  # noqa: E402
from pwconv.host.model.base import ModelError  # noqa: E402
from pwconv.hw.link import protocol as proto  # noqa: E402

MODELS = Path(__file__).parent / "models"
#: A small array that splits layers into passes (C in partial sums, F in groups).
SMALL = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=16, weight_depth=8)


class Recording(res.GoldenBoard):
    """board-golden that records every frame it receives and sends (code, payload length),
    counted on its own side of the link: an account independent of LinkedBoard's."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.log = []
        self.bytes_in = self.bytes_out = 0

    def write(self, data):
        self.bytes_in += len(data)
        super().write(data)

    def read(self, n, timeout):
        data = super().read(n, timeout)
        self.bytes_out += len(data)
        return data

    def _serve(self, code, payload):
        reply = super()._serve(code, payload)
        self.log.append((code, bytes(payload), reply[0]))
        return reply


def _board(cfg=None, **kwargs):
    golden = Recording(cfg, **kwargs)
    return res.LinkedBoard(golden, cfg), golden


def _quant_conv(b, rng, name, c, f, k=(1, 1), in_scale=0.05):
    kh, kw = k
    ws = rng.uniform(0.004, 0.02, f).astype(np.float32)
    w = b.const(f"{name}_w", rng.integers(-127, 128, (f, kh, kw, c), dtype=np.int8), ws, 0)
    bias = b.const(f"{name}_b", rng.integers(-3000, 3000, f).astype(np.int32),
                   (ws * np.float32(in_scale)).astype(np.float32))
    return w, bias, float(40 * np.sqrt(kh * kw * c) * in_scale * ws.mean())


def _chain(hw=16, widths=(32, 48, 24, 16), seed=1):
    """1x1 and 3x3 convolutions only: input hw x hw x 32, output hw x hw x 16."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.tensor("x", (1, hw, hw, widths[0]), np.int8, 0.05, -3)
    s_in = 0.05
    for i, (c, f) in enumerate(zip(widths, widths[1:])):
        k = (3, 3) if i == 1 else (1, 1)
        w, bias, s_out = _quant_conv(b, rng, f"c{i}", c, f, k, s_in)
        y = b.tensor(f"y{i}", (1, hw, hw, f), np.int8, s_out, int(rng.integers(-20, 20)))
        b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0, strideW=1, strideH=1,
             fusedActivationFunction=(1, 3, 0)[i % 3])
        x, s_in = y, s_out
    return b.finish([0], [x])


def _mlp(seed=3):
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    widths = (64, 96, 48, 80, 40, 72, 56, 33, 60, 20, 30, 10)
    x = b.tensor("x", (1, widths[0]), np.int8, 0.05, 7)
    s_in = 0.05
    for i, (c, f) in enumerate(zip(widths, widths[1:])):
        ws = rng.uniform(0.004, 0.02, f).astype(np.float32)
        w = b.const(f"w{i}", rng.integers(-127, 128, (f, c), dtype=np.int8), ws, 0)
        bias = b.const(f"b{i}", rng.integers(-2000, 2000, f).astype(np.int32),
                       (ws * np.float32(s_in)).astype(np.float32))
        s_out = float(40 * np.sqrt(c) * s_in * ws.mean())
        y = b.tensor(f"y{i}", (1, f), np.int8, s_out, int(rng.integers(-10, 10)))
        b.op("FULLY_CONNECTED", [x, w, bias], [y], "FullyConnectedOptions",
             fusedActivationFunction=1 if i < 10 else 0)
        x, s_in = y, s_out
    return b.finish([0], [x])


def _write(tmp_path, name, data):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    return path


def _writes(golden, start=0):
    """``(addr, bytes)`` of every MEM_WRITE the board took since log entry ``start``."""
    return [(int.from_bytes(p[:4], "little"), len(p) - 4) for code, p, reply in golden.log[start:]
            if code == proto.Command.MEM_WRITE and reply == proto.Reply.MEM_WRITTEN]


def _merged(writes):
    """Contiguous runs of ``(addr, n)`` writes, merged."""
    out = []
    for addr, n in writes:
        if out and out[-1][0] + out[-1][1] == addr:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((addr, n))
    return out


def test_load_once_infer_many(tmp_path):
    path = _write(tmp_path, "chain", _chain())
    model = load_model(path)
    device, golden = _board()
    resident = res.ResidentModel(model, device, progress=False)
    image = resident.compiled.image
    loaded = sum(n for _, n in _writes(golden))
    assert loaded == len(image) and resident.loads == 1
    view = resident.compiled.header.input
    for seed in range(3):
        mark = len(golden.log)
        x = model.random_input(seed)
        run = resident.run(x)
        # The memory writes of an inference are the input only, once.
        assert _merged(_writes(golden, mark)) == [(view.addr, x.size)]
        assert not run.reloaded and resident.loads == 1
        ref = run_reference(path.read_bytes(), [x])[0][0]
        assert np.array_equal(run.output, ref)
        assert len(np.unique(run.output)) > 4
        # Link bytes: exactly what crossed the board's side of the link.
        assert run.link_bytes > 0
    # Every inference is only the check, the input, the run, the output and the counters.
    codes = [code for code, _, _ in golden.log[mark:]]
    assert codes == [proto.Command.MEM_CRC, proto.Command.MEM_WRITE, proto.Command.MEM_WRITE,
                     proto.Command.MEM_WRITE, proto.Command.RUN_PROGRAM,
                     proto.Command.MEM_READ, proto.Command.READ_COUNTERS]


def test_link_bytes_are_exact_and_within_1_1x(tmp_path):
    path = _write(tmp_path, "chain", _chain())
    model = load_model(path)
    device, golden = _board()
    resident = res.ResidentModel(model, device, progress=False)
    x = model.random_input(5)
    before = golden.bytes_in, golden.bytes_out
    run = resident.run(x)
    assert (run.link_sent, run.link_received) == (golden.bytes_in - before[0],
                                                 golden.bytes_out - before[1])
    payload = x.size + run.output.size
    assert payload < run.link_bytes <= 1.1 * payload, (run.link_bytes, payload)
    assert all(s.where == "board" for s in run.ops)
    assert run.cycles == sum(s.cycles for s in run.ops) > 0 and run.cycles_estimated
    # The estimate is each op's roofline (64 MACs a cycle, 2 SDRAM bytes a cycle).
    roof = resident.compiled.roofline(res.SDRAM_BYTES_PER_CYCLE)
    for s in run.ops:
        assert s.cycles == int(np.ceil(roof[s.index]))
        assert s.sdram_bytes == resident.compiled.ops[s.index].moved_bytes
    assert run.sdram_bytes == resident.compiled.sdram_bytes_per_inference + payload


def test_image_mismatch_detected_and_reloaded(tmp_path):
    chain = load_model(_write(tmp_path, "chain", _chain()))
    mlp = load_model(_write(tmp_path, "mlp", _mlp()))
    device, golden = _board()
    a = res.ResidentModel(chain, device, progress=False)
    x = chain.random_input(1)
    want = a.run(x).output
    # A reset board (memory lost).
    golden.reset()
    mark = len(golden.log)
    run = a.run(x)
    assert run.reloaded and a.loads == 2 and np.array_equal(run.output, want)
    assert sum(n for _, n in _writes(golden, mark)) == len(a.compiled.image) + x.size
    # Another model's image loaded over it, then the first model again.
    b = res.ResidentModel(mlp, device, progress=False)
    xb = mlp.random_input(2)
    yb = b.run(xb).output
    assert np.array_equal(yb, run_reference(mlp.path.read_bytes(), [xb])[0][0])
    run = a.run(x)
    assert run.reloaded and a.loads == 3 and np.array_equal(run.output, want)
    # One weight byte changed on the board: caught by the constant part's CRC.
    at = a.compiled.header.weights_addr + 5
    golden.memory[at] ^= 0x40
    run = a.run(x)
    assert run.reloaded and a.loads == 4 and np.array_equal(run.output, want)
    # The board itself refuses another image id (RUN_PROGRAM names the one it expects).
    with pytest.raises(NackError, match="NO_IMAGE"):
        device.run_program(0, 1, a.image_id ^ 1)


@pytest.mark.parametrize("name, cfg, board_ops, seeds", [
    ("chain", SMALL, "array", (0, 1)), ("mlp", None, "array", (0, 1, 2)),
    ("resnet", SMALL, "array", (0,)),
    ("mobilenetv2_035_96", None, "array", (0,)), ("mobilenetv2_035_96", None, "all", (1,)),
    ("ops", None, "all", (0, 1))])
def test_bit_exact_vs_litert_builtin_ref(tmp_path, name, cfg, board_ops, seeds):
    if name in ("chain", "mlp", "resnet"):
        data = {"chain": lambda: _chain(12), "mlp": _mlp, "resnet": _resnet_like}[name]()
        path = _write(tmp_path, name, data)
    else:
        path = MODELS / f"{name}.tflite"
    model = load_model(path)
    device, _ = _board(cfg)
    resident = res.ResidentModel(model, device, progress=False,
                                 board_ops=BOARD_OPS if board_ops == "all" else
                                 res.ARRAY_OPS)
    for seed in seeds:
        x = model.random_input(seed)
        run = resident.run(x)
        ref = run_reference(path.read_bytes(), [x])[0][0]
        assert run.output.dtype == ref.dtype and run.output.shape == ref.shape
        assert np.array_equal(run.output, ref), f"{int((run.output != ref).sum())} differ"
        assert len(np.unique(run.output)) > 3
    assert resident.loads == 1
    where = {s.where for s in run.ops}
    if name in ("chain", "mlp", "resnet"):
        assert where == {"board"}
    assert run.segments_run == len(resident.compiled.segments)


def _resnet_like():
    rng = np.random.default_rng(2)
    b = ModelBuilder()
    x = b.tensor("x", (1, 16, 16, 3), np.int8, 0.05, 10)
    s_in, shape, c = 0.05, (16, 16), 3
    for i, (k, s, d, same, f) in enumerate([((3, 3), 2, 1, 1, 16), ((3, 3), 1, 2, 1, 24),
                                            ((1, 1), 2, 1, 1, 32), ((3, 3), 1, 1, 0, 40)]):
        w, bias, s_out = _quant_conv(b, rng, f"c{i}", c, f, k, s_in)
        eff = (k[0] - 1) * d + 1
        shape = tuple((v + s - 1) // s if same else (v - eff) // s + 1 for v in shape)
        y = b.tensor(f"y{i}", (1,) + shape + (f,), np.int8, s_out, int(rng.integers(-20, 20)))
        b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0 if same else 1,
             strideW=s, strideH=s, dilationWFactor=d, dilationHFactor=d,
             fusedActivationFunction=1)
        x, s_in, c = y, s_out, f
    flat = shape[0] * shape[1] * c
    r = b.tensor("flat", (1, flat), np.int8, s_in, b.tensors[x]["zero_point"])
    b.op("RESHAPE", [x, b.const("shape", np.array([1, flat], np.int32))], [r])
    ws = np.float32(0.01)
    w = b.const("fc_w", rng.integers(-127, 128, (10, flat), dtype=np.int8), ws, 0)
    bias = b.const("fc_b", rng.integers(-999, 999, 10).astype(np.int32), ws * np.float32(s_in))
    out = b.tensor("logits", (1, 10), np.int8, float(120 * np.sqrt(flat) * s_in * ws), 0)
    b.op("FULLY_CONNECTED", [r, w, bias], [out], "FullyConnectedOptions")
    return b.finish([0], [out])


def test_host_segments_cross_the_link(tmp_path):
    """MobileNetV2 with the array alone: 29 host segments, each reading its inputs and writing
    its outputs; the link carries what the compiler predicts plus framing."""
    model = load_model(MODELS / "mobilenetv2_035_96.tflite")
    device, golden = _board()
    resident = res.ResidentModel(model, device, progress=False)
    run = resident.run(np.load(MODELS / "mobilenetv2_035_96.input.npy"))
    predicted = resident.compiled.link_bytes_per_inference
    stops = [p for code, p, _ in golden.log if code == proto.Command.RUN_PROGRAM]
    assert len(stops) == 29 == run.segments_run          # the last HOST ends the program
    assert predicted < run.link_bytes < 1.05 * predicted
    assert {s.where for s in run.ops} == {"board", "host"}


def test_program_commands(tmp_path):
    stop = proto.ProgramStop(proto.StopReason.HOST, 7, 123456789012, segment=3, estimated=True)
    assert len(stop.pack()) == proto.PROGRAM_STOP_BYTES == 16
    assert proto.ProgramStop.unpack(stop.pack()) == stop
    with pytest.raises(ValueError, match="unknown reason 9"):
        proto.ProgramStop.unpack(bytes([9]) + stop.pack()[1:])
    assert proto.unpack_counters(proto.pack_counters([(1, 2), (1 << 40, 5)])) == \
        [(1, 2), (0xFFFF_FFFF, 5)]
    model = load_model(_write(tmp_path, "chain", _chain(8)))
    device, golden = _board()
    resident = res.ResidentModel(model, device, progress=False)
    resident.run(model.random_input(0))
    n = resident.compiled.header.descriptor_count
    first = device.run_program(0, 500, resident.image_id)
    assert first.reason == proto.StopReason.END and first.descriptor == n - 1
    runs = len(golden.log)
    executed = []
    execute = golden._execute
    golden._execute = lambda *args: executed.append(args) or execute(*args)
    again = device.run_program(0, 500, resident.image_id)     # a retry: not run again
    assert again == first and not executed
    assert device.run_program(0, 501, resident.image_id) == first and len(executed) == 1
    assert len(golden.log) == runs + 2
    with pytest.raises(NackError, match="BAD_DESCRIPTOR"):
        device.run_program(n, 501, resident.image_id)
    with pytest.raises(NackError, match="BAD_DESCRIPTOR"):
        device.read_counters(0, n + 1)
    assert [c for c, _ in device.read_counters(0, n)] == \
        [res.roofline_estimate(device.cfg, d)[0] for d in resident.compiled.descriptors]


def test_board_without_program_gateware_refused(tmp_path):
    class Old(res.GoldenBoard):
        def _serve(self, code, payload):
            if code in proto.PROGRAM_COMMANDS:
                return self._nack(proto.Error.UNKNOWN_COMMAND, code)
            return super()._serve(code, payload)
    model = load_model(_write(tmp_path, "chain", _chain(8)))
    device = res.LinkedBoard(Old())
    resident = res.ResidentModel(model, device, progress=False)
    with pytest.raises(res.NoProgramGateware, match=r"^the board's gateware has no "
                       r"layer-program commands \(RUN_PROGRAM refused as unknown\)"):
        resident.run(model.random_input(0))
    assert res.program_gateware("board-golden")
    if not res.program_gateware("board-sim"):
        with pytest.raises(res.NoProgramGateware, match=r"^--backend board-sim: the board's "
                           r"gateware cannot run a layer program yet"):
            res.open_program_board("board-sim")


def test_bad_input_refused_with_one_line(tmp_path, monkeypatch):
    model = load_model(_write(tmp_path, "chain", _chain(8)))
    device, golden = _board(memory_bytes=1 << 12)
    with pytest.raises(CompileError, match=r"^chain\.tflite: the image needs [\d,]+ bytes of "
                       r"board memory, [\d,]+ more than the board's 4,096$"):
        res.ResidentModel(model, device, progress=False)
    assert not _writes(golden)                       # nothing was loaded
    device, golden = _board()
    resident = res.ResidentModel(model, device, progress=False)
    mark = len(golden.log)
    with pytest.raises(ModelError, match=r"^input: expected shape \[1, 8, 8, 32\] for "
                                         r"chain\.tflite, got \[1, 8, 8, 31\]$"):
        resident.run(np.zeros((1, 8, 8, 31), np.int8))
    with pytest.raises(ModelError, match=r"^input: expected dtype int8"):
        resident.run(np.zeros((1, 8, 8, 32), np.float32))
    assert len(golden.log) == mark                   # nothing sent for a bad input
    with pytest.raises(TypeError, match=r"^device must be a ProgramBoard, not str$"):
        res.ResidentModel(model, "board")


def _cli(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_command_line(tmp_path, capsys, monkeypatch):
    path = _write(tmp_path, "chain", _chain(8))
    report = tmp_path / "r.json"
    out_npy = tmp_path / "y.npy"
    status, out, err = _cli(capsys, "model", str(path), "--backend", "board-golden",
                            "--report", str(report), "--out", str(out_npy),
                            "--inferences", "3")
    assert status == 0, err
    assert "bit-exact vs tflite-reference: yes (final output)" in out
    assert "loaded 1 time(s) for 3 inference(s)" in out
    data = json.loads(report.read_text())
    for key in ("cycles_per_inference", "clock_hz", "link_bytes_per_inference",
                "sdram_bytes_per_inference", "ops"):
        assert key in data
    assert data["bit_exact"] is True and data["clock_hz"] == res.GOLDEN_CLOCK_HZ
    assert data["cycles_estimated"] is True
    assert {op["where"] for op in data["ops"]} == {"board"}
    assert data["cycles_per_inference"] == sum(op["cycles"] for op in data["ops"])
    assert [set(op) >= {"index", "op", "where", "macs", "cycles"} for op in data["ops"]] == \
        [True] * 3
    x = load_model(path).random_input(0)
    assert np.array_equal(np.load(out_npy), run_reference(path.read_bytes(), [x])[0][0])
    # Bad input: one line, exit 2, before anything runs.
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((1, 8, 8, 3), np.int8))
    for argv, message in [
            (("--input", str(bad)), r"expected shape \[1, 8, 8, 32\]"),
            (("--inferences", "0"), r"--inferences: must be a positive integer, not 0"),
            (("--backend", "board-sim"), r"--backend board-sim: the board's gateware cannot"),
            (("--backend", "golden", "--report", str(report)), r"--report, --inferences and "
             r"--board-ops need a backend that runs the compiled model"),
            (("--layers-out", str(tmp_path / "layers")), r"--layers-out: not available with "
             r"--backend board-golden")]:
        if "board-sim" in argv and res.program_gateware("board-sim"):
            continue
        full = ["model", str(path), "--backend", "board-golden", *argv]
        status, out, err = _cli(capsys, *full)
        assert status == 2 and re.match(rf"^pwconv: error: .*{message}", err), err
        assert err.count("\n") == 1
    status, out, err = _cli(capsys, "model", str(MODELS / "pointwise_qdq.onnx"), "--backend",
                            "board-golden")
    assert status == 2 and re.match(r"^pwconv: error: .*pointwise_qdq\.onnx: --backend "
                                    r"board-golden runs \.tflite models only", err), err
    monkeypatch.setattr(fmt, "SDRAM_BYTES", 4000)
    opened = []
    monkeypatch.setattr(res, "LinkedBoard", lambda *a, **k: opened.append(a))
    status, out, err = _cli(capsys, "model", str(path), "--backend", "board-golden")
    assert status == 2 and err.count("\n") == 1 and not opened
    assert re.match(r"^pwconv: error: chain\.tflite: the image needs at least [\d,]+ bytes of "
                    r"SDRAM .*, [\d,]+ more than the board's 4,000$", err), err


def soak(count, seed=0, pause=0.002):
    """``count`` back-to-back inferences on one loaded image, random inputs, random host
    pauses, every output compared with ai-edge-litert BUILTIN_REF; returns the mismatches."""
    data = _chain(8)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chain.tflite"
        path.write_bytes(data)
        model = load_model(path)
        device, _ = _board()
        resident = res.ResidentModel(model, device, progress=False)
        rng = random.Random(seed)
        wrong = 0
        for i in range(count):
            x = model.random_input(rng.randrange(1 << 30))
            run = resident.run(x, counters=i % 10 == 0)
            wrong += not np.array_equal(run.output, run_reference(data, [x], preserve=False)[0][0])
            time.sleep(rng.uniform(0, pause))
        return wrong, resident.loads


def test_soak_short():
    count = int(os.environ.get("PWCONV_SOAK_BOARD", "40"))
    start = time.perf_counter()
    wrong, loads = soak(count)
    print(f"\nsoak-board: {count} inferences on board-golden, image loaded {loads} time(s), "
          f"{wrong} wrong outputs, {time.perf_counter() - start:.1f} s")
    assert wrong == 0 and loads == 1


def test_to_board(tmp_path):
    path = _write(tmp_path, "chain", _chain(8))
    model = load_model(path)
    resident = model.to_board("board-golden", progress=False)
    assert isinstance(resident, res.ResidentModel) and resident.loads == 1
    for seed in (4, 5):
        x = model.random_input(seed)
        assert np.array_equal(resident.run(x).output,
                              run_reference(path.read_bytes(), [x])[0][0])
    assert resident.loads == 1
    resident.close()

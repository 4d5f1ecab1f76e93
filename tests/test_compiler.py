"""The layer program: format round trips and validation, the liveness arena, and compiled models
executed by golden.program bit for bit against ai-edge-litert BUILTIN_REF and model.run."""

import itertools
import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert")
pytest.importorskip("tflite")

from tflite_builder import ModelBuilder, run_reference  # noqa: E402

from pwconv.config import ArrayConfig  # noqa: E402
from pwconv.golden import program as gprog  # noqa: E402
from pwconv.host.compiler import format as fmt  # noqa: E402
from pwconv.host.compiler.compile import (ARRAY_OPS, BOARD_OPS, CompileError,  # noqa: E402
                                          compile_model)
from pwconv.host.compiler.plan import Buffer, overlaps, plan_arena  # noqa: E402
from pwconv.host.model import load_model  # noqa: E402

MODELS = Path(__file__).parent / "models"
DOCS = Path(__file__).parent.parent / "docs" / "program.md"
#: A small array that splits every test layer into passes: C above 32 in partial sums, F in
#: groups of 4 filters (8 weight words per PE).
SMALL = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=16, weight_depth=8)


# Format.

def _views():
    return (fmt.View(0x1000, 8, 8, 16, 16, 8), fmt.View(0x2000, 4, 4, 24, 40, 6),
            fmt.View(0x3004, 4, 4, 24, 48, 4))


def _descriptors():
    vin, vout, aux = _views()
    small = fmt.View(0x4000, 1, 1, 16, 16, 1)
    return [
        fmt.Conv(vin, vout, 0x100, 0x200, kernel=(3, 3), stride=(2, 2), dilation=(1, 1),
                 padding=(0, 0, 1, 1), input_zero_point=-7, output_zero_point=3,
                 activation=(-100, 120), rounding="ruy", chunk_channels=100, group_filters=8,
                 residual=aux),
        fmt.Conv(vin, fmt.View(0x2000, 2, 4, 24, 24, 4), 0x100, 0x200, kernel=(5, 3),
                 stride=(3, 2), dilation=(2, 1), padding=(1, 2, 3, 0), rounding="float",
                 chunk_channels=144, group_filters=24, last=True),
        fmt.FullyConnected(fmt.View(0x10, 1, 3, 20, 20, 3), fmt.View(0x80, 1, 3, 7, 7, 3),
                           0x300, 0x400, input_zero_point=4, output_zero_point=-2,
                           activation=(-2, 127), rounding="single", chunk_channels=20,
                           group_filters=7),
        fmt.Depthwise(vin, fmt.View(0x2000, 4, 4, 16, 16, 4), 0x500, 0x600, kernel=(5, 5),
                      stride=(2, 2), padding=(1, 1, 2, 2), input_zero_point=-128,
                      output_zero_point=127, activation=(0, 6)),
        fmt.Add(vin, fmt.View(0x3000, 8, 8, 16, 32, 10), fmt.View(0x5000, 8, 8, 16, 16, 8),
                0x700, output_zero_point=-5, activation=(-128, 90)),
        fmt.AveragePool(vin, fmt.View(0x2000, 4, 4, 16, 16, 4), kernel=(2, 2), stride=(2, 2)),
        fmt.MaxPool(vin, fmt.View(0x2000, 3, 3, 16, 16, 3), kernel=(3, 3), stride=(3, 3),
                    padding=(0, 0, 1, 1), activation=(-20, 20)),
        fmt.Mean(vin, small, 0x800, input_zero_point=1, output_zero_point=-1),
        fmt.Host(7, last=True),
    ]


@pytest.mark.parametrize("d", _descriptors(), ids=lambda d: d.kind)
def test_descriptor_round_trip(d):
    raw = fmt.encode_descriptor(d)
    assert len(raw) == fmt.DESCRIPTOR_BYTES == 64
    assert raw[0] == fmt.OPS[d.kind]
    assert fmt.decode_descriptor(raw) == d
    assert bool(raw[1] & fmt.FLAG_LAST) == d.last


def test_descriptor_fields_tile_512_bits():
    bits = np.zeros(512, int)
    for _, offset, width, _ in fmt.DESCRIPTOR_FIELDS:
        bits[offset:offset + width] += 1
    assert (bits == 1).all()
    used = set()
    for _, offset, fmt_, in fmt.HEADER_FIELDS:
        size = 4 if fmt_ == "4s" else np.dtype(fmt_.replace("I", "u4").replace("H", "u2")
                                               .replace("B", "u1")).itemsize
        span = set(range(offset, offset + size))
        assert not used & span and max(span) < fmt.HEADER_BYTES
        used |= span


def test_fields_are_documented():
    """docs/program.md's tables name every field with its byte offset and bit width."""
    text = DOCS.read_text()
    for name, offset, width, _ in fmt.DESCRIPTOR_FIELDS:
        byte, bit = divmod(offset, 8)
        where = f"{byte}" if not bit else f"{byte}.{bit}"
        assert re.search(rf"^\| {where} \| {width} \| `{name}` \|", text, re.M), name
    for name, offset, _ in fmt.HEADER_FIELDS:
        assert re.search(rf"^\| {offset} \| \d+ \| `{name}` \|", text, re.M), name
    for kind, code in fmt.OPS.items():
        assert re.search(rf"^\| {code} \| {kind} \|", text, re.M), kind


def _conv(**changes):
    base = _descriptors()[0]
    return fmt.replace(base, **changes)


@pytest.mark.parametrize("changes, message", [
    (dict(stride=(16, 2)), r"^CONV\.stride_h must be in \[1, 15\], not 16$"),
    (dict(input_zero_point=128), r"^CONV\.input_zero_point must be in \[-128, 127\], not 128$"),
    (dict(activation=(5, 4)), r"^CONV: activation_min 5 > activation_max 4$"),
    (dict(rounding="nearest"), r"^CONV\.rounding must be one of double, single, ruy, float, "
                               r"not 'nearest'$"),
    (dict(padding=(0, 0, 0, 0)), r"^CONV\.out_h is 4, but input 8 padded by 0\+0 with kernel 3 "
                                 r"\(dilation 1\) and stride 2 gives 3$"),
    (dict(chunk_channels=0), r"^CONV\.chunk_channels must be in \[1, 144\], not 0$"),
    (dict(input=fmt.View(0x1000, 8, 8, 16, 8, 8)),
     r"^CONV\.in\.pixel_stride 8 is smaller than its 16 channels$"),
    (dict(input=fmt.View(-1, 8, 8, 16, 16, 8)),
     r"^CONV\.in\.addr must be in \[0, 4294967295\], not -1$"),
    (dict(residual=fmt.View(0, 4, 4, 8, 8, 4)), r"^CONV\.aux must have the output's shape$"),
])
def test_descriptor_validation(changes, message):
    with pytest.raises(fmt.FormatError, match=message):
        fmt.encode_descriptor(_conv(**changes))


def test_decode_rejects_bad_descriptors():
    raw = bytearray(fmt.encode_descriptor(_descriptors()[5]))     # AVERAGE_POOL
    with pytest.raises(fmt.FormatError, match=r"^d: a descriptor is 64 bytes, got 63$"):
        fmt.decode_descriptor(raw[:63], "d")
    bad = bytearray(raw)
    bad[0] = 0
    with pytest.raises(fmt.FormatError, match=r"^d: op code 0 is not an op kind \(1 CONV, "):
        fmt.decode_descriptor(bad, "d")
    bad = bytearray(raw)
    bad[24] = 1                                                  # aux_addr: pools have none
    with pytest.raises(fmt.FormatError, match=r"^d: AVERAGE_POOL descriptor has nonzero bytes "
                                              r"in fields its op does not use$"):
        fmt.decode_descriptor(bad, "d")
    with pytest.raises(fmt.FormatError, match=r"^DEPTHWISE: the depthwise engine runs 3x3 and "
                                              r"5x5 kernels at stride 1 or 2"):
        fmt.encode_descriptor(fmt.replace(_descriptors()[3], kernel=(7, 7),
                                          padding=(2, 2, 3, 3)))


def test_header_round_trip_and_errors():
    vin, vout, _ = _views()
    cfg = ArrayConfig(rows=4, cols=8, max_channels=1 << 16, weight_banks=1, load_width=2,
                      roundings=("double", "float"), requantizer="serial", requant_steps=4)
    h = fmt.Header(12345, 128, 3, 320, 1000, 1344, 5000, 6400, 64, vin, vout, cfg, 0xDEADBEEF)
    raw = fmt.encode_header(h)
    assert len(raw) == fmt.HEADER_BYTES and raw[:4] == b"PWCP"
    with pytest.raises(fmt.FormatError, match=r"^image is 128 bytes, its header says 12345$"):
        fmt.decode_header(raw)
    image = raw + bytes(12345 - len(raw))
    assert fmt.decode_header(image) == h
    with pytest.raises(fmt.FormatError, match=r"^not a pwconv program image \(magic b'XWCP'"):
        fmt.decode_header(b"X" + image[1:])
    with pytest.raises(fmt.FormatError, match=r"^program format version 2, this pwconv reads "
                                              r"version 1$"):
        fmt.decode_header(image[:4] + b"\x02" + image[5:])
    with pytest.raises(fmt.FormatError, match=r"^image is 33,554,433 bytes, 1 more than the "
                                              r"SDRAM's 33,554,432$"):
        fmt.encode_header(fmt.replace(h, image_bytes=fmt.SDRAM_BYTES + 1))
    with pytest.raises(fmt.FormatError, match=r"^program has 65536 descriptors, 1 more than the "
                                              r"limit of 65535$"):
        fmt.encode_header(fmt.replace(h, descriptor_count=1 << 16))


def test_records_round_trip():
    rec = fmt.AddRecord((1 << 30, 1234567, -5), (-1, 0, -31), (-128, 127), (-3, 100))
    assert len(rec.encode()) == fmt.AddRecord.BYTES
    assert fmt.AddRecord.decode(rec.encode()) == rec
    mean = fmt.MeanRecord(-(1 << 31), -40)
    assert fmt.MeanRecord.decode(mean.encode()) == mean
    with pytest.raises(fmt.FormatError, match=r"^ADD record\.shift0 must be in \[-31, 0\], "
                                              r"not 1$"):
        fmt.AddRecord((1, 1, 1), (1, 0, 0), (0, 0)).encode()


# The arena.

def _check_plan(buffers, plan, alignment):
    for a, b in itertools.combinations(buffers, 2):
        if a.live_with(b):
            assert not overlaps(a, b), (a, b)
    for b in buffers:
        assert b.offset % alignment == 0 and b.offset + b.size <= plan.size
    # The arena is at least the bytes live at the busiest op.
    steps = range(min(b.first for b in buffers), max(b.last for b in buffers) + 1)
    assert plan.size >= max(sum(b.size for b in buffers if b.first <= s <= b.last)
                            for s in steps)


@pytest.mark.parametrize("seed", range(6))
def test_arena_no_live_overlap(seed):
    rng = np.random.default_rng(seed)
    buffers = []
    for i in range(60):
        first = int(rng.integers(-1, 40))
        buffers.append(Buffer(f"t{i}", int(rng.integers(1, 5000)), first,
                              first + int(rng.integers(0, 8))))
    plan = plan_arena(buffers, 16)
    _check_plan(buffers, plan, 16)
    assert plan.size < plan.unshared            # short lifetimes share memory


def test_arena_rejects_bad_buffers():
    with pytest.raises(ValueError, match=r"^buffer x: size 0 and lifetime \[0, 1\] are not a "
                                         r"buffer$"):
        plan_arena([Buffer("x", 0, 0, 1)])
    with pytest.raises(ValueError, match=r"^alignment must be a power of two, not 3$"):
        plan_arena([], 3)


# Models.

def _quant_conv(b, rng, name, x, c, f, k=(1, 1), per_channel=True, in_scale=0.05):
    """Weights, bias and an output tensor scaled so the outputs use the int8 range."""
    kh, kw = k
    ws = rng.uniform(0.004, 0.02, f if per_channel else 1).astype(np.float32)
    w = b.const(f"{name}_w", rng.integers(-127, 128, (f, kh, kw, c), dtype=np.int8), ws, 0)
    bias = b.const(f"{name}_b", rng.integers(-3000, 3000, f).astype(np.int32),
                   np.broadcast_to(ws * np.float32(in_scale), (f,)).astype(np.float32))
    out_scale = float(40 * np.sqrt(kh * kw * c) * in_scale * ws.mean())
    return w, bias, out_scale


def _check_model(tmp_path, data, name, cfg=None, seeds=(0, 1), board=BOARD_OPS, all_board=True):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    model = load_model(path)
    compiled = compile_model(model, cfg or ArrayConfig(), board_ops=board)
    if all_board:
        assert {r.where for r in compiled.ops} <= {"board", "view", "fused"}, compiled.table()
    for seed in seeds:
        x = model.random_input(seed)
        counts = {}
        y = compiled.infer(x, counts=counts)
        ref = run_reference(data, [x])[0][0]
        assert y.dtype == ref.dtype and y.shape == ref.shape
        assert np.array_equal(y, ref), f"{int((y != ref).sum())} of {y.size} differ"
        assert np.array_equal(y, model.run(x, "golden").output)
        assert counts == compiled.link
        assert len(np.unique(y)) > 4                 # not saturated: the check has teeth
    return compiled


def test_pointwise_chain_runs_on_the_board(tmp_path):
    rng = np.random.default_rng(1)
    b = ModelBuilder()
    x = b.tensor("x", (1, 12, 12, 8), np.int8, 0.05, -3)
    widths = (8, 24, 16, 40, 10)
    s_in = 0.05
    for i, (c, f) in enumerate(zip(widths, widths[1:])):
        w, bias, s_out = _quant_conv(b, rng, f"c{i}", x, c, f, in_scale=s_in)
        y = b.tensor(f"y{i}", (1, 12, 12, f), np.int8, s_out, int(rng.integers(-20, 20)))
        b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=1, strideW=1, strideH=1,
             fusedActivationFunction=(3, 0, 1, 0)[i])
        x, s_in = y, s_out
    data = b.finish([0], [x])
    compiled = _check_model(tmp_path, data, "chain", SMALL)
    assert [r.where for r in compiled.ops] == ["board"] * 4
    size = 12 * 12 * (8 + 10)
    assert compiled.link_bytes_per_inference == size <= 1.1 * size
    assert compiled.arena.size < compiled.arena.unshared
    first = compiled.ops[0]                     # 144 pixels x 8 -> 24 on a 4x4 array
    assert first.macs == 144 * 8 * 24
    # Weights once (8 x 24, no padding), 6 tiles of parameter words (4 x 9 bytes each).
    assert first.min_bytes == 144 * (8 + 24) + 8 * 24 + 6 * 4 * 9
    # Two filter groups (16 + 8: 8 weight words per PE hold 2 beats x 4 tiles): input twice.
    assert first.passes == 2 and first.moved_bytes == first.min_bytes + 144 * 8
    roof = compiled.roofline(2.0)
    assert roof[0] == max(144 * 8 * 24 / 16, first.min_bytes / 2.0)


def _resnet_like(rng):
    """Convolutions only (no ADD): a strided 3x3 stem, 3x3, dilated 3x3, a strided 1x1
    shortcut-style conv, a 3x3 VALID, RESHAPE and a FULLY_CONNECTED classifier."""
    b = ModelBuilder()
    x = b.tensor("x", (1, 16, 16, 3), np.int8, 0.05, 10)
    s_in, shape = 0.05, (16, 16)
    layers = [((3, 3), 2, 1, 1, 16), ((3, 3), 1, 1, 1, 16), ((3, 3), 1, 2, 1, 24),
              ((1, 1), 2, 1, 1, 32), ((3, 3), 1, 1, 0, 48)]
    c = 3
    for i, (k, s, d, same, f) in enumerate(layers):
        w, bias, s_out = _quant_conv(b, rng, f"c{i}", x, c, f, k, in_scale=s_in)
        eff = (k[0] - 1) * d + 1
        shape = tuple((v + s - 1) // s if same else (v - eff) // s + 1 for v in shape)
        y = b.tensor(f"y{i}", (1,) + shape + (f,), np.int8, s_out, int(rng.integers(-20, 20)))
        b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0 if same else 1,
             strideW=s, strideH=s, dilationWFactor=d, dilationHFactor=d,
             fusedActivationFunction=1 if i < 4 else 0)
        x, s_in, c = y, s_out, f
    flat = shape[0] * shape[1] * c
    new_shape = b.const("shape", np.array([1, flat], np.int32))
    r = b.tensor("flat", (1, flat), np.int8, s_in, b.tensors[x]["zero_point"])
    b.op("RESHAPE", [x, new_shape], [r])
    ws = np.float32(0.01)
    w = b.const("fc_w", rng.integers(-127, 128, (10, flat), dtype=np.int8), ws, 0)
    bias = b.const("fc_b", rng.integers(-999, 999, 10).astype(np.int32), ws * np.float32(s_in))
    out = b.tensor("logits", (1, 10), np.int8, float(120 * np.sqrt(flat) * s_in * ws), 0)
    b.op("FULLY_CONNECTED", [r, w, bias], [out], "FullyConnectedOptions")
    return b.finish([0], [out])


def test_resnet_like_without_add_runs_on_the_board(tmp_path):
    data = _resnet_like(np.random.default_rng(2))
    compiled = _check_model(tmp_path, data, "resnet", SMALL)
    assert [r.where for r in compiled.ops] == ["board"] * 5 + ["view", "board"]
    assert compiled.link_bytes_per_inference == 16 * 16 * 3 + 10
    convs = [d for d in compiled.descriptors if d.kind == "CONV"]
    assert any(d.chunk_channels < d.kernel[0] * d.kernel[1] * d.input.c for d in convs)
    assert all(d.group_filters == 4 for d in convs)
    # The default array runs the same model in one pass per layer, bit-exact too.
    _check_model(tmp_path, data, "resnet_default", seeds=(3,))


def test_mlp_of_eleven_fully_connected_layers(tmp_path):
    rng = np.random.default_rng(3)
    b = ModelBuilder()
    widths = (64, 96, 48, 80, 40, 72, 56, 33, 60, 20, 30, 10)
    x = b.tensor("x", (1, widths[0]), np.int8, 0.05, 7)
    s_in = 0.05
    for i, (c, f) in enumerate(zip(widths, widths[1:])):
        per_channel = i % 2 == 0
        ws = rng.uniform(0.004, 0.02, f if per_channel else 1).astype(np.float32)
        w = b.const(f"w{i}", rng.integers(-127, 128, (f, c), dtype=np.int8), ws, 0)
        bias = b.const(f"b{i}", rng.integers(-2000, 2000, f).astype(np.int32),
                       np.broadcast_to(ws * np.float32(s_in), (f,)).astype(np.float32))
        s_out = float(40 * np.sqrt(c) * s_in * ws.mean())
        y = b.tensor(f"y{i}", (1, f), np.int8, s_out, int(rng.integers(-10, 10)))
        b.op("FULLY_CONNECTED", [x, w, bias], [y], "FullyConnectedOptions",
             fusedActivationFunction=1 if i < 10 else 0)
        x, s_in = y, s_out
    data = b.finish([0], [x])
    compiled = _check_model(tmp_path, data, "mlp", SMALL, seeds=(0, 1, 2))
    assert len(compiled.descriptors) == 11
    assert compiled.link_bytes_per_inference == 64 + 10
    # The reference FULLY_CONNECTED's float64 rounding is reproduced by a fixed-point mode.
    assert {d.rounding for d in compiled.descriptors} <= {"single", "double"}


@pytest.mark.parametrize("k, stride, dilation, same, c", [
    ((3, 3), 1, 1, True, 8), ((3, 3), 2, 1, False, 5), ((5, 5), 2, 1, True, 3),
    ((3, 3), 1, 2, True, 6), ((2, 2), 3, 1, True, 4), ((1, 7), 1, 1, True, 9),
    ((1, 1), 2, 1, False, 40)], ids=str)
def test_conv_kernels_strides_dilations_padding(tmp_path, k, stride, dilation, same, c):
    rng = np.random.default_rng(k[0] * 100 + stride * 10 + dilation + c)
    b = ModelBuilder()
    h, w_ = 11, 10
    x = b.tensor("x", (1, h, w_, c), np.int8, 0.05, -5)
    f = 6
    w, bias, s_out = _quant_conv(b, rng, "c", x, c, f, k)
    eff = [(v - 1) * dilation + 1 for v in k]
    shape = [(v + stride - 1) // stride if same else (v - e) // stride + 1
             for v, e in zip((h, w_), eff)]
    y = b.tensor("y", (1, *shape, f), np.int8, s_out, 4)
    b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0 if same else 1,
         strideW=stride, strideH=stride, dilationWFactor=dilation, dilationHFactor=dilation,
         fusedActivationFunction=0)
    compiled = _check_model(tmp_path, b.finish([x], [y]), "conv", SMALL)
    (r,) = compiled.ops
    assert r.macs == shape[0] * shape[1] * f * k[0] * k[1] * c
    assert r.min_bytes <= r.moved_bytes


def test_bundled_models_bit_exact(tmp_path):
    """MobileNetV2 and ops.tflite with every op kind on the board, and with the array alone
    (issue 25's engine: depthwise, ADD, pools and MEAN in host segments)."""
    for name in ("mobilenetv2_035_96", "ops"):
        path = MODELS / f"{name}.tflite"
        model = load_model(path)
        x = np.load(MODELS / f"{name}.input.npy")
        ref = run_reference(path.read_bytes(), [x])[0][0]
        run = model.run(x, "golden")
        for board, fuse in ((BOARD_OPS, True), (BOARD_OPS, False), (ARRAY_OPS, True)):
            compiled = compile_model(model, board_ops=board, fuse_residual=fuse)
            counts = {}
            y = compiled.infer(x, counts=counts)
            assert np.array_equal(y, ref) and np.array_equal(y, run.output), (name, board)
            assert counts == compiled.link
            if name == "mobilenetv2_035_96":
                on = [r for r in compiled.ops if r.where == "board"]
                macs = {s.index: s.macs for s in run.ops}
                for r in on:            # the compiler's MACs equal the model runner's
                    assert r.macs == macs[r.index] or r.op not in ("CONV_2D",
                                                                   "FULLY_CONNECTED"), r
                if board == BOARD_OPS:
                    assert [r.op for r in compiled.ops if r.where == "host"] == ["SOFTMAX"]
                    assert compiled.link_bytes_per_inference == x.size + 100 + 0
                    fused = [r for r in compiled.ops if r.where == "fused"]
                    assert len(fused) == (10 if fuse else 0)
                    assert len(compiled.descriptors) == 65 - len(fused)
                else:
                    assert len(on) == 36 and len(compiled.segments) > 10
            elif board == BOARD_OPS:
                assert {r.op for r in compiled.ops if r.where == "view"} == {"PAD", "RESHAPE"}


def test_compiled_arena_has_no_live_overlap():
    """Brute force over the compiled MobileNetV2: any two arena tensors of different buffers
    whose lifetimes (first write to last read, from the model's op list) overlap occupy
    disjoint bytes."""
    model = load_model(MODELS / "mobilenetv2_035_96.tflite")
    compiled = compile_model(model)
    n = len(model.ops)
    first, last = {model.inputs[0]: -1}, {model.outputs[0]: n}
    for i, (_, ins, outs, _) in enumerate(model.ops):
        for t in outs:
            first[t] = i
        for t in ins:
            last[t] = max(last.get(t, i), i)
    spans = {}
    for t, v in compiled.views.items():
        spans[t] = (v.addr, v.addr + v.span)
    for a, b in itertools.combinations(compiled.views, 2):
        if compiled.roots[a] == compiled.roots[b]:
            continue
        if first[a] <= last.get(b, first[b]) and first[b] <= last.get(a, first[a]):
            (a0, a1), (b0, b1) = spans[a], spans[b]
            assert a1 <= b0 or b1 <= a0, (model.tensors[a].name, model.tensors[b].name)
    assert compiled.arena.size < compiled.arena.unshared / 3


def test_too_large_and_bad_input(tmp_path, monkeypatch):
    model = load_model(MODELS / "mobilenetv2_035_96.tflite")
    size = compile_model(model).header.image_bytes
    monkeypatch.setattr(fmt, "SDRAM_BYTES", size - 1000)
    with pytest.raises(CompileError, match=r"^mobilenetv2_035_96\.tflite: the image needs at "
                                           r"least [\d,]+ bytes of SDRAM \(arena [\d,]+\), "
                                           r"[\d,]+ more than the board's [\d,]+$"):
        compile_model(model)
    monkeypatch.setattr(fmt, "MAX_DESCRIPTORS", 40)
    with pytest.raises(CompileError, match=r"^mobilenetv2_035_96\.tflite: the program needs 55 "
                                           r"descriptors, 15 more than the format's 40$"):
        compile_model(model)
    with pytest.raises(CompileError, match=r"^board_ops: SOFTMAX have no descriptor"):
        compile_model(model, board_ops=("SOFTMAX",))
    with pytest.raises(CompileError, match=r"^runtime 'onnxruntime' cannot run"):
        compile_model(model, runtime="onnxruntime")
    onnx = load_model(MODELS / "pointwise_qdq.onnx")
    with pytest.raises(CompileError, match=r"pointwise_qdq\.onnx: the compiler takes \.tflite "
                                           r"models$"):
        compile_model(onnx)


def test_executor_checks_the_image():
    model = load_model(MODELS / "ops.tflite")
    compiled = compile_model(model)
    image = compiled.fresh_image()
    image[compiled.header.weights_addr + 5] ^= 1
    with pytest.raises(fmt.FormatError, match=r"^image id mismatch: the image's constant part "
                                              r"has CRC-32 0x[0-9a-f]{8}, its header says "):
        gprog.run_program(image)
    with pytest.raises(fmt.FormatError, match=r"^HOST descriptor \(segment 0\) but no host"):
        gprog.run_program(compiled.fresh_image())
    with pytest.raises(TypeError, match=r"^image must be a bytearray"):
        gprog.run_program(compiled.image)


def test_weights_are_the_load_port_words():
    """A pass's stored weight bytes are exactly the data fields compile_layer sends on the
    weights port, and unpack_pass_weights inverts them."""
    from pwconv.host.program import compile_layer
    from pwconv.hw import layouts
    rng = np.random.default_rng(4)
    for cfg in (SMALL, ArrayConfig(rows=3, cols=5, load_width=2)):
        w = rng.integers(-128, 128, (11, 7), dtype=np.int8)
        prog = compile_layer(cfg, w, np.zeros(7, np.int32), np.ones(7, np.int32),
                             np.zeros(7, np.int32))
        data_at = layouts.weight_word(cfg)["data"].offset
        nbytes = cfg.load_width * cfg.cols
        blob = b"".join(((word >> data_at) & ((1 << 8 * nbytes) - 1)).to_bytes(nbytes, "little")
                        for word in prog.weight_words)
        assert np.array_equal(gprog.unpack_pass_weights(cfg, blob, 11, 7), w)


def test_residual_add_fused_into_its_conv(tmp_path):
    """A ResNet-style block with ADD: the projecting conv adds the block input in its output
    path (RESIDUAL). Of two convs feeding one ADD, the later one takes it (when the first
    runs, the other input does not exist yet)."""
    rng = np.random.default_rng(6)
    b = ModelBuilder()
    x = b.tensor("x", (1, 8, 8, 12), np.int8, 0.05, -3)
    w, bias, s1 = _quant_conv(b, rng, "a", x, 12, 20, (3, 3))
    a = b.tensor("a", (1, 8, 8, 20), np.int8, s1, -128)
    b.op("CONV_2D", [x, w, bias], [a], "Conv2DOptions", padding=0, strideW=1, strideH=1,
         fusedActivationFunction=1)
    w, bias, s2 = _quant_conv(b, rng, "p", a, 20, 12, in_scale=s1)
    p = b.tensor("p", (1, 8, 8, 12), np.int8, s2, 5)
    b.op("CONV_2D", [a, w, bias], [p], "Conv2DOptions", padding=1, strideW=1, strideH=1)
    r = b.tensor("r", (1, 8, 8, 12), np.int8, 0.06, -2)
    b.op("ADD", [x, p], [r], "AddOptions", fusedActivationFunction=1)
    w, bias, s3 = _quant_conv(b, rng, "q", r, 12, 12, in_scale=0.06)
    q = b.tensor("q", (1, 8, 8, 12), np.int8, s3, 0)
    b.op("CONV_2D", [r, w, bias], [q], "Conv2DOptions", padding=1, strideW=1, strideH=1)
    w, bias, s4 = _quant_conv(b, rng, "u", r, 12, 12, in_scale=0.06)
    u = b.tensor("u", (1, 8, 8, 12), np.int8, s4, 3)
    b.op("CONV_2D", [r, w, bias], [u], "Conv2DOptions", padding=1, strideW=1, strideH=1)
    y = b.tensor("y", (1, 8, 8, 12), np.int8, 0.08, 1)
    b.op("ADD", [q, u], [y], "AddOptions")          # fused into u's conv, not q's
    data = b.finish([x], [y])
    compiled = _check_model(tmp_path, data, "residual", SMALL)
    assert [r.where for r in compiled.ops] == ["board", "board", "fused", "board", "board",
                                               "fused"]
    assert [d.kind for d in compiled.descriptors] == ["CONV"] * 4
    assert [d.residual is not None for d in compiled.descriptors] == [False, True, False, True]
    plain = compile_model(compiled.model, SMALL, fuse_residual=False)
    assert [d.kind for d in plain.descriptors] == ["CONV", "CONV", "ADD", "CONV", "CONV", "ADD"]
    assert compiled.sdram_bytes_per_inference < plain.sdram_bytes_per_inference
    xin = compiled.model.random_input(5)
    assert np.array_equal(plain.infer(xin), compiled.infer(xin))


def test_command_line(tmp_path, capsys):
    from pwconv.host.compiler.__main__ import main
    out = tmp_path / "image.bin"
    assert main([str(MODELS / "ops.tflite"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert re.search(r"^   6 PAD +view ", text, re.M) and "link 1,802 B per inference" in text
    image = bytearray(out.read_bytes())
    assert fmt.image_id(image, fmt.decode_header(image)) == fmt.decode_header(image).image_id
    assert main([str(tmp_path / "missing.tflite")]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"python -m pwconv\.host\.compiler: error: \S+missing\.tflite: no such "
                        r"file\n", err)


def test_pads_fold_into_their_readers(tmp_path):
    """MobileNet's PAD before a stride-2 VALID depthwise, and a PAD before a conv, become the
    readers' padding (no padded tensor at all); a PADV2 with another value than the zero
    point becomes a padded buffer with a constant border (the producer writes its interior)."""
    rng = np.random.default_rng(8)
    b = ModelBuilder()
    x = b.tensor("x", (1, 9, 8, 6), np.int8, 0.05, -9)
    pads = b.const("pads", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32))
    p = b.tensor("p", (1, 11, 10, 6), np.int8, 0.05, -9)
    b.op("PAD", [x, pads], [p])
    ws = rng.uniform(0.01, 0.03, 6).astype(np.float32)
    w = b.const("dw_w", rng.integers(-127, 128, (1, 3, 3, 6), dtype=np.int8), ws, 0, axis=3)
    bias = b.const("dw_b", rng.integers(-900, 900, 6).astype(np.int32), ws * np.float32(0.05))
    d = b.tensor("d", (1, 5, 4, 6), np.int8, float(40 * 3 * 0.05 * ws.mean()), 2)
    b.op("DEPTHWISE_CONV_2D", [p, w, bias], [d], "DepthwiseConv2DOptions", padding=1,
         strideW=2, strideH=2, depthMultiplier=1)
    s_d = b.tensors[d]["scale"]
    pads2 = b.const("pads2", np.array([[0, 0], [2, 0], [0, 1], [0, 0]], np.int32))
    value = b.const("value", np.array([30], np.int8), s_d, 2)
    q = b.tensor("q", (1, 7, 5, 6), np.int8, s_d, 2)
    b.op("PADV2", [d, pads2, value], [q])
    w, bias, s_out = _quant_conv(b, rng, "c", q, 6, 8, (3, 3), in_scale=s_d)
    y = b.tensor("y", (1, 5, 3, 8), np.int8, s_out, -1)
    b.op("CONV_2D", [q, w, bias], [y], "Conv2DOptions", padding=1, strideW=1, strideH=1)
    compiled = _check_model(tmp_path, b.finish([x], [y]), "pads", SMALL)
    assert [r.where for r in compiled.ops] == ["view", "board", "view", "board"]
    dw, conv = compiled.descriptors
    assert dw.padding == (1, 1, 1, 1) and dw.input.h == 9     # the unpadded input
    assert conv.padding == (0, 0, 0, 0) and conv.input.h == 7   # the padded buffer
    assert dw.output.row_pixels == 5 and dw.output.addr == conv.input.addr + 2 * 5 * 6
    assert p not in compiled.views and q in compiled.views


def _fetch(image, requests):
    """Bytes of 2-D DMA requests, as the DMA reader streams them."""
    out = bytearray()
    for addr, length, count, stride in requests:
        for r in range(count):
            out += image[addr + r * stride:addr + r * stride + length]
    return bytes(out)


def test_views_and_taps_as_dma_requests():
    """Every arena view as 2-D DMA requests gives the tensor golden.program reads, and every
    CONV output pixel's tap requests (zero point elsewhere) give its im2col row: the address
    generation the engine implements, checked against golden.program.im2col."""
    model = load_model(MODELS / "ops.tflite")
    compiled = compile_model(model)
    image = compiled.fresh_image()
    rng = np.random.default_rng(0)
    image[compiled.header.arena_addr:] = rng.integers(0, 256, len(image) -
                                                      compiled.header.arena_addr,
                                                      dtype=np.uint8).tobytes()
    windows = 0
    for v in compiled.views.values():
        assert _fetch(image, v.dma_requests()) == gprog.read_view(image, v).tobytes()
        windows += not v.is_dense
    assert windows >= 1                          # the padded interior
    pixels = 0
    for d in compiled.descriptors + [_conv(input=fmt.View(0, 5, 6, 7, 9, 8),
                                           output=fmt.View(900, 3, 3, 4, 4, 3), kernel=(3, 2),
                                           stride=(2, 3), dilation=(2, 2),
                                           padding=(2, 1, 1, 0), residual=None)]:
        if d.kind != "CONV":
            continue
        x = gprog.read_view(image, d.input)
        cols = gprog.im2col(x, d.kernel, d.stride, d.dilation, d.padding[:2],
                            (d.output.h, d.output.w), d.input_zero_point)
        kh, kw = d.kernel
        for oy, ox in itertools.product(range(d.output.h), range(d.output.w)):
            row = np.full((kh, kw, d.input.c), d.input_zero_point, np.int8)
            for (ky, kx0, taps), req in d.tap_requests(oy, ox):
                row[ky, kx0:kx0 + taps] = np.frombuffer(_fetch(image, [req]), np.int8) \
                    .reshape(taps, d.input.c)
            assert np.array_equal(row.reshape(-1), cols[oy * d.output.w + ox]), (d, oy, ox)
            pixels += 1
    assert pixels > 100


def test_concatenation_is_addressing(tmp_path):
    """Two convs write straight into their channel windows of the concatenated tensor, which a
    third conv reads whole (an Inception / SqueezeNet fire module)."""
    rng = np.random.default_rng(10)
    b = ModelBuilder()
    x = b.tensor("x", (1, 7, 9, 8), np.int8, 0.05, 3)
    outs = []
    for name, k, f in (("a", (1, 1), 6), ("b", (3, 3), 10)):
        w, bias, s = _quant_conv(b, rng, name, x, 8, f, k)
        y = b.tensor(name, (1, 7, 9, f), np.int8, 0.03, -4)
        b.op("CONV_2D", [x, w, bias], [y], "Conv2DOptions", padding=0, strideW=1, strideH=1,
             fusedActivationFunction=1)
        outs.append(y)
    cat = b.tensor("cat", (1, 7, 9, 16), np.int8, 0.03, -4)
    b.op("CONCATENATION", outs, [cat], "ConcatenationOptions", axis=3)
    w, bias, s = _quant_conv(b, rng, "c", cat, 16, 5, (3, 3), in_scale=0.03)
    y = b.tensor("y", (1, 4, 5, 5), np.int8, s, 0)
    b.op("CONV_2D", [cat, w, bias], [y], "Conv2DOptions", padding=0, strideW=2, strideH=2)
    compiled = _check_model(tmp_path, b.finish([x], [y]), "concat", SMALL)
    assert [r.where for r in compiled.ops] == ["board", "board", "view", "board"]
    a, bb, c = compiled.descriptors
    assert (a.output.c, a.output.pixel_stride) == (6, 16) and bb.output.pixel_stride == 16
    assert bb.output.addr == a.output.addr + 6 == c.input.addr + 6


@pytest.mark.parametrize("runtime, resolver", [
    ("tflite-ruy", "BUILTIN_WITHOUT_DEFAULT_DELEGATES"), ("tflite-xnnpack", "BUILTIN")])
def test_other_runtimes(tmp_path, runtime, resolver):
    """Compiled for TFLite's optimized kernels or its XNNPACK default path, the 1x1 convs and
    FULLY_CONNECTED run on the board in that runtime's rounding ("ruy", "float"), the rest
    on the host in that runtime's kernels: bit-exact with the runtime and model.run."""
    data = _resnet_like(np.random.default_rng(2))
    path = tmp_path / "resnet.tflite"
    path.write_bytes(data)
    model = load_model(path)
    compiled = compile_model(model, runtime=runtime)
    board = [d for d in compiled.descriptors if d.kind != "HOST"]
    assert [d.kernel for d in board if d.kind == "CONV"] == [(1, 1)]
    assert {d.rounding for d in board} == {"ruy" if runtime == "tflite-ruy" else "float"}
    for seed in range(3):
        x = model.random_input(seed)
        y = compiled.infer(x)
        assert np.array_equal(y, model.run(x, "golden", runtime=runtime).output)
        assert np.array_equal(y, run_reference(data, [x], resolver, preserve=False)[0][0])


def test_depthwise_weights_stream_in_the_engine_order():
    """A group of L channels of a DEPTHWISE descriptor's weights, fetched as one 2-D DMA
    request, is what hw/engine/depthwise.py's weights port takes for that group."""
    from pwconv.hw.engine import depthwise as dwe
    model = load_model(MODELS / "mobilenetv2_035_96.tflite")
    compiled = compile_model(model)
    image = compiled.image
    for lanes in (16, 5):
        engine = dwe.DepthwiseEngine(ArrayConfig(), lanes=lanes)
        engine._MustUse__silence = True     # looked into for its layouts, never elaborated
        data_at = dwe.weight_layout(engine)["data"].offset
        checked = 0
        for r, d in ((r, compiled.descriptors[r.descriptor]) for r in compiled.ops
                     if r.op == "DEPTHWISE_CONV_2D"):
            w = model.tensors[model.ops[r.index][1][1]].data
            words = dwe.weight_words(engine, w)
            taps = d.kernel[0] * d.kernel[1]
            c = d.input.c
            for g in range(-(-c // lanes)):
                n = min(lanes, c - g * lanes)
                got = _fetch(image, [(d.weight_addr + g * lanes, n, taps, c)])
                want = b"".join(((word >> data_at) & ((1 << 8 * lanes) - 1))
                                .to_bytes(lanes, "little")[:n]
                                for word in words[g * taps:(g + 1) * taps])
                assert got == want
            checked += 1
        assert checked == 17


def test_documented_figures_are_current():
    """docs/program.md's MobileNetV2 table is what the compiler gives today."""
    rows = re.findall(r"^\| (every op kind \(ADDs fused\)|CONV_2D and FULLY_CONNECTED) \| (.*) \|$",
                      DOCS.read_text(), re.M)
    assert len(rows) == 2
    model = load_model(MODELS / "mobilenetv2_035_96.tflite")
    for label, cells in rows:
        c = compile_model(model, board_ops=BOARD_OPS if label.startswith("every") else ARRAY_OPS)
        numbers = [int(v.replace(",", "")) for v in re.findall(r"\d[\d,]*", cells)]
        board = [r for r in c.ops if r.where == "board"]
        assert numbers[:5] == [len(c.descriptors), len(c.segments), c.header.image_bytes,
                               c.arena.size, c.arena.unshared], label
        assert c.link_bytes_per_inference in numbers
        assert numbers[-2:] == [sum(r.min_bytes for r in board), c.sdram_bytes_per_inference]


def test_host_only_programs():
    """With nothing the board can run (no board ops, or a build without the runtime's
    rounding), the program is one HOST descriptor and the result is still exact."""
    model = load_model(MODELS / "ops.tflite")
    x = np.load(MODELS / "ops.input.npy")
    want = model.run(x, "golden").output
    for compiled in (compile_model(model, board_ops=()),
                     compile_model(model, ArrayConfig(roundings=("float",)))):
        assert [d.kind for d in compiled.descriptors] == ["HOST"]
        assert compiled.header.arena_bytes == 0 and compiled.link_bytes_per_inference == 0
        assert np.array_equal(compiled.infer(x), want)

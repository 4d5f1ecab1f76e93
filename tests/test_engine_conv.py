"""ConvEngine: CONV (1x1, strided, KxK) and FULLY_CONNECTED descriptors of compiled images, run
from a simulated memory with stalls, every byte of the memory compared with golden/program.py."""

import numpy as np
import pytest

pytest.importorskip("tflite")

from program_bench import (PORT, compiled, conv_chain, memory_of, mlp, simulate,  # noqa: E402
                           wait_for)

from pwconv.config import ArrayConfig  # noqa: E402
from pwconv.golden import program as gprog  # noqa: E402
from pwconv.hw.engine.conv import ERRORS, ConvEngine  # noqa: E402
from pwconv.host.compiler import format as fmt  # noqa: E402

#: 4x4 array; 8 weight words per PE: a C=8 layer holds 4 column tiles (16 filters) per pass.
SMALL = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=16, weight_depth=8)
SMALL_ONE_BANK = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=16, weight_depth=8,
                             weight_banks=1)


def test_init():
    e = ConvEngine(SMALL, port=PORT)
    assert e.array_config == SMALL
    assert len(e.desc.as_value()) == 512
    e._MustUse__silence = True          # not elaborated here


def test_init_wrong_params():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not 3$"):
        ConvEngine(3, port=PORT)
    with pytest.raises(TypeError, match=r"^Port must be a NativePortSignature, not 'x'$"):
        ConvEngine(SMALL, port="x")
    with pytest.raises(TypeError, match=r"^FIFO depth must be an integer >= 2, not 1$"):
        ConvEngine(SMALL, port=PORT, fifo_depth=1)


def descriptors(comp):
    h = comp.header
    return [comp.image[h.program_addr + 64 * i:h.program_addr + 64 * (i + 1)]
            for i in range(h.descriptor_count)]


def run_descriptor(cfg, image, raw, *, stall=0.0, seed=0):
    """Run descriptor bytes ``raw`` on a ConvEngine over ``image``; returns ``(memory bytes,
    cycles, error code)``."""
    dut = ConvEngine(cfg, port=PORT)
    mem = memory_of(dut.bus, image, stall=stall, seed=seed)

    async def bench(ctx):
        ctx.set(dut.desc.as_value(), int.from_bytes(bytes(raw), "little"))
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await wait_for(ctx, dut.done, 200_000)
        return ctx.get(dut.cycles), ctx.get(dut.error_code)

    cycles, code = simulate(dut, mem, bench)
    return mem.data[:len(image)].tobytes(), cycles, code


def golden_after(cfg, image, raw):
    ref = bytearray(image)
    gprog._execute(cfg, ref, fmt.decode_descriptor(raw), None)
    return bytes(ref)


@pytest.mark.parametrize("cfg, stall", [(SMALL, 0.0), (SMALL, 0.3), (SMALL_ONE_BANK, 0.2)])
def test_conv_layers_match_golden(tmp_path, cfg, stall):
    # 8 -> 24 filters: two passes (16 + 8); then 24 -> 6 with stride 2 (reads 4 of 16 pixels).
    comp, image, _ = compiled(tmp_path, conv_chain(layers=((8, 24, 1), (24, 6, 2))), "chain",
                              cfg)
    raws = descriptors(comp)
    assert [fmt.decode_descriptor(r).kind for r in raws] == ["CONV", "CONV"]
    assert fmt.decode_descriptor(raws[0]).group_filters == 16
    for i, raw in enumerate(raws):
        ref = golden_after(cfg, image, raw)
        assert ref != bytes(image)                 # the op writes something
        got, cycles, code = run_descriptor(cfg, image, raw, stall=stall, seed=i)
        assert code == 0
        diff = np.flatnonzero(np.frombuffer(got, np.uint8) != np.frombuffer(ref, np.uint8))
        assert diff.size == 0, f"descriptor {i}: {diff.size} bytes differ, first at {diff[:8]}"
        image = bytearray(ref)                     # the next layer reads this one's output


def test_fully_connected_matches_golden(tmp_path):
    comp, image, _ = compiled(tmp_path, mlp(batch=3), "mlp", SMALL)
    for i, raw in enumerate(descriptors(comp)):
        assert fmt.decode_descriptor(raw).kind == "FULLY_CONNECTED"
        ref = golden_after(SMALL, image, raw)
        got, _, code = run_descriptor(SMALL, image, raw, stall=0.2, seed=i)
        assert code == 0 and got == ref, f"descriptor {i}"
        image = bytearray(ref)


def test_refuses_what_it_does_not_run(tmp_path):
    comp, image, _ = compiled(tmp_path, conv_chain(layers=((8, 8, 1),)), "one", SMALL)
    d = fmt.decode_descriptor(descriptors(comp)[0])
    depth = d.input.c
    cases = [
        (fmt.replace(d, kernel=(5, 5), padding=(2, 2, 2, 2), chunk_channels=25 * depth),
         "kernel"),         # 5 rows do not fit the line buffer's 4 slots
        (fmt.replace(d, chunk_channels=depth // 2), "chunks"),
    ]
    for bad, name in cases:
        raw = fmt.encode_descriptor(bad)
        got, cycles, code = run_descriptor(SMALL, image, raw)
        assert code == ERRORS[name] and got == bytes(image) and cycles < 10, name


def _roofline(comp, index, cycles, port_bytes=2):
    """``(MACs, minimum bytes, roofline cycles)`` of op ``index``: issue 25's max(MACs / MACs per
    cycle, minimum bytes / port bytes per cycle), from the compiler's per-op report."""
    op = [r for r in comp.ops if r.where == "board"][index]
    return op.macs, op.min_bytes, max(op.macs / comp.config.macs, op.min_bytes / port_bytes)


def test_roofline(tmp_path):
    """A 1x1 layer of 64 pixels, 8 -> 16, on a 4x4 array with a 2-byte port: bit-exact, and
    within 15% of its roofline (memory-bound: 64 * 24 bytes of pixels, 272 of weights)."""
    comp, image, _ = compiled(tmp_path, conv_chain(hw=(8, 8), layers=((8, 16, 1),)), "roof",
                              SMALL)
    raw = descriptors(comp)[0]
    got, cycles, code = run_descriptor(SMALL, image, raw)
    assert code == 0 and got == golden_after(SMALL, image, raw)
    _, _, roof = _roofline(comp, 0, cycles)
    assert roof <= cycles < 1.15 * roof, (cycles, roof)

#: A 4x4 array with room for a 3x3x3 -> 16 layer's weights in one pass.
DEEP = ArrayConfig(rows=4, cols=4, max_channels=64, max_filters=32, weight_depth=64)

LAYERS = [   # (name, model, config)
    ("1x1 16x16 8->16", conv_chain(hw=(16, 16), layers=((8, 16, 1),)), SMALL),
    ("1x1 16x16 16->8 stride 2", conv_chain(hw=(16, 16), layers=((16, 8, 2),)), SMALL),
    ("1x1 16x16 8->24 (2 passes)", conv_chain(hw=(16, 16), layers=((8, 24, 1),)), SMALL),
    ("1x1 16x16 8->24 one bank", conv_chain(hw=(16, 16), layers=((8, 24, 1),)),
     SMALL_ONE_BANK),
    ("FC 8x32->16", mlp(widths=(32, 16), batch=8), SMALL),
    ("3x3 SAME 12x12 3->16 (one pass)", None, DEEP),
    ("3x3 SAME 12x12 3->16 (4 passes)", None, SMALL),
    ("3x3 stride 2 SAME 12x12 3->8", None, DEEP),
    ("1x1 8x8 32->32 8x8 array", conv_chain(hw=(8, 8), layers=((32, 32, 1),)),
     ArrayConfig(rows=8, cols=8, max_channels=64, max_filters=64, weight_depth=64)),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, data, cfg", LAYERS, ids=[n for n, *_ in LAYERS])
def test_roofline_table(tmp_path, name, data, cfg):
    """Cycles vs roofline of a few layers (printed with -s; make test-engine)."""
    if data is None:        # KxK layers: built here (conv_kxk is defined below)
        data = {"3x3 SAME 12x12 3->16 (one pass)": conv_kxk((3, 3), 1, 1, True, 3, 16,
                                                            hw=(12, 12)),
                "3x3 SAME 12x12 3->16 (4 passes)": conv_kxk((3, 3), 1, 1, True, 3, 16,
                                                            hw=(12, 12)),
                "3x3 stride 2 SAME 12x12 3->8": conv_kxk((3, 3), 2, 1, True, 3, 8,
                                                         hw=(12, 12))}[name]
    comp, image, _ = compiled(tmp_path, data, "layer", cfg)
    raw = descriptors(comp)[0]
    got, cycles, code = run_descriptor(cfg, image, raw)
    assert code == 0 and got == golden_after(cfg, image, raw)
    macs, nbytes, roof = _roofline(comp, 0, cycles)
    print(f"\n{name}: {cycles} cycles, MACs {macs} ({macs / cfg.macs:.0f} cycles), minimum "
          f"bytes {nbytes} ({nbytes / 2:.0f} cycles at 2 B/cycle), roofline {roof:.0f}: "
          f"{roof / cycles:.1%}")
    assert cycles >= roof


def conv_kxk(k, stride, dilation, same, c, f, hw=(5, 6), seed=2):
    """One KxK CONV_2D (TFLite padding SAME or VALID)."""
    from tflite_builder import ModelBuilder
    from program_bench import _quant_conv
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    h, w = hw
    x = b.tensor("x", (1, h, w, c), np.int8, 0.05, 5)
    wt, bias, s_out = _quant_conv(b, rng, "k", c, f, 0.05, k=k)
    eff = [(k[i] - 1) * dilation + 1 for i in range(2)]
    oh, ow = ((-(-h // stride), -(-w // stride)) if same else
              ((h - eff[0]) // stride + 1, (w - eff[1]) // stride + 1))
    y = b.tensor("y", (1, oh, ow, f), np.int8, s_out, -4)
    b.op("CONV_2D", [x, wt, bias], [y], "Conv2DOptions", padding=0 if same else 1,
         strideW=stride, strideH=stride, dilationWFactor=dilation, dilationHFactor=dilation)
    return b.finish([0], [y])


@pytest.mark.parametrize("k, stride, dilation, same, c, f, stall", [
    ((3, 3), 1, 1, True, 3, 6, 0.2), ((3, 3), 2, 1, False, 2, 5, 0.0),
    ((2, 3), 1, 2, True, 1, 4, 0.1),
])
def test_kxk_conv_matches_golden(tmp_path, k, stride, dilation, same, c, f, stall):
    comp, image, _ = compiled(tmp_path, conv_kxk(k, stride, dilation, same, c, f), "kxk",
                              SMALL)
    raw = descriptors(comp)[0]
    d = fmt.decode_descriptor(raw)
    assert d.kind == "CONV" and d.kernel == k and d.chunk_channels == k[0] * k[1] * c
    ref = golden_after(SMALL, image, raw)
    assert ref != bytes(image)
    got, cycles, code = run_descriptor(SMALL, image, raw, stall=stall)
    assert code == 0
    diff = np.flatnonzero(np.frombuffer(got, np.uint8) != np.frombuffer(ref, np.uint8))
    assert diff.size == 0, f"{diff.size} bytes differ, first at {diff[:8]}"


def test_im2col_init_wrong_params():
    from pwconv.hw.engine.im2col import Im2col
    with pytest.raises(TypeError, match=r"^Slots must be a power of 2, at least 2, not 3$"):
        Im2col(SMALL, port=PORT, slots=3)
    with pytest.raises(TypeError, match=r"^Max row bytes must be a positive integer, not 0$"):
        Im2col(SMALL, port=PORT, max_row_bytes=0)

"""CommandProcessor: whole compiled programs (1x1 conv chains, MLPs) run from a simulated memory
with stalls, every byte compared with golden/program.py's run and the output with
ai-edge-litert BUILTIN_REF; bad programs stop with an error naming the descriptor."""

import numpy as np
import pytest

pytest.importorskip("tflite")
pytest.importorskip("ai_edge_litert")

from program_bench import (PORT, compiled, conv_chain, memory_of, mlp, simulate,  # noqa: E402
                           wait_for)
from test_engine_conv import conv_kxk  # noqa: E402
from tflite_builder import run_reference  # noqa: E402

from pwconv.config import ArrayConfig  # noqa: E402
from pwconv.golden import program as gprog  # noqa: E402
from pwconv.hw.engine.conv import ERRORS  # noqa: E402
from pwconv.hw.engine.processor import STATUS, CommandProcessor  # noqa: E402
from pwconv.host.compiler import format as fmt  # noqa: E402

SMALL = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=16, weight_depth=8)


def test_init():
    p = CommandProcessor(SMALL, port=PORT, max_ops=16)
    assert p.max_ops == 16
    p._MustUse__silence = True          # not elaborated here


def test_init_wrong_params():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not None$"):
        CommandProcessor(None, port=PORT)
    with pytest.raises(TypeError, match=r"^Port must be a NativePortSignature, not 1$"):
        CommandProcessor(SMALL, port=1)
    with pytest.raises(TypeError, match=r"^Max ops must be an integer from 1 to 65535, not 0$"):
        CommandProcessor(SMALL, port=PORT, max_ops=0)


def run_program(cfg, image, *, stall=0.0, seed=0, ops=0):
    """Run the program of ``image`` on a CommandProcessor; ``(memory, status dict, per-op
    cycles of the first ``ops`` ops)``."""
    dut = CommandProcessor(cfg, port=PORT, max_ops=16)
    mem = memory_of(dut.bus, image, stall=stall, seed=seed)

    async def bench(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        await wait_for(ctx, dut.done, 400_000)
        status = {name: ctx.get(getattr(dut, name)) for name in
                  ("error", "error_code", "error_index", "engine_code", "ops_run", "cycles")}
        per_op = []
        for i in range(ops):
            ctx.set(dut.counter_index, i)
            await ctx.tick()
            per_op.append(ctx.get(dut.counter_value))
        return status, per_op

    status, per_op = simulate(dut, mem, bench)
    return mem.data[:len(image)].tobytes(), status, per_op


def golden_run(image):
    ref = bytearray(image)
    gprog.run_program(ref)
    return bytes(ref)


@pytest.mark.parametrize("name, data, stall", [
    ("chain", conv_chain(layers=((8, 24, 1), (24, 9, 2))), 0.25),
    ("mlp", mlp(), 0.1),
    ("kxk", conv_kxk((3, 3), 2, 1, True, 3, 8, hw=(6, 6)), 0.2),
])
def test_program_matches_golden_and_litert(tmp_path, name, data, stall):
    comp, image, x = compiled(tmp_path, data, name, SMALL)
    n = comp.header.descriptor_count
    assert {d.kind for d in comp.descriptors} <= {"CONV", "FULLY_CONNECTED"}
    ref = golden_run(image)
    got, status, per_op = run_program(SMALL, image, stall=stall, ops=n)
    assert status["error"] == 0 and status["ops_run"] == n, status
    diff = np.flatnonzero(np.frombuffer(got, np.uint8) != np.frombuffer(ref, np.uint8))
    assert diff.size == 0, f"{diff.size} bytes differ, first at {diff[:8]}"
    out = comp.model.outputs[0]
    y = gprog.read_view(bytearray(got), comp.views[out]).reshape(comp.model.tensors[out].shape)
    expect = run_reference(data, [x])[0][0]
    assert np.array_equal(y, expect)
    assert len(np.unique(y)) > 3
    assert all(c > 0 for c in per_op) and sum(per_op) < status["cycles"]


def _patched(image, comp, index, op):
    bad = bytearray(image)
    bad[comp.header.program_addr + 64 * index] = op
    return bad


def test_errors_name_the_descriptor(tmp_path):
    comp, image, _ = compiled(tmp_path, mlp(), "mlp", SMALL)
    # An op code that is no op kind, on the second descriptor: the first has run.
    got, status, _ = run_program(SMALL, _patched(image, comp, 1, 9))
    assert (status["error"], status["error_code"], status["error_index"], status["ops_run"]) \
        == (1, STATUS["unknown_op"], 1, 1)
    # A known op without an engine in this build.
    _, status, _ = run_program(SMALL, _patched(image, comp, 2, fmt.OPS["DEPTHWISE"]))
    assert (status["error_code"], status["error_index"]) == (STATUS["unsupported"], 2)
    # Not a program image.
    bad = bytearray(image)
    bad[0] = 0
    _, status, _ = run_program(SMALL, bad)
    assert status["error_code"] == STATUS["header"] and status["ops_run"] == 0
    # The engine refuses a descriptor (more than one channel chunk).
    bad = bytearray(image)
    at = comp.header.program_addr
    d = fmt.decode_descriptor(bytes(bad[at:at + 64]))
    bad[at:at + 64] = fmt.encode_descriptor(fmt.replace(d, chunk_channels=d.input.c - 4))
    _, status, _ = run_program(SMALL, bad)
    assert (status["error_code"], status["engine_code"], status["error_index"]) == \
        (STATUS["engine"], ERRORS["chunks"], 0)

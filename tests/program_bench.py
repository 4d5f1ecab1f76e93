"""Test helpers for the layer-program engines: small compiled models and an Amaranth-simulator
bench that runs a component against sim/native_memory.py holding a compiled image."""

import numpy as np
from amaranth.sim import Simulator

from tflite_builder import ModelBuilder

from pwconv.golden import program as gprog
from pwconv.hw.memory.port import NativePortSignature
from pwconv.host.compiler.compile import compile_model
from pwconv.host.model import load_model
from pwconv.sim.native_memory import NativeMemory

#: The memory port of the tests: the ULX3S's 16-bit SDRAM word, 2 MB of address space.
PORT = NativePortSignature(addr_width=20, data_width=16)


def _quant_conv(b, rng, name, c, f, in_scale, k=(1, 1)):
    kh, kw = k
    ws = rng.uniform(0.004, 0.02, f).astype(np.float32)
    w = b.const(f"{name}_w", rng.integers(-127, 128, (f, kh, kw, c), dtype=np.int8), ws, 0)
    bias = b.const(f"{name}_b", rng.integers(-3000, 3000, f).astype(np.int32),
                   (ws * np.float32(in_scale)).astype(np.float32))
    return w, bias, float(40 * np.sqrt(kh * kw * c) * in_scale * ws.mean())


def conv_chain(hw=(4, 4), layers=((8, 12, 1), (12, 6, 2)), seed=1):
    """A .tflite of 1x1 CONV_2D layers ``(C, F, stride)`` (VALID) on an ``hw`` input."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    h, w = hw
    x = b.tensor("x", (1, h, w, layers[0][0]), np.int8, 0.05, -3)
    s_in = 0.05
    for i, (c, f, stride) in enumerate(layers):
        wt, bias, s_out = _quant_conv(b, rng, f"c{i}", c, f, s_in)
        h, w = -(-h // stride), -(-w // stride)
        y = b.tensor(f"y{i}", (1, h, w, f), np.int8, s_out, int(rng.integers(-20, 20)))
        b.op("CONV_2D", [x, wt, bias], [y], "Conv2DOptions", padding=1, strideW=stride,
             strideH=stride, fusedActivationFunction=(1, 0, 3)[i % 3])
        x, s_in = y, s_out
    return b.finish([0], [x])


def mlp(widths=(16, 12, 20, 6), batch=1, seed=3):
    """A .tflite of FULLY_CONNECTED layers of the given widths."""
    rng = np.random.default_rng(seed)
    b = ModelBuilder()
    x = b.tensor("x", (batch, widths[0]), np.int8, 0.05, 7)
    s_in = 0.05
    for i, (c, f) in enumerate(zip(widths, widths[1:])):
        ws = rng.uniform(0.004, 0.02, f).astype(np.float32)
        w = b.const(f"w{i}", rng.integers(-127, 128, (f, c), dtype=np.int8), ws, 0)
        bias = b.const(f"b{i}", rng.integers(-2000, 2000, f).astype(np.int32),
                       (ws * np.float32(s_in)).astype(np.float32))
        s_out = float(40 * np.sqrt(c) * s_in * ws.mean())
        y = b.tensor(f"y{i}", (batch, f), np.int8, s_out, int(rng.integers(-10, 10)))
        b.op("FULLY_CONNECTED", [x, w, bias], [y], "FullyConnectedOptions",
             fusedActivationFunction=1 if i < len(widths) - 2 else 0)
        x, s_in = y, s_out
    return b.finish([0], [x])


def compiled(tmp_path, data, name, cfg, seed=0):
    """``(compiled model, image with a random input written, the input)``."""
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(data)
    model = load_model(path)
    comp = compile_model(model, cfg)
    x = model.random_input(seed)
    image = comp.fresh_image()
    gprog.write_view(image, comp.views[model.inputs[0]], x)
    return comp, image, x


def memory_of(dut_bus, image, *, stall=0.0, seed=0, read_latency=3):
    """A NativeMemory holding ``image`` (padded to whole words), with random stalls."""
    size = -(-len(image) // 2) * 2
    data = np.zeros(size, np.uint8)
    data[:len(image)] = np.frombuffer(bytes(image), np.uint8)
    return NativeMemory(dut_bus, size=size, data=data, read_latency=read_latency,
                        cmd_stall=stall, wdata_stall=stall, rdata_stall=stall, seed=seed,
                        patience=20000)


def simulate(dut, mem, bench):
    """Run ``bench(ctx)`` (an async testbench, which bounds its own wait) on ``dut`` with
    ``mem`` until it returns; returns its result."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    mem.add_to(sim)
    result = {}

    async def wrapper(ctx):
        result["value"] = await bench(ctx)

    sim.add_testbench(wrapper)
    sim.run()
    mem.check_idle()
    return result["value"]


async def wait_for(ctx, signal, limit):
    """Tick until ``signal`` is high (sampled after an edge); the cycles waited."""
    for n in range(limit):
        await ctx.tick()
        if ctx.get(signal):
            return n + 1
    raise AssertionError(f"{signal.name} not high within {limit} cycles")

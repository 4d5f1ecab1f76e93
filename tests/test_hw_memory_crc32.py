# amaranth: UnusedElaboratable=no
"""The gateware CRC-32 engine (a memory word per cycle, partial words) against zlib.crc32."""

import random
import zlib

import pytest
from amaranth.sim import Simulator

from pwconv.hw.memory.crc32 import Crc32, crc32_matrices


def _run(data_width, chunks):
    """Feed ``chunks`` (lists of bytes, each at most a word, with idle cycles between some)
    through the engine; return its crc after each restart-to-end run."""
    dut = Crc32(data_width)
    results = []

    async def bench(ctx):
        for run in chunks:
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            for i, part in enumerate(run):
                ctx.set(dut.data, int.from_bytes(bytes(part) + bytes([0xA5] * 8), "little")
                        & ((1 << data_width) - 1))
                ctx.set(dut.count, len(part))
                ctx.set(dut.valid, 1)
                await ctx.tick()
                if i % 3 == 2:                  # an idle cycle: nothing taken
                    ctx.set(dut.valid, 0)
                    ctx.set(dut.data, 0xFF)
                    await ctx.tick()
            ctx.set(dut.valid, 0)
            results.append(ctx.get(dut.crc))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_init_wrong_data_width():
    with pytest.raises(TypeError, match=r"^Data width must be a positive multiple of 8, "
                                        r"not 12$"):
        Crc32(12)


def test_matrices_match_a_bitwise_crc():
    """The symbolic one-byte update, applied to numbers, is zlib's table step."""
    rows = crc32_matrices(1)[0]
    rng = random.Random(3)
    for _ in range(50):
        state, byte = rng.getrandbits(32), rng.getrandbits(8)
        inputs = state | byte << 32
        new = sum((bin(row & inputs).count("1") & 1) << i for i, row in enumerate(rows))
        assert ~new & 0xFFFFFFFF == zlib.crc32(bytes([byte]), ~state & 0xFFFFFFFF)


@pytest.mark.parametrize("data_width", [8, 16, 32])
def test_sim_matches_zlib(data_width):
    """Whole words, a partial first and last word, single bytes, the check string."""
    wb = data_width // 8
    rng = random.Random(data_width)
    runs, expected = [], []
    for n in (1, 2, 3, 9, 9, 40, 101):
        data = bytes(rng.getrandbits(8) for _ in range(n))
        cuts, at = [], 0
        while at < n:
            step = rng.randint(1, wb)
            cuts.append(list(data[at:at + step]))
            at += step
        runs.append(cuts)
        expected.append(zlib.crc32(data))
    check = b"123456789"
    runs.append([list(check[i:i + wb]) for i in range(0, len(check), wb)])
    expected.append(0xCBF43926)
    assert _run(data_width, runs) == expected

"""Reader + writer + arbiter as exported Verilog under cocotb, on Verilator and Icarus: concurrent
reads and writes with random stalls, then the written regions read back, against NumPy."""

import numpy as np
import pytest

from pwconv.hw.memory.dma import beat_layout, request_layout
from pwconv.sim.dma_bench import apply_writes, expected_beats
from pwconv.sim.dma_cocotb import run_dma_cocotb

ADDR_WIDTH, DATA_WIDTH, LANES = 10, 16, 4
SIZE = (DATA_WIDTH // 8) << ADDR_WIDTH


def _pack_request(request):
    layout = request_layout(ADDR_WIDTH + 1, 16, 16)
    return sum((value % (1 << layout[name].width)) << layout[name].offset
               for name, value in zip(("addr", "length", "count", "stride"), request))


def _beats_in(rows, rng):
    words = []
    for row in rows:
        for b in range(0, len(row), LANES):
            chunk = list(row[b:b + LANES]) + list(rng.integers(0, 256, LANES))[:LANES - len(
                row[b:b + LANES])]
            words.append(sum(int(v) << (8 * i) for i, v in enumerate(chunk)))
    return words


def _decode(word):
    layout = beat_layout(LANES)
    raw = word >> layout["data"].offset
    return (tuple(raw >> (8 * i) & 0xff for i in range(LANES)),
            word >> layout["count"].offset & ((1 << layout["count"].width) - 1),
            word >> layout["row_last"].offset & 1, word >> layout["last"].offset & 1)


@pytest.mark.parametrize("simulator", ["verilator", "icarus"])
def test_sim_dma_system_matches_numpy(simulator):
    rng = np.random.default_rng(11)
    memory = rng.integers(0, 256, SIZE, dtype=np.uint8)
    reads = [(3, 13, 3, 40), (500, 1, 2, 7), (201, 30, 2, 0)]
    writes = [(1025, 13, 3, 41), (1700, 5, 4, 6), (1999, 30, 1, 0)]
    rows = [rng.integers(0, 256, length, dtype=np.uint8)
            for _, length, count, _ in writes for _ in range(count)]
    after = apply_writes(memory.copy(), writes, rows)
    first = expected_beats(reads, memory, LANES)
    second = expected_beats(writes, after, LANES)
    job = {
        "params": {"addr_width": ADDR_WIDTH, "data_width": DATA_WIDTH, "lanes": LANES},
        "seed": 5, "idle": 0.3, "out_stall": 0.3, "mem_stall": 0.3, "latency": 3,
        "word_bytes": DATA_WIDTH // 8, "addr_width": ADDR_WIDTH, "timeout": 5000,
        "memory": memory.tobytes().hex(),
        "phases": [
            {"rreq": [_pack_request(r) for r in reads], "wreq": [_pack_request(w) for w in writes],
             "i": _beats_in(rows, rng), "beats": len(first), "done": len(writes)},
            {"rreq": [_pack_request(w) for w in writes], "wreq": [], "i": [],
             "beats": len(second), "done": 0},
        ],
    }
    result = run_dma_cocotb(job, simulator=simulator)
    assert [_decode(w) for w in result["phases"][0]["beats"]] == first
    assert [_decode(w) for w in result["phases"][1]["beats"]] == second
    final = np.frombuffer(bytes.fromhex(result["memory"]), np.uint8)
    assert (final == after).all()
    assert result["w_bytes"] == sum(r[1] * r[2] for r in writes)
    assert result["r_bytes"] == sum(r[1] * r[2] for r in reads + writes)

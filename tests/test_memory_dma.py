# amaranth: UnusedElaboratable=no
"""DMAReader and DMAWriter in Amaranth's simulator against NativeMemory: random 2-D requests
(any alignment, lengths, strides, counts), random stalls on every stream, every byte compared
with a NumPy reference; completion, counters, parameter checks, throughput."""

import numpy as np
import pytest
from amaranth.hdl import Fragment

from pwconv.hw.memory.dma import DMAReader, DMAWriter, RowAddresses
from pwconv.hw.memory.port import NativePortSignature
from pwconv.sim.dma_bench import (ReadJob, WriteJob, apply_writes, expected_beats, run_dma)

SIZE = 2048      # bytes of the simulated memory: the whole byte address space (addresses wrap)


def _port(data_width):
    return NativePortSignature(addr_width=(SIZE // (data_width // 8)).bit_length() - 1,
                               data_width=data_width)


def random_requests(rng, n, *, max_len, max_count, zeros=True):
    """``n`` requests ``(addr, length, count, stride)``: any byte alignment, lengths 1..max_len,
    strides dense, gapped, zero, negative or anywhere (wrapping), and a few empty requests."""
    requests = []
    for _ in range(n):
        length = int(rng.integers(1, max_len + 1))
        count = int(rng.integers(1, max_count + 1))
        addr = int(rng.integers(0, SIZE))
        stride = int(rng.choice([length, length + int(rng.integers(1, 9)), 0,
                                 (-length) % SIZE, int(rng.integers(0, SIZE))]))
        if zeros and rng.random() < 0.08:
            length, count = (0, count) if rng.random() < 0.5 else (length, 0)
        requests.append((addr, length, count, stride))
    return requests


def row_bytes(rng, requests):
    return [rng.integers(0, 256, length, dtype=np.uint8)
            for _, length, count, _ in requests for _ in range(count if length else 0)]


def words_of(request, word_bytes):
    addr, length, count, stride = request
    if not length:
        return 0
    return sum(((addr + r * stride) % SIZE % word_bytes + length + word_bytes - 1) // word_bytes
               for r in range(count))


STALLS = {
    "none": dict(req_idle=0.0, in_idle=0.0, out_stall=0.0, done_stall=0.0, mem={}),
    "all": dict(req_idle=0.3, in_idle=0.4, out_stall=0.4, done_stall=0.5,
                mem=dict(cmd_stall=0.3, wdata_stall=0.3, rdata_stall=0.3, read_latency=4)),
    "pattern": dict(req_idle=0.0, in_idle=0.2, out_stall=0.7, done_stall=0.0,
                    mem=dict(cmd_stall=[0, 0, 1], wdata_stall=[1, 0], rdata_stall=[0, 1, 1, 0],
                             read_latency=1, max_reads=2)),
}

CONFIGS = [(16, 4), (16, 1), (32, 3), (8, 2), (64, 8), (32, 16)]


@pytest.mark.parametrize("data_width, lanes", CONFIGS)
@pytest.mark.parametrize("stalls", ["none", "all", "pattern"])
def test_sim_reader_matches_numpy(data_width, lanes, stalls):
    """Every beat of random 2-D reads equals the NumPy reference (bytes, count, row_last, last,
    zeros past count); the reader always takes read data at once (strict_rdata)."""
    seed = data_width * 7 + lanes + len(stalls)
    rng = np.random.default_rng(seed)
    memory = rng.integers(0, 256, SIZE, dtype=np.uint8)
    requests = random_requests(rng, 14, max_len=3 * lanes + 9, max_count=4)
    s = STALLS[stalls]
    job = ReadJob(requests, lanes=lanes, depth=8)
    mem, _, _ = run_dma(_port(data_width), [job], memory.copy(), seed=seed,
                        req_idle=s["req_idle"], out_stall=s["out_stall"],
                        mem_kwargs=dict(s["mem"], strict_rdata=True))
    expected = expected_beats(requests, memory, lanes)
    assert len(job.beats) == len(expected)
    for k, (got, want) in enumerate(zip(job.beats, expected)):
        assert got == want, f"beat {k}: {got} != {want}"
    assert (mem.data == memory).all()
    assert mem.writes == 0
    assert mem.reads == sum(words_of(r, data_width // 8) for r in requests)
    mem.check_idle()
    assert job.bytes_moved == sum(r[1] * r[2] for r in requests)
    assert not job.busy


@pytest.mark.parametrize("data_width, lanes", CONFIGS)
@pytest.mark.parametrize("stalls", ["none", "all", "pattern"])
def test_sim_writer_matches_numpy(data_width, lanes, stalls):
    """Random 2-D writes (padding bytes past each row's end in the input) leave memory equal to
    the NumPy reference; one done per non-empty request, each only after all of its (and every
    earlier request's) write commands were accepted."""
    seed = data_width * 5 + lanes + len(stalls)
    rng = np.random.default_rng(seed)
    memory = rng.integers(0, 256, SIZE, dtype=np.uint8)
    requests = random_requests(rng, 14, max_len=3 * lanes + 9, max_count=4)
    rows = row_bytes(rng, requests)
    s = STALLS[stalls]
    job = WriteJob(requests, rows, lanes=lanes, seed=seed)
    mem, _, _ = run_dma(_port(data_width), [job], memory.copy(), seed=seed,
                        req_idle=s["req_idle"], in_idle=s["in_idle"],
                        done_stall=s["done_stall"], mem_kwargs=s["mem"])
    reference = apply_writes(memory.copy(), requests, rows)
    wrong = np.nonzero(mem.data != reference)[0]
    assert wrong.size == 0, f"{wrong.size} wrong bytes, first at {wrong[:8]}"
    mem.check_idle()
    words = [words_of(r, data_width // 8) for r in requests if r[1] and r[2]]
    assert len(job.done_cycles) == len(words)
    assert mem.writes == sum(words)
    for k, accepted in enumerate(job.accepted_at_done):
        assert accepted >= sum(words[:k + 1]), f"done {k} before its writes were accepted"
    assert job.bytes_moved == sum(r[1] * r[2] for r in requests)
    assert not job.busy


def test_sim_reader_feeds_writer():
    """A reader's beats are a writer's input: copying 2-D regions through both matches NumPy."""
    rng = np.random.default_rng(9)
    memory = rng.integers(0, 256, SIZE, dtype=np.uint8)
    src = [(3, 21, 5, 40), (301, 6, 3, 7)]
    dst = [(1201, 21, 5, 30), (1700, 6, 3, 11)]
    read = ReadJob(src, lanes=4)
    run_dma(_port(16), [read], memory.copy())
    # a row of 21 bytes comes as 6 beats (5 full, then 1 byte): regroup by row_last
    grouped, row = [], []
    for data, count, row_last, _ in read.beats:
        row += list(data[:count])
        if row_last:
            grouped.append(np.array(row, np.uint8))
            row = []
    assert len(grouped) == 8 and len(read.beats) == 5 * 6 + 3 * 2
    write = WriteJob(dst, grouped, lanes=4)
    mem, _, _ = run_dma(_port(16), [write], memory.copy())
    reference = memory.copy()
    for (sa, length, count, ss), (da, _, _, ds) in zip(src, dst):
        for r in range(count):
            reference[da + r * ds:da + r * ds + length] = memory[sa + r * ss:sa + r * ss + length]
    assert (mem.data == reference).all()


@pytest.mark.parametrize("kind", ["reader", "writer"])
@pytest.mark.parametrize("data_width, lanes, length, count", [
    (16, 2, 4000, 1), (16, 8, 4000, 1), (32, 4, 101, 40), (16, 4, 17, 100)])
def test_sim_throughput(kind, data_width, lanes, length, count):
    """No stalls, long transfers: at least 0.95 port words per cycle (rows back to back, odd
    alignments included); the busy counter counts about the transfer's cycles."""
    word_bytes = data_width // 8
    requests = [(1, length, count, length + 3)] if count > 1 else [(0, length, 1, 0)]
    words = words_of(requests[0], word_bytes)
    rng = np.random.default_rng(1)
    memory = rng.integers(0, 256, SIZE if count == 1 and length < SIZE else 8192, np.uint8)
    if kind == "reader":
        job = ReadJob(requests, lanes=lanes, depth=8)
    else:
        job = WriteJob(requests, row_bytes(rng, requests), lanes=lanes)
    port = NativePortSignature(addr_width=(memory.size // word_bytes).bit_length() - 1,
                               data_width=data_width)
    mem, cycles, _ = run_dma(port, [job], memory.copy(), mem_kwargs=dict(read_latency=3))
    rate = words / job.cycles_busy
    print(f"{kind} {data_width}-bit port, {lanes} lanes, {count} x {length} B: {words} words "
          f"in {job.cycles_busy} busy cycles ({cycles} to the end), {rate:.3f} words/cycle")
    assert rate >= 0.95
    assert job.cycles_busy <= cycles


def test_init():
    port = _port(16)
    reader = DMAReader(port, lanes=4)
    assert reader.lanes == 4 and reader.depth == 16 and reader.byte_addr_width == 11
    assert len(reader.o.payload.data) == 4
    writer = DMAWriter(port, lanes=3)
    assert writer.lanes == 3 and writer.byte_addr_width == 11
    rows = RowAddresses(11, 16, 16)
    for dut in (reader, writer, rows):
        Fragment.get(dut, None)


@pytest.mark.parametrize("cls", [DMAReader, DMAWriter])
def test_init_wrong_params(cls):
    port = _port(16)
    with pytest.raises(TypeError, match=r"^Lane count must be a positive integer, not 0$"):
        cls(port, lanes=0)
    with pytest.raises(TypeError, match=r"^Port must be a NativePortSignature, not 'x'$"):
        cls("x", lanes=4)
    with pytest.raises(TypeError, match=r"^FIFO depth must be an integer >= 2, not 1$"):
        cls(port, lanes=4, depth=1)
    with pytest.raises(TypeError, match=r"^Length width must be an integer from 1 to 64, "
                                        r"not 0$"):
        cls(port, lanes=4, length_width=0)
    with pytest.raises(ValueError, match=r"^Port data width must be 8 times a power of two, "
                                         r"not 24$"):
        cls(NativePortSignature(addr_width=8, data_width=24), lanes=4)

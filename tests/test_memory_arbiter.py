# amaranth: UnusedElaboratable=no
"""PortArbiter in Amaranth's simulator: DMA readers and writers sharing one NativeMemory port under
random stalls, every byte compared with NumPy; full throughput alone, round robin when shared."""

import numpy as np
import pytest
from amaranth.hdl import Fragment

from pwconv.hw.memory.arbiter import PortArbiter
from pwconv.hw.memory.port import NativePortSignature
from pwconv.sim.dma_bench import ReadJob, WriteJob, apply_writes, expected_beats, run_dma


def _port(size, data_width=16):
    return NativePortSignature(addr_width=(size // (data_width // 8)).bit_length() - 1,
                               data_width=data_width)


def region_requests(rng, n, lo, hi, *, max_len, max_count):
    """``n`` requests whose rows all lie in bytes ``lo .. hi - 1`` (positive strides, any
    alignment), so that masters on disjoint regions cannot race."""
    requests = []
    for _ in range(n):
        length = int(rng.integers(1, max_len + 1))
        count = int(rng.integers(1, max_count + 1))
        stride = int(rng.choice([length, length + int(rng.integers(1, 9)), 0]))
        span = (count - 1) * stride + length
        addr = int(rng.integers(lo, hi - span + 1))
        requests.append((addr, length, count, stride))
    return requests


@pytest.mark.parametrize("data_width, seed, stalled", [(16, 1, True), (32, 2, True),
                                                       (16, 3, False), (8, 4, True)])
def test_sim_masters_share_port(data_width, seed, stalled):
    """Two readers and two writers at once, each on its own region: every reader's beats and
    every written byte match NumPy (nothing dropped, duplicated, reordered or misrouted)."""
    size = 4096
    rng = np.random.default_rng(seed)
    memory = rng.integers(0, 256, size, dtype=np.uint8)
    quarter = size // 4
    reads = [region_requests(rng, 8, k * quarter, (k + 1) * quarter, max_len=40, max_count=4)
             for k in range(2)]
    writes = [region_requests(rng, 8, k * quarter, (k + 1) * quarter, max_len=40, max_count=4)
              for k in range(2, 4)]
    rows = [[rng.integers(0, 256, r[1], dtype=np.uint8) for r in w for _ in range(r[2])]
            for w in writes]
    jobs = [ReadJob(reads[0], lanes=4), WriteJob(writes[0], rows[0], lanes=3, seed=seed),
            ReadJob(reads[1], lanes=data_width // 8, depth=6),
            WriteJob(writes[1], rows[1], lanes=8, seed=seed + 1)]
    stalls = (dict(req_idle=0.3, in_idle=0.3, out_stall=0.4, done_stall=0.3,
                   mem_kwargs=dict(cmd_stall=0.3, wdata_stall=0.3, rdata_stall=0.3,
                                   read_latency=3, strict_rdata=True))
              if stalled else dict(mem_kwargs=dict(strict_rdata=True)))
    mem, _, _ = run_dma(_port(size, data_width), jobs, memory.copy(), seed=seed, **stalls)
    for job in (jobs[0], jobs[2]):
        assert job.beats == expected_beats(job.requests, memory, job.lanes)
    reference = memory.copy()
    for w, r in zip(writes, rows):
        apply_writes(reference, w, r)
    wrong = np.nonzero(mem.data != reference)[0]
    assert wrong.size == 0, f"{wrong.size} wrong bytes, first at {wrong[:8]}"
    assert [len(j.done_cycles) for j in (jobs[1], jobs[3])] == [8, 8]
    mem.check_idle()


@pytest.mark.parametrize("kind", ["reader", "writer"])
def test_sim_alone_full_throughput(kind):
    """One master behind the arbiter: at least 0.95 port words per cycle on a long transfer."""
    size = 8192
    rng = np.random.default_rng(5)
    memory = rng.integers(0, 256, size, dtype=np.uint8)
    requests = [(1, 4000, 1, 0)]
    job = (ReadJob(requests, lanes=4) if kind == "reader" else
           WriteJob(requests, [rng.integers(0, 256, 4000, dtype=np.uint8)], lanes=4))
    mem, cycles, _ = run_dma(_port(size), [job], memory.copy(), arbiter=True,
                             mem_kwargs=dict(read_latency=3))
    words = 2001
    print(f"{kind} alone behind the arbiter: {words} words in {job.cycles_busy} busy cycles, "
          f"{words / job.cycles_busy:.3f} words/cycle")
    assert words / job.cycles_busy >= 0.95
    assert mem.reads + mem.writes == words


def test_sim_round_robin():
    """Two readers with long requests: the port stays busy (>= 0.95 words/cycle in all) and
    neither waits for the other (both finish within the last 5% of the run)."""
    size = 8192
    rng = np.random.default_rng(6)
    memory = rng.integers(0, 256, size, dtype=np.uint8)
    jobs = [ReadJob([(0, 2000, 1, 0)], lanes=4), ReadJob([(4000, 2000, 1, 0)], lanes=4)]
    finished = []
    _, cycles, _ = run_dma(_port(size), jobs, memory.copy(), mem_kwargs=dict(read_latency=3))
    for job in jobs:
        assert job.beats == expected_beats(job.requests, memory, 4)
        finished.append(job.cycles_busy)
    print(f"two readers: 2000 words in {cycles} cycles ({2000 / cycles:.3f} words/cycle), "
          f"busy {finished}")
    assert 2000 / cycles >= 0.95
    assert min(finished) >= 0.95 * cycles


def test_init():
    port = _port(4096)
    arb = PortArbiter(port, masters=3)
    assert arb.count == 3 and len(arb.masters) == 3
    Fragment.get(arb, None)
    Fragment.get(PortArbiter(port, masters=1), None)


def test_init_wrong_params():
    port = _port(4096)
    with pytest.raises(TypeError, match=r"^Master count must be a positive integer, not 0$"):
        PortArbiter(port, masters=0)
    with pytest.raises(TypeError, match=r"^Port must be a NativePortSignature, not None$"):
        PortArbiter(None, masters=2)
    with pytest.raises(TypeError, match=r"^Read tag depth must be a positive integer, not 0$"):
        PortArbiter(port, masters=2, read_tags=0)

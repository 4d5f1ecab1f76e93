"""make bench-memory: the SDRAM's bandwidth at the ULX3S's clocks, cycle-accurate on the chip model.

Runs the SDRAM bench (sim/sdram_sim.py: SDRAMController with LiteDRAM's sim variant at 50 MHz
behind NativePortCDC, the port at the array's 100 MHz, as :class:`pwconv.synth.boards.ULX3S`
builds it; the MT48LC16M16A2 model with every timing check fatal) on four streams, each long
(thousands of words, bank and row changes and refreshes included):

- sequential write, then sequential read of the same words (checked);
- interleaved: the command order the port arbiter (hw/memory/arbiter.py) gives a conv layer's
  three DMA streams, input pixels and weights read and results written in bursts of ``burst``
  words, one burst each in turn (the reads checked against what the write stream left);
- a long sequential read.

Bandwidth is bytes over the port-clock cycles from the first command taken to the last beat
(sim/cocotb_sdram.py), as MB/s at 100 MHz and as a share of the SDRAM's peak (2 bytes per
SDRAM clock: 100 MB/s at 50 MHz). Prints ``<stream>: <MB/s> MB/s, <NN.N>% of peak`` per stream
and writes them to build/bench-memory.json (the ULX3S build's report quotes them).
"""

import argparse
import json
import random
import sys

from .runner import repo_path
from .sdram_sim import run_sdram_job

__all__ = ["PORT_CLOCK_HZ", "SDRAM_CLOCK_HZ", "PEAK_BYTES_PER_S", "streams", "run_bench", "main"]

#: The ULX3S's clocks (pwconv.synth.boards.ULX3S): the port's (the array's) and the SDRAM's.
PORT_CLOCK_HZ = 100_000_000
SDRAM_CLOCK_HZ = 50_000_000
#: The 16-bit SDR SDRAM's peak: one word per SDRAM clock.
PEAK_BYTES_PER_S = 2 * SDRAM_CLOCK_HZ


def _addr(row, bank, col):
    """Word address in LiteDRAM's ROW_BANK_COL mapping (column 9 bits, bank 2, row)."""
    return (row << 11) | (bank << 9) | col


def streams(words=8192, burst=32, seed=7):
    """The bench's job (for :func:`pwconv.sim.sdram_sim.run_sdram_job`) and, per batch, its
    stream name and the read words it must return (None: none checked)."""
    rng = random.Random(seed)
    base = _addr(40, 0, 0)
    data = [rng.randrange(1 << 16) for _ in range(2 * words)]
    names, batches, expect = [], [], []
    # Sequential write: the input and weight regions, one after the other.
    names.append("sequential write")
    batches.append({"cmds": [[1, base + i, data[i], 3] for i in range(2 * words)]})
    expect.append(None)
    names.append("sequential read")
    batches.append({"cmds": [[0, base + i, 0, 0] for i in range(2 * words)]})
    expect.append(data)
    # Interleaved: pixels (first half), weights (second half) read, results written elsewhere.
    results = _addr(900, 0, 0)
    cmds, reads = [], []
    pixels = weights = out = 0
    while pixels < words:
        for i in range(burst):
            cmds.append([0, base + pixels + i, 0, 0])
            reads.append(data[pixels + i])
        for i in range(burst):
            cmds.append([0, base + words + weights + i, 0, 0])
            reads.append(data[words + weights + i])
        for i in range(burst):
            cmds.append([1, results + out + i, rng.randrange(1 << 16), 3])
        pixels += burst
        weights += burst
        out += burst
    names.append(f"interleaved (pixels, weights in, results out; bursts of {burst})")
    batches.append({"cmds": cmds})
    expect.append(reads)
    names.append("long sequential read")
    batches.append({"cmds": [[0, base + i, 0, 0] for i in range(2 * words)] * 2})
    expect.append(data * 2)
    return {"seed": seed, "batches": batches}, names, expect


def run_bench(words=8192, burst=32):
    """Run the streams; return ``[(name, bytes, cycles, MB/s, share of peak)]``.

    Raises RuntimeError if the model reports a timing violation or a read returns a wrong word.
    """
    job, names, expect = streams(words, burst)
    result = run_sdram_job(job, memory_clock_hz=SDRAM_CLOCK_HZ)
    rows = []
    for name, batch, want, got in zip(names, job["batches"], expect, result["batches"]):
        if want is not None and got["reads"] != want:
            wrong = sum(a != b for a, b in zip(got["reads"], want))
            raise RuntimeError(f"{name}: {wrong} of {len(want)} words read back wrong")
        nbytes = 2 * len(batch["cmds"])
        rate = nbytes / (got["cycles"] / PORT_CLOCK_HZ)
        rows.append((name, nbytes, got["cycles"], rate / 1e6, rate / PEAK_BYTES_PER_S))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pwconv.sim.memory_bench",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--words", type=int, default=8192,
                        help="words per region (default 8192: 16 KiB)")
    parser.add_argument("--burst", type=int, default=32,
                        help="words per arbiter burst in the interleaved stream")
    parser.add_argument("--min-share", type=float, default=0.8,
                        help="fail below this share of the peak (default 0.8)")
    args = parser.parse_args(argv)
    if args.words < 64 or args.burst < 1 or args.words % args.burst:
        print("error: words must be at least 64 and a multiple of burst", file=sys.stderr)
        return 2
    try:
        rows = run_bench(args.words, args.burst)
    except (RuntimeError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"SDRAM at {SDRAM_CLOCK_HZ / 1e6:g} MHz (peak {PEAK_BYTES_PER_S / 1e6:g} MB/s), port at "
          f"{PORT_CLOCK_HZ / 1e6:g} MHz through NativePortCDC, MT48LC16M16A2 model, checks on")
    for name, nbytes, cycles, mbps, share in rows:
        print(f"{name}: {mbps:.1f} MB/s, {100 * share:.1f}% of peak "
              f"({nbytes} bytes in {cycles} cycles)")
    out = repo_path("build/bench-memory.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "sdram_clock_hz": SDRAM_CLOCK_HZ, "port_clock_hz": PORT_CLOCK_HZ,
        "peak_mb_s": PEAK_BYTES_PER_S / 1e6, "words": args.words, "burst": args.burst,
        "streams": [{"stream": name, "bytes": nbytes, "cycles": cycles, "mb_s": round(mbps, 2),
                     "share": round(share, 4)} for name, nbytes, cycles, mbps, share in rows],
    }, indent=2) + "\n")
    low = [name for name, *_, share in rows if share < args.min_share]
    if low:
        print(f"error: below {100 * args.min_share:.0f}% of peak: {', '.join(low)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""board-sim with the SDRAM (LiteDRAM on the timing-checked chip model, ULX3S clocks): the link's
memory commands on a backdoor-preloaded image, regions written and read back, the model's dump.

The default run shares one Verilator build (sim/board_sdram.py; about 2-5 minutes the first time,
cached in build/board-sim/sdram-*) and one simulation. Slow ones: the whole 32 MB
(``make test-memory-full``) and a 1 MB load through the link with faults
(``make memory-load-1mb``). The model stops the simulation at any timing violation, which fails
the session's close (and the run's log is checked for violation lines).
"""

import random
import zlib
from pathlib import Path

import pytest

from pwconv.config import ArrayConfig
from pwconv.host.board import BoardDevice
from pwconv.host.link import Command, Error, MemoryInfo, NackError, SimTransport

#: The board-sim configuration of tests/test_board_sim.py (the array matters little here).
CFG = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=24, weight_depth=16,
                  mac_style="ice40_dual8x8", requantizer="serial", requant_steps=4)
#: ULX3S clocks: the array's 100 MHz; the UART at its smallest divisor, 4.
CLK_FREQ, BAUD = 100_000_000, 25_000_000
SIZE = 32 << 20
#: The preloaded image (backdoor) and the words dumped at the end.
IMAGE = 64 << 10


def _session(tmp_path, image, *, dump_bytes):
    load, dump = tmp_path / "load.bin", tmp_path / "dump.bin"
    load.write_bytes(image)
    link = SimTransport(CFG, sdram=True, clk_freq=CLK_FREQ, baud=BAUD,
                        plusargs=[f"+sdram_load={load}", f"+sdram_dump={dump}",
                                  f"+sdram_dump_words={dump_bytes // 2}"])
    return link, dump


def _violations(link):
    log = link._sim.log
    return [line for line in Path(log).read_text(errors="replace").splitlines()
            if "sdram_model:" in line and "violat" in line] if log and Path(log).is_file() else []


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sdram")
    image = bytearray(random.Random(11).randbytes(IMAGE))
    link, dump = _session(tmp, bytes(image), dump_bytes=IMAGE)
    state = {"link": link, "device": BoardDevice(link, CFG), "image": image, "dump": dump,
             "log": None}
    yield state
    if state["link"] is not None:
        state["link"].close()


def test_memory_info(board):
    assert board["device"].memory_info() == MemoryInfo(SIZE, 2)


def test_preloaded_image_crc(board):
    """The backdoor's image, read by the board through LiteDRAM: CRC-32s of regions (one
    crossing a bank boundary at an odd address, the whole image) against zlib's."""
    device, image = board["device"], board["image"]
    for addr, n in ((0, 1), (1023, 3), (1000, 1200), (0, IMAGE)):
        assert device.memory_crc(addr, n) == zlib.crc32(image[addr:addr + n]), (addr, n)


def test_regions_written_and_read_back(board):
    """Writes at the start, across bank and row boundaries (words 511/512, 2047/2048), at
    odd addresses and at the end of the 32 MB; each read back and CRC-checked."""
    device, image = board["device"], board["image"]
    rng = random.Random(3)
    for addr, n in ((0, 17), (1021, 9), (4090, 300), (40001, 1234), (SIZE - 777, 777)):
        data = rng.randbytes(n)
        device.write_memory(addr, data)
        if addr + n <= IMAGE:
            image[addr:addr + n] = data
        assert device.read_memory(addr, n) == data, (addr, n)
        assert device.memory_crc(addr, n) == zlib.crc32(data)
    assert device.crc_rewrites == 0


def test_out_of_range_nacked(board):
    """A MEM_WRITE past the 32 MB: NACK BAD_RANGE, nothing written; the host refuses it."""
    device = board["device"]
    device.write_memory(SIZE - 4, b"\x11\x22\x33\x44")
    with pytest.raises(NackError) as info:
        device.request(Command.MEM_WRITE, (SIZE - 2).to_bytes(4, "little") + b"abcd",
                       reply_bytes=2)
    assert info.value.error == Error.BAD_RANGE
    assert device.read_memory(SIZE - 4, 4) == b"\x11\x22\x33\x44"
    with pytest.raises(ValueError, match=r"^Cannot write bytes"):
        device.write_memory(SIZE - 2, b"abcd")


def test_dump_matches_and_no_violation(board):
    """Last: close the simulation (a timing violation would have stopped it: close raises),
    then the model's dump of the image's words equals what the host wrote over the preload."""
    link, board["link"] = board["link"], None
    link.close()
    assert _violations(link) == []
    assert board["dump"].read_bytes() == bytes(board["image"])


# ------------------------------------------------------------------ slow


@pytest.mark.slow
def test_whole_32mb(tmp_path):
    """make test-memory-full: a random 32 MB image preloaded, 64 writes spread over the whole
    memory (one per 512 KiB, each crossing a row), then the board's CRC-32 of all 32 MB (every
    word read through LiteDRAM, refreshes running: about 34 M cycles of the 100 MHz clock, some
    20-40 minutes of Verilator on this machine), and the whole memory dumped and compared."""
    rng = random.Random(32)
    image = bytearray(rng.randbytes(SIZE))
    link, dump = _session(tmp_path, bytes(image), dump_bytes=SIZE)
    try:
        device = BoardDevice(link, CFG)
        for k in range(64):
            addr = k * (SIZE // 64) + (SIZE // 64) - 100 - k
            data = rng.randbytes(200)
            device.write_memory(addr, data)
            image[addr:addr + 200] = data
        assert device.memory_crc(0, SIZE) == zlib.crc32(image)
    finally:
        link.close()
    assert _violations(link) == []
    assert dump.read_bytes() == bytes(image)


class _Noisy:
    """Damages some writes and reads through it (a bit flipped, a byte dropped or inserted)."""

    def __init__(self, inner, rng, p=0.02):
        self.inner, self.rng, self.p, self.damaged = inner, rng, p, 0
        self.baud, self.latency, self.quiet = inner.baud, inner.latency, inner.quiet

    def _damage(self, data):
        if not data or self.rng.random() >= self.p:
            return data
        self.damaged += 1
        data = bytearray(data)
        at = self.rng.randrange(len(data))
        kind = self.rng.randrange(3)
        if kind == 0:
            data[at] ^= 1 << self.rng.randrange(8)
        elif kind == 1:
            del data[at]
        else:
            data.insert(at, self.rng.randrange(256))
        return bytes(data)

    def write(self, data):
        self.inner.write(self._damage(data))

    def read(self, n, timeout):
        return self._damage(self.inner.read(n, timeout))

    def clock(self):
        return self.inner.clock()

    def close(self):
        pass


@pytest.mark.slow
def test_load_1mb_through_link_with_faults(tmp_path):
    """make memory-load-1mb: 1 MB written through the link's memory commands (UART divisor 4),
    link faults injected into about 2% of the transfers, verified by the board's CRC-32 and by
    the model's dump: 0 wrong bytes."""
    rng = random.Random(1)
    data = rng.randbytes(1 << 20)
    link, dump = _session(tmp_path, bytes(16), dump_bytes=(1 << 20) + 4096)
    noisy = _Noisy(link, random.Random(2))
    try:
        device = BoardDevice(noisy, CFG)
        device.write_memory(4096, data, progress=False)
        assert device.memory_crc(4096, len(data)) == zlib.crc32(data)
    finally:
        link.close()
    assert noisy.damaged > 0
    assert _violations(link) == []
    got = dump.read_bytes()[4096:4096 + len(data)]
    wrong = sum(a != b for a, b in zip(got, data))
    print(f"\n1 MB load through the link: {noisy.damaged} transfers damaged, "
          f"{device.crc_rewrites} CRC rewrites, {wrong} wrong bytes, "
          f"{link._sim.now:.3f} s simulated")
    assert wrong == 0

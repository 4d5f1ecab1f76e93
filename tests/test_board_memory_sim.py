"""Board memory end to end in Verilator (board-sim with a block-RAM memory): the link's memory
commands through BoardDevice, ranges, a layer between loads.

Marked slow (``make memory-link``): the memory board's Verilator build takes about 2 minutes on
2 shared cores, its tests 12 s. ``make test`` covers the same gateware in Amaranth's simulator
(tests/test_link_memory.py, including a board without memory) and the host API against a
Python board (tests/test_host_board_memory.py)."""

import random
import zlib

import numpy as np
import pytest

from pwconv.config import ArrayConfig
from pwconv.host.accelerator import Accelerator
from pwconv.host.board import BoardDevice
from pwconv.host.layer import golden_output, random_layer
from pwconv.host.link import Command, Error, MemoryInfo, NackError, SimTransport, Status

#: The board-sim configuration of tests/test_board_sim.py (its build is the memoryless one).
CFG = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=24, weight_depth=16,
                  mac_style="ice40_dual8x8", requantizer="serial", requant_steps=4)
pytestmark = pytest.mark.slow

#: Bytes of the simulated board's block-RAM memory (16-bit words).
MEMORY = 4096


@pytest.fixture(scope="module")
def transport():
    link = SimTransport(CFG, memory_bytes=MEMORY)
    yield link
    link.close()


@pytest.fixture(scope="module")
def device(transport):
    return BoardDevice(transport, CFG)


def test_memory_info(device):
    assert device.memory_info() == MemoryInfo(MEMORY, 2)


def test_load_verify_read_back(device):
    """A load at an odd address over several frames, verified by the board's CRC-32 (no
    rewrite), read back byte for byte, and CRCs of unaligned sub-regions against zlib."""
    rng = random.Random(5)
    data = bytes(rng.randrange(256) for _ in range(2501))
    device.write_memory(301, data)
    assert device.crc_rewrites == 0
    assert device.read_memory(301, len(data)) == data
    for addr, n in ((301, 1), (302, 2), (1000, 777), (301, 2501)):
        assert device.memory_crc(addr, n) == zlib.crc32(data[addr - 301:addr - 301 + n])
    assert device.memory_crc(0, MEMORY) == zlib.crc32(bytes(301) + data
                                                       + bytes(MEMORY - 301 - len(data)))


def test_out_of_range_nacked_nothing_written(device):
    device.write_memory(MEMORY - 4, b"\x11\x22\x33\x44")
    payload = (MEMORY - 2).to_bytes(4, "little") + b"abcd"
    with pytest.raises(NackError) as info:
        device.request(Command.MEM_WRITE, payload, reply_bytes=2)
    assert info.value.error == Error.BAD_RANGE
    assert device.read_memory(MEMORY - 4, 4) == b"\x11\x22\x33\x44"
    with pytest.raises(ValueError, match=r"^Cannot write bytes 0xffe\.\.0x1002 \(end "
                                         r"exclusive\): the board memory is bytes "
                                         r"0x0\.\.0x1000$"):
        device.write_memory(MEMORY - 2, b"abcd")
    assert device.status().last_error == Error.BAD_RANGE


def test_layer_between_memory_loads(device):
    """The accelerator's commands still work on a board with memory."""
    x, layer = random_layer((1, 5, 10), 6, seed=3)
    acc = Accelerator("board-sim", CFG, device=device, progress=False)
    np.testing.assert_array_equal(acc.run_layer(x, layer), golden_output(x, layer))
    device.write_memory(0, b"after")
    assert device.read_memory(0, 5) == b"after"
    status = device.status()
    assert isinstance(status, Status) and status.frames_refused >= 1


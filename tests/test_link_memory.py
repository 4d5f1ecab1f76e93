# amaranth: UnusedElaboratable=no
"""The link's memory commands in Amaranth's simulator: MEM_INFO/WRITE/READ/CRC, NACKs, faults."""

import random
import zlib

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from pwconv.config import ArrayConfig
from pwconv.host.link import Command, Error, MemoryInfo, Reply, encode_frame
from pwconv.hw.link.controller import LinkController
from pwconv.hw.memory.bram import BlockRAMMemory
from pwconv.hw.memory.port import NativePortSignature
from pwconv.sim.native_memory import NativeMemory
from test_link_controller import exchange

CFG = ArrayConfig(rows=3, cols=4, max_channels=12, max_filters=12, weight_depth=6)
MAX_PAYLOAD = 48
TIMEOUT = 80
#: 16-bit words as on the ULX3S; 64 words (128 bytes) of which 120 bytes are the memory, so
#: the range check is not a power of two.
PORT = NativePortSignature(addr_width=6, data_width=16)
SIZE = 120


class MemoryLink(Elaboratable):
    """The link controller alone (no accelerator: the memory commands do not use it), its
    memory port exposed (``bram``: a :class:`BlockRAMMemory` behind it instead)."""

    def __init__(self, port=PORT, size=SIZE, memory=True, bram=False):
        self.link = LinkController(CFG, max_payload=MAX_PAYLOAD, timeout=TIMEOUT,
                                   memory=port if memory else None,
                                   memory_size=size if memory else None)
        self.bram = BlockRAMMemory(depth=size * 8 // port.data_width,
                                   data_width=port.data_width) if bram else None

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        if self.bram is not None:
            m.submodules.bram = self.bram
            wiring.connect(m, self.link.mem, self.bram.bus)
        return m


def converse(steps, *, port=PORT, size=SIZE, memory=True, bram=False, init=None, gap=3,
             stall=0.0, mem_stall=0.0, seed=0, max_cycles=20000):
    """Send each step's bytes and wait for its replies (tests/test_link_controller.py's
    ``exchange``), the memory model behind the link's port unless ``bram``.

    Returns (reply frames per step, the memory's bytes after the run)."""
    dut = MemoryLink(port, size, memory, bram)
    model = None
    if memory and not bram:
        model = NativeMemory(dut.link.mem, size=size, data=init, read_latency=3,
                             cmd_stall=mem_stall, wdata_stall=mem_stall,
                             rdata_stall=mem_stall, seed=seed, strict_rdata=not mem_stall)
    replies = exchange(dut, steps, gap=gap, stall=stall, seed=seed, max_cycles=max_cycles,
                       processes=() if model is None else (model.add_to,))
    if model is not None:
        model.check_idle()
        return replies, bytes(model.data)
    return replies, None


def write(addr, data, tag=0):
    return encode_frame(Command.MEM_WRITE, addr.to_bytes(4, "little") + bytes(data), tag)


def read(addr, n, tag=0):
    return encode_frame(Command.MEM_READ, addr.to_bytes(4, "little") + n.to_bytes(2, "little"),
                        tag)


def crc(addr, n, tag=0):
    return encode_frame(Command.MEM_CRC, addr.to_bytes(4, "little") + n.to_bytes(4, "little"),
                        tag)


def nack(error, command):
    return (Reply.NACK, bytes([error, command]))


def code_payload(frames):
    return [(frame.code, frame.payload) for [frame] in frames]


def test_init_wrong_memory():
    with pytest.raises(TypeError, match=r"^Memory must be a NativePortSignature, not 'sdram'$"):
        LinkController(CFG, max_payload=MAX_PAYLOAD, timeout=TIMEOUT, memory="sdram")


def test_init_wrong_memory_size():
    with pytest.raises(ValueError, match=r"^Memory size must be a positive multiple of 2 "
                                         r"bytes, at most 128 \(the port's range and the "
                                         r"protocol's u32 addresses\), not 129$"):
        LinkController(CFG, max_payload=MAX_PAYLOAD, timeout=TIMEOUT, memory=PORT,
                       memory_size=129)


def test_init_wrong_word():
    with pytest.raises(ValueError, match=r"^Memory word must be a power of two bytes, not 3$"):
        LinkController(CFG, max_payload=MAX_PAYLOAD, timeout=TIMEOUT,
                       memory=NativePortSignature(addr_width=4, data_width=24))


def test_sim_no_memory_refuses_memory_commands():
    """Without a memory (the iCEBreaker build) the memory commands do not exist."""
    frames, _ = converse([(encode_frame(Command.MEM_INFO), 1), (read(0, 2), 1)], memory=False)
    assert code_payload(frames) == [nack(Error.UNKNOWN_COMMAND, Command.MEM_INFO),
                                    nack(Error.UNKNOWN_COMMAND, Command.MEM_READ)]


def _reference_session(rng, size, nsteps):
    """Random writes (any alignment), reads and CRCs; the expected replies and memory."""
    ref = bytearray(size)
    steps, expected = [], []
    for i in range(nsteps):
        kind = rng.choice(["write", "write", "read", "crc"])
        tag = rng.randrange(256)
        if kind == "write":
            n = rng.randrange(1, MAX_PAYLOAD - 4 + 1)
            addr = rng.randrange(size - n + 1)
            data = bytes(rng.randrange(256) for _ in range(n))
            ref[addr:addr + n] = data
            steps.append(write(addr, data, tag))
            expected.append((Reply.MEM_WRITTEN, n.to_bytes(2, "little"), tag))
        elif kind == "read":
            n = rng.randrange(1, 40)
            addr = rng.randrange(size - n + 1)
            steps.append(read(addr, n, tag))
            expected.append((Reply.MEM_DATA, bytes(ref[addr:addr + n]), tag))
        else:
            n = rng.randrange(1, size + 1)
            addr = rng.randrange(size - n + 1)
            steps.append(crc(addr, n, tag))
            expected.append((Reply.MEM_CRC, zlib.crc32(ref[addr:addr + n]).to_bytes(4, "little"),
                             tag))
    return steps, expected, bytes(ref)


@pytest.mark.parametrize("mem_stall, stall", [(0.0, 0.0), (0.4, 0.3)])
def test_sim_matches_reference(mem_stall, stall):
    """Random writes, reads and CRCs at every alignment against a byte array and zlib, on a
    memory model with latency (and random stalls on every stream, and a stalling UART)."""
    rng = random.Random(7 + int(10 * mem_stall))
    steps, expected, ref = _reference_session(rng, SIZE, 14)
    steps.append(crc(0, SIZE, 9))       # the whole memory
    expected.append((Reply.MEM_CRC, zlib.crc32(ref).to_bytes(4, "little"), 9))
    frames, memory = converse([(s, 1) for s in steps], mem_stall=mem_stall, stall=stall,
                              seed=rng.randrange(100))
    assert [(f.code, f.payload, f.tag) for [f] in frames] == expected
    assert memory == ref


def test_sim_block_ram_memory():
    """The same through hw/memory/bram.py's memory, with MEM_INFO."""
    rng = random.Random(3)
    steps, expected, ref = _reference_session(rng, SIZE, 8)
    steps.append(read(SIZE - 40, 40))
    expected.append((Reply.MEM_DATA, ref[-40:], 0))
    frames, _ = converse([(encode_frame(Command.MEM_INFO), 1)] + [(s, 1) for s in steps],
                         bram=True)
    [info] = frames[0]
    assert info.code == Reply.MEM_INFO
    assert MemoryInfo.unpack(info.payload) == MemoryInfo(SIZE, 2)
    assert [(f.code, f.payload, f.tag) for [f] in frames[1:]] == expected


def test_sim_out_of_range_writes_nothing():
    """A range reaching past the memory (by a byte, or wrapping the u32 address) is NACKed
    BAD_RANGE; zero lengths BAD_LENGTH; nothing is written; the memory still answers."""
    init = np.arange(SIZE, dtype=np.uint8)
    steps = [
        write(SIZE - 3, b"abcd"), write(SIZE, b"a"), write(0xFFFFFFFF, b"ab"),
        write(5, b""), read(SIZE - 1, 2), read(0, 0), crc(1, SIZE), crc(0xFFFFFFF0, 0x20),
        crc(3, 0), encode_frame(Command.MEM_READ, bytes(5)),
        read(SIZE - 2, 2),
    ]
    frames, memory = converse([(s, 1) for s in steps], init=init)
    W, R, C = Command.MEM_WRITE, Command.MEM_READ, Command.MEM_CRC
    assert code_payload(frames) == [
        nack(Error.BAD_RANGE, W), nack(Error.BAD_RANGE, W), nack(Error.BAD_RANGE, W),
        nack(Error.BAD_LENGTH, W), nack(Error.BAD_RANGE, R), nack(Error.BAD_LENGTH, R),
        nack(Error.BAD_RANGE, C), nack(Error.BAD_RANGE, C), nack(Error.BAD_LENGTH, C),
        nack(Error.BAD_LENGTH, R), (Reply.MEM_DATA, bytes(init[-2:])),
    ]
    assert memory == init.tobytes()


def test_sim_damaged_frames_write_nothing():
    """A MEM_WRITE with a bad CRC, cut short, or arriving while a CRC is computed is NACKed
    (BAD_CRC, TIMEOUT, BUSY) and writes nothing; sent again whole, it is written once."""
    data = bytes(range(100, 130))
    good = write(8, data, tag=5)
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x10
    flipped = bytearray(good)
    flipped[20] ^= 0x01
    busy = crc(0, SIZE, tag=6) + write(8, data, tag=7)
    frames, memory = converse([(bytes(bad_crc), 1), (bytes(flipped), 1),
                               (good[:17], 1), (busy, 2), (good, 1), (good, 1)])
    W = Command.MEM_WRITE
    assert [(f.code, f.payload, f.tag) for f in sum(frames, [])] == [
        (Reply.NACK, bytes([Error.BAD_CRC, W]), 5), (Reply.NACK, bytes([Error.BAD_CRC, W]), 5),
        (Reply.NACK, bytes([Error.TIMEOUT, W]), 5),
        (Reply.MEM_CRC, zlib.crc32(bytes(SIZE)).to_bytes(4, "little"), 6),
        (Reply.NACK, bytes([Error.BUSY, W]), 7),
        (Reply.MEM_WRITTEN, (30).to_bytes(2, "little"), 5),
        (Reply.MEM_WRITTEN, (30).to_bytes(2, "little"), 5),
    ]
    assert memory == bytes(8) + data + bytes(SIZE - 38)

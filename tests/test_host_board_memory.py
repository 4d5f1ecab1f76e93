"""BoardDevice's memory API against a Python board: chunking, CRC verify and rewrite, ranges,
no memory, exclusive open of a serial port."""

import os
import subprocess
import sys
import zlib

import pytest

from pwconv.config import ArrayConfig
from pwconv.host.board import BoardDevice
from pwconv.host.link import (Command, Error, FrameDecoder, Identity, LinkError, MemoryInfo,
                              Reply, SerialTransport, encode_frame)

CFG = ArrayConfig(rows=2, cols=3, max_channels=8, max_filters=9, weight_depth=8)
MAX_PAYLOAD = 64
IDENTITY = Identity.of(CFG, max_payload=MAX_PAYLOAD, clk_freq=12_000_000, baud=3_000_000,
                       timeout=240_000)


class MemoryBoard:
    """A transport that is a board with ``size`` bytes of memory, answering frames at once.

    ``reported`` is the size MEM_INFO says (default ``size``); ``corrupt(addr, data)`` may
    change what a MEM_WRITE stores; ``memory=False`` refuses the memory commands as unknown.
    """

    baud = 3_000_000
    latency = 0.0
    quiet = 0.0

    def __init__(self, size=1000, *, reported=None, corrupt=None, memory=True):
        self.data = bytearray(size)
        self.reported = size if reported is None else reported
        self.corrupt = corrupt
        self.memory = memory
        self.requests = []
        self.pending = bytearray()
        self.decoder = FrameDecoder()

    def _reply(self, frame):
        code, payload = frame.code, frame.payload
        self.requests.append((code, len(payload)))
        if code == Command.IDENTIFY:
            return Reply.IDENTITY, IDENTITY.pack()
        if not self.memory:
            return Reply.NACK, bytes([Error.UNKNOWN_COMMAND, code])
        assert len(payload) <= MAX_PAYLOAD
        if code == Command.MEM_INFO:
            return Reply.MEM_INFO, MemoryInfo(self.reported, 2).pack()
        addr = int.from_bytes(payload[:4], "little")
        if code == Command.MEM_WRITE:
            data = payload[4:]
        else:
            n = int.from_bytes(payload[4:], "little")
        end = addr + (len(data) if code == Command.MEM_WRITE else n)
        if end > len(self.data):
            return Reply.NACK, bytes([Error.BAD_RANGE, code])
        if code == Command.MEM_WRITE:
            if self.corrupt is not None:
                data = self.corrupt(addr, data)
            self.data[addr:end] = data
            return Reply.MEM_WRITTEN, len(data).to_bytes(2, "little")
        if code == Command.MEM_READ:
            return Reply.MEM_DATA, bytes(self.data[addr:end])
        return Reply.MEM_CRC, zlib.crc32(self.data[addr:end]).to_bytes(4, "little")

    def write(self, data):
        for frame in self.decoder.feed(data):
            code, payload = self._reply(frame)
            self.pending += encode_frame(code, payload, tag=frame.tag)

    def read(self, n, timeout):
        data = bytes(self.pending[:n])
        del self.pending[:n]
        return data

    def close(self):
        pass


def _data(n, seed=1):
    return bytes((i * 37 + seed) & 0xFF for i in range(n))


def test_write_read_crc():
    board = MemoryBoard(1000)
    device = BoardDevice(board)
    data = _data(333)
    device.write_memory(101, data)
    assert board.data[101:434] == data and not any(board.data[:101] + board.data[434:])
    assert device.read_memory(100, 335) == bytes(1) + data + bytes(1)
    assert device.memory_crc(101, 333) == zlib.crc32(data)
    assert device.memory_crc(5, 0) == 0
    writes = [n for code, n in board.requests if code == Command.MEM_WRITE]
    assert writes == [MAX_PAYLOAD] * 5 + [333 - 5 * 60 + 4]    # 60 data bytes a frame
    assert max(n for code, n in board.requests if code == Command.MEM_READ) == 6
    assert device.crc_rewrites == 0


def test_write_numpy_array():
    import numpy as np
    board = MemoryBoard(100)
    BoardDevice(board).write_memory(0, np.arange(10, dtype="<i2"))
    assert board.data[:20] == np.arange(10, dtype="<i2").tobytes()


def test_crc_mismatch_written_again():
    """A block that arrives wrong once (a fault the link's CRC missed) is written again."""
    damaged = []

    def once(addr, data):
        if not damaged:
            damaged.append(addr)
            return bytes([data[0] ^ 0x40]) + data[1:]
        return data
    board = MemoryBoard(1000, corrupt=once)
    device = BoardDevice(board)
    device.write_memory(10, _data(200))
    assert board.data[10:210] == _data(200) and device.crc_rewrites == 1


def test_crc_mismatch_twice_is_an_error():
    board = MemoryBoard(1000, corrupt=lambda addr, data: bytes(len(data)))
    device = BoardDevice(board)
    with pytest.raises(LinkError, match=r"^Board memory bytes 0xa\.\.0xd2 still differ from "
                                        r"the data after writing them twice \(CRC-32 "
                                        r"mismatch\): the memory or its port is faulty$"):
        device.write_memory(10, _data(200))
    assert device.crc_rewrites == 1


@pytest.mark.parametrize("call, message", [
    (lambda d: d.write_memory(990, bytes(11)),
     r"^Cannot write bytes 0x3de\.\.0x3e9 \(end exclusive\): the board memory is bytes "
     r"0x0\.\.0x3e8$"),
    (lambda d: d.read_memory(1000, 1),
     r"^Cannot read bytes 0x3e8\.\.0x3e9 \(end exclusive\): the board memory is bytes "
     r"0x0\.\.0x3e8$"),
    (lambda d: d.memory_crc(-1, 4), r"^Address must be a non-negative integer, not -1$"),
    (lambda d: d.read_memory(0, 2.5), r"^Length must be a non-negative integer, not 2\.5$"),
])
def test_out_of_range_refused_on_the_host(call, message):
    board = MemoryBoard(1000)
    device = BoardDevice(board)
    with pytest.raises(ValueError, match=message):
        call(device)
    assert [code for code, _ in board.requests] == [Command.IDENTIFY, Command.MEM_INFO]


def test_write_wrong_data_type():
    with pytest.raises(TypeError, match=r"^Data must be bytes-like, not str$"):
        BoardDevice(MemoryBoard()).write_memory(0, "text")


def test_device_range_nack_names_the_range():
    """A board with less memory than it reports: its BAD_RANGE NACK, with the range."""
    device = BoardDevice(MemoryBoard(100, reported=200))
    with pytest.raises(LinkError, match=r"^Device refused MEM_READ of bytes 0x64\.\.0x6e: the "
                                        r"address range is outside the board memory \(nothing "
                                        r"written\) \(it reports 0xc8 bytes\)$"):
        device.read_memory(100, 10)


def test_board_without_memory():
    device = BoardDevice(MemoryBoard(memory=False), retries=0)
    with pytest.raises(LinkError, match=r"^The board has no memory \(its gateware has no "
                                        r"memory commands\)$"):
        device.write_memory(0, b"x")


def test_progress_bar(capsys):
    device = BoardDevice(MemoryBoard(1000))
    device.write_memory(0, _data(500), progress=True)
    device.read_memory(0, 500, progress=True)
    err = capsys.readouterr().err
    assert "board memory write" in err and "board memory read" in err and "500" in err


def test_serial_port_opened_exclusively():
    """A second open of a board's port, in this process or another, is a clear error."""
    master, slave = os.openpty()
    name = os.ttyname(slave)
    try:
        with SerialTransport(name, 115200):
            with pytest.raises(LinkError, match=rf"^Serial port {name} is already open in "
                                                rf"another process \(or another "
                                                rf"BoardDevice\): one host at a time talks "
                                                rf"to a board$"):
                SerialTransport(name, 115200)
            other = subprocess.run(
                [sys.executable, "-c", "import sys; from pwconv.host.link import "
                 "SerialTransport, LinkError\ntry:\n SerialTransport(sys.argv[1], 115200)\n"
                 "except LinkError as e:\n print(e)", name],
                capture_output=True, text=True, timeout=60)
            assert other.stdout.startswith(f"Serial port {name} is already open"), other
        SerialTransport(name, 115200).close()       # free again once closed
    finally:
        os.close(master)
        os.close(slave)

"""cocotb bridge of pwconv_board: a socket's bytes onto uart_rx, uart_tx's bytes back, resets."""

import os
import socket
import struct
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import ClockCycles, Event, FallingEdge, First, Timer

__all__ = ["UartSource", "UartSink", "test_board_link"]

MESSAGE = struct.Struct("<cI")
READ_REQUEST = struct.Struct("<IQ")
RESET_REQUEST = struct.Struct("<I")
TIME = struct.Struct("<Q")


class UartSource:
    """Drives 8N1 bytes onto ``signal`` at ``bit_ps`` per bit, back to back.

    Only level changes cost a Python call: runs of equal bits are one timer.
    ``changed`` is set when the source goes idle.
    """

    def __init__(self, signal, bit_ps, changed):
        self._signal = signal
        self._bit = bit_ps
        self._queue = deque()
        self._wake = Event()
        self._changed = changed
        self.busy = False
        signal.value = 1
        cocotb.start_soon(self._run())

    def send(self, data):
        self._queue.extend(data)
        self.busy = True
        self._wake.set()

    async def _run(self):
        while True:
            if not self._queue:
                self.busy = False
                self._changed.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            runs = []
            while self._queue:
                byte = self._queue.popleft()
                for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                    if runs and runs[-1][0] == bit:
                        runs[-1][1] += 1
                    else:
                        runs.append([bit, 1])
            for level, count in runs:
                self._signal.value = level
                await Timer(count * self._bit, unit="ps")


class UartSink:
    """Decodes 8N1 bytes from ``signal``, sampling mid-bit; sets ``changed`` per byte."""

    def __init__(self, signal, bit_ps, changed):
        self._signal = signal
        self._bit = bit_ps
        self._changed = changed
        self.received = bytearray()
        self.framing_errors = 0
        cocotb.start_soon(self._run())

    async def _run(self):
        line, bit = self._signal, self._bit
        while True:
            await FallingEdge(line)
            await Timer(bit // 2, unit="ps")
            if int(line.value) != 0:
                continue
            byte = 0
            for i in range(8):
                await Timer(bit, unit="ps")
                byte |= int(line.value) << i
            await Timer(bit, unit="ps")
            if int(line.value) != 1:
                self.framing_errors += 1
                continue
            self.received.append(byte)
            self._changed.set()


def _recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


async def _read(source, sink, changed, n, budget_ps):
    """Up to ``n`` received bytes, waiting at most ``budget_ps`` once ``source`` is idle."""
    deadline = None
    while len(sink.received) < n:
        changed.clear()
        if source.busy:
            await changed.wait()
            continue
        now = get_sim_time(unit="ps")
        if deadline is None:
            deadline = now + budget_ps
        if now >= deadline:
            break
        await First(changed.wait(), Timer(deadline - now, unit="ps"))
    data = bytes(sink.received[:n])
    del sink.received[:n]
    return data


@cocotb.test()
async def test_board_link(dut):
    """Serve the host's bridge messages until it quits or disconnects."""
    clock_ps = int(os.environ["PWCONV_LINK_CLOCK_PS"])
    bit_ps = clock_ps * int(os.environ["PWCONV_LINK_DIVISOR"])
    Clock(dut.clk, clock_ps, unit="ps").start()
    if "PWCONV_MEM_CLOCK_PS" in os.environ:       # board-sim with the SDRAM (board_sdram.py)
        Clock(dut.clk_mem, int(os.environ["PWCONV_MEM_CLOCK_PS"]), unit="ps").start()
    dut.rst.value = 1
    dut.uart_rx.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    changed = Event()
    source = UartSource(dut.uart_rx, bit_ps, changed)
    sink = UartSink(dut.uart_tx, bit_ps, changed)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["PWCONV_LINK"])
    resets = 0
    try:
        while True:
            head = _recv_exact(sock, MESSAGE.size)
            if head is None:
                break
            op, size = MESSAGE.unpack(head)
            body = _recv_exact(sock, size) if size else b""
            if op == b"Q" or body is None:
                break
            if op == b"W":
                source.send(body)
            elif op == b"R":
                n, budget = READ_REQUEST.unpack(body)
                data = await _read(source, sink, changed, n, budget)
                data = TIME.pack(round(get_sim_time(unit="ps"))) + data
                sock.sendall(MESSAGE.pack(b"D", len(data)) + data)
            elif op == b"X":
                (cycles,) = RESET_REQUEST.unpack(body)
                resets += 1
                dut.rst.value = 1
                await ClockCycles(dut.clk, max(1, cycles))
                dut.rst.value = 0
                now = TIME.pack(round(get_sim_time(unit="ps")))
                sock.sendall(MESSAGE.pack(b"D", len(now)) + now)
            else:
                raise AssertionError(f"Unknown bridge message {op!r}")
    finally:
        sock.close()
    # A reset cuts a byte on uart_tx short; without one, the board's UART must be clean.
    assert resets or sink.framing_errors == 0, f"{sink.framing_errors} framing errors on uart_tx"

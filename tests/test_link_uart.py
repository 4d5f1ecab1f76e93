"""UART in Amaranth's simulator: divisor math, loopback, bit-level reference, framing errors."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module
from amaranth.sim import Simulator

from pwconv.hw.board import BOARD_LINKS
from pwconv.hw.link.uart import UARTReceiver, UARTTransmitter, baud_error, uart_divisor


def test_divisor_icebreaker():
    """12 MHz / 3 Mbaud: divisor 4, exact (the FT2232H makes 3 Mbaud as 12 MHz / 4 too)."""
    assert uart_divisor(12_000_000, 3_000_000) == 4
    assert baud_error(12_000_000, 3_000_000) == 0
    assert BOARD_LINKS["icebreaker"].divisor == 4


def test_divisor_ulx3s():
    """25 MHz: 3 Mbaud would be divisor 8 (3.125 Mbaud, 4.2% fast); 1 Mbaud is divisor 25, and
    2 Mbaud is 50 at the 100 MHz PLL clock the bitstream runs at."""
    assert uart_divisor(25_000_000, 1_000_000) == 25
    assert BOARD_LINKS["ulx3s"].divisor == 50
    with pytest.raises(ValueError, match=r"^Baud rate 3000000 at 25000000 Hz is off by 4\.17% "
                                         r"with divisor 8 \(3125000 baud\); at most 2% is "
                                         r"allowed$"):
        uart_divisor(25_000_000, 3_000_000)


def test_divisor_rounds_within_tolerance():
    assert uart_divisor(25_000_000, 115_200) == 217       # 0.01% off
    assert uart_divisor(48_000_000, 3_000_000) == 16


def test_divisor_too_small():
    with pytest.raises(ValueError, match=r"^Baud rate 6000000 at 12000000 Hz needs a clock "
                                         r"divisor of at least 4, not 2$"):
        uart_divisor(12_000_000, 6_000_000)


def test_divisor_wrong_type():
    with pytest.raises(TypeError, match=r"^Baud rate must be a positive number, not '3M'$"):
        uart_divisor(12_000_000, "3M")
    with pytest.raises(TypeError, match=r"^Clock frequency must be a positive number, not 0$"):
        uart_divisor(0, 3_000_000)


def test_init_wrong_divisor():
    with pytest.raises(ValueError, match=r"^Divisor must be at least 4, not 3$"):
        UARTReceiver(3)
    with pytest.raises(TypeError, match=r"^Divisor must be an integer, not 4\.0$"):
        UARTTransmitter(4.0)


class _Loopback(Elaboratable):
    def __init__(self, divisor):
        self.tx = UARTTransmitter(divisor)
        self.rx = UARTReceiver(divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.tx, m.submodules.rx = self.tx, self.rx
        m.d.comb += self.rx.rx.eq(self.tx.tx)
        return m


@pytest.mark.parametrize("divisor", [4, 5, 9])
def test_sim_loopback(divisor):
    """Bytes sent back to back arrive intact, one per 10 bit times."""
    data = [0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80] + random.Random(divisor).choices(range(256),
                                                                                 k=10)
    dut = _Loopback(divisor)
    got, taken = [], []

    async def send(ctx):
        cycles = 0
        for byte in data:
            ctx.set(dut.tx.i.payload, byte)
            ctx.set(dut.tx.i.valid, 1)
            while True:
                _, _, ready = await ctx.tick().sample(dut.tx.i.ready)
                cycles += 1
                if ready:
                    break
            taken.append(cycles)
        ctx.set(dut.tx.i.valid, 0)

    async def receive(ctx):
        ctx.set(dut.rx.o.ready, 1)
        for _ in range(len(data) * 10 * divisor + 50):
            _, _, valid, payload, error = await ctx.tick().sample(
                dut.rx.o.valid, dut.rx.o.payload, dut.rx.error)
            assert not error
            if valid:
                got.append(payload)
            if len(got) == len(data):
                break

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(receive)
    sim.run()
    assert got == data
    gaps = {b - a for a, b in zip(taken, taken[1:])}
    assert gaps == {10 * divisor}


def _line(byte, *, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


def _drive_bits(bits, cycles_per_bit, offset=0.0):
    """Per-cycle line levels for ``bits`` at a (possibly fractional) bit length."""
    levels = []
    total = int(len(bits) * cycles_per_bit) + 1
    for cycle in range(total):
        index = int((cycle + offset) / cycles_per_bit)
        levels.append(bits[index] if index < len(bits) else 1)
    return levels


def _run_rx(divisor, levels, *, extra=60):
    dut = UARTReceiver(divisor)
    got, errors = [], []

    async def tb(ctx):
        ctx.set(dut.o.ready, 1)
        for level in levels + [1] * extra:
            ctx.set(dut.rx, level)
            _, _, valid, payload, error = await ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.error)
            if valid:
                got.append(payload)
            if error:
                errors.append(len(got))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    return got, errors


@pytest.mark.parametrize("skew", [-0.02, 0.0, 0.019])
@pytest.mark.parametrize("divisor", [4, 8])
def test_sim_rx_reference(divisor, skew):
    """A reference bit stream (LSB first, idle high), up to 2% fast or slow, any phase."""
    data = random.Random(divisor).choices(range(256), k=8) + [0x00, 0xFF]
    bits = [1, 1] + [b for byte in data for b in _line(byte)]
    for offset in (0.0, 0.3, 0.7):
        got, errors = _run_rx(divisor, _drive_bits(bits, divisor * (1 + skew), offset))
        assert (got, errors) == (data, [])


def test_sim_framing_error():
    """A low stop bit: error strobe, no byte; after the line idles the next byte is fine."""
    bits = [1, 1] + _line(0x3C, stop=0) + [0] * 12 + [1, 1, 1] + _line(0xC3)
    got, errors = _run_rx(4, _drive_bits(bits, 4))
    assert got == [0xC3]
    assert errors == [0]


def test_sim_glitch_ignored():
    """A low pulse shorter than half a bit is not a start bit."""
    levels = [1] * 8 + [0] + [1] * 20 + _drive_bits(_line(0x5A), 8)
    got, errors = _run_rx(8, levels)
    assert (got, errors) == ([0x5A], [])


def test_sim_overrun():
    """A second byte while the first is still offered: overrun strobe, the first byte kept."""
    dut = UARTReceiver(4)
    levels = _drive_bits([1, 1] + _line(0x11) + _line(0x22), 4) + [1] * 20
    overruns = []

    async def tb(ctx):
        ctx.set(dut.o.ready, 0)
        for level in levels:
            ctx.set(dut.rx, level)
            _, _, overrun = await ctx.tick().sample(dut.overrun)
            if overrun:
                overruns.append(1)
        assert ctx.get(dut.o.valid) and ctx.get(dut.o.payload) == 0x11

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert overruns == [1]


def test_sim_tx_waveform():
    """The transmitter's line, sampled mid-bit, is start 0, data LSB first, stop 1."""
    divisor = 6
    dut = UARTTransmitter(divisor)
    levels = []

    async def tb(ctx):
        ctx.set(dut.i.payload, 0xB2)
        ctx.set(dut.i.valid, 1)
        await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)
        for _ in range(12 * divisor):
            _, _, tx = await ctx.tick().sample(dut.tx)
            levels.append(tx)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()
    assert levels[0] == 0
    mid = [levels[i * divisor + divisor // 2] for i in range(11)]
    assert mid == _line(0xB2) + [1]

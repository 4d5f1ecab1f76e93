"""CRC-16/CCITT-FALSE of the link, hardware and host, against binascii.crc_hqx; frame encoding."""

import binascii
import random

import pytest
from amaranth.sim import Simulator

from pwconv.host.link import (START, Frame, FrameDecoder, crc16, encode_frame)
from pwconv.hw.link.frame import FrameSender, crc16 as crc16_processor


def test_host_crc_check_value():
    """The catalogue check value of CRC-16/CCITT-FALSE (a.k.a. IBM-3740)."""
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_host_crc_matches_crc_hqx():
    rng = random.Random(1)
    for n in (1, 2, 7, 64, 1000):
        data = bytes(rng.choices(range(256), k=n))
        assert crc16(data) == binascii.crc_hqx(data, 0xFFFF)


def test_encode_frame_layout_and_residue():
    frame = encode_frame(0x04, b"\x01\x02\x03", tag=0x3C)
    assert frame[:5] == bytes([START, 0x04, 0x3C, 3, 0])
    assert frame[5:8] == b"\x01\x02\x03"
    assert frame[8:] == binascii.crc_hqx(frame[1:8], 0xFFFF).to_bytes(2, "big")
    assert crc16(frame[1:]) == 0            # the residue the hardware checks


def test_encode_frame_too_long():
    with pytest.raises(ValueError, match=r"^Frame payload must be at most 65535 bytes, "
                                         r"not 65536$"):
        encode_frame(0x06, bytes(65536))


def test_decoder_resyncs():
    good = encode_frame(0x81, b"abc")
    bad = bytearray(encode_frame(0x82, b"xyz"))
    bad[-1] ^= 1
    decoder = FrameDecoder()
    frames = decoder.feed(b"\x00\x13" + bytes(bad) + good[:5]) + decoder.feed(good[5:])
    assert frames == [Frame(0x81, b"abc")]
    assert decoder.bad_crc == 1


def test_sim_processor_matches_crc_hqx():
    """The gateware's CRC processor, one byte per cycle, equals crc_hqx after every byte, and a
    message followed by its CRC (MSB first) leaves the residue 0 the receiver checks."""
    dut = crc16_processor()
    data = bytes(random.Random(2).choices(range(256), k=40))

    async def tb(ctx):
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        for n, byte in enumerate(data, 1):
            ctx.set(dut.data, byte)
            ctx.set(dut.valid, 1)
            await ctx.tick()
            assert ctx.get(dut.crc) == binascii.crc_hqx(data[:n], 0xFFFF)
        assert not ctx.get(dut.match_detected)
        for byte in binascii.crc_hqx(data, 0xFFFF).to_bytes(2, "big"):
            ctx.set(dut.data, byte)
            await ctx.tick()
        ctx.set(dut.valid, 0)
        assert ctx.get(dut.crc) == 0 and ctx.get(dut.match_detected)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(tb)
    sim.run()


@pytest.mark.parametrize("stall", [False, True])
def test_sim_sender_frames(stall):
    """FrameSender's output decodes to the same frames encode_frame makes, under backpressure."""
    dut = FrameSender()
    rng = random.Random(3)
    payloads = [b"", bytes([0x5A]), bytes(rng.choices(range(256), k=33))]
    out = bytearray()

    async def send(ctx):
        for n, payload in enumerate(payloads):
            ctx.set(dut.header.payload.cmd, 0x80 + n)
            ctx.set(dut.header.payload.tag, 0x11 * n + 1)
            ctx.set(dut.header.payload.length, len(payload))
            ctx.set(dut.header.valid, 1)
            await ctx.tick().until(dut.header.ready)
            ctx.set(dut.header.valid, 0)
            for index, byte in enumerate(payload):
                ctx.set(dut.payload.payload, byte)
                ctx.set(dut.payload.valid, 1)
                while True:
                    _, _, ready, at = await ctx.tick().sample(dut.payload.ready, dut.index)
                    if ready:
                        assert at == index
                        break
            ctx.set(dut.payload.valid, 0)
            await ctx.tick().until(~dut.busy)

    async def sink(ctx):
        while True:
            ready = not (stall and rng.random() < 0.5)
            ctx.set(dut.o.ready, ready)
            _, _, valid, byte = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                out.append(byte)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(send)
    sim.add_testbench(sink, background=True)
    sim.run()
    assert bytes(out) == b"".join(encode_frame(0x80 + n, p, tag=0x11 * n + 1)
                                  for n, p in enumerate(payloads))

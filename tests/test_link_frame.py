"""FrameReceiver in Amaranth's simulator: good frames, garbage, truncation, bad CRC, resync."""

import pytest
from amaranth.sim import Simulator

from pwconv.host.link import START, Error, encode_frame
from pwconv.hw.link.frame import FrameReceiver

#: Commands for these tests: 0x01 fixed at 0 bytes, 0x03 at 5, 0x04 any length.
LENGTHS = {0x01: 0, 0x03: 5, 0x04: None}
MAX_PAYLOAD = 32
TIMEOUT = 40


def receive(chunks, *, gap=3, hold=0, framing_at=None):
    """Feed ``chunks`` (bytes, idle cycles after) one byte per ``gap + 1`` cycles.

    Returns the reports as ``(cmd, length, error, payload)`` (payload from the buffer for good
    frames, else None) and the number of dropped bytes. ``hold`` keeps ``frame.ready`` low that
    many cycles after each good frame (the consumer executing it); ``framing_at`` pulses
    ``framing_error`` after that many bytes.
    """
    dut = FrameReceiver(max_payload=MAX_PAYLOAD, timeout=TIMEOUT, lengths=LENGTHS)
    buffer = {}
    reports = []
    dropped = []
    state = {"busy": 0}

    async def source(ctx):
        sent = 0
        for data, idle in chunks:
            for byte in data:
                ctx.set(dut.i.payload, byte)
                ctx.set(dut.i.valid, 1)
                if framing_at is not None and sent == framing_at:
                    ctx.set(dut.framing_error, 1)
                await ctx.tick()
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.framing_error, 0)
                sent += 1
                if gap:
                    await ctx.tick().repeat(gap)
            await ctx.tick().repeat(idle + 1)
        await ctx.tick().repeat(2 * TIMEOUT + hold + 10)

    async def consumer(ctx):
        while True:
            ready = state["busy"] == 0
            ctx.set(dut.frame.ready, ready)
            _, _, valid, cmd, length, error, wr_en, addr, data, drop = await ctx.tick().sample(
                dut.frame.valid, dut.frame.payload.cmd, dut.frame.payload.length,
                dut.frame.payload.error, dut.wr_en, dut.wr_addr, dut.wr_data, dut.dropped)
            if state["busy"]:
                state["busy"] -= 1
            if wr_en:
                buffer[addr] = data
            if drop:
                dropped.append(1)
            if valid and ready:
                payload = bytes(buffer[i] for i in range(length)) if error == 0 else None
                reports.append((cmd, length, Error(error), payload))
                if error == 0:
                    state["busy"] = hold

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(source)
    sim.add_testbench(consumer, background=True)
    sim.run()
    return reports, len(dropped)


def good(cmd=0x04, payload=b"\x10\x20\x30"):
    return (cmd, len(payload), Error.NONE, payload)


def test_init_wrong_max_payload():
    with pytest.raises(ValueError, match=r"^Maximum payload must be an integer between 1 and "
                                         r"65535, not 0$"):
        FrameReceiver(max_payload=0, timeout=10, lengths=LENGTHS)


def test_init_wrong_timeout():
    with pytest.raises(ValueError, match=r"^Timeout must be a positive integer number of "
                                         r"cycles, not 0$"):
        FrameReceiver(max_payload=8, timeout=0, lengths=LENGTHS)


def test_sim_good_frames():
    reports, dropped = receive([(encode_frame(0x04, b"\x10\x20\x30"), 0),
                                (encode_frame(0x01), 0),
                                (encode_frame(0x04, bytes(range(32))), 0)], gap=2)
    assert reports == [good(), good(0x01, b""), good(0x04, bytes(range(32)))]
    assert dropped == 0


def test_sim_garbage_before_frame():
    reports, _ = receive([(b"\x00\xff\x13\x37" + encode_frame(0x04, b"\x10\x20\x30"), 0)])
    assert reports == [good()]


def test_sim_truncated_then_good():
    """A frame cut short times out (NACK TIMEOUT); the next frame is received normally."""
    frame = encode_frame(0x04, b"\x10\x20\x30")
    reports, _ = receive([(frame[:5], TIMEOUT + 5), (frame, 0)])
    assert reports == [(0x04, 3, Error.TIMEOUT, None), good()]


def test_sim_slow_bytes_within_timeout():
    frame = encode_frame(0x04, b"\x10\x20\x30")
    reports, _ = receive([(frame, 0)], gap=TIMEOUT - 2)
    assert reports == [good()]


def test_sim_bad_crc_then_resync():
    bad = bytearray(encode_frame(0x04, b"\x10\x20\x31"))
    bad[-2] ^= 0x40
    reports, _ = receive([(bytes(bad), 0), (encode_frame(0x04, b"\x10\x20\x30"), 0)])
    assert reports == [(0x04, 3, Error.BAD_CRC, None), good()]


def test_sim_oversize_length():
    """A length above the buffer is refused at the header; the payload is skipped as garbage."""
    big = encode_frame(0x04, bytes(range(1, MAX_PAYLOAD + 2)))
    reports, _ = receive([(big, 0), (encode_frame(0x04, b"\x10\x20\x30"), 0)])
    assert reports == [(0x04, MAX_PAYLOAD + 1, Error.TOO_LONG, None), good()]


def test_sim_unknown_command():
    reports, _ = receive([(encode_frame(0x7E, b"\x01"), 0), (encode_frame(0x01), 0)])
    assert reports == [(0x7E, 0, Error.UNKNOWN_COMMAND, None), good(0x01, b"")]


def test_sim_fixed_length_mismatch():
    reports, _ = receive([(encode_frame(0x03, b"\x01\x02"), 0), (encode_frame(0x01, b"x"), 0),
                          (encode_frame(0x03, b"\x01\x02\x03\x04\x05"), 0)])
    assert reports == [(0x03, 2, Error.BAD_LENGTH, None), (0x01, 1, Error.BAD_LENGTH, None),
                       good(0x03, b"\x01\x02\x03\x04\x05")]


def test_sim_framing_error_aborts_frame():
    frame = encode_frame(0x04, b"\x10\x20\x30")
    reports, _ = receive([(frame, 0), (frame, 0)], framing_at=5)
    assert reports == [(0x04, 3, Error.FRAMING, None), good()]


def test_sim_start_byte_inside_garbage():
    """A stray START in garbage opens a bogus frame that is refused; the real one then parses."""
    reports, _ = receive([(bytes([START, 0x55]) + encode_frame(0x04, b"\x10\x20\x30"), 0)])
    assert reports == [(0x55, 0, Error.UNKNOWN_COMMAND, None), good()]


def test_sim_bytes_dropped_while_busy():
    """Bytes arriving while the consumer still executes a frame are dropped and counted."""
    frame = encode_frame(0x04, b"\x10\x20\x30")
    reports, dropped = receive([(frame, 0), (b"\x00" * 5, 40), (frame, 60)], gap=2, hold=40)
    assert reports == [good(), good()]
    assert dropped == 5

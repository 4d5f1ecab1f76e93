"""FrameReceiver in Amaranth's simulator: good frames, garbage, truncation, bad CRC, resync."""

import pytest
from amaranth.sim import Simulator

from pwconv.host.link import START, Error, encode_frame
from pwconv.hw.link.frame import FrameReceiver

#: Commands for these tests: 0x01 fixed at 0 bytes, 0x03 at 5, 0x04 any length.
LENGTHS = {0x01: 0, 0x03: 5, 0x04: None}
MAX_PAYLOAD = 32
TIMEOUT = 40


def receive(chunks, *, gap=3, hold=0, framing_at=None, tags=False):
    """Feed ``chunks`` (bytes, idle cycles after) one byte per ``gap + 1`` cycles.

    Returns the good frames and refusals, in the order offered, as ``(cmd, length, error,
    payload)`` (payload from the buffer for good frames, else None; with ``tags``, the tag
    after ``cmd``), and the number of dropped strobes. ``hold`` keeps the consumer executing
    (``owned`` high, neither stream ready) that many cycles after each good frame;
    ``framing_at`` loses that byte to a framing error (the UART's strobe, no byte).
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
                if framing_at is not None and sent == framing_at:
                    ctx.set(dut.framing_error, 1)
                else:
                    ctx.set(dut.i.payload, byte)
                    ctx.set(dut.i.valid, 1)
                await ctx.tick()
                ctx.set(dut.i.valid, 0)
                ctx.set(dut.framing_error, 0)
                sent += 1
                if gap:
                    await ctx.tick().repeat(gap)
            await ctx.tick().repeat(idle + 1)
        await ctx.tick().repeat(2 * TIMEOUT + hold + 10)

    def record(cmd, tag, length, error, payload):
        reports.append((cmd, tag, length, Error(error), payload) if tags
                       else (cmd, length, Error(error), payload))

    async def consumer(ctx):
        while True:
            idle = state["busy"] == 0
            ctx.set(dut.owned, not idle)
            ctx.set(dut.refusal.ready, idle)
            ctx.set(dut.frame.ready, idle)
            (_, _, valid, frame, refused_valid, refused, wr_en, addr, data,
             drop) = await ctx.tick().sample(dut.frame.valid, dut.frame.payload,
                                             dut.refusal.valid, dut.refusal.payload, dut.wr_en,
                                             dut.wr_addr, dut.wr_data, dut.dropped)
            if state["busy"]:
                state["busy"] -= 1
            if wr_en:
                buffer[addr] = data
            if drop:
                dropped.append(1)
            if refused_valid and idle:
                record(refused.cmd, refused.tag, refused.length, refused.error, None)
            elif valid and idle:
                payload = bytes(buffer[i] for i in range(frame.length))
                record(frame.cmd, frame.tag, frame.length, 0, payload)
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
    reports, _ = receive([(frame[:6], TIMEOUT + 5), (frame, 0)])
    assert reports == [(0x04, 3, Error.TIMEOUT, None), good()]


def test_sim_slow_bytes_within_timeout():
    frame = encode_frame(0x04, b"\x10\x20\x30")
    reports, _ = receive([(frame, 0)], gap=TIMEOUT - 2)
    assert reports == [good()]


def test_sim_tags_are_passed_on():
    reports, _ = receive([(encode_frame(0x04, b"\x10\x20\x30", tag=0x5A), 0),
                          (encode_frame(0x7E, b"", tag=0xC3), 0)], tags=True)
    assert reports == [(0x04, 0x5A, 3, Error.NONE, b"\x10\x20\x30"),
                       (0x7E, 0xC3, 0, Error.UNKNOWN_COMMAND, None)]


def test_sim_bad_crc_then_resync():
    bad = bytearray(encode_frame(0x04, b"\x10\x20\x31"))
    bad[-2] ^= 0x40
    reports, _ = receive([(bytes(bad), 0), (encode_frame(0x04, b"\x10\x20\x30"), 0)])
    assert reports == [(0x04, 3, Error.BAD_CRC, None), good()]


def test_sim_oversize_length():
    """A length above the buffer is refused at the header and its declared rest skipped."""
    big = encode_frame(0x04, bytes([START]) * (MAX_PAYLOAD + 1))
    reports, dropped = receive([(big, 0), (encode_frame(0x04, b"\x10\x20\x30"), 0)])
    assert reports == [(0x04, MAX_PAYLOAD + 1, Error.TOO_LONG, None), good()]
    assert dropped == 0


def test_sim_corrupted_length_one_refusal():
    """A length corrupted to 0xFFFF: the start bytes in the rest of the frame open no frames;
    the skip ends once the line is quiet for the timeout, with one refusal."""
    frame = bytearray(encode_frame(0x04, bytes([START]) * 20))
    frame[3:5] = b"\xff\xff"
    reports, _ = receive([(bytes(frame), 2 * TIMEOUT), (encode_frame(0x01), 0)])
    assert reports == [(0x04, 0xFFFF, Error.TOO_LONG, None), good(0x01, b"")]


def test_sim_unknown_command():
    reports, _ = receive([(encode_frame(0x7E, b"\xa5"), 0), (encode_frame(0x01), 0)])
    assert reports == [(0x7E, 1, Error.UNKNOWN_COMMAND, None), good(0x01, b"")]


def test_sim_fixed_length_mismatch():
    reports, _ = receive([(encode_frame(0x03, b"\x01\x02"), 0), (encode_frame(0x01, b"x"), 0),
                          (encode_frame(0x03, b"\x01\x02\x03\x04\x05"), 0)])
    assert reports == [(0x03, 2, Error.BAD_LENGTH, None), (0x01, 1, Error.BAD_LENGTH, None),
                       good(0x03, b"\x01\x02\x03\x04\x05")]


def test_sim_framing_error_skips_rest_of_frame():
    """A byte lost to a framing error: the frame's other bytes (start bytes among them) are
    skipped until the line is quiet, one refusal, and the next frame is received."""
    frame = encode_frame(0x04, bytes([START]) * 3)
    reports, _ = receive([(frame, TIMEOUT + 2), (encode_frame(0x04, b"\x10\x20\x30"), 0)],
                         framing_at=5)
    assert reports == [(0x04, 3, Error.FRAMING, None), good()]


def test_sim_start_byte_inside_garbage():
    """A stray START opens a bogus frame: refused once, with its declared length (taken from
    the real frame's header) skipped; the real frame is lost with it (the host resends)."""
    reports, _ = receive([(bytes([START, 0x55]) + encode_frame(0x04, b"\x10\x20\x30"), 0),
                          (encode_frame(0x01), 0)])
    assert reports == [(0x55, 4, Error.UNKNOWN_COMMAND, None), good(0x01, b"")]


def test_sim_frame_while_busy_refused_busy():
    """A frame arriving while the consumer executes the previous one is refused BUSY (its
    payload never reaches the buffer); stray bytes are ignored; afterwards frames parse."""
    frame = encode_frame(0x04, b"\x10\x20\x30")
    other = encode_frame(0x04, b"\x44\x55\x66", tag=9)
    reports, dropped = receive([(frame, 0), (b"\x00" * 5 + other, 90), (frame, 60)], gap=2,
                               hold=100, tags=True)
    assert reports == [(0x04, 0, 3, Error.NONE, b"\x10\x20\x30"),
                       (0x04, 9, 3, Error.BUSY, None),
                       (0x04, 0, 3, Error.NONE, b"\x10\x20\x30")]
    assert dropped == 0


def test_sim_bytes_while_a_refusal_waits_are_dropped():
    """Two refused frames while the consumer is busy: the first refusal waits to be taken, and
    the second frame's 7 bytes, arriving meanwhile, are dropped and counted."""
    frame = encode_frame(0x04, b"\x10\x20\x30")
    reports, dropped = receive([(frame, 0), (encode_frame(0x7E, tag=1), 0),
                                (encode_frame(0x7E, tag=2), 0)], gap=2, hold=150, tags=True)
    assert reports == [(0x04, 0, 3, Error.NONE, b"\x10\x20\x30"),
                       (0x7E, 1, 0, Error.UNKNOWN_COMMAND, None)]
    assert dropped == 7

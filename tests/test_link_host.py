"""Host link driver without hardware: scripted replies, tags, NACKs, deadlines, IDENTITY checks."""

import dataclasses

import pytest

from pwconv.config import ArrayConfig
from pwconv.host.board import BoardDevice
from pwconv.host.link import (Command, CorruptReply, Error, Frame, Identity, LinkError,
                              LinkTimeout, NackError, Reply, SerialTransport, encode_frame,
                              read_frame)

CFG = ArrayConfig(rows=2, cols=3, max_channels=8, max_filters=9, weight_depth=8)
IDENTITY = Identity.of(CFG, max_payload=64, clk_freq=12_000_000, baud=3_000_000,
                       timeout=240_000)


class ScriptedTransport:
    """Answers each request frame with the next scripted reply: ``(code, payload)`` (sent with
    the request's tag), bytes (sent as they are) or a callable of the request giving either."""

    baud = 3_000_000
    latency = 0.0
    quiet = 0.0

    def __init__(self, *script):
        self.script = list(script)
        self.sent = []
        self.pending = bytearray()

    def write(self, data):
        self.sent.append(bytes(data))
        reply = self.script.pop(0)
        reply = reply(data) if callable(reply) else reply
        if isinstance(reply, tuple):
            reply = encode_frame(reply[0], reply[1], tag=data[2])
        self.pending += reply

    def read(self, n, timeout):
        data = bytes(self.pending[:n])
        del self.pending[:n]
        return data

    def close(self):
        pass


def identity(ident=IDENTITY):
    return (Reply.IDENTITY, ident.pack())


def nack(error, command):
    return (Reply.NACK, bytes([error, command]))


def test_identify_takes_device_config():
    device = BoardDevice(ScriptedTransport(identity()))
    assert device.cfg == CFG and device.max_payload == 64


def test_version_mismatch():
    ident = dataclasses.replace(IDENTITY, version=(9, 0))
    with pytest.raises(LinkError, match=r"^Device runs gateware version 9\.0, this host "
                                        r"speaks 0\.\d+$"):
        BoardDevice(ScriptedTransport(identity(ident)))


@pytest.mark.parametrize("field, value, message", [
    ("max_payload", 0, r"^Device's max_payload 0 must be between 27 \(its largest word or "
                       r"pixel\) and 65535$"),
    ("baud", 1_000_000, r"^Device says it runs at 1000000 baud, but the port is set to "
                        r"3000000$"),
    ("clk_freq", 0, r"^Device's clock frequency must be positive, not 0$"),
    ("timeout", 0, r"^Device's frame timeout must be between 0 and 1 s, not 0 s$"),
    ("roundings", 0, r"^The device's identity is not a pwconv board's \(IDENTITY rounding "
                     r"modes 0x00 are not ones this host knows\)$"),
    ("roundings", 0x81, r"^The device's identity is not a pwconv board's \(IDENTITY rounding "
                        r"modes 0x81 are not ones this host knows\)$"),
    ("weight_bytes", 3, r"^Device's word sizes \(layer, weight, param bytes\) \(4, 3, 27\) "
                        r"differ from this host's \(4, 4, 27\)"),
])
def test_identity_field_refused(field, value, message):
    """Every IDENTITY field is checked against what the host can use."""
    ident = dataclasses.replace(IDENTITY, **{field: value})
    with pytest.raises(LinkError, match=message):
        BoardDevice(ScriptedTransport(identity(ident)))


@pytest.mark.parametrize("offset, value, message", [
    (0, b"PWCX", r"IDENTITY magic must be b'PWCV', not b'PWCX'"),
    (4, b"\x01", r"IDENTITY protocol must be 2, not 1"),
    (7, b"\x00", r"IDENTITY configuration is not valid: "),
])
def test_identity_payload_refused(offset, value, message):
    payload = bytearray(IDENTITY.pack())
    payload[offset:offset + len(value)] = value
    with pytest.raises(CorruptReply, match=r"^The device's identity is not a pwconv board's \("
                                           + message):
        BoardDevice(ScriptedTransport((Reply.IDENTITY, bytes(payload))))


def test_config_mismatch():
    with pytest.raises(ValueError, match=r"--rows 2 --cols 3 --max-channels 8 --max-filters 9 "
                                         r"--weight-depth 8 --mac-style infer --requantizer "
                                         r"parallel --requant-steps 1 --roundings "
                                         r"double,single,ruy,float\)$"):
        BoardDevice(ScriptedTransport(identity()), ArrayConfig())


def test_nack_raises_with_reason():
    transport = ScriptedTransport(identity(), nack(Error.BAD_LAYER, Command.SET_LAYER))
    device = BoardDevice(transport)
    with pytest.raises(NackError, match=r"^Device refused SET_LAYER: BAD_LAYER: layer out "
                                        r"of range") as info:
        device.set_layer(0)
    assert info.value.error is Error.BAD_LAYER and len(transport.sent) == 2   # not sent again


def test_reply_with_another_tag_is_discarded():
    """A reply (even an ACK of the same command) whose tag is not the request's is stale."""
    def late_then_own(request):
        return (encode_frame(Reply.LAYER_SET, b"", tag=request[2] - 1)
                + encode_frame(Reply.NACK, bytes([Error.NO_LAYER, Command.SET_LAYER]),
                               tag=request[2] + 1)
                + encode_frame(Reply.LAYER_SET, b"", tag=request[2]))

    device = BoardDevice(ScriptedTransport(identity(), late_then_own))
    device.set_layer(0)
    assert device.stale_replies == 2 and device.resent == 0


def test_only_stale_replies_time_out_then_resend():
    """Replies with other tags only: the request times out and is sent again."""
    def stale(request):
        return encode_frame(Reply.LAYER_SET, b"", tag=request[2] ^ 0x55)

    transport = ScriptedTransport(identity(), stale, (Reply.LAYER_SET, b""))
    device = BoardDevice(transport)
    device.set_layer(0)
    assert device.resent == 1
    tags = [frame[2] for frame in transport.sent]
    assert len(set(tags)) == len(tags) == 3


@pytest.mark.parametrize("error", [Error.BUSY, Error.BAD_CRC, Error.TIMEOUT])
def test_link_nack_is_sent_again(error):
    transport = ScriptedTransport(identity(), nack(error, Command.SET_LAYER),
                                  (Reply.LAYER_SET, b""))
    device = BoardDevice(transport)
    device.set_layer(0)
    assert device.resent == 1 and transport.sent[-1][1:] != transport.sent[-2][1:]


def test_no_reply_times_out_after_retries():
    transport = ScriptedTransport(identity(), *[b""] * 4)
    device = BoardDevice(transport, retries=3)
    with pytest.raises(LinkTimeout, match=r"^No reply from the device within"):
        device.set_layer(0)
    assert len(transport.sent) == 5


def test_corrupt_reply():
    def bad(request):
        frame = bytearray(encode_frame(Reply.LAYER_SET, b"", tag=request[2]))
        frame[-1] ^= 1
        return bytes(frame)

    device = BoardDevice(ScriptedTransport(identity(), *[bad] * 2), retries=1)
    with pytest.raises(CorruptReply, match=r"^Reply CRC mismatch"):
        device.set_layer(0)


def test_load_splits_frames_and_checks_counts():
    """64-byte frames of 4-byte weight words: 16 words per frame."""
    def ack(request):
        count = (len(request) - 7) // 4
        return (Reply.WEIGHTS_LOADED, count.to_bytes(2, "little"))

    transport = ScriptedTransport(identity(), ack, ack, (Reply.WEIGHTS_LOADED, b"\x01\x00"))
    device = BoardDevice(transport)
    assert device.wire.weight_bytes == 4
    device.load_weights(range(24))
    assert [len(frame) - 7 for frame in transport.sent[-2:]] == [64, 32]
    with pytest.raises(CorruptReply, match=r"^Device took 1 of 3 words$"):
        device.load_weights(range(3))


def test_serial_transport_loopback():
    """pyserial's loop:// URL: what is written is read back, and reads time out."""
    transport = SerialTransport("loop://", 3_000_000)
    try:
        transport.write(encode_frame(Command.STATUS, tag=7))
        assert read_frame(transport, 0.5) == Frame(Command.STATUS, b"", 7)
        with pytest.raises(LinkTimeout):
            read_frame(transport, 0.01)
    finally:
        transport.close()


def test_serial_transport_bad_port():
    with pytest.raises(LinkError, match=r"^Cannot open serial port /nonexistent/tty at 3000000 "
                                        r"baud"):
        SerialTransport("/nonexistent/tty", 3_000_000)


def test_identity_round_trip_carries_the_mapping():
    cfg = ArrayConfig(rows=4, cols=4, max_channels=512, max_filters=256, weight_depth=256,
                      mac_style="ice40_dual8x8", requantizer="serial", requant_steps=8)
    ident = Identity.of(cfg, max_payload=4096, clk_freq=12_000_000, baud=3_000_000,
                        timeout=240_000)
    assert Identity.unpack(ident.pack()) == ident


def test_identity_unknown_mapping():
    payload = bytearray(IDENTITY.pack())
    payload[-4] = 7         # mac_style index past MAC_STYLES
    with pytest.raises(ValueError, match=r"^IDENTITY mapping \(7, 0\) is not one this host "
                                         r"knows$"):
        Identity.unpack(bytes(payload))


@pytest.mark.parametrize("mask", [0, 0x10, 0xFF])
def test_identity_unknown_roundings(mask):
    payload = bytearray(IDENTITY.pack())
    payload[-1] = mask      # no mode, or a bit past ROUNDINGS
    with pytest.raises(ValueError, match=r"^IDENTITY rounding modes 0x[0-9a-f]{2} are not ones "
                                         r"this host knows$"):
        Identity.unpack(bytes(payload))


def test_identity_carries_roundings():
    cfg = ArrayConfig(rows=2, cols=2, max_channels=8, max_filters=8, weight_depth=8,
                      roundings=("ruy", "float"))
    ident = Identity.of(cfg, max_payload=4096, clk_freq=12_000_000, baud=3_000_000,
                        timeout=1000)
    assert Identity.unpack(ident.pack()).config.roundings == ("ruy", "float")


class TricklingTransport:
    """A wrong device that sends a zero byte every 0.1 s, forever; time is simulated."""

    baud = 3_000_000
    latency = 0.5

    def __init__(self):
        self.now = 0.0

    def clock(self):
        return self.now

    def write(self, data):
        pass

    def read(self, n, timeout):
        count = min(n, int(timeout / 0.1 + 1e-9))
        self.now += 0.1 * count if count == n else timeout
        return bytes(count)

    def close(self):
        pass


def test_trickling_device_fails_within_a_reply_deadline():
    """Defect 3: v1 restarted its 0.5 s timeout on every byte, so this took 410 s."""
    transport = TricklingTransport()
    with pytest.raises(LinkError):
        BoardDevice(transport)
    assert transport.now < 5.0


class PicosecondTransport:
    """A quiet line whose clock only moves in whole picoseconds, as the board simulator's does:
    a wait shorter than half a picosecond returns at once, with nothing and no time passed."""

    baud = 3_000_000
    latency = 0.002

    def __init__(self):
        self.now_ps = 0
        self.reads = 0

    def clock(self):
        return self.now_ps * 1e-12

    def read(self, n, timeout):
        self.reads += 1
        if self.reads > 1000:
            raise AssertionError("read_frame kept polling a line that has timed out")
        self.now_ps += round(timeout * 1e12)
        return b""


def test_read_frame_deadline_below_the_clock_tick():
    """A deadline 7e-18 s away (what float rounding of a simulated clock leaves) ends the wait:
    the fault suite's dropped-bytes round hung here, re-reading with a zero wait forever."""
    transport = PicosecondTransport()
    transport.now_ps = 61_109_750_000
    with pytest.raises(LinkTimeout, match=r"^No reply from the device within "):
        read_frame(transport, 6.938893903907228e-18)
    assert transport.reads == 1

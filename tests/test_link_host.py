"""Host link driver without hardware: scripted replies, NACKs, timeouts, serial loopback."""

import pytest

from pwconv.config import ArrayConfig
from pwconv.host.board import BoardDevice
from pwconv.host.link import (Command, CorruptReply, Error, Frame, Identity, LinkError,
                              LinkTimeout, NackError, Reply, SerialTransport, encode_frame,
                              read_frame)

CFG = ArrayConfig(rows=2, cols=3, max_channels=8, max_filters=9, weight_depth=8)
IDENTITY = Identity.of(CFG, max_payload=64, clk_freq=12_000_000, baud=3_000_000)


class ScriptedTransport:
    """Answers each request frame with the next scripted bytes (or a callable's)."""

    baud = 3_000_000
    latency = 0.0

    def __init__(self, *script):
        self.script = list(script)
        self.sent = []
        self.pending = bytearray()
        self.cleared = 0

    def write(self, data):
        self.sent.append(bytes(data))
        reply = self.script.pop(0)
        self.pending += reply(data) if callable(reply) else reply

    def read(self, n, timeout):
        data = bytes(self.pending[:n])
        del self.pending[:n]
        return data

    def clear(self):
        self.cleared += 1
        self.pending.clear()

    def close(self):
        pass


def identity(ident=IDENTITY):
    return encode_frame(Reply.IDENTITY, ident.pack())


def nack(error, command):
    return encode_frame(Reply.NACK, bytes([error, command]))


def test_identify_takes_device_config():
    device = BoardDevice(ScriptedTransport(identity()))
    assert device.cfg == CFG and device.max_payload == 64


def test_version_mismatch():
    ident = Identity((9, 0), CFG, 64, 12_000_000, 3_000_000, IDENTITY.layer_bytes,
                     IDENTITY.weight_bytes, IDENTITY.param_bytes)
    with pytest.raises(LinkError, match=r"^Device runs gateware version 9\.0, this host "
                                        r"speaks 0\.\d+$"):
        BoardDevice(ScriptedTransport(identity(ident)))


def test_config_mismatch():
    with pytest.raises(ValueError, match=r"--rows 2 --cols 3 --max-channels 8 --max-filters 9 "
                                         r"--weight-depth 8 --mac-style infer --requantizer "
                                         r"parallel --requant-steps 1 --roundings double,single,ruy,"
                                         r"float\)$"):
        BoardDevice(ScriptedTransport(identity()), ArrayConfig())


def test_nack_raises_with_reason():
    device = BoardDevice(ScriptedTransport(identity(),
                                           nack(Error.BAD_LAYER, Command.SET_LAYER)))
    with pytest.raises(NackError, match=r"^Device refused SET_LAYER: BAD_LAYER: layer out "
                                        r"of range") as info:
        device.set_layer(0)
    assert info.value.error is Error.BAD_LAYER


def test_stale_nack_skipped():
    """A NACK for bytes the device took for another frame is not this command's reply."""
    device = BoardDevice(ScriptedTransport(
        identity(), nack(Error.UNKNOWN_COMMAND, 0x42) + encode_frame(Reply.LAYER_SET)))
    device.set_layer(0)


def test_no_reply_times_out_then_clears():
    transport = ScriptedTransport(identity(), b"", encode_frame(Reply.LAYER_SET))
    device = BoardDevice(transport)
    cleared = transport.cleared
    with pytest.raises(LinkTimeout, match=r"^No reply from the device within"):
        device.set_layer(0)
    device.set_layer(0)
    assert transport.cleared == cleared + 1


def test_corrupt_reply():
    bad = bytearray(encode_frame(Reply.LAYER_SET, b""))
    bad[-1] ^= 1
    device = BoardDevice(ScriptedTransport(identity(), bytes(bad)))
    with pytest.raises(CorruptReply, match=r"^Reply CRC mismatch"):
        device.set_layer(0)


def test_load_splits_frames_and_checks_counts():
    """64-byte frames of 4-byte weight words: 16 words per frame."""
    def ack(request):
        count = (len(request) - 6) // 4
        return encode_frame(Reply.WEIGHTS_LOADED, count.to_bytes(2, "little"))

    transport = ScriptedTransport(identity(), ack, ack, encode_frame(Reply.WEIGHTS_LOADED,
                                                                    b"\x01\x00"))
    device = BoardDevice(transport)
    assert device.wire.weight_bytes == 4
    device.load_weights(range(24))
    assert [len(frame) - 6 for frame in transport.sent[-2:]] == [64, 32]
    with pytest.raises(CorruptReply, match=r"^Device took 1 of 3 words$"):
        device.load_weights(range(3))


def test_serial_transport_loopback():
    """pyserial's loop:// URL: what is written is read back, and reads time out."""
    transport = SerialTransport("loop://", 3_000_000)
    try:
        transport.write(encode_frame(Command.STATUS))
        assert read_frame(transport, 0.5) == Frame(Command.STATUS, b"")
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
    ident = Identity.of(cfg, max_payload=4096, clk_freq=12_000_000, baud=3_000_000)
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
    ident = Identity.of(cfg, max_payload=4096, clk_freq=12_000_000, baud=3_000_000)
    assert Identity.unpack(ident.pack()).config.roundings == ("ruy", "float")

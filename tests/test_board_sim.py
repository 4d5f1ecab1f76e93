"""Board gateware end to end in Verilator (board-sim): bit-exact runs, protocol abuse, CLI."""

import numpy as np
import pytest
from amaranth.hdl import Const

from pwconv.cli import main
from pwconv.config import VERSION, ArrayConfig
from pwconv.host.accelerator import Accelerator
from pwconv.host.board import BoardDevice
from pwconv.host.layer import golden_output, load_layer, random_layer
from pwconv.host.link import (START, Command, Error, NackError, SimTransport, encode_frame,
                              read_frame)
from pwconv.hw import layouts
from pwconv.hw.board import DEFAULT_MAX_PAYLOAD
from pwconv.sim.board_runner import SIM_BAUD, SIM_CLK_FREQ, SIM_FRAME_TIMEOUT

#: The configuration of every board-sim test (one Verilator build, shared with the CLI test):
#: the iCEBreaker's mapping (dual 8x8 multipliers, serial requantizer) at small limits.
CFG = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=24, weight_depth=16,
                  mac_style="ice40_dual8x8", requantizer="serial", requant_steps=4)
CFG_FLAGS = ["--rows", "4", "--cols", "4", "--max-channels", "32", "--max-filters", "24",
             "--weight-depth", "16", "--mac-style", "ice40_dual8x8", "--requantizer", "serial",
             "--requant-steps", "4"]

#: The host splits transfers into frames of at most this many bytes (the device takes 4 KiB).
HOST_PAYLOAD = 64


@pytest.fixture(scope="module")
def transport():
    link = SimTransport(CFG)
    yield link
    link.close()


@pytest.fixture(scope="module")
def device(transport):
    return BoardDevice(transport, CFG, max_payload=HOST_PAYLOAD)


def _check_layer(device, shape, filters, seed, relu=False):
    x, layer = random_layer(shape, filters, seed=seed, relu=relu)
    acc = Accelerator("board-sim", CFG, device=device, progress=False)
    y = acc.run_layer(x, layer)
    np.testing.assert_array_equal(y, golden_output(x, layer))
    return acc.last_run


def test_identify(device):
    ident = device.identity
    assert ident.config == CFG and ident.protocol == 2
    assert ident.version == VERSION
    assert (ident.clk_freq, ident.baud, ident.max_payload) == (SIM_CLK_FREQ, SIM_BAUD,
                                                               DEFAULT_MAX_PAYLOAD)
    assert device.max_payload == HOST_PAYLOAD


@pytest.mark.parametrize("shape, filters, relu, passes", [
    ((1, 7, 6), 5, True, 1),        # one pass, 2 beats x 2 tiles
    ((1, 4, 40), 6, False, 2),      # C > max_channels: raw int32 partial sums
    ((1, 5, 7), 30, True, 2),       # F > max_filters
])
def test_matches_golden(device, shape, filters, relu, passes):
    stats = _check_layer(device, shape, filters, seed=shape[-1] * 7 + filters, relu=relu)
    assert stats.passes == passes and stats.cycles is None


def test_long_run_splits_frames(device):
    """64-byte frames: 24 pixels of 8 bytes in 3 RUN frames, 16 weight words of 5 bytes in 2
    LOAD_WEIGHTS frames, 2 param words of 36 bytes in 2 LOAD_PARAMS frames."""
    before = device.status().frames_ok
    assert device.pixels_per_frame(2, 2, False) == 8
    _check_layer(device, (4, 6, 5), 7, seed=11)
    assert device.status().frames_ok - before == 1 + 1 + 2 + 2 + 3     # STATUS, SET_LAYER, ...


def _layer_word(**fields):
    return Const.cast(layouts.runtime_config(CFG).const(fields)).value


def _exchange(transport, device, data, reply_bytes=16):
    transport.write(data)
    return read_frame(transport, device.reply_timeout(len(data) + reply_bytes)
                      + 2 * SIM_FRAME_TIMEOUT)


def test_protocol_abuse_then_good_run(transport, device):
    """Garbage, a truncated frame, a bad CRC, an oversize length, an unknown command, an
    oversize layer and a RUN without weights are each refused with the right NACK; then a run
    is bit-exact and STATUS counted it all."""
    before = device.status()
    layer = (5).to_bytes(device.wire.layer_bytes, "little")
    frame = encode_frame(Command.SET_LAYER, layer)
    garbled = bytearray(frame)
    garbled[5] ^= 0x10

    reply = _exchange(transport, device, b"\x00\x13\x37\xff\x5a" + encode_frame(
        Command.IDENTIFY), reply_bytes=60)
    assert reply.code == Command.IDENTIFY | 0x80
    cases = [
        (frame[:4], Error.TIMEOUT, Command.SET_LAYER),
        (bytes(garbled), Error.BAD_CRC, Command.SET_LAYER),
        (bytes([START, Command.LOAD_WEIGHTS, 0]) + (DEFAULT_MAX_PAYLOAD + 1).to_bytes(2, "little")
         + bytes(range(1, 21)), Error.TOO_LONG, Command.LOAD_WEIGHTS),
        (encode_frame(0x42, b"\x01\x02"), Error.UNKNOWN_COMMAND, 0x42),
        (encode_frame(Command.STATUS, b"\x00"), Error.BAD_LENGTH, Command.STATUS),
    ]
    for data, error, command in cases:
        reply = _exchange(transport, device, data)
        assert reply.nack == (error, command), data.hex()

    with pytest.raises(NackError, match=r"^Device refused SET_LAYER: BAD_LAYER: layer out of "
                                        r"range"):
        device.set_layer(_layer_word(beats=8, tiles=4))     # 32 > 16 weight words per PE
    device.set_layer(_layer_word(beats=5, tiles=1))
    with pytest.raises(NackError, match=r"^Device refused RUN: NO_WEIGHTS: RUN before any "
                                        r"weights were loaded for the layer"):
        device.request(Command.RUN, bytes(5 * 4))           # a new shape: weights invalid

    after = device.status()
    assert after.frames_refused - before.frames_refused == 7     # NO_WEIGHTS is not resent
    assert after.last_error == Error.NO_WEIGHTS
    assert (after.layer_set, after.weights_valid, after.params_valid) == (True, False, False)
    assert after.uart_errors == 0
    _check_layer(device, (1, 3, 9), 6, seed=5, relu=True)
    assert device.status().frames_refused == after.frames_refused


@pytest.mark.parametrize("other", [
    ArrayConfig(rows=8, cols=4, max_channels=32, max_filters=24, weight_depth=16),
    ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=24, weight_depth=16),
], ids=["size", "mapping"])
def test_config_mismatch(transport, other):
    with pytest.raises(ValueError, match=r"^The device is built for .*use the device's "
                                         r"configuration \(--rows 4 --cols 4 --max-channels 32 "
                                         r"--max-filters 24 --weight-depth 16 --mac-style "
                                         r"ice40_dual8x8 --requantizer serial "
                                         r"--requant-steps 4 --roundings "
                                         r"double,single,ruy,float\)$"):
        BoardDevice(transport, other)


def test_cli_run_board_sim(tmp_path, capsys):
    """``pwconv run L.npz --backend board-sim`` with no board: bit-exact with golden."""
    npz, out = tmp_path / "layer.npz", tmp_path / "y.npy"
    assert main(["layer", str(npz), "--shape", "2x3x6", "--filters", "5", "--seed", "3"]) == 0
    assert main(["run", str(npz), "--backend", "board-sim", "--out", str(out)]
                + CFG_FLAGS) == 0
    x, layer = load_layer(npz)
    np.testing.assert_array_equal(np.load(out), golden_output(x, layer))
    assert "6 pixels x C=6 -> F=5, 1 pass(es)" in capsys.readouterr().out

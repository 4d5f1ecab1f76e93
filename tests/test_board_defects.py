"""Board-sim reproductions of the link defects of issue 11 (each failed on protocol v1)."""

import numpy as np
import pytest

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.host.accelerator import Accelerator
from pwconv.host.board import BoardDevice
from pwconv.host.layer import golden_output, random_layer
from pwconv.host.link import (HEADER_BYTES, START, Command, Error, FrameDecoder, LinkError,
                              SimTransport, encode_frame)
from pwconv.host.program import compile_layer, pack_pixels

#: The board-sim configuration of tests/test_board_sim.py (the same Verilator build).
CFG = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=24, weight_depth=16,
                  mac_style="ice40_dual8x8", requantizer="serial", requant_steps=4)
HOST_PAYLOAD = 64


@pytest.fixture(scope="module")
def transport():
    link = SimTransport(CFG)
    yield link
    link.close()


@pytest.fixture
def device(transport):
    return BoardDevice(transport, CFG, max_payload=HOST_PAYLOAD)


def _run(device, x, layer):
    acc = Accelerator("board-sim", CFG, device=device, progress=False)
    return acc.run_layer(x, layer)


def _frames_until_quiet(transport, quiet=0.004):
    """Every frame the board sends until the line has been quiet ``quiet`` simulated s."""
    decoder, frames = FrameDecoder(), []
    while True:
        data = transport.read(1 << 16, quiet)
        if not data:
            return frames
        frames += decoder.feed(data)


def test_stale_reply_is_not_taken_for_the_next_layer(device):
    """Defect 1: a SET_LAYER whose reply comes too late, then another layer of the same shape.
    On v1 the late LAYER_SET was taken as the second SET_LAYER's reply while the board dropped
    that frame, so the second layer ran with the first one's zero point and clamp."""
    xa, a = random_layer((1, 3, 6), 5, seed=1)
    np.testing.assert_array_equal(_run(device, xa, a), golden_output(xa, a))
    xb, b = random_layer((1, 3, 6), 5, seed=21, relu=True)
    xc, c = random_layer((1, 3, 6), 5, seed=22)
    assert b.quant.output_zero_point != c.quant.output_zero_point
    device.reply_timeout = lambda nbytes: 1e-6      # the reply to B's SET_LAYER comes late
    try:
        with pytest.raises(LinkError):
            _run(device, xb, b)
    finally:
        del device.reply_timeout
    np.testing.assert_array_equal(_run(device, xc, c), golden_output(xc, c))


def test_corrupted_length_gets_one_nack(transport, device):
    """Defect 2: a frame whose length field reads 0xFFFF, its payload all start bytes, draws
    one NACK (v1: one per start byte), and the next request succeeds."""
    frame = bytearray(encode_frame(Command.LOAD_WEIGHTS, bytes([START]) * 64))
    frame[HEADER_BYTES - 2:HEADER_BYTES] = b"\xff\xff"
    device.status()
    transport.write(bytes(frame))
    frames = _frames_until_quiet(transport)
    assert [f.nack[0] for f in frames] == [Error.TOO_LONG]
    transport.write(bytes(frame))
    device.status()


def _layer_program(channels, filters, pixels, seed):
    x, layer = random_layer((1, pixels, channels), filters, seed=seed)
    x = x.reshape(pixels, channels)
    q = layer.quant
    folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
    program = compile_layer(CFG, layer.w, folded, q.output_multiplier, q.output_shift,
                            output_zero_point=q.output_zero_point,
                            activation_min=q.activation_min, activation_max=q.activation_max)
    return x, program


def test_open_while_board_streams_an_old_result(transport, device):
    """Defect 4: a host dies while the board streams a 4000-byte RESULT; a new host opens the
    board at once and runs a layer bit-exact (v1: LinkTimeout, then 'No start byte')."""
    x, program = _layer_program(6, 5, 500, seed=4)
    device.set_layer(program.layer_word)
    device.load_weights(program.weight_words)
    device.load_params(program.param_words)
    beats = pack_pixels(CFG, x)
    transport.write(encode_frame(Command.RUN, b"".join(
        int(word).to_bytes(CFG.rows, "little") for word in beats)))
    assert len(transport.read(40, 0.01)) == 40          # the RESULT has begun
    fresh = BoardDevice(transport, CFG, max_payload=HOST_PAYLOAD)
    xc, c = random_layer((1, 4, 9), 7, seed=8)
    np.testing.assert_array_equal(_run(fresh, xc, c), golden_output(xc, c))

"""LinkController + PointwiseConv, byte level in Amaranth's simulator: commands, refusals, runs."""

import random

import numpy as np
import pytest
from amaranth.hdl import Const, Elaboratable, Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.host.layer import golden_output, random_layer
from pwconv.host.link import (Command, Error, FrameDecoder, Identity, Reply, Status,
                              WireFormat, encode_frame)
from pwconv.host.program import compile_layer, pack_pixels, unpack_results
from pwconv.hw import layouts
from pwconv.hw.link.controller import LinkController
from pwconv.hw.top import PointwiseConv

#: rows=3 and weight_depth=6 leave row 3 and addresses 6, 7 unused: bad addresses exist.
CFG = ArrayConfig(rows=3, cols=4, max_channels=12, max_filters=12, weight_depth=6)
WIRE = WireFormat(CFG)
MAX_PAYLOAD = 40
TIMEOUT = 80


class LinkCore(Elaboratable):
    """The board without its UART: byte streams in and out."""

    def __init__(self, cfg=CFG, max_payload=MAX_PAYLOAD):
        self._MustUse__silence = True       # not an error if a parameter check fails below
        self.link = LinkController(cfg, max_payload=max_payload, timeout=TIMEOUT,
                                   clk_freq=12_000_000, baud=3_000_000)
        self.accel = PointwiseConv(cfg.single_bank())  # as BoardTop: loads while idle
        self._MustUse__silence = False

    def elaborate(self, platform):
        m = Module()
        m.submodules.link, m.submodules.accel = link, accel = self.link, self.accel
        wiring.connect(m, link.pixels, accel.i)
        wiring.connect(m, accel.o, link.results)
        wiring.connect(m, link.weights, accel.weights)
        wiring.connect(m, link.params, accel.params)
        m.d.comb += [accel.layer.eq(link.layer), link.acc_idle.eq(accel.idle)]
        return m


def exchange(dut, steps, *, gap=3, stall=0.0, seed=0, max_cycles=None, processes=()):
    """Drive ``dut.link``'s byte streams in Amaranth's simulator: send each step's bytes (one per
    ``gap + 1`` cycles) and wait for its replies, the reply stream stalled with probability
    ``stall``. ``steps``: ``(data, replies)`` pairs; ``max_cycles``: how long a step may wait
    (default ``200 * (len(data) + 40)``); ``processes``: callables that add more simulator
    processes (e.g. a memory model's ``add_to``). Returns the reply frames of each step."""
    rng = random.Random(seed)
    out = bytearray()
    replies = []

    async def host(ctx):
        decoder = FrameDecoder()
        taken = 0
        for data, count in steps:
            for byte in data:
                ctx.set(dut.link.rx.payload, byte)
                ctx.set(dut.link.rx.valid, 1)
                await ctx.tick()
                ctx.set(dut.link.rx.valid, 0)
                await ctx.tick().repeat(gap)
            frames = []
            for _ in range(max_cycles or 200 * (len(data) + 40)):
                frames += decoder.feed(out[taken:])
                taken = len(out)
                if len(frames) >= count:
                    break
                await ctx.tick()
            await ctx.tick().repeat(4 * gap + 8)
            frames += decoder.feed(out[taken:])
            taken = len(out)
            assert len(frames) == count, f"{frames} after {data.hex()}"
            replies.append(frames)
        assert decoder.skipped == 0 and decoder.bad_crc == 0

    async def sink(ctx):
        while True:
            ready = not (stall and rng.random() < stall)
            ctx.set(dut.link.tx.ready, ready)
            _, _, valid, byte = await ctx.tick().sample(dut.link.tx.valid,
                                                        dut.link.tx.payload)
            if valid and ready:
                out.append(byte)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(host)
    sim.add_testbench(sink, background=True)
    for add in processes:
        add(sim)
    sim.run()
    return replies


def converse(steps, *, cfg=CFG, max_payload=MAX_PAYLOAD, gap=3, stall=0.0, seed=0):
    """Send each step's bytes (one per ``gap + 1`` cycles) and wait for its replies.

    ``steps``: ``(data, replies)`` pairs. Returns the reply frames of each step.
    """
    return exchange(LinkCore(cfg, max_payload), steps, gap=gap, stall=stall, seed=seed)


def one(steps, **kwargs):
    """The single reply of each step."""
    return [frames[0] for frames in converse([(data, 1) for data in steps], **kwargs)]


def layer_word(cfg=CFG, **fields):
    return Const.cast(layouts.runtime_config(cfg).const(fields)).value


def set_layer(word, cfg=CFG):
    return encode_frame(Command.SET_LAYER, word.to_bytes(WireFormat(cfg).layer_bytes, "little"))


def nack(error, command):
    return (Reply.NACK, bytes([error, command]))


def words_frame(command, words, nbytes, tag=0):
    return encode_frame(command, b"".join(w.to_bytes(nbytes, "little") for w in words), tag)


def code_payload(frame):
    return frame.code, frame.payload


def test_init_wrong_max_payload():
    with pytest.raises(ValueError, match=r"^Maximum payload must be between 36 \(the largest "
                                         r"word or pixel\) and 65535 bytes, not 20$"):
        LinkController(CFG, max_payload=20, timeout=10)


def test_init_wrong_config():
    with pytest.raises(TypeError, match=r"^Configuration must be an ArrayConfig, not None$"):
        LinkController(None, max_payload=64, timeout=10)


def test_sim_identify_and_status():
    ident, status = one([encode_frame(Command.IDENTIFY), encode_frame(Command.STATUS)])
    assert ident.code == Reply.IDENTITY
    assert Identity.unpack(ident.payload) == Identity.of(CFG, max_payload=MAX_PAYLOAD,
                                                         clk_freq=12_000_000, baud=3_000_000,
                                                         timeout=TIMEOUT)
    assert status.code == Reply.STATUS
    assert Status.unpack(status.payload) == Status(False, True, Error.NONE, 2, 0, 0, 0)


def test_sim_layer_checks():
    """Oversize or empty layers are refused and leave the previous layer in place."""
    good = layer_word(beats=2, tiles=3)
    replies = one([
        encode_frame(Command.RUN, bytes(6)),
        set_layer(layer_word(beats=4, tiles=2)),     # 8 > weight_depth 6
        set_layer(layer_word(beats=0, tiles=1)),
        set_layer(layer_word(beats=1, tiles=4)),     # tiles > max_tiles 3
        set_layer(layer_word(beats=5, tiles=1)),     # beats > max_beats 4
        set_layer(good),
        set_layer(layer_word(beats=3, tiles=3)),     # 9 > 6
        encode_frame(Command.STATUS),
    ])
    assert [code_payload(r) for r in replies[:7]] == [
        nack(Error.NO_LAYER, Command.RUN)] + [nack(Error.BAD_LAYER, Command.SET_LAYER)] * 4 + [
        (Reply.LAYER_SET, b""), nack(Error.BAD_LAYER, Command.SET_LAYER)]
    status = Status.unpack(replies[7].payload)
    assert (status.layer_set, status.last_error, status.frames_ok, status.frames_refused) == (
        True, Error.BAD_LAYER, 2, 6)         # frames_ok: the LAYER_SET and this STATUS


def test_sim_layer_rounding_not_in_build():
    """A layer asking for a rounding mode the build leaves out is refused with its own reason;
    one the build includes is taken."""
    cfg = ArrayConfig(rows=3, cols=4, max_channels=12, max_filters=12, weight_depth=6,
                      roundings=("double", "float"))
    replies = one([
        set_layer(layer_word(cfg, beats=1, tiles=1, rounding=2), cfg),     # ruy: left out
        set_layer(layer_word(cfg, beats=1, tiles=1, rounding=3), cfg),     # float
        set_layer(layer_word(cfg, beats=1, tiles=1, rounding=1), cfg),     # single: left out
    ], cfg=cfg)
    assert [code_payload(r) for r in replies] == [
        nack(Error.BAD_ROUNDING, Command.SET_LAYER), (Reply.LAYER_SET, b""),
        nack(Error.BAD_ROUNDING, Command.SET_LAYER)]


def test_sim_word_checks():
    """Partial words, bad rows, addresses and tiles are refused before anything is written."""
    wb, pb = WIRE.weight_bytes, WIRE.param_bytes
    weight = layouts.weight_word(CFG)
    ok = Const.cast(weight.const({"addr": 5, "row": 2})).value
    bad_row = Const.cast(weight.const({"addr": 1, "row": 3})).value
    bad_addr = Const.cast(weight.const({"addr": 6, "row": 0})).value
    bad_tile = Const.cast(layouts.param_word(CFG).const({"addr": 3})).value
    replies = one([
        words_frame(Command.LOAD_WEIGHTS, [ok, ok], wb)[:-3],     # truncated: times out
        encode_frame(Command.LOAD_WEIGHTS, bytes(2 * wb - 1)),
        words_frame(Command.LOAD_WEIGHTS, [ok, bad_row], wb),
        words_frame(Command.LOAD_WEIGHTS, [bad_addr, ok], wb),
        words_frame(Command.LOAD_PARAMS, [bad_tile], pb),
        encode_frame(Command.LOAD_PARAMS, bytes(pb + 1)),
        words_frame(Command.LOAD_WEIGHTS, [ok] * 8, wb),
        words_frame(Command.LOAD_WEIGHTS, [ok] * 9, wb),     # 45 > 40 bytes
        words_frame(Command.LOAD_PARAMS, [0], pb),
        encode_frame(Command.LOAD_WEIGHTS),
    ])
    assert [code_payload(r) for r in replies] == [
        nack(Error.TIMEOUT, Command.LOAD_WEIGHTS),
        nack(Error.BAD_LENGTH, Command.LOAD_WEIGHTS),
        nack(Error.BAD_ADDRESS, Command.LOAD_WEIGHTS),
        nack(Error.BAD_ADDRESS, Command.LOAD_WEIGHTS),
        nack(Error.BAD_ADDRESS, Command.LOAD_PARAMS),
        nack(Error.BAD_LENGTH, Command.LOAD_PARAMS),
        (Reply.WEIGHTS_LOADED, (8).to_bytes(2, "little")),
        nack(Error.TOO_LONG, Command.LOAD_WEIGHTS),
        (Reply.PARAMS_LOADED, (1).to_bytes(2, "little")),
        (Reply.WEIGHTS_LOADED, bytes(2)),
    ]


def _program(channels, filters, pixels, seed, raw=False):
    x, layer = random_layer((1, pixels, channels), filters, seed=seed, relu=seed % 2 == 0)
    x = x.reshape(pixels, channels)
    q = layer.quant
    folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
    program = compile_layer(CFG, layer.w, folded, q.output_multiplier, q.output_shift,
                            output_zero_point=q.output_zero_point,
                            activation_min=q.activation_min, activation_max=q.activation_max,
                            raw=raw)
    if raw:
        want = golden.conv1x1_acc(x, layer.w, layer.bias, q.input_zero_point)
    else:
        want = golden_output(x, layer)
    return x, program, want


def _load(program):
    steps = [set_layer(program.layer_word)]
    steps += [words_frame(Command.LOAD_WEIGHTS, program.weight_words[i:i + 8],
                          WIRE.weight_bytes) for i in range(0, len(program.weight_words), 8)]
    steps += [words_frame(Command.LOAD_PARAMS, [word], WIRE.param_bytes)
              for word in program.param_words]
    return steps


def _results(frame, raw):
    assert frame.code == Reply.RESULT
    lanes = np.frombuffer(frame.payload, dtype="<i4" if raw else np.int8).astype("<i4")
    return [int.from_bytes(v.tobytes(), "little") for v in lanes.reshape(-1, CFG.cols)]


@pytest.mark.parametrize("raw", [False, True])
def test_sim_run_matches_golden(raw):
    """Load a layer over the link, run pixels in two RUN frames, compare with golden."""
    x, program, want = _program(5, 7, 5, seed=3 + raw, raw=raw)
    beats = pack_pixels(CFG, x)
    half = 3 * program.beats
    steps = _load(program) + [
        words_frame(Command.RUN, beats[:half], WIRE.beat_bytes),
        words_frame(Command.RUN, beats[half:], WIRE.beat_bytes),
    ]
    replies = one(steps, stall=0.3, seed=raw)
    for reply in replies[:-2]:
        assert reply.code & 0x80 and reply.code != Reply.NACK, reply
    words = _results(replies[-2], raw) + _results(replies[-1], raw)
    np.testing.assert_array_equal(unpack_results(CFG, words, 5, 7), want)


def test_sim_refused_frames_change_nothing():
    """After a good run: a weight frame with one bad word, a bad-CRC frame and a half pixel are
    refused, and the same pixels give the same results."""
    x, program, want = _program(4, 5, 3, seed=7)
    beats = pack_pixels(CFG, x)
    run = words_frame(Command.RUN, beats, WIRE.beat_bytes)
    other = [w ^ (0x7F << 5) for w in program.weight_words[:6]]
    bad_addr = Const.cast(layouts.weight_word(CFG).const({"addr": 7})).value
    corrupt = bytearray(words_frame(Command.LOAD_WEIGHTS, other, WIRE.weight_bytes))
    corrupt[9] ^= 0x01
    replies = one(_load(program) + [
        run,
        words_frame(Command.LOAD_WEIGHTS, other + [bad_addr], WIRE.weight_bytes),
        bytes(corrupt),
        encode_frame(Command.RUN, bytes(WIRE.beat_bytes * program.beats + 1)),
        run,
    ])
    first, second = replies[-5], replies[-1]
    assert [code_payload(r) for r in replies[-4:-1]] == [
        nack(Error.BAD_ADDRESS, Command.LOAD_WEIGHTS),
        nack(Error.BAD_CRC, Command.LOAD_WEIGHTS),
        nack(Error.BAD_LENGTH, Command.RUN),
    ]
    for reply in (first, second):
        np.testing.assert_array_equal(unpack_results(CFG, _results(reply, False), 3, 5), want)


def test_sim_too_many_results():
    """A RUN whose RESULT frame would pass 65535 bytes is refused whole: 147 pixels of 7 tiles
    of 16 raw lanes are 65856 bytes."""
    cfg = ArrayConfig(rows=1, cols=16, max_channels=1, max_filters=112, weight_depth=8)
    wire = WireFormat(cfg)
    word = layer_word(cfg, beats=1, tiles=7, raw=1)
    weights = [Const.cast(layouts.weight_word(cfg).const({"addr": a})).value for a in range(7)]
    params = [Const.cast(layouts.param_word(cfg).const({"addr": a})).value for a in range(7)]
    steps = [set_layer(word, cfg), words_frame(Command.LOAD_WEIGHTS, weights, wire.weight_bytes)]
    steps += [words_frame(Command.LOAD_PARAMS, [p], wire.param_bytes) for p in params]
    steps += [encode_frame(Command.RUN, bytes(147)), encode_frame(Command.RUN, bytes(2))]
    replies = converse([(step, 1) for step in steps], cfg=cfg, max_payload=160, gap=1)
    assert [code_payload(r[0]) for r in replies[:2]] == [
        (Reply.LAYER_SET, b""), (Reply.WEIGHTS_LOADED, (7).to_bytes(2, "little"))]
    assert code_payload(replies[-2][0]) == nack(Error.TOO_MANY, Command.RUN)
    assert replies[-1][0].code == Reply.RESULT and len(replies[-1][0].payload) == 2 * 448


def test_sim_replies_echo_tags():
    """ACKs, NACKs (from the receiver and from the checks) and RESULTs carry their request's
    tag."""
    x, program, want = _program(4, 5, 2, seed=9)
    frames = [encode_frame(Command.STATUS, tag=0x11),
              encode_frame(0x42, b"", tag=0x22),
              encode_frame(Command.RUN, bytes(WIRE.beat_bytes * 2), tag=0x33)]
    frames += [encode_frame(f[1], f[5:-2], tag=0x40 + n) for n, f in enumerate(_load(program))]
    frames.append(words_frame(Command.RUN, pack_pixels(CFG, x), WIRE.beat_bytes, tag=0x77))
    replies = one(frames)
    assert [r.tag for r in replies] == [0x11, 0x22, 0x33] + [0x40 + n for n in
                                                             range(len(frames) - 4)] + [0x77]
    assert code_payload(replies[1]) == nack(Error.UNKNOWN_COMMAND, 0x42)
    assert code_payload(replies[2]) == nack(Error.NO_LAYER, Command.RUN)
    np.testing.assert_array_equal(unpack_results(CFG, _results(replies[-1], False), 2, 5), want)


def test_sim_run_needs_weights_and_params():
    """RUN is refused until the layer's weights and params are loaded; a SET_LAYER of the same
    shape keeps them, one of another shape clears them."""
    x, program, want = _program(4, 5, 2, seed=10)
    steps = _load(program)
    setl, weights, params = steps[0], steps[1:-program.tiles], steps[-program.tiles:]
    run = words_frame(Command.RUN, pack_pixels(CFG, x), WIRE.beat_bytes)
    other_shape = set_layer(layer_word(beats=1, tiles=1))
    replies = one([setl, run] + weights + [run] + params + [setl, run, other_shape, setl, run,
                                                            encode_frame(Command.STATUS)])
    n = len(weights)
    assert code_payload(replies[1]) == nack(Error.NO_WEIGHTS, Command.RUN)
    assert code_payload(replies[2 + n]) == nack(Error.NO_PARAMS, Command.RUN)
    assert replies[-5].code == Reply.RESULT
    np.testing.assert_array_equal(unpack_results(CFG, _results(replies[-5], False), 2, 5), want)
    assert code_payload(replies[-2]) == nack(Error.NO_WEIGHTS, Command.RUN)
    status = Status.unpack(replies[-1].payload)
    assert (status.layer_set, status.weights_valid, status.params_valid) == (True, False, False)


def test_sim_frame_during_result_refused_busy():
    """A frame sent while a RESULT streams out (its sink stalling) is NACKed BUSY with its tag
    after the RESULT; the RESULT is whole and right."""
    x, program, want = _program(4, 5, 3, seed=12)
    run = words_frame(Command.RUN, pack_pixels(CFG, x), WIRE.beat_bytes, tag=5)
    status = encode_frame(Command.STATUS, tag=6)
    replies = converse([(step, 1) for step in _load(program)] + [(run + status, 2)],
                       stall=0.9, seed=4)
    result, busy = replies[-1]
    assert (result.tag, busy.tag) == (5, 6)
    assert code_payload(busy) == nack(Error.BUSY, Command.STATUS)
    np.testing.assert_array_equal(unpack_results(CFG, _results(result, False), 3, 5), want)

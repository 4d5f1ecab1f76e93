"""Command executor of the board link: checks a buffered frame whole, then applies it."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Shape, Signal
from amaranth.utils import ceil_log2
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ROUNDINGS, ArrayConfig
from .. import layouts
from ..params import check_config, rejected
from .frame import FrameReceiver, FrameSender
from .memory import MemoryCommands, check_memory_params
from .protocol import (IDENTITY_BYTES, MAX_LENGTH, MEMORY_COMMANDS, STATUS_BYTES, Command,
                       Error, Identity, Reply, WireFormat, fixed_lengths)

__all__ = ["LinkController", "check_link_params"]

# Sources of a reply's payload.
_SRC_SMALL, _SRC_IDENTITY, _SRC_STATUS, _SRC_RESULT, _SRC_MEMORY = range(5)


def check_link_params(cfg: ArrayConfig, *, max_payload, timeout):
    """Raise a TypeError or ValueError naming the value unless the link parameters are valid."""
    wire = WireFormat(cfg)
    if not isinstance(max_payload, int) or isinstance(max_payload, bool):
        raise TypeError(f"Maximum payload must be an integer, not {max_payload!r}")
    if not wire.min_payload <= max_payload <= MAX_LENGTH:
        raise ValueError(f"Maximum payload must be between {wire.min_payload} (the largest word "
                         f"or pixel) and {MAX_LENGTH} bytes, not {max_payload}")
    if wire.max_result_bytes > MAX_LENGTH:
        raise ValueError(f"One pixel's raw results ({wire.max_result_bytes} bytes for "
                         f"{cfg.max_filters} filters) must fit one frame of {MAX_LENGTH} bytes")
    if not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 1:
        raise ValueError(f"Timeout must be a positive integer number of cycles, not {timeout!r}")


class LinkController(wiring.Component):
    """Executes link frames on a :class:`~pwconv.hw.top.PointwiseConv`.

    A :class:`FrameReceiver` puts each frame, whole and CRC-checked, into a byte buffer (one
    block RAM of ``max_payload`` bytes). The controller then runs over the buffer twice:

    1. a **check pass** that applies nothing: the payload must be whole words (whole pixels
       for RUN), weight and param words must name existing rows, addresses and tiles, a RUN's
       results must fit one RESULT frame, a SET_LAYER's layer must fit the array;
    2. an **apply pass** that streams the words to the accelerator (layer register, ``weights``,
       ``params``, or ``pixels`` while the results go out in a RESULT frame).

    A refused frame is answered by a NACK (error code, command byte) and changes nothing. Every
    reply (ACK, RESULT or NACK) carries the tag of the frame it answers. One frame is executed
    at a time; a frame that arrives meanwhile is refused ``BUSY`` once its declared length has
    gone by (the receiver never writes the buffer in use), and refusals are answered before
    the next good frame is executed.

    The controller tracks what a RUN needs: a layer (``NO_LAYER``), and weight words
    (``NO_WEIGHTS``) and param words (``NO_PARAMS``) applied since reset or the last SET_LAYER
    that changed ``beats`` or ``tiles``. (A flag each, not a count: the iCEBreaker build has
    no room for counters; the host always loads a whole layer before its RUNs.)

    Parameters
    ----------
    cfg : ArrayConfig
        The accelerator's configuration.
    max_payload : int
        Frame buffer size in bytes: at least one word or pixel of the largest layer
        (:attr:`WireFormat.min_payload`), at most 65535.
    timeout : int
        Inter-byte timeout inside a frame, in clock cycles.
    clk_freq, baud : int
        Reported in the IDENTITY reply only.
    memory : NativePortSignature or None
        A board memory behind a native port: the controller then also executes the memory
        commands (MEM_INFO, MEM_WRITE, MEM_READ, MEM_CRC) through a
        :class:`~.memory.MemoryCommands`; without one (the default, the iCEBreaker build)
        none of that logic is elaborated and they are refused ``UNKNOWN_COMMAND``.
    memory_size : int or None
        Bytes of that memory (default: the port's whole range).

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the UART receiver (always ready).
    rx_error, rx_overrun : In(1)
        UART framing-error and overrun strobes (counted; a framing error aborts a frame).
    tx : Out(stream.Signature(8))
        Reply bytes to the UART transmitter.
    pixels : Out(stream.Signature(pixel_beat))
    results : In(stream.Signature(result_vector))
    weights : Out(stream.Signature(weight_word))
    params : Out(stream.Signature(param_word))
    layer : Out(runtime_config)
    acc_idle : In(1)
        Connect to the accelerator's ports of the same names (``i``, ``o``, ...).
    busy : Out(1)
        A frame is being received or executed (for a status LED).
    mem : Out(memory)
        Only with a ``memory``: the master side of its port.

    Timing: the buffer is read at one byte per 2 cycles in each pass, far faster than a UART
    delivers it (10 bit times per byte, a bit being at least 4 cycles).
    """

    def __init__(self, cfg: ArrayConfig, *, max_payload, timeout, clk_freq=0, baud=0,
                 memory=None, memory_size=None):
        check_config(self, cfg)
        try:
            check_link_params(cfg, max_payload=max_payload, timeout=timeout)
            if memory is not None:
                memory_size = check_memory_params(memory, memory_size)
        except (TypeError, ValueError) as error:
            raise rejected(self, error) from None
        self._memory = memory
        self._memory_size = memory_size
        wire = WireFormat(cfg)
        self._cfg = cfg
        self._wire = wire
        self._max_payload = max_payload
        self._timeout = timeout
        self._identity = Identity.of(cfg, max_payload=max_payload, clk_freq=int(clk_freq),
                                     baud=int(baud), timeout=timeout)
        super().__init__({
            "rx":         In(stream.Signature(8)),
            "rx_error":   In(1),
            "rx_overrun": In(1),
            "tx":         Out(stream.Signature(8)),
            "pixels":     Out(stream.Signature(layouts.pixel_beat(cfg))),
            "results":    In(stream.Signature(layouts.result_vector(cfg))),
            "weights":    Out(stream.Signature(layouts.weight_word(cfg))),
            "params":     Out(stream.Signature(layouts.param_word(cfg))),
            "layer":      Out(layouts.runtime_config(cfg)),
            "acc_idle":   In(1),
            "busy":       Out(1),
            **({"mem": Out(memory)} if memory is not None else {}),
        })

    @property
    def identity(self):
        """The :class:`Identity` this controller reports."""
        return self._identity

    @property
    def memory_size(self):
        """Bytes of board memory the memory commands reach (None: no memory)."""
        return self._memory_size

    def elaborate(self, platform):
        cfg, wire = self._cfg, self._wire
        has_memory = self._memory is not None
        m = Module()
        m.submodules.receiver = receiver = FrameReceiver(
            max_payload=self._max_payload, timeout=self._timeout,
            lengths=fixed_lengths(cfg, memory=has_memory))
        m.submodules.sender = sender = FrameSender()
        m.submodules.buffer = buffer = memory.Memory(shape=8, depth=self._max_payload, init=[])
        write = buffer.write_port()
        read = buffer.read_port(domain="sync")

        wiring.connect(m, wiring.flipped(self.rx), receiver.i)
        executing = Signal()
        m.d.comb += receiver.owned.eq(executing)
        wiring.connect(m, sender.o, wiring.flipped(self.tx))
        m.d.comb += [
            receiver.framing_error.eq(self.rx_error),
            write.addr.eq(receiver.wr_addr),
            write.data.eq(receiver.wr_data),
            write.en.eq(receiver.wr_en),
        ]

        # The frame being executed (or refused).
        request = receiver.frame.payload
        refusal = receiver.refusal.payload
        cmd = Signal(8)
        tag = Signal(8)
        length = Signal(16)
        pos = Signal(16)
        applying = Signal()
        if has_memory:
            # The memory commands read their frame from the buffer themselves (`mem_phase`,
            # a register, selects their address), and offer their reply's bytes as a source.
            m.submodules.memory = mem_cmds = MemoryCommands(
                self._memory, size=self._memory_size, max_payload=self._max_payload)
            wiring.connect(m, mem_cmds.mem, wiring.flipped(self.mem))
            mem_phase = Signal()
            mem_start = Signal()
            m.d.sync += mem_start.eq(0)
            m.d.comb += [
                read.addr.eq(Mux(mem_phase, mem_cmds.buf_addr, pos)),
                mem_cmds.buf_data.eq(read.data),
                mem_cmds.start.eq(mem_start),
                mem_cmds.cmd.eq(cmd),
                mem_cmds.length.eq(length),
            ]
        else:
            m.d.comb += read.addr.eq(pos)

        # Word assembly: bytes shift in at the top, so a word of n bytes is the top n bytes.
        width = max(wire.layer_bytes, wire.weight_bytes, wire.param_bytes, wire.beat_bytes)
        # reset_less: a word is read only after all its bytes have shifted in (432 flip-flops
        # off the reset net on the ULX3S).
        asm = Signal(8 * width, reset_less=True)
        # High exactly in the LATCH state, as a register of its own: its net enables every bit
        # of `asm` (452 on the ULX3S). Decoded from the state, it was one LUT with that fanout,
        # placed at the centre of those flip-flops, inside the state machine's loop: the
        # longest path of a full ULX3S build (78.2 MHz, 10.9 of its 12.8 ns routing).
        shift_in = Signal()
        m.d.sync += shift_in.eq(0)
        with m.If(shift_in):
            m.d.sync += asm.eq(Cat(asm[8:], read.data))
        in_word = Signal(range(width + 1))
        word_len = Signal(range(width + 1))

        def top(layout, nbytes):
            return data.View(layout, asm[8 * (width - nbytes):][:Shape.cast(layout).width])

        layer_word = top(layouts.runtime_config(cfg), wire.layer_bytes)
        weight_word = top(layouts.weight_word(cfg), wire.weight_bytes)
        param_word = top(layouts.param_word(cfg), wire.param_bytes)
        beat_word = top(layouts.pixel_beat(cfg), wire.beat_bytes)

        # The command decoded once, when it is latched: a flag per command that has a word
        # pass, and its word length, registered beside `cmd` (an 8-bit compare in front of
        # every decision of the passes was the longest path of the ULX3S 2x2 build).
        is_set_layer, is_load_weights, is_load_params, is_run = (
            Signal(name=name) for name in ("is_set_layer", "is_load_weights", "is_load_params",
                                           "is_run"))

        def latch_cmd(value):
            m.d.sync += [
                cmd.eq(value),
                is_set_layer.eq(value == Command.SET_LAYER),
                is_load_weights.eq(value == Command.LOAD_WEIGHTS),
                is_load_params.eq(value == Command.LOAD_PARAMS),
                is_run.eq(value == Command.RUN),
            ]
            with m.Switch(value):
                with m.Case(Command.SET_LAYER):
                    m.d.sync += word_len.eq(wire.layer_bytes)
                with m.Case(Command.LOAD_WEIGHTS):
                    m.d.sync += word_len.eq(wire.weight_bytes)
                with m.Case(Command.LOAD_PARAMS):
                    m.d.sync += word_len.eq(wire.param_bytes)
                with m.Default():
                    m.d.sync += word_len.eq(wire.beat_bytes)
        m.d.comb += [
            self.weights.payload.eq(weight_word),
            self.params.payload.eq(param_word),
            self.pixels.payload.eq(beat_word),
        ]

        # The current layer and what a RUN returns per pixel.
        layer = Signal(layouts.runtime_config(cfg))
        layer_set = Signal()
        pixel_bytes = Signal(range(wire.max_result_bytes + 1))
        m.d.comb += self.layer.eq(layer)

        # Whether weight and param words were applied since reset or the last SET_LAYER that
        # changed the shape (beats, tiles).
        weights_valid = Signal()
        params_valid = Signal()
        with m.If(self.weights.valid & self.weights.ready):
            m.d.sync += weights_valid.eq(1)
        with m.If(self.params.valid & self.params.ready):
            m.d.sync += params_valid.eq(1)

        # Check-pass state.
        words = Signal(16)
        beat = Signal(range(cfg.max_beats + 1))
        result_len = Signal(range(2 * (MAX_LENGTH + 1)))
        too_many = Signal()
        bad_addr = Signal()
        next_len = Signal.like(result_len)
        m.d.comb += next_len.eq(result_len + pixel_bytes)
        # The RUN check's decisions, registered every cycle: `beat`, `result_len` and the
        # layer change only in states at least two cycles before the next WORD, so in WORD
        # these are their flags, and no adder or compare is in front of the FSM.
        beat_last = Signal()
        next_over = Signal()
        m.d.sync += [beat_last.eq(beat + 1 == layer.beats), next_over.eq(next_len > MAX_LENGTH)]

        # SET_LAYER checks of the assembled word, registered: the word is whole in the WORD
        # state, so in LAYER_CHECK (the cycle after) these are its flags, and the compares are
        # not in front of the NACK's register enables.
        bad_shape = Signal()
        bad_rounding = Signal()
        m.d.sync += [
            bad_shape.eq((layer_word.beats == 0) | (layer_word.beats > cfg.max_beats)
                         | (layer_word.tiles == 0) | (layer_word.tiles > cfg.max_tiles)),
            bad_rounding.eq(~Cat(*(layer_word.rounding == ROUNDINGS.index(r)
                                   for r in cfg.roundings)).any()),
        ]

        # SET_LAYER size check: beats * tiles <= weight_depth by repeated addition, `tiles_left`
        # counting the additions down. Its decisions are flags registered with each step (no
        # tiles left, product > weight_depth, and whether the shape changed): compared in
        # LAYER_SIZE, the word's fields ran through the compares into the FSM and every
        # register a reply enables, the longest path of a full ULX3S build (86.5 MHz, 9.3 of
        # its 11.6 ns routing).
        tiles_left = Signal(range(cfg.max_tiles + 1))
        product = Signal(range(cfg.weight_depth + cfg.max_beats + 1))
        lanes = Signal(range(cfg.max_tiles * cfg.cols + 1))
        size_done = Signal()
        size_over = Signal()
        shape_changed = Signal()

        # Reply.
        reply_code = Signal(8)
        source = Signal(range(5 if has_memory else 4))
        small = Signal(16)
        # STATUS is read live as it is sent (no copy: 80 flip-flops the iCEBreaker lacks);
        # frames_ok already counts the STATUS itself, and the controller, busy sending it,
        # changes nothing else meanwhile but the line counters (uart_errors, dropped).
        status = Signal(8 * STATUS_BYTES)
        identity = Const(int.from_bytes(self._identity.pack(), "little"), 8 * IDENTITY_BYTES)

        # Counters for STATUS.
        last_error = Signal(8)
        frames_ok = Signal(16)
        frames_refused = Signal(16)
        uart_errors = Signal(16)
        dropped = Signal(16)
        with m.If(self.rx_error):
            m.d.sync += uart_errors.eq(uart_errors + 1)
        with m.If(receiver.dropped | self.rx_overrun):
            m.d.sync += dropped.eq(dropped + 1)

        def reply(code, src):
            m.d.sync += [reply_code.eq(code), source.eq(src),
                         frames_ok.eq(frames_ok + 1)]
            m.next = "REPLY"

        def nack(code, command=cmd):
            code = Const(code, 8) if isinstance(code, int) else code
            m.d.sync += [
                reply_code.eq(Reply.NACK), source.eq(_SRC_SMALL),
                small.eq(Cat(code, command)), last_error.eq(code),
                frames_refused.eq(frames_refused + 1),
            ]
            m.next = "REPLY"

        # A reply's length follows from its source (a register less): the small source is
        # a u16 (word count, NACK reason and command) but for LAYER_SET, which is empty.
        reply_len = Signal(16)
        with m.Switch(source):
            with m.Case(_SRC_IDENTITY):
                m.d.comb += reply_len.eq(IDENTITY_BYTES)
            with m.Case(_SRC_STATUS):
                m.d.comb += reply_len.eq(STATUS_BYTES)
            if has_memory:
                with m.Case(_SRC_MEMORY):
                    m.d.comb += reply_len.eq(mem_cmds.reply.payload.length)
            with m.Default():
                m.d.comb += reply_len.eq(Mux(reply_code == Reply.LAYER_SET, 0, 2))

        m.d.comb += status.eq(Cat(layer_set, self.acc_idle, weights_valid, params_valid,
                                  Const(0, 4), last_error, frames_ok, frames_refused,
                                  uart_errors, dropped))

        with m.FSM(name="link") as fsm:
            with m.State("IDLE"):
                m.d.comb += receiver.refusal.ready.eq(1)
                with m.If(receiver.refusal.valid):
                    latch_cmd(refusal.cmd)
                    m.d.sync += tag.eq(refusal.tag)
                    nack(refusal.error, refusal.cmd)
                with m.Else():
                    m.d.comb += receiver.frame.ready.eq(1)
                with m.If(~receiver.refusal.valid & receiver.frame.valid):
                    latch_cmd(request.cmd)
                    m.d.sync += [
                        tag.eq(request.tag), length.eq(request.length),
                        pos.eq(0), applying.eq(0), in_word.eq(0), words.eq(0), beat.eq(0),
                        result_len.eq(0), too_many.eq(0), bad_addr.eq(0), executing.eq(1),
                    ]
                    with m.Switch(request.cmd):
                        with m.Case(Command.IDENTIFY):
                            reply(Reply.IDENTITY, _SRC_IDENTITY)
                        with m.Case(Command.STATUS):
                            reply(Reply.STATUS, _SRC_STATUS)
                        with m.Case(Command.RUN):
                            with m.If(~layer_set):
                                nack(Error.NO_LAYER, request.cmd)
                            with m.Elif(~weights_valid):
                                nack(Error.NO_WEIGHTS, request.cmd)
                            with m.Elif(~params_valid):
                                nack(Error.NO_PARAMS, request.cmd)
                            with m.Else():
                                m.next = "READ"
                        if has_memory:
                            with m.Case(*MEMORY_COMMANDS):
                                m.d.sync += [mem_start.eq(1), mem_phase.eq(1)]
                                m.next = "MEMORY"
                        with m.Default():
                            m.next = "READ"

            if has_memory:
                with m.State("MEMORY"):
                    m.d.comb += mem_cmds.reply.ready.eq(1)
                    with m.If(mem_cmds.reply.valid):
                        m.d.sync += mem_phase.eq(0)
                        with m.If(mem_cmds.reply.payload.error != 0):
                            nack(mem_cmds.reply.payload.error)
                        with m.Else():
                            reply(cmd | 0x80, _SRC_MEMORY)

            with m.State("READ"):
                # The buffer byte at `pos` is read during this cycle.
                with m.If(pos == length):
                    m.next = "END_PASS"
                with m.Else():
                    m.d.sync += shift_in.eq(1)
                    m.next = "LATCH"

            with m.State("LATCH"):
                m.d.sync += pos.eq(pos + 1)
                with m.If(in_word + 1 == word_len):
                    m.d.sync += in_word.eq(0)
                    m.next = "WORD"
                with m.Else():
                    m.d.sync += in_word.eq(in_word + 1)
                    m.next = "READ"

            with m.State("WORD"):
                with m.If(is_set_layer):
                    m.next = "LAYER_CHECK"
                with m.Elif(~applying):
                    m.d.sync += words.eq(words + 1)
                    with m.If(is_load_weights):
                        with m.If((weight_word.addr >= cfg.weight_depth)
                                  | (weight_word.row >= cfg.rows)):
                            m.d.sync += bad_addr.eq(1)
                    with m.If(is_load_params):
                        with m.If(param_word.addr >= cfg.max_tiles):
                            m.d.sync += bad_addr.eq(1)
                    with m.If(is_run):
                        with m.If(beat_last):
                            m.d.sync += beat.eq(0)
                            with m.If(next_over):
                                m.d.sync += too_many.eq(1)
                            with m.Elif(~too_many):
                                m.d.sync += result_len.eq(next_len)
                        with m.Else():
                            m.d.sync += beat.eq(beat + 1)
                    m.next = "READ"
                with m.Elif(is_load_weights):
                    m.d.comb += self.weights.valid.eq(1)
                    with m.If(self.weights.ready):
                        m.next = "READ"
                with m.Elif(is_load_params):
                    m.d.comb += self.params.valid.eq(1)
                    with m.If(self.params.ready):
                        m.next = "READ"
                with m.Elif(is_run):
                    m.d.comb += self.pixels.valid.eq(1)
                    with m.If(self.pixels.ready):
                        m.next = "READ"

            with m.State("END_PASS"):
                with m.If(~applying):
                    with m.If((in_word != 0) | (is_run & (beat != 0))):
                        nack(Error.BAD_LENGTH)
                    with m.Elif(bad_addr):
                        nack(Error.BAD_ADDRESS)
                    with m.Elif(too_many):
                        nack(Error.TOO_MANY)
                    with m.Else():
                        m.d.sync += [applying.eq(1), pos.eq(0)]
                        with m.If(is_run):
                            m.next = "RESULT_HEADER"
                        with m.Else():
                            m.next = "READ"
                with m.Elif(is_run):
                    m.next = "WAIT_TX"
                with m.Else():
                    m.d.sync += small.eq(words)
                    reply(cmd | 0x80, _SRC_SMALL)

            with m.State("RESULT_HEADER"):
                m.d.comb += [
                    sender.header.valid.eq(1),
                    sender.header.payload.cmd.eq(Reply.RESULT),
                    sender.header.payload.tag.eq(tag),
                    sender.header.payload.length.eq(result_len),
                ]
                m.d.sync += source.eq(_SRC_RESULT)
                with m.If(sender.header.ready):
                    m.d.sync += frames_ok.eq(frames_ok + 1)
                    m.next = "READ"

            with m.State("LAYER_CHECK"):
                with m.If(bad_shape):
                    nack(Error.BAD_LAYER)
                with m.Elif(bad_rounding):
                    nack(Error.BAD_ROUNDING)
                with m.Else():
                    m.d.sync += [tiles_left.eq(layer_word.tiles), product.eq(0), lanes.eq(0),
                                 size_done.eq(layer_word.tiles == 0), size_over.eq(0),
                                 shape_changed.eq(~layer_set
                                                  | (layer_word.beats != layer.beats)
                                                  | (layer_word.tiles != layer.tiles))]
                    m.next = "LAYER_SIZE"

            with m.State("LAYER_SIZE"):
                with m.If(size_over):
                    nack(Error.BAD_LAYER)
                with m.Elif(size_done):
                    m.d.sync += [
                        layer.eq(layer_word), layer_set.eq(1),
                        pixel_bytes.eq(Mux(layer_word.raw, lanes << 2, lanes)),
                    ]
                    with m.If(shape_changed):
                        m.d.sync += [weights_valid.eq(0), params_valid.eq(0)]
                    reply(Reply.LAYER_SET, _SRC_SMALL)
                with m.Else():
                    m.d.sync += [
                        tiles_left.eq(tiles_left - 1),
                        product.eq(product + layer_word.beats),
                        lanes.eq(lanes + cfg.cols),
                        size_done.eq(tiles_left == 1),
                        size_over.eq(product + layer_word.beats > cfg.weight_depth),
                    ]

            with m.State("REPLY"):
                m.d.comb += [
                    sender.header.valid.eq(1),
                    sender.header.payload.cmd.eq(reply_code),
                    sender.header.payload.tag.eq(tag),
                    sender.header.payload.length.eq(reply_len),
                ]
                with m.If(sender.header.ready):
                    m.next = "WAIT_TX"

            with m.State("WAIT_TX"):
                with m.If(~sender.busy):
                    m.d.sync += executing.eq(0)
                    m.next = "IDLE"

        # Reply payloads. Result bytes are read from the accelerator's output in place (no copy):
        # a vector is taken once its last byte is sent, its int8 lanes' low bytes, or in raw
        # mode all 4 bytes of every lane, little-endian.
        #
        # The byte offered to the sender is a register, and a result byte passes two more
        # before it: `lane_bytes` holds each lane's byte at `part` (its low byte unless raw),
        # `result_sel` the byte of lane `lane` among them, and `offered` the source's byte
        # (for results, `result_sel`), each of the cycle before. It is offered once it has
        # settled: the source had a byte in each of the last three cycles and no byte was
        # taken nor a vector released in them (the index, the result bytes and the vector
        # change only then), so it is never a stale one; at most one byte every five cycles
        # (every seven at a vector's end), far more than a UART takes. With the byte select and
        # the source select in one cycle, the select over the result vector (next to the
        # accelerator's output) ran across the die to the register by the sender, the
        # longest path of a full ULX3S build (82.0 MHz, 10.3 of its 12.2 ns routing);
        # combinational, it ran on through the sender into the UART's shift register and the
        # CRC (76.2 MHz, 10.7 ns of it routing); with the whole vector's byte select in one
        # cycle, the index register's route to it and six LUT levels were (98.7 MHz).
        vector = self.results.payload.as_value()
        lane = Signal(range(cfg.cols))
        part = Signal(2)
        last_part = Signal()
        last_byte = Signal()
        m.d.comb += [last_part.eq(~layer.raw | (part == 3)),
                     last_byte.eq(last_part & (lane == cfg.cols - 1))]
        lane_bytes = Array(Signal(8, name=f"lane{c}_byte") for c in range(cfg.cols))
        for c in range(cfg.cols):
            m.d.sync += lane_bytes[c].eq(vector.word_select(c, 32).word_select(part, 8))
        result_sel = Signal(8)
        m.d.sync += result_sel.eq(lane_bytes[lane])
        vector_valid = Signal()     # results.valid, a cycle late
        source_byte = Signal(8)
        source_valid = Signal()
        with m.Switch(source):
            with m.Case(_SRC_SMALL):
                m.d.comb += [source_valid.eq(1),
                             source_byte.eq(small.word_select(sender.index[:1], 8))]
            with m.Case(_SRC_IDENTITY):
                index = sender.index[:ceil_log2(IDENTITY_BYTES)]
                m.d.comb += [source_valid.eq(1),
                             source_byte.eq(identity.word_select(index, 8))]
            with m.Case(_SRC_STATUS):
                index = sender.index[:ceil_log2(STATUS_BYTES)]
                m.d.comb += [source_valid.eq(1),
                             source_byte.eq(status.word_select(index, 8))]
            with m.Case(_SRC_RESULT):
                m.d.comb += [source_valid.eq(vector_valid), source_byte.eq(result_sel)]
            if has_memory:
                with m.Case(_SRC_MEMORY):
                    m.d.comb += [source_valid.eq(mem_cmds.o_valid),
                                 source_byte.eq(mem_cmds.o_byte)]
        # A vector is released (results.ready) three cycles after its last byte was taken,
        # from a register (`release`) behind two (`took_result`, `took_last`), and its valid
        # is seen a cycle late (`vector_valid`): the results stream's register sits by the
        # accelerator's output, the sender by the UART's pin, and neither handshake runs
        # across the die through logic (combinational, the UART's ready ran through the
        # sender to the results stream's register, 65.5 MHz, 9 ns of routing; through one
        # register, 87.2 MHz).
        # The take of a result byte is registered (`took_result`) by the sender before it moves
        # `part` and `lane`, which sit by the vector: from the sender's state through the take
        # into their enables was the longest path of a full ULX3S build (98.0 MHz, 4.2 ns of
        # its route from the sender to the counters). Nothing is offered from the take to the
        # release nor in the three cycles after (the bytes then were read from the old index
        # or the old vector).
        offered = Signal(8)
        steady = Signal(2)      # the last two cycles: a byte, none taken, no vector released
        settled = Signal()
        taken = Signal()
        took = Signal()         # a byte was taken in the cycle before
        took_result = Signal()  # ... and it was a result byte
        took_last = Signal()
        release = Signal()
        m.d.comb += [
            taken.eq(sender.payload.valid & sender.payload.ready),
            sender.payload.valid.eq(source_valid & settled),
            sender.payload.payload.eq(offered),
            self.results.ready.eq(release),
        ]
        now_steady = source_valid & ~taken & ~took & ~took_last & ~release
        m.d.sync += [offered.eq(source_byte), steady.eq(Cat(now_steady, steady[0])),
                     settled.eq(now_steady & steady.all()),
                     took.eq(taken), took_result.eq(taken & (source == _SRC_RESULT)),
                     took_last.eq(0), release.eq(took_last),
                     vector_valid.eq(self.results.valid)]
        if has_memory:
            # The memory commands' bytes advance on a registered take, as the results do.
            took_memory = Signal()
            m.d.sync += took_memory.eq(taken & (source == _SRC_MEMORY))
            m.d.comb += mem_cmds.o_took.eq(took_memory)
        with m.If(took_result):
            with m.If(last_part):
                m.d.sync += part.eq(0)
                with m.If(last_byte):
                    m.d.sync += [took_last.eq(1), lane.eq(0)]
                with m.Else():
                    m.d.sync += lane.eq(lane + 1)
            with m.Else():
                m.d.sync += part.eq(part + 1)

        m.d.comb += self.busy.eq(~fsm.ongoing("IDLE") | receiver.active)
        return m

"""Board top level: the accelerator behind a UART running the framed command protocol."""

import numbers
from dataclasses import dataclass

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .link.controller import LinkController, check_link_params
from .link.protocol import Identity
from .link.memory import check_memory_params
from .link.uart import UARTReceiver, UARTTransmitter, uart_divisor
from .memory.bram import BlockRAMMemory
from .memory.port import NativePortSignature
from .params import check_config, rejected
from .stream_register import StreamRegister
from .top import PointwiseConv

__all__ = ["BoardLink", "BOARD_LINKS", "DEFAULT_MAX_PAYLOAD", "DEFAULT_FRAME_TIMEOUT",
           "BoardTop"]

#: Frame buffer size: 4 KiB is 8 of the iCE40UP5K's 30 block RAMs (4 Kbit each).
DEFAULT_MAX_PAYLOAD = 4096

#: Inter-byte timeout inside a frame, in seconds; generous for USB-serial bridges, which can
#: pause between USB packets.
DEFAULT_FRAME_TIMEOUT = 0.02


@dataclass(frozen=True)
class BoardLink:
    """Clock and baud rate of one board's USB-serial link."""

    clk_freq: int
    baud: int
    bridge: str

    @property
    def divisor(self):
        return uart_divisor(self.clk_freq, self.baud)


#: Fastest baud rate each board's USB bridge takes exactly from the board's own clock:
#:
#: - iCEBreaker, 12 MHz oscillator, FT2232H (12 Mbaud max, rates 12 MHz / (n + k/8)): the
#:   design runs on a 24 MHz PLL clock (see pwconv.synth.boards), where 6 Mbaud is 24 MHz / 4,
#:   divisor 4, the smallest the receiver takes, and 12 MHz / 2 on the bridge: exact on both
#:   sides. (At the bare 12 MHz oscillator the same divisor gives 3 Mbaud.)
#: - ULX3S, 25 MHz oscillator, FT231X (3 Mbaud max; 3 MHz / (n + k/8), n >= 2, plus 2 and
#:   3 Mbaud): the design runs on a 100 MHz PLL clock (see pwconv.synth.boards), where
#:   2 Mbaud is divisor 50, exact on both sides; 3 Mbaud would be divisor 33, 1% fast (a
#:   105 MHz clock would make it exact). At the bare 25 MHz oscillator only 1 Mbaud is exact.
BOARD_LINKS = {
    "icebreaker": BoardLink(clk_freq=24_000_000, baud=6_000_000, bridge="FT2232H"),
    "ulx3s":      BoardLink(clk_freq=100_000_000, baud=2_000_000, bridge="FT231X"),
}


class BoardTop(wiring.Component):
    """A :class:`PointwiseConv` driven over a UART by the pwconv link protocol.

    Host frames (``START`` 0xA5, command, tag, u16 length, payload, CRC-16/CCITT-FALSE) arrive
    on ``uart_rx``; each is received whole into a block-RAM buffer, CRC-checked, checked for
    sense and only then applied; the reply (an ACK with data, a RESULT frame, or a NACK naming
    the reason), tagged like its request, leaves on ``uart_tx``. See docs/protocol.md and
    :mod:`pwconv.hw.link.protocol` for the commands and
    :class:`~pwconv.hw.link.controller.LinkController` for the execution rules.

    Parameters
    ----------
    cfg : ArrayConfig
        The accelerator's configuration.
    clk_freq : int
        Frequency of the ``sync`` clock, in Hz.
    baud : int
        UART baud rate; ``round(clk_freq / baud)`` must be at least 4 and within 2% of it.
    max_payload : int
        Frame buffer size in bytes (largest payload of one frame).
    frame_timeout : float
        Longest pause between two bytes of one frame, in seconds; at least 2 byte times.
    register_streams : bool
        Put a :class:`~.stream_register.StreamRegister` on each stream between the link and the
        accelerator (pixels, weights, parameters, results): a block RAM's slow output (the
        output queue's, the frame buffer's) then ends at a register instead of running on
        through the other side's logic or across the chip to every weight memory (the longest
        paths at 100 MHz on ECP5). One cycle more per stream, a payload of flip-flops each;
        off where logic is scarce (iCE40).
    memory : NativePortSignature or None
        A board memory (the SDRAM controller's port): the top gets a ``mem`` port of this
        signature (master side) and the link its memory commands (MEM_INFO, MEM_WRITE,
        MEM_READ, MEM_CRC; :class:`~.link.memory.MemoryCommands`). None (the default, the
        iCEBreaker build): no memory logic at all.
    memory_size : int or None
        Bytes of that memory (default: the port's whole range).
    block_ram_memory : int or None
        Instead of ``memory``: bytes of a :class:`~.memory.bram.BlockRAMMemory` of 16-bit
        words inside the top, behind the memory commands (board-sim without SDRAM; a
        multiple of 2).

    Members
    -------
    uart_rx : In(1)
        Serial input, 8N1, idle high; asynchronous (synchronized inside).
    uart_tx : Out(1)
        Serial output, 8N1, idle high; registered.
    status_led : Out(1)
        High while a frame is being received or executed.
    mem : Out(memory)
        Only with ``memory``: the board memory's port.

    Timing: a byte takes ``10 * divisor`` cycles on each line; a frame is executed in about
    4 cycles per payload byte plus the accelerator's time, and a RUN's results stream out while
    its pixels are still being fed (the UART, not the array, sets the pace).
    """

    def __init__(self, cfg: ArrayConfig = ArrayConfig(), *, clk_freq, baud,
                 max_payload=DEFAULT_MAX_PAYLOAD, frame_timeout=DEFAULT_FRAME_TIMEOUT,
                 register_streams=False, memory=None, memory_size=None,
                 block_ram_memory=None):
        check_config(self, cfg)
        try:
            divisor = uart_divisor(clk_freq, baud)
        except (TypeError, ValueError) as error:
            raise rejected(self, error) from None
        if not isinstance(frame_timeout, numbers.Real) or isinstance(frame_timeout, bool):
            raise rejected(self, TypeError(
                f"Frame timeout must be a number of seconds, not {frame_timeout!r}"))
        timeout = round(frame_timeout * clk_freq)
        if timeout < 20 * divisor:
            raise rejected(self, ValueError(
                f"Frame timeout must be at least 2 byte times ({20 / baud:.3g} s at {baud} "
                f"baud), not {frame_timeout!r}"))
        try:
            check_link_params(cfg, max_payload=max_payload, timeout=timeout)
            if block_ram_memory is not None:
                if memory is not None:
                    raise ValueError("Give a memory port or a block RAM memory, not both")
                if (not isinstance(block_ram_memory, int) or isinstance(block_ram_memory, bool)
                        or block_ram_memory < 2 or block_ram_memory % 2):
                    raise ValueError(f"Block RAM memory must be a positive even number of "
                                     f"bytes, not {block_ram_memory!r}")
                depth = block_ram_memory // 2
                memory = NativePortSignature(addr_width=max(1, (depth - 1).bit_length()),
                                             data_width=16)
                memory_size = block_ram_memory
            if memory is not None:
                memory_size = check_memory_params(memory, memory_size)
        except (TypeError, ValueError) as error:
            raise rejected(self, error) from None
        self._memory = memory
        self._memory_size = memory_size
        self._block_ram_memory = block_ram_memory
        self._cfg = cfg
        self._clk_freq = clk_freq
        self._baud = baud
        self._divisor = divisor
        self._timeout = timeout
        self._max_payload = max_payload
        self._register_streams = bool(register_streams)
        self._identity = Identity.of(cfg, max_payload=max_payload, clk_freq=round(clk_freq),
                                     baud=round(baud), timeout=timeout)
        # A dict, not annotations: the memory port exists only with a memory.
        signature = {"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1), "status_led": Out(1)}
        if memory is not None and block_ram_memory is None:
            signature["mem"] = Out(memory)
        super().__init__(signature)

    @property
    def array_config(self):
        return self._cfg

    @property
    def divisor(self):
        """Clock cycles per UART bit."""
        return self._divisor

    @property
    def timeout_cycles(self):
        """Inter-byte timeout in clock cycles."""
        return self._timeout

    @property
    def max_payload(self):
        return self._max_payload

    @property
    def identity(self):
        """The :class:`~pwconv.hw.link.protocol.Identity` this board reports."""
        return self._identity

    @property
    def memory_size(self):
        """Bytes of board memory behind the memory commands (None: none)."""
        return self._memory_size

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = rx = UARTReceiver(self._divisor)
        m.submodules.uart_tx = tx = UARTTransmitter(self._divisor)
        m.submodules.link = link = LinkController(
            self._cfg, max_payload=self._max_payload, timeout=self._timeout,
            clk_freq=self._clk_freq, baud=self._baud, memory=self._memory,
            memory_size=self._memory_size)
        if self._block_ram_memory is not None:
            m.submodules.memory = bram = BlockRAMMemory(depth=self._block_ram_memory // 2,
                                                        data_width=16)
            wiring.connect(m, link.mem, bram.bus)
        elif self._memory is not None:
            wiring.connect(m, link.mem, wiring.flipped(self.mem))
        # The link loads weights and params while the accelerator is idle: one bank.
        m.submodules.accel = accel = PointwiseConv(self._cfg.single_bank())

        wiring.connect(m, rx.o, link.rx)
        wiring.connect(m, link.tx, tx.i)

        # A register on a stream changes no order between streams: the link sends each one in
        # its own command's frame, thousands of cycles after the last's (a byte takes
        # 10 * divisor cycles to arrive).
        def join(name, source, sink):
            if self._register_streams:
                m.submodules[name] = stage = StreamRegister(source.payload.shape())
                wiring.connect(m, source, stage.i)
                wiring.connect(m, stage.o, sink)
            else:
                wiring.connect(m, source, sink)
        join("pixels", link.pixels, accel.i)
        join("results", accel.o, link.results)
        join("weights", link.weights, accel.weights)
        join("params", link.params, accel.params)
        m.d.comb += [
            rx.rx.eq(self.uart_rx),
            self.uart_tx.eq(tx.tx),
            link.rx_error.eq(rx.error),
            link.rx_overrun.eq(rx.overrun),
            accel.layer.eq(link.layer),
            self.status_led.eq(link.busy),
        ]
        # The accelerator's idle only goes into STATUS replies: registered, so its logic (every
        # pipeline stage's valid) is not one path with the link's reply sender.
        acc_idle = Signal()
        m.d.sync += acc_idle.eq(accel.idle)
        m.d.comb += link.acc_idle.eq(acc_idle)
        return m

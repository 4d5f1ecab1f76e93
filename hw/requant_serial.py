"""Output stage sharing one requantization lane across all columns, for DSP-starved FPGAs."""

from amaranth.hdl import Cat, Module, Signal, signed
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .params import check_config, rejected
from .array import column_sum_layout
from .layouts import param_word, runtime_config
from .requant_lane import RequantLane

__all__ = ["SerialRequantizer"]


class SerialRequantizer(wiring.Component):
    """Per-channel requantization of completed column sums through one shared lane.

    Same arithmetic as :class:`~.requant.Requantizer` (a :class:`RequantLane`, bit-exact with
    TFLite), but one lane serves every column: a sum vector is held and its columns enter the
    lane one every ``cfg.requant_steps`` cycles, and results leave one column at a time. With
    ``requant_steps > 1`` the lane's 32 x 32 multiply is a small fabric multiplier, so the
    requantizer needs no DSP at all and every DSP can go to the array (the iCE40UP5K's eight
    SB_MAC16 give a 4x4 array of 16 MACs).

    Parameters
    ----------
    cfg : ArrayConfig
        With ``requantizer == "serial"``.

    Members
    -------
    sums : In(column_sum_layout), column_done : In(cols)
        Completed column sums as the array makes them, not de-skewed: column ``c``'s sum is
        taken in the cycle ``column_done[c]`` is high, the tile with column 0. Column ``c`` of
        a vector must come no later than ``c * requant_steps`` cycles after its column 0, and
        column 0s at most once every ``cfg.tile_interval`` = ``cols * requant_steps`` cycles
        (the array and the sequencer's schedule guarantee both; not checked). No handshake.
    result : Out(signed(32)), result_valid : Out(1)
        Requantized columns in column order: column ``c`` of a vector ``latency - (cols - 1 - c)
        * requant_steps`` cycles after its ``column_done[0]``. No handshake.
    config : In(runtime_config)
        Output zero point, activation range, raw and rounding mode (of ``cfg.roundings``); held
        stable while ``busy``.
    param : In(param_word), param_valid : In(1), param_ready : Out(1)
        Parameter writes, a stream: a word (bias, multiplier, shift of one column tile) is
        written one column per cycle and accepted (``param_ready``) with its last column, so a
        word takes ``cols`` cycles. Write only while not ``busy``.
    busy : Out(1)
        Some vector is inside.
    """

    def __init__(self, cfg: ArrayConfig):
        check_config(self, cfg)
        if cfg.requantizer != "serial":
            raise rejected(self, ValueError(
                f"SerialRequantizer needs requantizer='serial', not {cfg.requantizer!r}"))
        self._cfg = cfg
        super().__init__({
            "sums":         In(column_sum_layout(cfg)),
            "column_done":  In(cfg.cols),
            "result":       Out(signed(32)),
            "result_valid": Out(1),
            "config":       In(runtime_config(cfg)),
            "param":        In(param_word(cfg)),
            "param_valid":  In(1),
            "param_ready":  Out(1),
            "busy":         Out(1),
        })

    @staticmethod
    def latency_of(cfg: ArrayConfig):
        """Cycles from ``column_done[0]`` to the vector's last column on ``result``."""
        return (2 + RequantLane.latency_of(cfg.requant_steps, cfg.roundings,
                                        cfg.requant_multiply)
                + (cfg.cols - 1) * cfg.requant_steps)

    @property
    def latency(self):
        return self.latency_of(self._cfg)

    def elaborate(self, platform):
        cfg = self._cfg
        cols, steps = cfg.cols, cfg.requant_steps
        m = Module()

        # Parameters, one column per word: address tile * cols + column.
        entry = data.StructLayout({
            name: param_word(cfg)[name].shape.elem_shape
            for name in ("bias", "multiplier", "shift")})
        m.submodules.params = params = memory.Memory(
            shape=entry, depth=cfg.max_tiles * cols, init=[])
        read = params.read_port(domain="sync")
        write = params.write_port()

        # Writes: column `write_col` of the offered word this cycle.
        write_col = Signal(range(cols))
        m.d.comb += [
            self.param_ready.eq(write_col == cols - 1),
            write.addr.eq(self.param.addr * cols + write_col),
            write.data.bias.eq(self.param.bias[write_col]),
            write.data.multiplier.eq(self.param.multiplier[write_col]),
            write.data.shift.eq(self.param.shift[write_col]),
            write.en.eq(self.param_valid),
        ]
        with m.If(self.param_valid):
            with m.If(self.param_ready):
                m.d.sync += write_col.eq(0)
            with m.Else():
                m.d.sync += write_col.eq(write_col + 1)

        # Issue: hold each column as it completes; one column enters the lane every `steps`
        # cycles, starting the cycle after column 0 completes.
        held = Signal(self.sums.acc.shape(), reset_less=True)
        held_tile = Signal.like(self.sums.tile, reset_less=True)
        active = Signal()
        column = Signal(range(cols))
        phase = Signal(range(steps))
        issue = Signal()
        m.d.comb += [
            issue.eq(active & (phase == 0)),
            read.addr.eq(held_tile * cols + column),
        ]
        for c in range(cols):
            with m.If(self.column_done[c]):
                m.d.sync += held[c].eq(self.sums.acc[c])
        if steps > 1:
            with m.If(active):
                m.d.sync += phase.eq(phase + 1)
                with m.If(phase == steps - 1):
                    m.d.sync += phase.eq(0)
        with m.If(issue):
            with m.If(column == cols - 1):
                m.d.sync += [active.eq(0), column.eq(0)]
            with m.Else():
                m.d.sync += column.eq(column + 1)
        # A new vector starts no earlier than the cycle its predecessor's last column issues.
        with m.If(self.column_done[0]):
            m.d.sync += [held_tile.eq(self.sums.tile), active.eq(1), column.eq(0), phase.eq(0)]

        # The lane, one cycle behind the issue (the parameter read).
        lane_valid = Signal()
        lane_sum = Signal(cfg.acc_shape, reset_less=True)
        m.d.sync += [lane_valid.eq(issue), lane_sum.eq(held[column])]
        # The add-then-shift rounding: the smaller one on iCE40, where logic is what limits.
        m.submodules.lane = lane = RequantLane(sum_shape=cfg.acc_shape, steps=steps,
                                               roundings=cfg.roundings, divide="add")
        m.d.comb += [
            lane.valid.eq(lane_valid),
            lane.sum.eq(lane_sum),
            lane.bias.eq(read.data.bias),
            lane.multiplier.eq(read.data.multiplier),
            lane.shift.eq(read.data.shift),
            lane.output_zero_point.eq(self.config.output_zero_point),
            lane.activation_min.eq(self.config.activation_min),
            lane.activation_max.eq(self.config.activation_max),
            lane.raw.eq(self.config.raw),
            lane.rounding.eq(self.config.rounding),
            self.result.eq(lane.result),
            self.result_valid.eq(lane.result_valid),
            self.busy.eq(Cat(self.column_done, active, lane_valid, lane.busy).any()),
        ]
        return m

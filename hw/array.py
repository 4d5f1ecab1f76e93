"""The weight-stationary systolic array: skew, a grid of PEs, column accumulators and de-skew."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from .params import check_config
from .delay import delay_line, delayed
from .ice40_mac import DualMul8x8
from .layouts import _addr, bank_address, pixel_beat, weight_word
from .pe import ProcessingElement

__all__ = ["SystolicArray", "beat_layout", "column_sum_layout", "multiplier_groups"]


def beat_layout(cfg: ArrayConfig):
    """One beat entering the array: channels, weight address and the beat's place in its pixel."""
    return data.StructLayout({
        "x":     pixel_beat(cfg),
        "addr":  _addr(cfg.weight_memory_depth),   # bank and address in the weight memory
        "tile":  _addr(cfg.param_depth),           # bank and tile in the parameter memory
        "first": unsigned(1),   # first beat of a (pixel, column tile): restart the accumulators
        "last":  unsigned(1),   # last beat of a (pixel, column tile): the sums are complete
    })


def column_sum_layout(cfg: ArrayConfig):
    """A completed (pixel, column tile): ``cols`` exact sums over all C products, and the tile."""
    return data.StructLayout({
        "acc":  data.ArrayLayout(cfg.acc_shape, cfg.cols),
        "tile": _addr(cfg.param_depth),
    })


def multiplier_groups(cfg: ArrayConfig):
    """The PEs that share one multiplier primitive, as tuples of ``(row, col)``.

    ``"infer"`` and ``"ecp5_mult18"``: one PE per group. ``"ice40_dual8x8"``: PEs ``(r, c)`` and ``(r, c + 1)`` share
    one SB_MAC16 (even ``c``); with an odd ``cols`` the last column pairs ``(r, cols - 1)`` with
    ``(r + 1, cols - 1)``; if ``rows`` is odd too, PE ``(rows - 1, cols - 1)`` is alone on its
    cell. So ``ceil(rows * cols / 2)`` cells in all. Products are independent, so any pairing
    would be exact; these pairings put the second PE exactly one step later along the systolic
    skew than the first, which lets the pair share one weight memory (its read delayed a cycle).
    """
    if cfg.mac_style != "ice40_dual8x8":
        return [((r, c),) for r in range(cfg.rows) for c in range(cfg.cols)]
    groups = [((r, c), (r, c + 1)) for r in range(cfg.rows) for c in range(0, cfg.cols - 1, 2)]
    if cfg.cols % 2:
        last = cfg.cols - 1
        groups += [((r, last), (r + 1, last)) for r in range(0, cfg.rows - 1, 2)]
        if cfg.rows % 2:
            groups.append(((cfg.rows - 1, last),))
    return groups


class SystolicArray(wiring.Component):
    """A ``rows`` x ``cols`` grid of int8 MACs, weight-stationary, folding C and F in time.

    Dataflow: beat lane ``r`` (input channel) enters row ``r`` after an input skew of ``r``
    cycles and flows right one PE per cycle; partial sums flow down one PE per cycle, so column
    ``c`` completes a beat's dot product ``c`` cycles after column 0. Each column accumulates the
    beats of one (pixel, column tile) from ``first`` to ``last``, then the output de-skew delays
    column ``c`` by ``cols - 1 - c`` cycles so that all ``cols`` sums leave together.

    Each PE's weights of every (column tile, beat) of the layer are at address
    ``tile * beats + beat`` (of its bank): weights stay put while pixels stream, and a layer
    with C > rows or F > cols keeps every MAC busy every cycle (one beat per cycle, no
    reloads). The weights of one array row share one memory, ``cols`` bytes wide, read once per
    beat at the row's address and skewed to its PEs through short delay lines.

    With ``cfg.mac_style == "ice40_dual8x8"`` the products of the PEs in each of
    :func:`multiplier_groups` come from one :class:`~.ice40_mac.DualMul8x8` (an SB_MAC16 when
    elaborated for iCE40, its Amaranth model elsewhere) and the group's weights share one memory
    (two PEs' bytes in one 16-bit-wide block RAM word); the PEs add and register the products as
    usual, so arithmetic and timing are the same in both styles.

    Members
    -------
    beat : In(beat_layout), beat_valid : In(1)
        One beat per cycle when valid; no handshake (the array never stalls).
    sums : Out(column_sum_layout), sums_valid : Out(1), column_done : Out(cols)
        A completed (pixel, column tile): all its sums together with ``sums_valid``,
        ``latency`` cycles after its last beat entered. With ``cfg.requantizer == "serial"``
        the sums are not de-skewed: column ``c``'s sum is on ``sums.acc[c]`` only in the cycle
        ``column_done[c]`` is high, ``latency - (cols - 1 - c)`` cycles after the last beat
        (``sums.tile`` is valid with ``column_done[0]``).
    weight : In(weight_word), weight_en : In(1), weight_bank : In(1)
        Weight write port: ``load_width`` rows of address ``weight.addr`` of bank
        ``weight_bank`` per cycle. With one memory per row (``infer``, ``ecp5_mult18``) a
        write reaches row ``r`` ``r`` cycles after it entered, as a beat's reads do, so every
        beat reads the weights written before it and none written after it, with no gap
        between them. With ``ice40_dual8x8`` every row is written at once: write a bank only
        while no beat that reads it is inside.
    busy : Out(1)
        Some beat is still inside the array.

    Timing: latency ``cfg.array_latency`` = ``rows + cols + 1 + cfg.mac_latency`` cycles from
    the last beat to ``sums_valid``;
    throughput one beat per cycle, i.e. ``rows * cols`` MACs per cycle.
    """

    def __init__(self, cfg: ArrayConfig):
        check_config(self, cfg)
        self._cfg = cfg
        super().__init__({
            "beat":       In(beat_layout(cfg)),
            "beat_valid": In(1),
            "sums":       Out(column_sum_layout(cfg)),
            "sums_valid": Out(1),
            "column_done": Out(cfg.cols),
            "weight":     In(weight_word(cfg)),
            "weight_en":  In(1),
            "weight_bank": In(1),
            "busy":       Out(1),
        })

    @property
    def config(self):
        return self._cfg

    @property
    def latency(self):
        """Cycles from a beat entering to its column sums leaving: ``cfg.array_latency``."""
        return self._cfg.array_latency

    def elaborate(self, platform):
        cfg = self._cfg
        m = Module()

        # Control travels beside the data: valid[d] and control[d] are the beat that entered d
        # cycles ago. Only the valid bits are reset; the rest is read only where its valid bit
        # is set, so it is reset_less (the reset net's fanout stays small).
        control_layout = data.StructLayout({
            "first": 1, "last": 1, "tile": self.beat.tile.shape()})
        entering = Signal(control_layout, name="control_d0")
        m.d.comb += [
            entering.first.eq(self.beat.first),
            entering.last.eq(self.beat.last),
            entering.tile.eq(self.beat.tile),
        ]
        valid = delay_line(m, self.beat_valid, self.latency, name="valid", reset_less=False)
        control = delay_line(m, entering, self.latency, name="control")
        # busy: any stage valid. The stages after the first are last cycle's stages but the
        # last, so their OR is registered: one gate after the incoming beat_valid, no OR tree
        # (a long path into the sequencer and the link otherwise).
        later_busy = Signal()
        m.d.sync += later_busy.eq(Cat(*valid[:-1]).any())
        m.d.comb += self.busy.eq(valid[0] | later_busy)

        # Weight writes: row r takes lane group r % load_width of transfers to its row group.
        write_addr = Signal(_addr(cfg.weight_memory_depth))
        m.d.comb += write_addr.eq(bank_address(self.weight.addr, self.weight_bank,
                                               cfg.weight_depth))

        def write_row(r, en, word):
            """Whether transfer ``word`` (valid with ``en``) writes PE row ``r``."""
            return en & (word.row == r // cfg.load_width)

        def write_lane(r, c, word):
            """The byte of transfer ``word`` for PE (``r``, ``c``)."""
            return word.data[(r % cfg.load_width) * cfg.cols + c]

        # The grid. PE (r, c) sees the weight address at cycle t + r + c and x at t + r + c + 1.
        external = cfg.mac_style == "ice40_dual8x8"
        pes = [[None] * cfg.cols for _ in range(cfg.rows)]
        for r in range(cfg.rows):
            for c in range(cfg.cols):
                pe = ProcessingElement(
                    depth=cfg.weight_memory_depth,
                    psum_in_shape=cfg.psum_shape(r) if r > 0 else None,
                    psum_out_shape=cfg.psum_shape(r + 1),
                    external_product=external, weight_memory=False,
                    mac_latency=cfg.mac_latency,
                    fabric_multiplier=r * cfg.cols + c >= cfg.macs - cfg.lut_macs)
                m.submodules[f"pe_{r}_{c}"] = pes[r][c] = pe
                if c == 0:      # input skew: row r starts r cycles late
                    m.d.comb += [
                        pe.addr_in.eq(delayed(m, self.beat.addr, r, name=f"addr_skew{r}")),
                        pe.x_in.eq(delayed(m, self.beat.x[r], r + 1, name=f"x_skew{r}")),
                    ]
                else:
                    m.d.comb += [
                        pe.addr_in.eq(pes[r][c - 1].addr_out),
                        pe.x_in.eq(pes[r][c - 1].x_out),
                    ]
                if r > 0:
                    m.d.comb += pe.psum_in.eq(pes[r - 1][c].psum_out)

        # One wide weight memory per row (``infer``): row r's PEs see every address one cycle
        # apart along the skew, so the row's word is read at PE (r, 0)'s address and column c's
        # byte delayed c cycles. One address bus per row instead of one per PE: far fewer nets
        # for the router, and the same block RAMs (a row's bytes side by side).
        #
        # A write travels down the rows as the reads do: row r's memory takes it r cycles after
        # it entered, when the reads of the beats that entered with it arrive there too. So each
        # memory sees writes and reads in the order they entered (a beat after a write reads
        # the new weight), and no write net spans the array: each stage drives one row's block
        # RAMs and the next stage (on the ULX3S one address register drove all 96 otherwise).
        if not external:
            write_layout = data.StructLayout({
                "row": self.weight.row.shape(), "addr": write_addr.shape(),
                "data": self.weight.data.shape()})
            entering_write = Signal(write_layout, name="weight_write_d0")
            m.d.comb += [entering_write.row.eq(self.weight.row),
                         entering_write.addr.eq(write_addr),
                         entering_write.data.eq(self.weight.data)]
            write_en = delay_line(m, self.weight_en, cfg.rows - 1, name="weight_write_en",
                                  reset_less=False)
            write_word = delay_line(m, entering_write, cfg.rows - 1, name="weight_write")
            for r in range(cfg.rows):
                m.submodules[f"weights_row{r}"] = weights = memory.Memory(
                    shape=data.ArrayLayout(signed(8), cfg.cols), depth=cfg.weight_memory_depth,
                    init=[])
                read = weights.read_port(domain="sync")
                write = weights.write_port(granularity=1)
                word = write_word[r]
                m.d.comb += [read.addr.eq(pes[r][0].addr_in), write.addr.eq(word.addr)]
                for c in range(cfg.cols):
                    m.d.comb += [
                        write.data[c].eq(write_lane(r, c, word)),
                        write.en[c].eq(write_row(r, write_en[r], word)),
                        pes[r][c].w_in.eq(delayed(m, read.data[c], c, name=f"weight_{r}_{c}")),
                    ]

        # Shared multipliers: each PE's product x_in * w[addr] comes from one half of a cell, and
        # the cell's PEs share one weight memory, a byte per PE per address. The second PE of a
        # group sees every address one cycle after the first (it is one step further along the
        # skew), so the memory is read at the first PE's address and the second byte is delayed
        # one cycle. Two PEs' 8-bit weights so fill one 16-bit-wide block RAM, not two.
        if external:
            for group in multiplier_groups(cfg):
                name = "_".join(f"{r}_{c}" for r, c in group)
                m.submodules[f"mul_{name}"] = mul = DualMul8x8(latency=cfg.mac_latency)
                m.submodules[f"weights_{name}"] = weights = memory.Memory(
                    shape=data.ArrayLayout(signed(8), len(group)), depth=cfg.weight_memory_depth,
                    init=[])
                read = weights.read_port(domain="sync")
                write = weights.write_port(granularity=1)
                (r0, c0) = group[0]
                assert all(r + c == r0 + c0 + k for k, (r, c) in enumerate(group)), group
                m.d.comb += [read.addr.eq(pes[r0][c0].addr_in), write.addr.eq(write_addr)]
                halves = [(mul.a0, mul.b0, mul.p0), (mul.a1, mul.b1, mul.p1)]
                for k, ((r, c), (a, b, p)) in enumerate(zip(group, halves)):
                    pe = pes[r][c]
                    m.d.comb += [
                        write.data[k].eq(write_lane(r, c, self.weight)),
                        write.en[k].eq(write_row(r, self.weight_en, self.weight)),
                        a.eq(pe.x_in),
                        b.eq(delayed(m, read.data[k], k, name=f"weight_{r}_{c}")),
                        pe.product.eq(p),
                    ]

        # Column c's dot product for a beat leaves row rows-1 at t + rows + c + 1 + mac_latency:
        # accumulate the beats of a (pixel, tile) there. For a parallel requantizer, de-skew so
        # that all columns leave at t + latency; a serial one takes each column as it completes.
        deskew = cfg.requantizer == "parallel"
        for c in range(cfg.cols):
            acc = Signal(cfg.acc_shape, name=f"acc{c}", reset_less=True)
            arrive = cfg.rows + c + 1 + cfg.mac_latency
            with m.If(valid[arrive]):
                m.d.sync += acc.eq(Mux(control[arrive].first, 0, acc)
                                   + pes[cfg.rows - 1][c].psum_out)
            done = arrive + 1
            m.d.comb += self.column_done[c].eq(valid[done] & control[done].last)
            if deskew:
                acc = delayed(m, acc, cfg.cols - 1 - c, name=f"acc{c}_deskew")
            m.d.comb += self.sums.acc[c].eq(acc)
        tile_stage = control[-1] if deskew else control[cfg.rows + 2 + cfg.mac_latency]
        m.d.comb += [
            self.sums_valid.eq(valid[-1] & control[-1].last),
            self.sums.tile.eq(tile_stage.tile),
        ]
        return m

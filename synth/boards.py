"""The boards pwconv builds bitstreams for, with each board's default array and why."""

from dataclasses import dataclass, replace

from pwconv.config import ArrayConfig
from pwconv.hw.board import BOARD_LINKS

__all__ = ["Board", "BOARDS", "board", "requant_dsps", "array_dsps"]


@dataclass(frozen=True)
class Board:
    """One FPGA board: its amaranth-boards platform, default accelerator and clock.

    Attributes
    ----------
    name : str
        Name on the command line (``pwconv bitstream --board NAME``).
    family : str
        ``"ice40"`` or ``"ecp5"``.
    platform : str
        ``module:Class`` of the amaranth-boards platform.
    config : ArrayConfig
        The default accelerator: the largest array that fits and meets timing (see ``why``).
    clk_freq : int
        The ``sync`` clock the design is built for, in Hz (a PLL makes it when it differs from
        the board oscillator's ``osc_freq``); nextpnr must meet it.
    osc_freq : int
        The board oscillator (amaranth-boards ``default_clk``), in Hz.
    baud : int
        UART baud rate of the link (exact, or within 2%, at ``clk_freq``).
    dsp_cell : str
        The multiplier primitive counted as "DSP" in reports.
    synth_opts : str
        Options of Yosys's ``synth_<family>`` (iCE40: ``-dsp``, without which no multiplier
        goes to an SB_MAC16).
    why : str
        Why this array size and clock, for the reports.
    pnr_opts : str
        Extra nextpnr options. The ULX3S uses nextpnr's analytic ``static`` placer: on the
        full 32x6 build it placed in 8 minutes instead of HeAP's 13 to 16, with less wire, and
        router1 then finished in 11 minutes instead of more than 25 (76.6 MHz vs 61 MHz on the
        same netlist before the LUT MACs were cut in two). router2 was tried too: no faster to
        converge on the full design and far worse timing, 83 MHz instead of 104 on the 2x2
        build.
    seed : int
        nextpnr's placement seed (``pwconv bitstream --seed`` overrides it). On a design that
        fills the die the seed moves Fmax by several MHz and place and route by tens of
        minutes: the ULX3S netlist of this default gave 104.4 MHz in 20 minutes with seed 4
        and 96.5 MHz in 58 minutes with seed 1 (docs/performance.md).
    register_streams : bool
        Build the board top with a register on each stream between the link and the
        accelerator (see
        :class:`pwconv.hw.board.BoardTop`).
    sdram_clk_freq : int or None
        The board's SDRAM (amaranth-boards ``sdram`` resource) behind the link's memory
        commands, its controller (:class:`pwconv.hw.memory.board_memory.BoardMemory`) in a
        domain of its own at this clock, in Hz, made by the same PLL (with a copy shifted 180
        degrees for the SDRAM clock pin); None: no board memory.
    """

    name: str
    family: str
    platform: str
    config: ArrayConfig
    clk_freq: int
    osc_freq: int
    baud: int
    dsp_cell: str
    synth_opts: str
    why: str
    pnr_opts: str = ""
    seed: int = 1
    register_streams: bool = False
    sdram_clk_freq: int | None = None

    def with_options(self, **changes):
        """This board with some of its own fields (clock, synthesis options...) changed."""
        return replace(self, **changes)

    def with_config(self, **changes):
        """This board with some :class:`ArrayConfig` fields changed. Unless ``lut_macs`` is
        one of them, a new array shape keeps the default's DSP budget: its PEs beyond the DSPs
        the default gives the array build their products in fabric."""
        cfg = self.config
        if "lut_macs" not in changes and cfg.mac_style != "ice40_dual8x8" and (
                "rows" in changes or "cols" in changes):
            dsp_macs = cfg.macs - cfg.lut_macs
            macs = changes.get("rows", cfg.rows) * changes.get("cols", cfg.cols)
            changes["lut_macs"] = max(0, macs - dsp_macs)
        return replace(self, config=replace(cfg, **changes))

    def make_platform(self):
        module, name = self.platform.split(":")
        return getattr(__import__(module, fromlist=[name]), name)()


def requant_dsps(board: Board, cfg: ArrayConfig):
    """DSP cells of the requantizer: four 16 x 16 products (SB_MAC16 or MULT18X18D) per lane
    whose 32 x 32 multiply is on DSPs (``requant_multiply="dsp"``): ``cols`` lanes in the
    parallel requantizer, one in the serial; none for a lane in fabric."""
    if cfg.requant_multiply == "fabric":
        return 0
    return 4 * (cfg.cols if cfg.requantizer == "parallel" else 1)


def array_dsps(board: Board, cfg: ArrayConfig):
    """DSP cells of the systolic array: one per PE but the ``lut_macs`` built in fabric, or one
    per pair of PEs in the iCE40 2 x 8x8 mode (``ceil(rows * cols / 2)``)."""
    if cfg.mac_style == "ice40_dual8x8":
        return -(-cfg.macs // 2)
    return cfg.macs - cfg.lut_macs


# --- The per-board defaults: the one place they are recorded. -----------------------------

ICEBREAKER = Board(
    name="icebreaker",
    family="ice40",
    platform="amaranth_boards.icebreaker:ICEBreakerPlatform",
    config=ArrayConfig(rows=4, cols=4, max_channels=512, max_filters=256, weight_depth=256,
                       mac_style="ice40_dual8x8", requantizer="serial", requant_steps=4,
                       weight_banks=1, roundings=("double",)),
    clk_freq=BOARD_LINKS["icebreaker"].clk_freq,
    osc_freq=12_000_000,
    baud=BOARD_LINKS["icebreaker"].baud,
    dsp_cell="SB_MAC16",
    synth_opts="",
    why=(
        "The UP5K has 8 SB_MAC16, 30 EBR and 5280 logic cells. In the 2 x 8x8 mode "
        "(`ice40_dual8x8`, instantiated by hand: Yosys infers only 16x16) the 8 SB_MAC16 carry "
        "16 MACs, a 4x4 array, so nothing is left for the requantizer's 32 x 32 multiply (4 "
        "SB_MAC16 per column with one requantizer per column). The serial requantizer shares "
        "one lane across the 4 columns and builds its multiply in fabric: 8 bits of the "
        "multiplier per cycle (`requant_steps=4`) as 4 radix-4 rows on carry chains, each "
        "adding 0, a, 2a or 3a (3a computed once per multiply). So Yosys runs without `-dsp` "
        "and every SB_MAC16 is an array cell. The price is pace: one column every 4 cycles, a "
        "(pixel, column tile) every 16, so the array is at full rate for C >= 64 and at C / 64 "
        "of it below (16 bits per cycle would need about 420 more LUTs than are left). The "
        "6 Mbaud link is slower than either: at 40 cycles per byte a pixel's F result bytes "
        "take 40 F cycles to leave, more than its max(ceil(C / 4), 16) x ceil(F / 4) cycles of "
        "compute for every C up to the 512 this build takes. Logic is the limit (98%): "
        "Yosys's own LUT multiplier for a digit takes about 2.5x the LUTs of explicit rows, "
        "and the link reads each result vector in place instead of copying it (about 220 "
        "cells); with one row per bit, the 8-bit digit needed 5223 cells, with a copy 5443. "
        "Each pair of PEs on one SB_MAC16 shares one 256 x 16 weight memory (8 EBR for 16 "
        "PEs); with the parameter memory (256 columns x 70 bits, 5), the pixel buffer (2), the "
        "column queue (2) and the link's 4 KiB frame buffer (8), 25 of 30 EBR; one weight "
        "bank, since the link loads while the accelerator is idle (two would need 8 more EBR). "
        "An SB_PLL40_PAD (configured by icepll, `synth/clocks.py`) makes 24 MHz from the "
        "12 MHz oscillator, where the link runs at 6 Mbaud (divisor 4, the receiver's "
        "smallest; 12 MHz / 2 on the FT2232H: exact on both sides). What made 24 MHz: the "
        "serial lane's digit multiply is a pipelined tree (its radix-4 rows summed in pairs, "
        "registered, then one accumulate adder: one carry chain per cycle instead of four; "
        "two more cycles of latency, no more cells, since an iCE40 logic cell's flip-flop "
        "comes free with its LUT), the array's busy flag is an OR registered beside the "
        "pipeline instead of a sum, and the accelerator's idle is registered before the link's "
        "STATUS reply. The SB_MAC16 cells register their operands and products themselves "
        "(A_REG, B_REG, the 8x8 MULT_REGs: the PEs' two pipeline stages, no logic cells), so "
        "nextpnr times every path into and out of them. "
        "An 8x1 array with a per-column "
        "requantizer on 4 SB_MAC16 (an earlier default) gave 8 MACs at 19 MHz Fmax."),
)

ULX3S = Board(
    name="ulx3s",
    family="ecp5",
    platform="amaranth_boards.ulx3s:ULX3S_85F_Platform",
    config=ArrayConfig(rows=32, cols=6, max_channels=2048, max_filters=2048, weight_depth=1024,
                       weight_banks=1, lut_macs=36, mac_style="ecp5_mult18",
                       requant_multiply="fabric", roundings=("double", "ruy", "float")),
    clk_freq=BOARD_LINKS["ulx3s"].clk_freq,
    osc_freq=25_000_000,
    baud=BOARD_LINKS["ulx3s"].baud,
    dsp_cell="MULT18X18D",
    synth_opts="",
    pnr_opts="--placer static",
    seed=4,
    register_streams=True,
    # LiteDRAM alone placed at 89.8-106.1 MHz over eight seeds (make sdram-fmax), six short
    # of 100 MHz: beside the array it gets a domain of its own at half the array's clock.
    sdram_clk_freq=50_000_000,
    why=(
        "The LFE5U-85F has 156 MULT18X18D, 208 DP16KD and 83,640 LUT4s. Every MULT18X18D is "
        "an array MAC: each PE's 8x8 product is on one, instantiated with the cell's own operand "
        "and product registers (`mac_style=\"ecp5_mult18\"`; Yosys infers the cell but leaves "
        "its registers unused, and a route into it plus its 3.9 ns multiply was the critical "
        "path, 87.0 MHz), and the 36 PEs beyond the 156 (`lut_macs`, the last six rows) build "
        "theirs from fabric adders (eight shifted partial products in a three-level tree, "
        "registered after its first two levels: in one cycle it was the critical path, 76.6 "
        "MHz), so 32x6 = 192 MACs. The requantizer is off "
        "the DSPs: one lane per column at a result vector per cycle (full rate for every "
        "MobileNetV2 layer), each lane's 32 x 32 multiply in fabric "
        "(`requant_multiply=\"fabric\"`: 16 radix-4 rows and a four-level registered adder "
        "tree); three rounding modes (double, ruy, float: the TFLite reference, ruy and "
        "XNNPACK / ONNX Runtime; single, TFLite's compile-time option, costs about 500 LUTs "
        "per lane and is left out). Each PE is pipelined (`ArrayConfig.mac_latency`, 4: weight "
        "read, multiplier inputs and output registered, and the product again beside the "
        "adder), each array row's weights are one "
        "48-bit-wide memory (three DP16KD, one address bus per row instead of one per PE), "
        "and every lane stage is one carry chain or one shifter: the parameter read, the "
        "operand shift's amount and float's exponent are computed a stage ahead, the "
        "rounding shift's tie test is its round bit and a sticky OR (no comparator), SRDHM's "
        "saturation is compared on the fixed-point operands. The link's four streams "
        "pass a register each (`register_streams`), so no block RAM output runs on through "
        "the other side's logic, and the one-bank load gate is a register (from the pipeline's "
        "valid bits to the parameter stream's register it was the longest path, 77 MHz). The PLL (EHXPLLL, configured by ecppll) makes 100 MHz from "
        "the 25 MHz oscillator, where 2 Mbaud is exact (divisor 50). 32 rows keep MobileNetV2's C >= 32 layers at full rate (C = 16 and 24 at "
        "50% and 75%) and 6 columns divide most of its F. Weight depth 1024, one bank: the "
        "link loads while the accelerator is idle."),
)


#: Every supported board by name.
BOARDS = {b.name: b for b in (ICEBREAKER, ULX3S)}


def board(name):
    """The :class:`Board` called ``name``; raises ValueError naming the choices otherwise."""
    try:
        return BOARDS[name]
    except KeyError:
        raise ValueError(f"Board must be one of {', '.join(BOARDS)}, not {name!r}") from None

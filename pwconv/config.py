"""The one source of truth for an accelerator's configuration: hw, golden, host and reports."""

import numbers
from dataclasses import dataclass

import numpy as np

from pwconv.golden.requant import ROUNDINGS

__all__ = ["ArrayConfig", "MAC_STYLES", "REQUANTIZERS", "REQUANT_STEPS", "REQUANT_MULTIPLIES",
           "ROUNDINGS",
           "WEIGHT_BANKS", "PRODUCT_MIN", "PRODUCT_MAX", "VERSION"]

#: Extremes of one int8 x int8 product: -128 * 127 and -128 * -128.
PRODUCT_MIN = -128 * 127
PRODUCT_MAX = 128 * 128

#: How the array's multipliers are built: ``"infer"`` lets synthesis map each PE's ``x * w``
#: (one 16x16 DSP per PE on iCE40); ``"ice40_dual8x8"`` computes two PEs' products on one iCE40
#: SB_MAC16 in its 2 x 8x8 mode; ``"ecp5_mult18"`` computes each PE's product on one ECP5
#: MULT18X18D between the cell's own operand and product registers, which Yosys does not use
#: when it infers the cell (:class:`pwconv.hw.ecp5_mac.RegisteredMul8x8`). Both primitives
#: have an equivalent Amaranth model elsewhere.
MAC_STYLES = ("infer", "ice40_dual8x8", "ecp5_mult18")

#: How the output channels are requantized: ``"parallel"``, one pipelined requantizer per array
#: column (a 32 x 32 multiply each: 4 DSPs on iCE40 and ECP5), a result vector every cycle;
#: ``"serial"``, one requantizer shared by all columns, one column every ``requant_steps``
#: cycles, its 32 x 32 multiply done in fabric as ``requant_steps`` digit steps (no DSP).
REQUANTIZERS = ("parallel", "serial")

#: Allowed ``requant_steps`` of the serial requantizer: the multiply takes 32 / steps bits of
#: the multiplier per cycle.
REQUANT_STEPS = (1, 2, 4, 8)

#: How a one-step requantizer lane (``requant_steps=1``) does its 32 x 32 multiply: ``"dsp"``,
#: four 16 x 16 DSP products; ``"fabric"``, a pipelined radix-4 adder tree in LUTs (no DSP,
#: two more cycles), for FPGAs whose DSPs are all array MACs. Lanes of more steps are always
#: in fabric.
REQUANT_MULTIPLIES = ("dsp", "fabric")

#: Allowed ``weight_banks``: 1, weights and parameters load while the accelerator is idle; 2,
#: they are double-buffered, so the next pass loads while this one computes.
WEIGHT_BANKS = (1, 2)

#: Gateware version reported by the board's identity command (major, minor).
VERSION = (0, 3)


def _check_int(name, value, lo, hi=None):
    # numbers.Integral: Python and NumPy integers alike (np.int64 from an array's shape); bool
    # is an Integral too but never a size.
    if not isinstance(value, numbers.Integral) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < lo or (hi is not None and value > hi):
        bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ValueError(f"{name} must be {bound}, not {value}")


@dataclass(frozen=True)
class ArrayConfig:
    """Elaboration parameters of one pwconv accelerator.

    Parameters
    ----------
    rows : int
        Input channels the systolic array takes per cycle (array height), 1..64.
    cols : int
        Output channels the array produces per cycle (array width), 1..64.
    max_channels : int
        Largest run-time C. A pixel of C channels streams in as ``ceil(C / rows)`` beats; the
        accumulators are sized so that no C up to this value can overflow them.
    max_filters : int
        Largest run-time F; ``ceil(F / cols)`` column tiles are served per pixel.
    weight_depth : int
        Weight words per processing element: a layer fits on chip when
        ``ceil(C / rows) * ceil(F / cols) <= weight_depth``; the host tiles larger layers.
    mac_style : str
        One of :data:`MAC_STYLES`. Changes only how the products are mapped to the FPGA, never
        the arithmetic or the timing.
    requantizer : str
        One of :data:`REQUANTIZERS`.
    requant_steps : int
        Cycles the serial requantizer spends on one column, one of :data:`REQUANT_STEPS`;
        must be 1 with the parallel requantizer. A (pixel, column tile) then takes
        ``max(beats, tile_interval)`` cycles: the array runs at full rate while
        ``ceil(C / rows) >= cols * requant_steps``.
    roundings : tuple of str
        The requantization rounding modes the build includes (a layer picks one at run time),
        a non-empty tuple of distinct names from :data:`ROUNDINGS` (see
        :func:`pwconv.golden.requantize`): all four by default; a small FPGA can leave some out.
    requant_multiply : str
        One of :data:`REQUANT_MULTIPLIES`: where a one-step lane's 32 x 32 multiply is built
        (DSPs or fabric); always ``"fabric"`` when ``requant_steps > 1`` (set so).
    weight_banks : int
        One of :data:`WEIGHT_BANKS`. With 2, every weight and parameter memory holds two banks
        of ``weight_depth`` (``max_tiles``) words: the host loads the next pass into one bank
        and commits it while the array computes from the other (``PointwiseConv.commit``). With
        1 there is one bank, loaded while the accelerator is idle (what the board link does).
    load_width : int
        Weight words the load port takes per cycle, 1..rows: a weight word is one array row's
        ``cols`` weights at one address, so a transfer writes ``load_width`` consecutive rows.
    lut_macs : int
        With ``mac_style`` ``"infer"`` or ``"ecp5_mult18"``: how many PEs (the last ones, row by row) build their 8x8
        product from fabric adders instead of leaving it to synthesis (which puts every ``*``
        on a DSP): for an FPGA with fewer DSPs than PEs. 0..rows*cols; same arithmetic and
        timing.
    """

    rows: int = 8
    cols: int = 8
    max_channels: int = 2048
    max_filters: int = 2048
    weight_depth: int = 1024
    mac_style: str = "infer"
    requantizer: str = "parallel"
    requant_steps: int = 1
    roundings: tuple = ROUNDINGS
    weight_banks: int = 2
    load_width: int = 1
    lut_macs: int = 0
    requant_multiply: str = "dsp"

    def __post_init__(self):
        for name in ("rows", "cols", "max_channels", "max_filters", "weight_depth",
                     "requant_steps"):
            value = getattr(self, name)
            if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
                object.__setattr__(self, name, int(value))      # NumPy integers become int
        _check_int("rows", self.rows, 1, 64)
        _check_int("cols", self.cols, 1, 64)
        _check_int("max_channels", self.max_channels, 1, 1 << 16)
        _check_int("max_filters", self.max_filters, 1, 1 << 16)
        _check_int("weight_depth", self.weight_depth, 1, 1 << 16)
        if self.mac_style not in MAC_STYLES:
            choices = ", ".join(repr(style) for style in MAC_STYLES)
            raise ValueError(f"mac_style must be one of {choices}, not {self.mac_style!r}")
        if self.requantizer not in REQUANTIZERS:
            choices = ", ".join(repr(style) for style in REQUANTIZERS)
            raise ValueError(
                f"requantizer must be one of {choices}, not {self.requantizer!r}")
        _check_int("requant_steps", self.requant_steps, 1)
        if self.requantizer == "parallel" and self.requant_steps != 1:
            raise ValueError(f"requant_steps must be 1 with the parallel requantizer, "
                             f"not {self.requant_steps}")
        if self.requant_steps not in REQUANT_STEPS:
            choices = ", ".join(str(steps) for steps in REQUANT_STEPS)
            raise ValueError(f"requant_steps must be one of {choices}, not {self.requant_steps}")
        _check_int("weight_banks", self.weight_banks, 1)
        if self.weight_banks not in WEIGHT_BANKS:
            raise ValueError(f"weight_banks must be 1 or 2, not {self.weight_banks}")
        _check_int("load_width", self.load_width, 1, self.rows)
        _check_int("lut_macs", self.lut_macs, 0, self.rows * self.cols)
        if self.lut_macs and self.mac_style == "ice40_dual8x8":
            raise ValueError(f"lut_macs needs mac_style 'infer' or 'ecp5_mult18', not "
                             f"{self.mac_style!r}")
        if self.requant_multiply not in REQUANT_MULTIPLIES:
            raise ValueError(f"requant_multiply must be 'dsp' or 'fabric', not "
                             f"{self.requant_multiply!r}")
        if self.requant_steps > 1:      # canonical: a lane of more steps is always in fabric
            object.__setattr__(self, "requant_multiply", "fabric")
        if isinstance(self.roundings, list):
            object.__setattr__(self, "roundings", tuple(self.roundings))
        if (not isinstance(self.roundings, tuple) or not self.roundings
                or any(r not in ROUNDINGS for r in self.roundings)
                or len(set(self.roundings)) != len(self.roundings)):
            raise ValueError(f"roundings must be a non-empty tuple of distinct modes from "
                             f"{', '.join(ROUNDINGS)}, not {self.roundings!r}")
        # One canonical order, so equal sets of modes make equal configurations.
        object.__setattr__(self, "roundings",
                           tuple(r for r in ROUNDINGS if r in self.roundings))

    # Derived quantities: every block reads these instead of recomputing them.

    @property
    def max_beats(self):
        """Most beats (``rows``-wide vectors) of one pixel: ``ceil(max_channels / rows)``."""
        return -(-self.max_channels // self.rows)

    @property
    def max_tiles(self):
        """Most column tiles one layer can have: ``ceil(max_filters / cols)``."""
        return -(-self.max_filters // self.cols)

    @property
    def macs(self):
        """Multiply-accumulate units in the array."""
        return self.rows * self.cols

    @property
    def tile_interval(self):
        """Fewest cycles between two completed (pixel, column tile)s: the requantizer's pace
        (1 for the parallel requantizer, ``cols * requant_steps`` for the serial one)."""
        if self.requantizer == "parallel":
            return 1
        return self.cols * self.requant_steps

    @property
    def param_word_cycles(self):
        """Cycles one parameter word (a column tile's bias, multiplier, shift) takes to load:
        1, or ``cols`` for the serial requantizer, which stores one column per cycle."""
        return 1 if self.requantizer == "parallel" else self.cols

    @property
    def mac_latency(self):
        """Pipeline registers of a PE between its ``x`` input and the product it adds: 2, the
        weight memory's output and the product registered, so each path is one memory read,
        one multiply or one adder; with ``ice40_dual8x8`` they are the SB_MAC16's own input
        and 8x8 product registers (no logic cells, and every path into and out of the cell is
        timed). 3 with ``lut_macs``: a fabric multiplier's adder tree is cut by a register
        after its first level (in one cycle it was the longest path of the ULX3S build, 76.6
        MHz), and the DSP PEs register their product twice to keep in step. 4 with
        ``ecp5_mult18``: the PE's operand registers feed the MULT18X18D's own operand
        registers and its product register feeds one beside the adder, so every route into
        and out of the cell is register to register (a route into the inferred, unregistered
        cell and its 3.9 ns multiply were the ULX3S build's longest path, 87.0 MHz), and a
        fabric multiplier's tree is cut after each of its first two levels. Every PE has the
        same depth, so the systolic skew is unchanged and only :attr:`array_latency` grows."""
        if self.mac_style == "ecp5_mult18":
            return 4
        return 3 if self.lut_macs else 2

    @property
    def array_latency(self):
        """Cycles from a beat entering the systolic array to its de-skewed column sums: the
        input skew and partial-sum chain (``rows``), the de-skew (``cols``), the accumulator
        (1) and the PEs' multiply pipeline (:attr:`mac_latency`)."""
        return self.rows + self.cols + 1 + self.mac_latency

    @property
    def weight_memory_depth(self):
        """Words in each PE's weight memory: ``weight_banks`` banks of ``weight_depth``."""
        return self.weight_banks * self.weight_depth

    @property
    def param_depth(self):
        """Parameter words (column tiles) the requantizer stores: ``weight_banks`` banks of
        ``max_tiles``; bank ``b``'s tile ``t`` is at ``b * max_tiles + t``."""
        return self.weight_banks * self.max_tiles

    @property
    def load_groups(self):
        """Weight transfers per address: ``ceil(rows / load_width)`` groups of rows."""
        return -(-self.rows // self.load_width)

    def weight_transfers(self, channels, filters):
        """Transfers on the weights port for one pass of C x F (a layer that fits on chip)."""
        return self.beats(channels) * self.tiles(filters) * self.load_groups

    def load_cycles(self, channels, filters):
        """Cycles the load port needs for one C x F pass: its weight transfers, one per cycle,
        and its ``tiles`` parameter words, ``param_word_cycles`` each."""
        return (self.weight_transfers(channels, filters)
                + self.tiles(filters) * self.param_word_cycles)

    def ideal_cycles(self, pixels, channels, filters):
        """Cycles of ``pixels`` x C x F MACs at ``macs`` per cycle (no padding, no loads)."""
        return pixels * channels * filters / self.macs

    def roofline_cycles(self, pixels, passes):
        """The fewest cycles a layer can take on this array: the larger of its ideal compute
        cycles and its load cycles (weights and parameters over the load port).

        ``passes`` is a list of ``(channels, filters)`` of the layer's on-chip passes (the
        host's tiling; they all see the same ``pixels``). This is the one definition of the
        roofline that the bench, its reports and its plot use.
        """
        ideal = sum(self.ideal_cycles(pixels, c, f) for c, f in passes)
        load = sum(self.load_cycles(c, f) for c, f in passes)
        return max(ideal, load)

    def tile_cycles(self, channels):
        """Array cycles per (pixel, column tile) in steady state for C = ``channels``."""
        return max(self.beats(channels), self.tile_interval)

    def psum_shape(self, terms):
        """Signed shape that holds any sum of ``terms`` int8 x int8 products exactly."""
        from amaranth.hdl import Shape     # here, so the CLI starts without Amaranth

        return Shape.cast(range(PRODUCT_MIN * terms, PRODUCT_MAX * terms + 1))

    @property
    def acc_shape(self):
        """Shape of a column accumulator: any sum over ``max_channels`` products, exactly."""
        return self.psum_shape(self.rows * self.max_beats)

    def beats(self, channels):
        """Beats per pixel at run time for C = ``channels``."""
        return -(-channels // self.rows)

    def tiles(self, filters):
        """Column tiles at run time for F = ``filters``."""
        return -(-filters // self.cols)

    def single_bank(self):
        """This configuration with ``weight_banks=1`` (what the board link drives)."""
        from dataclasses import replace
        return replace(self, weight_banks=1)

    def cli_flags(self):
        """The ``pwconv`` command-line flags that make this configuration (the load port's
        only where they differ from the default)."""
        flags = (f"--rows {self.rows} --cols {self.cols} --max-channels {self.max_channels} "
                 f"--max-filters {self.max_filters} --weight-depth {self.weight_depth} "
                 f"--mac-style {self.mac_style} --requantizer {self.requantizer} "
                 f"--requant-steps {self.requant_steps} "
                 f"--roundings {','.join(self.roundings)}")
        if self.weight_banks != ArrayConfig.weight_banks:
            flags += f" --weight-banks {self.weight_banks}"
        if self.load_width != ArrayConfig.load_width:
            flags += f" --load-width {self.load_width}"
        if self.lut_macs:
            flags += f" --lut-macs {self.lut_macs}"
        if self.requant_multiply != ArrayConfig.requant_multiply and self.requant_steps == 1:
            flags += f" --requant-multiply {self.requant_multiply}"
        return flags

    def check_rounding(self, rounding):
        """Raise ValueError unless this build includes the rounding mode ``rounding``."""
        if rounding not in self.roundings:
            raise ValueError(f"rounding {rounding!r} is not in this build (it has "
                             f"{', '.join(self.roundings)}); rebuild with --roundings "
                             f"including it")

    def fits(self, channels, filters):
        """Whether a C x F layer fits on chip in one pass (no host tiling)."""
        return (channels <= self.max_channels and filters <= self.max_filters
                and self.beats(channels) * self.tiles(filters) <= self.weight_depth)

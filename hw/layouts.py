"""Payload and configuration layouts of the accelerator's ports, derived from an ArrayConfig."""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from pwconv.config import ArrayConfig

__all__ = ["pixel_beat", "result_vector", "weight_word", "param_word", "runtime_config",
           "SHIFT_SHAPE"]

#: Per-channel requantization shift: positive is a left shift, negative a right shift.
SHIFT_SHAPE = signed(6)


def _addr(depth):
    return unsigned(max(1, (depth - 1).bit_length()))


def pixel_beat(cfg: ArrayConfig):
    """One beat of a pixel: ``rows`` int8 input channels (lane i is channel ``beat*rows + i``)."""
    return data.ArrayLayout(signed(8), cfg.rows)


def result_vector(cfg: ArrayConfig):
    """One result vector: ``cols`` output channels as int32 (int8-valued unless in raw mode)."""
    return data.ArrayLayout(signed(32), cfg.cols)


def weight_word(cfg: ArrayConfig):
    """One row of one weight word: ``data[c]`` goes to PE (``row``, c) at address ``addr``.

    Address ``tile * beats + beat`` holds ``w[beat*rows + row, tile*cols + c]``.
    """
    return data.StructLayout({
        "addr": _addr(cfg.weight_depth),
        "row":  _addr(cfg.rows),
        "data": data.ArrayLayout(signed(8), cfg.cols),
    })


def param_word(cfg: ArrayConfig):
    """Per-channel parameters of one column tile: bias, multiplier and shift of each column."""
    return data.StructLayout({
        "addr":       _addr(cfg.max_tiles),
        "bias":       data.ArrayLayout(signed(32), cfg.cols),
        "multiplier": data.ArrayLayout(signed(32), cfg.cols),
        "shift":      data.ArrayLayout(SHIFT_SHAPE, cfg.cols),
    })


def runtime_config(cfg: ArrayConfig):
    """Layer-wide run-time settings, held stable while the accelerator is not idle.

    ``beats`` = ceil(C / rows) and ``tiles`` = ceil(F / cols), both >= 1; ``raw`` skips
    requantization and returns the int32 accumulators (bias included); ``rounding`` is the
    index of the layer's requantization mode in :data:`pwconv.config.ROUNDINGS` (one the build
    includes, ``cfg.roundings``).
    """
    return data.StructLayout({
        "beats":             unsigned(cfg.max_beats.bit_length()),
        "tiles":             unsigned(cfg.max_tiles.bit_length()),
        "output_zero_point": signed(8),
        "activation_min":    signed(8),
        "activation_max":    signed(8),
        "raw":               unsigned(1),
        "rounding":          unsigned(2),
    })

"""Payload and configuration layouts of the accelerator's ports, derived from an ArrayConfig."""

from amaranth.hdl import Cat, Mux, signed, unsigned
from amaranth.lib import data

from pwconv.config import ArrayConfig

__all__ = ["pixel_beat", "result_vector", "weight_word", "param_word", "runtime_config",
           "pass_word", "bank_address", "SHIFT_SHAPE"]

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
    """One transfer on the weights port: ``load_width`` rows of one weight address.

    ``data[k * cols + c]`` goes to PE (``row * load_width + k``, c) at address ``addr`` (of the
    bank being loaded); address ``tile * beats + beat`` holds ``w[beat*rows + r, tile*cols +
    c]`` for PE row ``r``. Lanes of rows beyond ``rows`` are ignored. With ``load_width`` 1,
    ``row`` is the PE row and ``data[c]`` its column ``c``.
    """
    return data.StructLayout({
        "addr": _addr(cfg.weight_depth),
        "row":  _addr(cfg.load_groups),
        "data": data.ArrayLayout(signed(8), cfg.load_width * cfg.cols),
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


def pass_word(cfg: ArrayConfig):
    """A pass committed on ``PointwiseConv.commit`` (``weight_banks == 2``): how many pixel
    beats on ``i`` belong to it (a whole number of pixels; 0 commits a pass without pixels)."""
    return data.StructLayout({"beats": unsigned(32)})


def bank_address(addr, bank, depth):
    """The address of word ``addr`` of bank ``bank`` (0 or 1) in a memory of two banks of
    ``depth`` words: ``bank * depth + addr``, a bare bit on top when ``depth`` is a power of 2."""
    if depth & (depth - 1) == 0:
        return Cat(addr[:max(0, (depth - 1).bit_length())], bank)
    return addr + Mux(bank, depth, 0)

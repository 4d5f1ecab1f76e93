"""Translate one on-chip layer pass into the words the accelerator's ports take, and back."""

from dataclasses import dataclass

import numpy as np

from pwconv.config import ROUNDINGS, ArrayConfig
from pwconv.hw import layouts

__all__ = ["LayerProgram", "compile_layer", "pack_pixels", "unpack_results", "commit_word"]


def _field(layout, name):
    field = layout[name]
    return field.offset, field.width


def _pack_lanes(values, bits):
    """Pack a 1-D integer array into one int, lane 0 in the least significant bits."""
    mask = (1 << bits) - 1
    word = 0
    for lane, value in enumerate(values.tolist()):
        word |= (int(value) & mask) << (lane * bits)
    return word


@dataclass(frozen=True)
class LayerProgram:
    """Everything the accelerator needs for one pass of a layer that fits on chip.

    ``layer_word`` drives the ``layer`` port; ``weight_words`` and ``param_words`` are sent on the
    ``weights`` and ``params`` streams, then (with two weight banks) the pass is committed with
    :func:`commit_word`, and its pixels follow on ``i``.
    """

    channels: int
    filters: int
    beats: int
    tiles: int
    raw: bool
    layer_word: int
    weight_words: tuple
    param_words: tuple


def compile_layer(cfg: ArrayConfig, w, bias, multiplier, shift, *, output_zero_point=0,
                  activation_min=-128, activation_max=127, raw=False, rounding="double",
                  scale=None):
    """Build the :class:`LayerProgram` of a C x F layer with the input zero point already folded.

    ``w`` int8 [C, F]; ``bias`` int32 [F] (``bias - input_zero_point * sum_c w``, wrapped);
    ``multiplier`` int32 [F] and ``shift`` int [F] in [-31, 31] for the fixed-point rounding
    modes; with ``rounding="float"``, ``scale`` float32 [F], whose bits go in the multiplier
    field (the shift field is then 0). ``rounding`` must be one of ``cfg.roundings``.
    """
    w = np.asarray(w)
    channels, filters = w.shape
    if not cfg.fits(channels, filters):
        raise ValueError(
            f"Layer of C={channels}, F={filters} does not fit on chip (max C {cfg.max_channels},"
            f" max F {cfg.max_filters}, {cfg.weight_depth} weight words per PE); tile it")
    cfg.check_rounding(rounding)
    if rounding == "float":
        multiplier = np.asarray(scale, dtype=np.float32).view(np.int32)
        shift = np.zeros(filters, dtype=np.int32)
    beats, tiles = cfg.beats(channels), cfg.tiles(filters)

    padded = np.zeros((beats * cfg.rows, tiles * cfg.cols), dtype=np.int64)
    padded[:channels, :filters] = w
    word = layouts.weight_word(cfg)
    addr_at, _ = _field(word, "addr")
    row_at, _ = _field(word, "row")
    data_at, _ = _field(word, "data")
    weight_words = []
    for tile in range(tiles):
        for beat in range(beats):
            block = padded[beat * cfg.rows:(beat + 1) * cfg.rows,
                           tile * cfg.cols:(tile + 1) * cfg.cols]
            for group in range(cfg.load_groups):
                rows = np.zeros((cfg.load_width, cfg.cols), dtype=np.int64)
                part = block[group * cfg.load_width:(group + 1) * cfg.load_width]
                rows[:len(part)] = part
                weight_words.append(((tile * beats + beat) << addr_at) | (group << row_at)
                                    | (_pack_lanes(rows.reshape(-1), 8) << data_at))

    def per_tile(values, dtype=np.int64):
        out = np.zeros(tiles * cfg.cols, dtype=dtype)
        out[:filters] = values
        return out.reshape(tiles, cfg.cols)

    word = layouts.param_word(cfg)
    bias_t, mult_t, shift_t = per_tile(bias), per_tile(multiplier), per_tile(shift)
    shift_bits = layouts.SHIFT_SHAPE.width
    param_words = []
    for tile in range(tiles):
        param_words.append(
            (tile << _field(word, "addr")[0])
            | (_pack_lanes(bias_t[tile], 32) << _field(word, "bias")[0])
            | (_pack_lanes(mult_t[tile], 32) << _field(word, "multiplier")[0])
            | (_pack_lanes(shift_t[tile], shift_bits) << _field(word, "shift")[0]))

    word = layouts.runtime_config(cfg)
    fields = {"beats": beats, "tiles": tiles, "output_zero_point": output_zero_point,
              "activation_min": activation_min, "activation_max": activation_max,
              "raw": int(raw), "rounding": ROUNDINGS.index(rounding)}
    layer_word = 0
    for name, value in fields.items():
        offset, width = _field(word, name)
        layer_word |= (int(value) & ((1 << width) - 1)) << offset
    return LayerProgram(channels, filters, beats, tiles, bool(raw), layer_word,
                        tuple(weight_words), tuple(param_words))


def commit_word(cfg: ArrayConfig, pixel_words):
    """The word on ``commit`` that closes a pass's loads: its number of pixel beats."""
    return len(pixel_words) & 0xFFFF_FFFF


def pack_pixels(cfg: ArrayConfig, x):
    """Pixel beats for ``x`` int8 [P, C]: ``beats`` words per pixel, channels zero-padded."""
    x = np.asarray(x, dtype=np.int8)
    pixels, channels = x.shape
    beats = cfg.beats(channels)
    padded = np.zeros((pixels, beats * cfg.rows), dtype=np.int8)
    padded[:, :channels] = x
    raw = padded.reshape(pixels * beats, cfg.rows)
    return [int.from_bytes(row.tobytes(), "little") for row in raw]


def unpack_results(cfg: ArrayConfig, words, pixels, filters):
    """Results as int32 [P, F] from the ``tiles`` result vectors per pixel on ``o``."""
    tiles = cfg.tiles(filters)
    if len(words) != pixels * tiles:
        raise ValueError(f"Expected {pixels * tiles} result vectors, got {len(words)}")
    nbytes = cfg.cols * 4
    blob = b"".join((int(word) & ((1 << (nbytes * 8)) - 1)).to_bytes(nbytes, "little")
                    for word in words)
    out = np.frombuffer(blob, dtype="<i4").reshape(pixels, tiles * cfg.cols)
    return out[:, :filters].astype(np.int32)

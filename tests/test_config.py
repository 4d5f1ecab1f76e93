"""ArrayConfig: parameter validation and the derived sizes every block relies on."""

import pytest

from pwconv.config import PRODUCT_MAX, PRODUCT_MIN, ArrayConfig


def test_init_defaults():
    cfg = ArrayConfig()
    assert (cfg.rows, cfg.cols, cfg.macs) == (8, 8, 64)
    assert cfg.max_beats == 256 and cfg.max_tiles == 256


@pytest.mark.parametrize("name, value, message", [
    ("rows", 0, r"^rows must be between 1 and 64, not 0$"),
    ("cols", 65, r"^cols must be between 1 and 64, not 65$"),
    ("weight_depth", 0, r"^weight_depth must be between 1 and 65536, not 0$"),
    ("max_channels", -3, r"^max_channels must be between 1 and 65536, not -3$"),
])
def test_init_wrong_value(name, value, message):
    with pytest.raises(ValueError, match=message):
        ArrayConfig(**{name: value})


@pytest.mark.parametrize("value", [4.0, "8", True])
def test_init_wrong_type(value):
    with pytest.raises(TypeError, match=r"^rows must be an integer, not "):
        ArrayConfig(rows=value)


def test_acc_shape_holds_extremes_exactly():
    cfg = ArrayConfig(rows=4, cols=4, max_channels=1000)
    shape = cfg.acc_shape
    terms = cfg.rows * cfg.max_beats
    assert shape.signed
    assert -(1 << (shape.width - 1)) <= PRODUCT_MIN * terms
    assert PRODUCT_MAX * terms <= (1 << (shape.width - 1)) - 1
    # ...and is not wider than needed.
    assert PRODUCT_MAX * terms > (1 << (shape.width - 2)) - 1


def test_fits():
    cfg = ArrayConfig(rows=4, cols=4, max_channels=64, max_filters=64, weight_depth=8)
    assert cfg.fits(8, 16)          # 2 beats x 4 tiles = 8 words
    assert not cfg.fits(9, 16)      # 3 beats x 4 tiles = 12 words
    assert not cfg.fits(65, 1)


@pytest.mark.parametrize("changes, message", [
    ({"requantizer": "shared"},
     r"^requantizer must be one of 'parallel', 'serial', not 'shared'$"),
    ({"requant_steps": 2}, r"^requant_steps must be 1 with the parallel requantizer, not 2$"),
    ({"requantizer": "serial", "requant_steps": 3},
     r"^requant_steps must be one of 1, 2, 4, 8, not 3$"),
    ({"requantizer": "serial", "requant_steps": 0},
     r"^requant_steps must be at least 1, not 0$"),
])
def test_init_wrong_requantizer(changes, message):
    with pytest.raises(ValueError, match=message):
        ArrayConfig(**changes)


def test_tile_interval_and_cycles():
    """The serial requantizer paces column tiles: max(beats, cols * steps) cycles each."""
    assert ArrayConfig().tile_interval == 1
    cfg = ArrayConfig(rows=4, cols=4, requantizer="serial", requant_steps=8)
    assert cfg.tile_interval == 32
    assert cfg.tile_cycles(4) == 32          # 1 beat, paced
    assert cfg.tile_cycles(128) == 32        # 32 beats: full rate from here on
    assert cfg.tile_cycles(256) == 64
    assert (ArrayConfig().param_word_cycles, cfg.param_word_cycles) == (1, 4)

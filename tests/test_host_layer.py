"""Layer files and their validation: every malformed input names its key and problem."""

import numpy as np
import pytest

from pwconv.host.layer import (Layer, LayerError, Quantization, check_input, load_layer,
                               random_layer, save_layer)


def _arrays(tmp_path, **changes):
    x, layer = random_layer((2, 3, 5), 4, seed=0)
    save_layer(tmp_path / "ok.npz", x, layer)
    arrays = dict(np.load(tmp_path / "ok.npz"))
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    np.savez(tmp_path / "bad.npz", **arrays)
    return tmp_path / "bad.npz"


def test_round_trip(tmp_path):
    x, layer = random_layer((1, 2, 3, 5), 4, seed=1)
    save_layer(tmp_path / "l.npz", x, layer)
    x2, layer2 = load_layer(tmp_path / "l.npz")
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_array_equal(layer2.w, layer.w)
    assert layer2.quant.output_zero_point == layer.quant.output_zero_point


@pytest.mark.parametrize("changes, message", [
    ({"w": None}, r"^w: missing from .*bad\.npz$"),
    ({"x": np.zeros((2, 3, 5), np.float32)}, r"^x: expected dtype int8, got float32$"),
    ({"w": np.zeros((5, 4), np.int16)}, r"^w: expected dtype int8, got int16$"),
    ({"bias": np.zeros(4, np.int64)}, r"^bias: expected dtype int32, got int64$"),
    ({"x": np.zeros((3, 5), np.int8)}, r"^x: expected shape \[H, W, C\] or \[N, H, W, C\], "
                                       r"got \(3, 5\)$"),
    ({"x": np.zeros((2, 3, 6), np.int8)}, r"^x: has 6 channels but w has C = 5$"),
    ({"bias": np.zeros(3, np.int32)}, r"^bias: expected shape \(4,\) to match F of w, "
                                      r"got \(3,\)$"),
    ({"output_shift": np.array([0, 0, 31, 0])}, r"^output_shift: 31 is out of range "
                                                r"\[-31, 30\]$"),
    ({"output_multiplier": np.zeros(4, np.float64)},
     r"^output_multiplier: expected dtype int32, got float64$"),
    ({"input_zero_point": np.int32(200)}, r"^input_zero_point: 200 is out of range "
                                          r"\[-128, 127\]$"),
    ({"activation_min": np.int32(10), "activation_max": np.int32(5)},
     r"^activation_min: 10 is greater than activation_max 5$"),
    ({"output_zero_point": np.float32(1.5)},
     r"^output_zero_point: expected an integer scalar, got float32 of shape \(\)$"),
])
def test_load_wrong(tmp_path, changes, message):
    with pytest.raises(LayerError, match=message):
        load_layer(_arrays(tmp_path, **changes))


def test_load_not_npz(tmp_path):
    (tmp_path / "junk.npz").write_text("not a zip")
    with pytest.raises(LayerError, match=r"junk\.npz: not a readable \.npz file"):
        load_layer(tmp_path / "junk.npz")
    with pytest.raises(LayerError, match=r"nope\.npz: no such file$"):
        load_layer(tmp_path / "nope.npz")


def test_layer_wrong_empty():
    quant = Quantization(np.zeros(0, np.int32), np.zeros(0, np.int32))
    with pytest.raises(LayerError, match=r"^w: C and F must be at least 1, got shape \(3, 0\)$"):
        Layer(np.zeros((3, 0), np.int8), np.zeros(0, np.int32), quant)


def test_check_input_dtype():
    with pytest.raises(LayerError, match=r"^x: expected dtype int8, got uint8$"):
        check_input(np.zeros((1, 1, 3), np.uint8), 3)

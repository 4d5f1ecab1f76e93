"""Layer files and their validation: every malformed input names its key and problem."""

import re

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
    with pytest.raises(LayerError, match=r"junk\.npz: not a \.npz file \(a \.npz is a zip "):
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


def _npz_bytes(tmp_path):
    x, layer = random_layer((2, 3, 5), 4, seed=0)
    save_layer(tmp_path / "ok.npz", x, layer)
    return (tmp_path / "ok.npz").read_bytes()


def _corrupt(data):
    """Flip one byte inside the first member's data: its CRC no longer matches."""
    data = bytearray(data)
    data[100] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize("make, message", [
    (lambda ok: b"", r"^{path}: is empty, not a \.npz file$"),
    (lambda ok: ok[:300], r"^{path}: truncated or corrupted \.npz file \(BadZipFile: File is "
                          r"not a zip file\)$"),
    (lambda ok: ok[:-10], r"^{path}: truncated or corrupted \.npz file \(BadZipFile: "),
    (_corrupt, r"^{path}: truncated or corrupted \.npz file \(BadZipFile: Bad CRC-32 for file "),
    (lambda ok: b"x = 1\ny = 2\n", r"^{path}: not a \.npz file \(a \.npz is a zip archive of "
                                   r"\.npy arrays, written by numpy\.savez\)$"),
    (lambda ok: b"\x93NUMPY" + ok[6:], r"^{path}: is a \.npy file \(one array\), not a \.npz "
                                       r"archive of named arrays"),
])
def test_load_not_a_layer_file(tmp_path, make, message):
    path = tmp_path / "bad.npz"
    path.write_bytes(make(_npz_bytes(tmp_path)))
    with pytest.raises(LayerError, match=message.format(path=re.escape(str(path)))):
        load_layer(path)


def test_load_npy_given_as_npz(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3, np.int8))
    with pytest.raises(LayerError, match=r"a\.npy: is a \.npy file \(one array\), not a \.npz "
                                         r"archive of named arrays \(write it with numpy\.savez "
                                         r"or 'pwconv layer'\)$"):
        load_layer(tmp_path / "a.npy")


def test_load_dev_null_and_directory(tmp_path):
    with pytest.raises(LayerError, match=r"^/dev/null: is empty, not a \.npz file$"):
        load_layer("/dev/null")
    with pytest.raises(LayerError, match=r"is a directory, not a \.npz file$"):
        load_layer(tmp_path)


def test_load_pickled_array_names_key(tmp_path):
    path = _arrays(tmp_path, bias=np.array([1, "a", None, 2], dtype=object))
    with pytest.raises(LayerError, match=r"^bias: holds Python objects \(pickled data\) in "
                                         r".*bad\.npz, expected a numeric array$"):
        load_layer(path)


def test_load_big_endian_says_byte_order(tmp_path):
    path = _arrays(tmp_path, bias=np.arange(4, dtype=">i4"))
    with pytest.raises(LayerError, match=r"^bias: expected dtype int32 in this machine's "
                                         r"\(little-endian\) byte order, got big-endian int32 "
                                         r"\('>i4'\); convert it with \.astype\(np\.int32\)$"):
        load_layer(path)


def test_load_filter_mismatch_blames_its_key(tmp_path):
    path = _arrays(tmp_path, output_multiplier=np.full(3, 1 << 30, np.int32))
    with pytest.raises(LayerError, match=r"^output_multiplier: expected shape \(4,\) to match F "
                                         r"of w, got \(3,\)$"):
        load_layer(path)
    path = _arrays(tmp_path, output_shift=np.zeros(5, np.int32))
    with pytest.raises(LayerError, match=r"^output_shift: expected shape \(4,\) to match F of w, "
                                         r"got \(5,\)$"):
        load_layer(path)


def test_w_given_as_f_by_c_through_the_api():
    from pwconv.host.accelerator import Accelerator
    x, layer = random_layer((2, 3, 5), 4, seed=0)
    with pytest.raises(LayerError, match=r"^w: expected shape \[C, F\], got \(4, 5\), but bias "
                                         r"and output_multiplier have 4 entries: is w \[F, C\]\? "
                                         r"Pass w\.T "):
        Accelerator().conv1x1(x, layer.w.T, layer.bias, layer.quant)


def test_quantization_and_layer_keep_frozen_copies():
    """Mutating the caller's arrays after construction must not change the layer (it used to:
    verilator then silently returned wrong outputs)."""
    from pwconv.host.accelerator import Accelerator
    x, ref = random_layer((2, 3, 5), 4, seed=3)
    mult, shift = ref.quant.output_multiplier.copy(), ref.quant.output_shift.copy()
    w, bias = ref.w.copy(), ref.bias.copy()
    quant = Quantization(mult, shift, input_zero_point=ref.quant.input_zero_point,
                         output_zero_point=ref.quant.output_zero_point)
    layer = Layer(w, bias, quant)
    expected = Accelerator().run_layer(x, layer)
    mult[:] = 1
    shift[:] = -31
    w[:] = 0
    bias[:] = 7
    for arr, original in ((layer.quant.output_multiplier, ref.quant.output_multiplier),
                          (layer.quant.output_shift, ref.quant.output_shift),
                          (layer.w, ref.w), (layer.bias, ref.bias)):
        np.testing.assert_array_equal(arr, original)
        assert not arr.flags.writeable
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 0
    np.testing.assert_array_equal(Accelerator().run_layer(x, layer), expected)

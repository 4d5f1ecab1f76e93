"""The NumPy API: every backend, every tiling path, bit-exact against golden."""

import numpy as np
import pytest

from pwconv.config import ArrayConfig
from pwconv.host.accelerator import Accelerator
from pwconv.host.layer import LayerError, golden_output, random_layer

SMALL = ArrayConfig(rows=3, cols=4, max_channels=12, max_filters=16, weight_depth=6)




@pytest.mark.parametrize("shape, filters", [
    ((2, 3, 7), 9),           # F split into passes
    ((1, 2, 2, 20), 30),      # C > max_channels: raw partial sums, host requantization
    ((3, 1, 1), 1), ((2, 2, 12), 16)])
@pytest.mark.parametrize("backend", ["golden", "amaranth", "verilator"])
def test_matches_golden(backend, shape, filters):
    x, layer = random_layer(shape, filters, seed=sum(shape) + filters, relu=filters % 2 == 1)
    acc = Accelerator(backend, SMALL, in_idle=0.2, out_stall=0.3, progress=False)
    y = acc.conv1x1(x, layer.w, layer.bias, layer.quant)
    assert y.dtype == np.int8 and y.shape == shape[:-1] + (filters,)
    np.testing.assert_array_equal(y, golden_output(x, layer))
    stats = acc.last_run
    assert stats.pixels == int(np.prod(shape[:-1]))
    if backend == "golden":
        assert stats.cycles is None
    else:
        assert stats.cycles >= stats.ideal_cycles


def test_tiled_layer_on_icarus():
    """A subset on Icarus: C split (raw partial sums) and F split, under backpressure."""
    x, layer = random_layer((1, 3, 20), 30, seed=9)
    acc = Accelerator("icarus", SMALL, in_idle=0.3, out_stall=0.5, seed=4, progress=False)
    np.testing.assert_array_equal(acc.conv1x1(x, layer.w, layer.bias, layer.quant),
                                  golden_output(x, layer))


def test_wrong_backend():
    with pytest.raises(ValueError, match=r"^backend must be one of golden, verilator, "):
        Accelerator("fpga")


def test_wrong_input_names_problem():
    x, layer = random_layer((2, 2, 5), 3, seed=0)
    with pytest.raises(LayerError, match=r"^x: has 4 channels but w has C = 5$"):
        Accelerator().conv1x1(x[..., :4], layer.w, layer.bias, layer.quant)
    with pytest.raises(LayerError, match=r"^w: expected dtype int8, got float64$"):
        Accelerator().conv1x1(x, layer.w.astype(float), layer.bias, layer.quant)

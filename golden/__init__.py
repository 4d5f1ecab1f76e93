"""NumPy golden model of pwconv: TFLite-exact int8 pointwise convolution and requantization."""

from .conv import conv1x1, conv1x1_acc, fold_input_zero_point, requantize
from .requant import (
    INT32_MAX,
    INT32_MIN,
    SHIFT_MAX,
    SHIFT_MIN,
    multiply_by_quantized_multiplier,
    per_channel_multipliers,
    quantize_multiplier,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    wrap_int32,
)

__all__ = [
    "conv1x1",
    "conv1x1_acc",
    "fold_input_zero_point",
    "requantize",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "quantize_multiplier",
    "per_channel_multipliers",
    "wrap_int32",
    "INT32_MIN",
    "INT32_MAX",
    "SHIFT_MIN",
    "SHIFT_MAX",
]

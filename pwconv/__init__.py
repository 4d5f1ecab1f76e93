"""pwconv: an int8 pointwise (1x1) convolution accelerator in Amaranth, bit-exact with TFLite."""

from .config import ArrayConfig

__all__ = ["ArrayConfig"]
__version__ = "0.1.0"

"""The layer program's binary format: header, 64-byte op descriptors, tensor views, records.

A compiled model is one little-endian memory image for the board's SDRAM (docs/program.md)::

    HEADER_BYTES   header (magic, version, image id, sizes, the ArrayConfig it was built for)
    64 * n         the program: n descriptors, executed in order
    ...            weights and parameters, pre-tiled in the order the array's load ports take
    ...            the tensor arena (activations, planned by liveness), then partial-sum scratch

Every descriptor has the same 64 bytes; each op kind uses the fields its row of the table in
docs/program.md names and leaves the others zero. Fields are little-endian bit fields of the
512-bit descriptor (:data:`DESCRIPTOR_FIELDS`: name, bit offset, width, signed), so gateware
can decode one with an Amaranth ``StructLayout`` built from the same table.

A tensor is read and written through a :class:`View`: pixel ``(y, x)``, channel ``c`` is the
byte at ``addr + (y * row_pixels + x) * pixel_stride + c``. Channel concatenation (a channel
offset in ``addr``, the whole tensor's channels as ``pixel_stride``), a pad's interior
(``row_pixels`` wider than ``w``) and RESHAPE (the same bytes, another shape) are views, not ops.

Per-channel requantization parameters of CONV and FULLY_CONNECTED are stored as the array's
parameter words: per column tile of ``cols`` channels, ``bias`` int32[cols],
``multiplier`` int32[cols] (float32 bits in the ``"float"`` mode), ``shift`` int8[cols]
(:func:`param_tile_bytes`; the layout of hw/layouts.py ``param_word`` without its address).
Weight words are hw/layouts.py ``weight_word``'s data: ``load_width * cols`` int8, in the order
host/program.py ``compile_layer`` sends them (tile-major, then beat, then row group).
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from dataclasses import dataclass

from pwconv.config import ROUNDINGS, ArrayConfig, REQUANTIZERS

__all__ = [
    "FormatError", "MAGIC", "VERSION", "HEADER_BYTES", "DESCRIPTOR_BYTES", "MAX_DESCRIPTORS",
    "SDRAM_BYTES", "ADD_LEFT_SHIFT", "OPS", "DESCRIPTOR_FIELDS", "HEADER_FIELDS", "View",
    "Conv", "FullyConnected", "Depthwise", "Add", "AveragePool", "MaxPool", "Mean", "Host",
    "Header", "AddRecord", "MeanRecord", "encode_descriptor", "decode_descriptor", "replace",
    "FLAG_RESIDUAL", "FLAG_LAST",
    "encode_header", "decode_header", "param_tile_bytes", "image_id",
]


class FormatError(ValueError):
    """A field does not fit the format: the message names the field, its value and range."""


MAGIC = b"PWCP"
VERSION = 1
HEADER_BYTES = 128
DESCRIPTOR_BYTES = 64
#: Most descriptors one program may hold (the header's count is 16 bits wide in gateware).
MAX_DESCRIPTORS = 0xFFFF
#: The ULX3S's SDRAM (MT48LC16M16A2 / IS42S16160G): the largest image the board can hold.
SDRAM_BYTES = 32 << 20
#: TFLite's int8 ADD shifts both inputs left by 20 before scaling (kernels/add.cc).
ADD_LEFT_SHIFT = 20

#: Op kind codes (descriptor byte 0). 0 is never a valid descriptor (erased memory).
OPS = {"CONV": 1, "FULLY_CONNECTED": 2, "DEPTHWISE": 3, "ADD": 4, "AVERAGE_POOL": 5,
       "MAX_POOL": 6, "MEAN": 7, "HOST": 15}

#: Descriptor flag bits (byte 1).
FLAG_RESIDUAL = 1       # CONV: add the ``aux`` view (an ADD record follows the parameters)
FLAG_LAST = 2           # the program's last descriptor

# (name, bit offset, width, signed): the 512-bit little-endian descriptor.
DESCRIPTOR_FIELDS = (
    ("op", 0, 8, False), ("flags", 8, 8, False), ("rounding", 16, 8, False),
    ("reserved", 24, 8, False),
    ("kernel_h", 32, 8, False), ("kernel_w", 40, 8, False),
    ("stride_h", 48, 4, False), ("stride_w", 52, 4, False),
    ("dilation_h", 56, 4, False), ("dilation_w", 60, 4, False),
    ("pad_top", 64, 8, False), ("pad_left", 72, 8, False),
    ("pad_bottom", 80, 8, False), ("pad_right", 88, 8, False),
    ("input_zero_point", 96, 8, True), ("output_zero_point", 104, 8, True),
    ("activation_min", 112, 8, True), ("activation_max", 120, 8, True),
    ("in_addr", 128, 32, False), ("out_addr", 160, 32, False), ("aux_addr", 192, 32, False),
    ("weight_addr", 224, 32, False), ("param_addr", 256, 32, False),
    ("in_h", 288, 16, False), ("in_w", 304, 16, False), ("in_c", 320, 16, False),
    ("in_pixel_stride", 336, 16, False), ("in_row_pixels", 352, 16, False),
    ("out_h", 368, 16, False), ("out_w", 384, 16, False), ("out_c", 400, 16, False),
    ("out_pixel_stride", 416, 16, False), ("out_row_pixels", 432, 16, False),
    ("aux_pixel_stride", 448, 16, False), ("aux_row_pixels", 464, 16, False),
    ("chunk_channels", 480, 16, False), ("group_filters", 496, 16, False),
)

# (name, byte offset, struct format) of the header.
HEADER_FIELDS = (
    ("magic", 0, "4s"), ("version", 4, "H"), ("header_bytes", 6, "H"), ("image_id", 8, "I"),
    ("image_bytes", 12, "I"), ("program_addr", 16, "I"), ("descriptor_count", 20, "I"),
    ("weights_addr", 24, "I"), ("weights_bytes", 28, "I"), ("arena_addr", 32, "I"),
    ("arena_bytes", 36, "I"), ("scratch_addr", 40, "I"), ("scratch_bytes", 44, "I"),
    ("input_addr", 48, "I"), ("input_h", 52, "H"), ("input_w", 54, "H"), ("input_c", 56, "H"),
    ("input_pixel_stride", 58, "H"), ("input_row_pixels", 60, "H"),
    ("output_addr", 64, "I"), ("output_h", 68, "H"), ("output_w", 70, "H"),
    ("output_c", 72, "H"), ("output_pixel_stride", 74, "H"), ("output_row_pixels", 76, "H"),
    ("rows", 80, "B"), ("cols", 81, "B"), ("weight_banks", 82, "B"), ("load_width", 83, "B"),
    ("max_channels", 84, "I"), ("max_filters", 88, "I"), ("weight_depth", 92, "I"),
    ("roundings", 96, "B"), ("requantizer", 97, "B"), ("requant_steps", 98, "B"),
)


def _check(where, name, value, lo, hi):
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            value = int(value)
        except (TypeError, ValueError):
            raise FormatError(f"{where}.{name} must be an integer, not {value!r}") from None
    if not lo <= value <= hi:
        raise FormatError(f"{where}.{name} must be in [{lo}, {hi}], not {value}")
    return value


def _range(width, signed):
    return (-(1 << (width - 1)), (1 << (width - 1)) - 1) if signed else (0, (1 << width) - 1)


@dataclass(frozen=True)
class View:
    """Where a tensor's bytes are: pixel ``(y, x)`` channel ``c`` at
    ``addr + (y * row_pixels + x) * pixel_stride + c``; ``h`` x ``w`` pixels of ``c`` int8."""

    addr: int
    h: int
    w: int
    c: int
    pixel_stride: int
    row_pixels: int

    @classmethod
    def dense(cls, addr, h, w, c):
        """A tensor stored contiguously (NHWC, no gaps)."""
        return cls(addr, h, w, c, c, w)

    @property
    def row_pitch(self):
        return self.row_pixels * self.pixel_stride

    @property
    def nbytes(self):
        """Bytes of the tensor itself (``h * w * c``)."""
        return self.h * self.w * self.c

    @property
    def span(self):
        """Bytes from ``addr`` to one past the tensor's last byte."""
        return (self.h - 1) * self.row_pitch + (self.w - 1) * self.pixel_stride + self.c

    @property
    def is_dense(self):
        return self.pixel_stride == self.c and self.row_pixels == self.w

    def dma_requests(self):
        """The view as 2-D DMA requests ``(addr, length, count, stride)`` (hw/memory/dma.py
        ``request_layout``: ``count`` rows of ``length`` bytes, row ``r`` at ``addr + r *
        stride``), in NHWC order: one request when pixels are packed (``pixel_stride == c``),
        else one per image row (a pixel per DMA row)."""
        if self.pixel_stride == self.c:
            return [(self.addr, self.w * self.c, self.h, self.row_pitch)]
        return [(self.addr + y * self.row_pitch, self.c, self.w, self.pixel_stride)
                for y in range(self.h)]

    def check(self, where):
        for name in ("h", "w", "c", "pixel_stride", "row_pixels"):
            _check(where, name, getattr(self, name), 1, 0xFFFF)
        _check(where, "addr", self.addr, 0, 0xFFFF_FFFF)
        if self.pixel_stride < self.c:
            raise FormatError(f"{where}.pixel_stride {self.pixel_stride} is smaller than its "
                              f"{self.c} channels")
        if self.row_pixels < self.w:
            raise FormatError(f"{where}.row_pixels {self.row_pixels} is smaller than its "
                              f"width {self.w}")


def _view_fields(prefix, view):
    return {f"{prefix}_addr": view.addr, f"{prefix}_h": view.h, f"{prefix}_w": view.w,
            f"{prefix}_c": view.c, f"{prefix}_pixel_stride": view.pixel_stride,
            f"{prefix}_row_pixels": view.row_pixels}


def _view_of(raw, prefix, shape_from=None):
    src = shape_from or prefix
    return View(raw[f"{prefix}_addr"], raw[f"{src}_h"], raw[f"{src}_w"], raw[f"{src}_c"],
                raw[f"{prefix}_pixel_stride"], raw[f"{prefix}_row_pixels"])


# One dataclass per op kind. ``_raw`` gives the descriptor's fields, ``_from_raw`` the inverse;
# ``validate`` checks what the raw ranges cannot (shapes that agree, kernels the engine runs).

@dataclass(frozen=True)
class _Spatial:
    """Fields shared by the windowed ops: kernel, stride, dilation, explicit padding."""

    def _window_fields(self):
        kh, kw = self.kernel
        sh, sw = self.stride
        dh, dw = getattr(self, "dilation", (1, 1))
        top, left, bottom, right = self.padding
        return dict(kernel_h=kh, kernel_w=kw, stride_h=sh, stride_w=sw, dilation_h=dh,
                    dilation_w=dw, pad_top=top, pad_left=left, pad_bottom=bottom,
                    pad_right=right)

    def _check_window(self, where):
        for i, axis in enumerate("hw"):
            _check(where, f"kernel_{axis}", self.kernel[i], 1, 255)
            _check(where, f"stride_{axis}", self.stride[i], 1, 15)
            _check(where, f"dilation_{axis}", getattr(self, "dilation", (1, 1))[i], 1, 15)
        for name, value in zip(("pad_top", "pad_left", "pad_bottom", "pad_right"),
                               self.padding):
            _check(where, name, value, 0, 255)
        dil = getattr(self, "dilation", (1, 1))
        for i, (size, out, axis) in enumerate(((self.input.h, self.output.h, "h"),
                                               (self.input.w, self.output.w, "w"))):
            eff = (self.kernel[i] - 1) * dil[i] + 1
            padded = size + self.padding[i] + self.padding[i + 2]
            expect = (padded - eff) // self.stride[i] + 1 if padded >= eff else 0
            if out != expect:
                raise FormatError(f"{where}.out_{axis} is {out}, but input {size} padded by "
                                  f"{self.padding[i]}+{self.padding[i + 2]} with kernel "
                                  f"{self.kernel[i]} (dilation {dil[i]}) and stride "
                                  f"{self.stride[i]} gives {expect}")


def _check_quant(where, d, fields=("input_zero_point", "output_zero_point")):
    for name in fields:
        _check(where, name, getattr(d, name), -128, 127)
    lo, hi = d.activation
    _check(where, "activation_min", lo, -128, 127)
    _check(where, "activation_max", hi, -128, 127)
    if lo > hi:
        raise FormatError(f"{where}: activation_min {lo} > activation_max {hi}")


def _check_rounding(where, rounding):
    if rounding not in ROUNDINGS:
        raise FormatError(f"{where}.rounding must be one of {', '.join(ROUNDINGS)}, "
                          f"not {rounding!r}")


@dataclass(frozen=True)
class Conv(_Spatial):
    """CONV: any KxK convolution run on the array as a 1x1 convolution over the im2col
    channels ``(ky * kw + kx) * C + c``; out-of-image taps read ``input_zero_point``. Passes:
    filters in groups of ``group_filters``, each over the im2col channels in chunks of
    ``chunk_channels`` (more than one chunk: int32 partial sums in the scratch region, added,
    then requantized with the last chunk's parameters; the bias is in the first chunk's).
    ``residual``: a view shaped like the output added to it by a fused ADD (its
    :class:`AddRecord` follows the parameter words)."""

    input: View
    output: View
    weight_addr: int
    param_addr: int
    kernel: tuple = (1, 1)
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    input_zero_point: int = 0
    output_zero_point: int = 0
    activation: tuple = (-128, 127)
    rounding: str = "double"
    chunk_channels: int = 0
    group_filters: int = 0
    residual: View | None = None
    last: bool = False
    kind = "CONV"

    def validate(self, where="CONV"):
        self.input.check(f"{where}.in")
        self.output.check(f"{where}.out")
        self._check_window(where)
        _check_quant(where, self)
        _check_rounding(where, self.rounding)
        depth = self.kernel[0] * self.kernel[1] * self.input.c
        _check(where, "chunk_channels", self.chunk_channels, 1, min(depth, 0xFFFF))
        _check(where, "group_filters", self.group_filters, 1, min(self.output.c, 0xFFFF))
        if self.residual is not None:
            self.residual.check(f"{where}.aux")
            if (self.residual.h, self.residual.w, self.residual.c) != \
                    (self.output.h, self.output.w, self.output.c):
                raise FormatError(f"{where}.aux must have the output's shape")

    def _raw(self):
        raw = dict(self._window_fields(), **_view_fields("in", self.input),
                   **_view_fields("out", self.output), weight_addr=self.weight_addr,
                   param_addr=self.param_addr, input_zero_point=self.input_zero_point,
                   output_zero_point=self.output_zero_point,
                   activation_min=self.activation[0], activation_max=self.activation[1],
                   rounding=ROUNDINGS.index(self.rounding),
                   chunk_channels=self.chunk_channels, group_filters=self.group_filters)
        if self.residual is not None:
            raw.update(flags=FLAG_RESIDUAL, aux_addr=self.residual.addr,
                       aux_pixel_stride=self.residual.pixel_stride,
                       aux_row_pixels=self.residual.row_pixels)
        return raw

    @classmethod
    def _from_raw(cls, raw):
        return cls(**_common(cls, raw), weight_addr=raw["weight_addr"],
                   param_addr=raw["param_addr"], kernel=(raw["kernel_h"], raw["kernel_w"]),
                   stride=(raw["stride_h"], raw["stride_w"]),
                   dilation=(raw["dilation_h"], raw["dilation_w"]),
                   padding=(raw["pad_top"], raw["pad_left"], raw["pad_bottom"],
                            raw["pad_right"]),
                   input_zero_point=raw["input_zero_point"],
                   output_zero_point=raw["output_zero_point"],
                   activation=(raw["activation_min"], raw["activation_max"]),
                   rounding=_rounding_name(raw), chunk_channels=raw["chunk_channels"],
                   group_filters=raw["group_filters"],
                   residual=_view_of(raw, "aux", "out") if raw["flags"] & FLAG_RESIDUAL
                   else None)


    def tap_requests(self, oy, ox):
        """Output pixel ``(oy, ox)``'s im2col vector as 2-D DMA requests: per kernel row
        ``ky`` whose input row is in the image, ``(addr, length, count, stride)`` of its
        in-image taps, with ``(ky, kx0, taps)`` saying where they go (``taps`` taps from
        ``kx0``); every other tap is ``input_zero_point``. With packed pixels and dilation 1
        a kernel row is one DMA row of ``taps * C`` bytes, and all the rows of a pixel one
        request (row stride ``dilation_h * row_pitch``)."""
        v = self.input
        sh, sw = self.stride
        dh, dw = self.dilation
        y0, x0 = oy * sh - self.padding[0], ox * sw - self.padding[1]
        kxs = [kx for kx in range(self.kernel[1]) if 0 <= x0 + kx * dw < v.w]
        kys = [ky for ky in range(self.kernel[0]) if 0 <= y0 + ky * dh < v.h]
        if not kxs or not kys:
            return []
        kx0, taps = kxs[0], len(kxs)
        out = []
        for ky in kys:
            at = v.addr + (y0 + ky * dh) * v.row_pitch + (x0 + kx0 * dw) * v.pixel_stride
            if dw == 1 and v.pixel_stride == v.c:
                out.append(((ky, kx0, taps), (at, taps * v.c, 1, 0)))
            else:
                out.append(((ky, kx0, taps), (at, v.c, taps, dw * v.pixel_stride)))
        return out


@dataclass(frozen=True)
class FullyConnected:
    """FULLY_CONNECTED: every pixel of ``input`` (``h * w`` rows of C) times the weights;
    passes as :class:`Conv` (``chunk_channels``, ``group_filters``). The requantization is
    the reference FULLY_CONNECTED's in the ``"double"`` mode (golden.ops.fully_connected)."""

    input: View
    output: View
    weight_addr: int
    param_addr: int
    input_zero_point: int = 0
    output_zero_point: int = 0
    activation: tuple = (-128, 127)
    rounding: str = "double"
    chunk_channels: int = 0
    group_filters: int = 0
    last: bool = False
    kind = "FULLY_CONNECTED"

    def validate(self, where="FULLY_CONNECTED"):
        self.input.check(f"{where}.in")
        self.output.check(f"{where}.out")
        _check_quant(where, self)
        _check_rounding(where, self.rounding)
        if (self.input.h, self.input.w) != (self.output.h, self.output.w):
            raise FormatError(f"{where}: output {self.output.h}x{self.output.w} pixels, input "
                              f"{self.input.h}x{self.input.w}")
        _check(where, "chunk_channels", self.chunk_channels, 1, min(self.input.c, 0xFFFF))
        _check(where, "group_filters", self.group_filters, 1, min(self.output.c, 0xFFFF))

    def _raw(self):
        return dict(**_view_fields("in", self.input), **_view_fields("out", self.output),
                    kernel_h=1, kernel_w=1, stride_h=1, stride_w=1, dilation_h=1,
                    dilation_w=1, weight_addr=self.weight_addr, param_addr=self.param_addr,
                    input_zero_point=self.input_zero_point,
                    output_zero_point=self.output_zero_point,
                    activation_min=self.activation[0], activation_max=self.activation[1],
                    rounding=ROUNDINGS.index(self.rounding),
                    chunk_channels=self.chunk_channels, group_filters=self.group_filters)

    @classmethod
    def _from_raw(cls, raw):
        return cls(**_common(cls, raw), weight_addr=raw["weight_addr"],
                   param_addr=raw["param_addr"], input_zero_point=raw["input_zero_point"],
                   output_zero_point=raw["output_zero_point"],
                   activation=(raw["activation_min"], raw["activation_max"]),
                   rounding=_rounding_name(raw), chunk_channels=raw["chunk_channels"],
                   group_filters=raw["group_filters"])


@dataclass(frozen=True)
class Depthwise(_Spatial):
    """DEPTHWISE (depth multiplier 1, 3x3 or 5x5, stride 1 or 2): weights int8
    ``[kh, kw, C]`` at ``weight_addr`` (a group of L lanes is one 2-D DMA request: ``kh * kw``
    rows of L bytes, ``C`` apart, the order hw/engine/depthwise.py ``weight_words`` takes);
    at ``param_addr`` ``bias`` int32[C], ``multiplier`` int32[C] (float32 bits in the float
    mode), ``shift`` int8[C], one array after the other. ``acc = bias + sum (x - zp) * w``
    with out-of-image taps reading ``input_zero_point`` (so they add nothing)."""

    input: View
    output: View
    weight_addr: int
    param_addr: int
    kernel: tuple = (3, 3)
    stride: tuple = (1, 1)
    padding: tuple = (0, 0, 0, 0)
    input_zero_point: int = 0
    output_zero_point: int = 0
    activation: tuple = (-128, 127)
    rounding: str = "double"
    last: bool = False
    kind = "DEPTHWISE"

    def validate(self, where="DEPTHWISE"):
        self.input.check(f"{where}.in")
        self.output.check(f"{where}.out")
        self._check_window(where)
        _check_quant(where, self)
        _check_rounding(where, self.rounding)
        if self.kernel not in ((3, 3), (5, 5)) or self.stride not in ((1, 1), (2, 2)):
            raise FormatError(f"{where}: the depthwise engine runs 3x3 and 5x5 kernels at "
                              f"stride 1 or 2, not {self.kernel} stride {self.stride}")
        if self.output.c != self.input.c:
            raise FormatError(f"{where}: depth multiplier must be 1 ({self.input.c} input "
                              f"channels, {self.output.c} output channels)")

    def _raw(self):
        return dict(self._window_fields(), **_view_fields("in", self.input),
                    **_view_fields("out", self.output), weight_addr=self.weight_addr,
                    param_addr=self.param_addr, input_zero_point=self.input_zero_point,
                    output_zero_point=self.output_zero_point,
                    activation_min=self.activation[0], activation_max=self.activation[1],
                    rounding=ROUNDINGS.index(self.rounding))

    @classmethod
    def _from_raw(cls, raw):
        return cls(**_common(cls, raw), weight_addr=raw["weight_addr"],
                   param_addr=raw["param_addr"], kernel=(raw["kernel_h"], raw["kernel_w"]),
                   stride=(raw["stride_h"], raw["stride_w"]),
                   padding=(raw["pad_top"], raw["pad_left"], raw["pad_bottom"],
                            raw["pad_right"]),
                   input_zero_point=raw["input_zero_point"],
                   output_zero_point=raw["output_zero_point"],
                   activation=(raw["activation_min"], raw["activation_max"]),
                   rounding=_rounding_name(raw))


@dataclass(frozen=True)
class Add:
    """ADD (residual): ``input`` + ``other`` (both shaped like the output), TFLite's int8
    arithmetic with the :class:`AddRecord` at ``param_addr``."""

    input: View
    other: View
    output: View
    param_addr: int
    output_zero_point: int = 0
    activation: tuple = (-128, 127)
    last: bool = False
    kind = "ADD"

    def validate(self, where="ADD"):
        for name, view in (("in", self.input), ("aux", self.other), ("out", self.output)):
            view.check(f"{where}.{name}")
            if (view.h, view.w, view.c) != (self.output.h, self.output.w, self.output.c):
                raise FormatError(f"{where}.{name} must have the output's shape")
        _check_quant(where, self, ("output_zero_point",))

    def _raw(self):
        return dict(**_view_fields("in", self.input), **_view_fields("out", self.output),
                    aux_addr=self.other.addr, aux_pixel_stride=self.other.pixel_stride,
                    aux_row_pixels=self.other.row_pixels, param_addr=self.param_addr,
                    output_zero_point=self.output_zero_point,
                    activation_min=self.activation[0], activation_max=self.activation[1])

    @classmethod
    def _from_raw(cls, raw):
        return cls(**_common(cls, raw), other=_view_of(raw, "aux", "out"),
                   param_addr=raw["param_addr"], output_zero_point=raw["output_zero_point"],
                   activation=(raw["activation_min"], raw["activation_max"]))


@dataclass(frozen=True)
class _Pool(_Spatial):
    input: View
    output: View
    kernel: tuple = (2, 2)
    stride: tuple = (2, 2)
    padding: tuple = (0, 0, 0, 0)
    activation: tuple = (-128, 127)
    last: bool = False

    def validate(self, where=None):
        where = where or self.kind
        self.input.check(f"{where}.in")
        self.output.check(f"{where}.out")
        self._check_window(where)
        _check_quant(where, self, ())
        if self.output.c != self.input.c:
            raise FormatError(f"{where}: {self.input.c} input channels, {self.output.c} output")

    def _raw(self):
        return dict(self._window_fields(), **_view_fields("in", self.input),
                    **_view_fields("out", self.output), activation_min=self.activation[0],
                    activation_max=self.activation[1])

    @classmethod
    def _from_raw(cls, raw):
        return cls(**_common(cls, raw), kernel=(raw["kernel_h"], raw["kernel_w"]),
                   stride=(raw["stride_h"], raw["stride_w"]),
                   padding=(raw["pad_top"], raw["pad_left"], raw["pad_bottom"],
                            raw["pad_right"]),
                   activation=(raw["activation_min"], raw["activation_max"]))


@dataclass(frozen=True)
class AveragePool(_Pool):
    """AVERAGE_POOL (windowed or global): the mean of the in-image taps, TFLite's rounding."""

    kind = "AVERAGE_POOL"


@dataclass(frozen=True)
class MaxPool(_Pool):
    """MAX_POOL: the largest in-image tap."""

    kind = "MAX_POOL"


@dataclass(frozen=True)
class Mean:
    """MEAN over height and width (a global average with its own requantization): the
    :class:`MeanRecord` at ``param_addr``; the output is 1 x 1 x C."""

    input: View
    output: View
    param_addr: int
    input_zero_point: int = 0
    output_zero_point: int = 0
    last: bool = False
    kind = "MEAN"
    activation = (-128, 127)

    def validate(self, where="MEAN"):
        self.input.check(f"{where}.in")
        self.output.check(f"{where}.out")
        _check_quant(where, self)
        if (self.output.h, self.output.w, self.output.c) != (1, 1, self.input.c):
            raise FormatError(f"{where}.out must be 1x1x{self.input.c}")

    def _raw(self):
        return dict(**_view_fields("in", self.input), **_view_fields("out", self.output),
                    param_addr=self.param_addr, input_zero_point=self.input_zero_point,
                    output_zero_point=self.output_zero_point, activation_min=-128,
                    activation_max=127)

    @classmethod
    def _from_raw(cls, raw):
        return cls(**_common(cls, raw), param_addr=raw["param_addr"],
                   input_zero_point=raw["input_zero_point"],
                   output_zero_point=raw["output_zero_point"])


@dataclass(frozen=True)
class Host:
    """HOST: the engine stops and signals the host, which runs host segment ``segment``
    (ops the board does not run) reading and writing the arena, then resumes the program."""

    segment: int
    last: bool = False
    kind = "HOST"

    def validate(self, where="HOST"):
        _check(where, "segment", self.segment, 0, 0xFFFF_FFFF)

    def _raw(self):
        return dict(weight_addr=self.segment)

    @classmethod
    def _from_raw(cls, raw):
        return cls(segment=raw["weight_addr"], last=bool(raw["flags"] & FLAG_LAST))


_KINDS = {cls.kind: cls for cls in (Conv, FullyConnected, Depthwise, Add, AveragePool, MaxPool,
                                    Mean, Host)}


def _common(cls, raw):
    return dict(input=_view_of(raw, "in"), output=_view_of(raw, "out"),
                last=bool(raw["flags"] & FLAG_LAST))


def _rounding_name(raw):
    if raw["rounding"] >= len(ROUNDINGS):
        raise FormatError(f"descriptor rounding {raw['rounding']} is not a mode (0.."
                          f"{len(ROUNDINGS) - 1})")
    return ROUNDINGS[raw["rounding"]]


def encode_descriptor(d, where=None):
    """The 64 bytes of descriptor ``d`` (validated first; FormatError names the bad field)."""
    where = where or d.kind
    d.validate(where)
    raw = d._raw()
    raw["op"] = OPS[d.kind]
    raw["flags"] = raw.get("flags", 0) | (FLAG_LAST if d.last else 0)
    word = 0
    known = {name for name, *_ in DESCRIPTOR_FIELDS}
    for name in raw:
        if name not in known:
            raise AssertionError(f"descriptor field {name} is not in the table")
    for name, offset, width, signed in DESCRIPTOR_FIELDS:
        value = _check(where, name, raw.get(name, 0), *_range(width, signed))
        word |= (value & ((1 << width) - 1)) << offset
    return word.to_bytes(DESCRIPTOR_BYTES, "little")


def decode_descriptor(data, where="descriptor"):
    """The op dataclass of 64 descriptor bytes; FormatError if they are not a valid one."""
    if len(data) != DESCRIPTOR_BYTES:
        raise FormatError(f"{where}: a descriptor is {DESCRIPTOR_BYTES} bytes, got {len(data)}")
    word = int.from_bytes(bytes(data), "little")
    raw = {}
    for name, offset, width, signed in DESCRIPTOR_FIELDS:
        value = (word >> offset) & ((1 << width) - 1)
        if signed and value >> (width - 1):
            value -= 1 << width
        raw[name] = value
    kinds = {code: name for name, code in OPS.items()}
    if raw["op"] not in kinds:
        raise FormatError(f"{where}: op code {raw['op']} is not an op kind "
                          f"({', '.join(f'{v} {k}' for k, v in OPS.items())})")
    d = _KINDS[kinds[raw["op"]]]._from_raw(raw)
    d.validate(where)
    if encode_descriptor(d, where) != bytes(data):
        raise FormatError(f"{where}: {d.kind} descriptor has nonzero bytes in fields its op "
                          f"does not use")
    return d


@dataclass(frozen=True)
class AddRecord:
    """ADD's integer parameters (20 bytes at ``param_addr``; after the parameter words with a
    fused residual): ``out = clamp(RDBPOT(SRDHM(s1 + s2, m_out), -shift_out) + zp_out)``,
    ``s_i = RDBPOT(SRDHM((x_i - zp_i) << 20, m_i), -shift_i)`` (golden.ops.add's
    arithmetic). With a fused residual input 1 is the conv's requantized output, whose zero
    point is ``zero_points[0]`` and clamp ``input_activation``."""

    multipliers: tuple        # (m1, m2, m_out) int32
    shifts: tuple             # (s1, s2, s_out) in [-31, 0]
    zero_points: tuple        # (zp1, zp2) int8
    input_activation: tuple = (-128, 127)
    BYTES = 20

    def encode(self):
        for i, m in enumerate(self.multipliers):
            _check("ADD record", f"multiplier{i}", m, -(1 << 31), (1 << 31) - 1)
        for i, s in enumerate(self.shifts):
            _check("ADD record", f"shift{i}", s, -31, 0)
        for i, z in enumerate(self.zero_points):
            _check("ADD record", f"zero_point{i}", z, -128, 127)
        return struct.pack("<iiibbbbbbbb", *map(int, self.multipliers), *map(int, self.shifts),
                           *map(int, self.zero_points), *map(int, self.input_activation), 0)

    @classmethod
    def decode(cls, data):
        v = struct.unpack("<iiibbbbbbbb", bytes(data[:cls.BYTES]))
        return cls(v[0:3], v[3:6], v[6:8], v[8:10])


@dataclass(frozen=True)
class MeanRecord:
    """MEAN's requantization (8 bytes at ``param_addr``): ``multiplier``, ``shift`` with the
    1/count already folded in (golden.ops.mean's Prepare)."""

    multiplier: int
    shift: int
    BYTES = 8

    def encode(self):
        _check("MEAN record", "multiplier", self.multiplier, -(1 << 31), (1 << 31) - 1)
        _check("MEAN record", "shift", self.shift, -63, 31)
        return struct.pack("<ib3x", int(self.multiplier), int(self.shift))

    @classmethod
    def decode(cls, data):
        m, s = struct.unpack("<ib3x", bytes(data[:cls.BYTES]))
        return cls(m, s)


def param_tile_bytes(cols):
    """Bytes of one parameter word (column tile): bias, multiplier int32 and shift int8 per
    column."""
    return cols * 9


@dataclass(frozen=True)
class Header:
    """The image header: sizes and places of its parts, the model's input and output views,
    and the ArrayConfig the program was compiled for."""

    image_bytes: int
    program_addr: int
    descriptor_count: int
    weights_addr: int
    weights_bytes: int
    arena_addr: int
    arena_bytes: int
    scratch_addr: int
    scratch_bytes: int
    input: View
    output: View
    config: ArrayConfig
    image_id: int = 0

    def validate(self):
        if self.descriptor_count > MAX_DESCRIPTORS:
            raise FormatError(f"program has {self.descriptor_count} descriptors, "
                              f"{self.descriptor_count - MAX_DESCRIPTORS} more than the "
                              f"limit of {MAX_DESCRIPTORS}")
        if self.image_bytes > SDRAM_BYTES:
            over = self.image_bytes - SDRAM_BYTES
            raise FormatError(f"image is {self.image_bytes:,} bytes, {over:,} more than the "
                              f"SDRAM's {SDRAM_BYTES:,}")
        self.input.check("header.input")
        self.output.check("header.output")


def _config_fields(cfg):
    return dict(rows=cfg.rows, cols=cfg.cols, weight_banks=cfg.weight_banks,
                load_width=cfg.load_width, max_channels=cfg.max_channels,
                max_filters=cfg.max_filters, weight_depth=cfg.weight_depth,
                roundings=sum(1 << ROUNDINGS.index(r) for r in cfg.roundings),
                requantizer=REQUANTIZERS.index(cfg.requantizer),
                requant_steps=cfg.requant_steps)


def encode_header(h):
    """The HEADER_BYTES of header ``h`` (its ``image_id`` as given)."""
    h.validate()
    values = dict(magic=MAGIC, version=VERSION, header_bytes=HEADER_BYTES, image_id=h.image_id,
                  image_bytes=h.image_bytes, program_addr=h.program_addr,
                  descriptor_count=h.descriptor_count, weights_addr=h.weights_addr,
                  weights_bytes=h.weights_bytes, arena_addr=h.arena_addr,
                  arena_bytes=h.arena_bytes, scratch_addr=h.scratch_addr,
                  scratch_bytes=h.scratch_bytes, **_view_fields("input", h.input),
                  **_view_fields("output", h.output), **_config_fields(h.config))
    out = bytearray(HEADER_BYTES)
    for name, offset, fmt in HEADER_FIELDS:
        value = values[name]
        if fmt != "4s":
            value = _check("header", name, value, 0, (1 << (8 * struct.calcsize(fmt))) - 1)
        struct.pack_into("<" + fmt, out, offset, value)
    return bytes(out)


def decode_header(data):
    """The :class:`Header` at the start of an image; FormatError if it is not one."""
    if len(data) < HEADER_BYTES:
        raise FormatError(f"image is {len(data)} bytes, shorter than its {HEADER_BYTES}-byte "
                          f"header")
    raw = {name: struct.unpack_from("<" + fmt, data, offset)[0]
           for name, offset, fmt in HEADER_FIELDS}
    if raw["magic"] != MAGIC:
        raise FormatError(f"not a pwconv program image (magic {raw['magic']!r}, expected "
                          f"{MAGIC!r})")
    if raw["version"] != VERSION:
        raise FormatError(f"program format version {raw['version']}, this pwconv reads "
                          f"version {VERSION}")
    if raw["header_bytes"] != HEADER_BYTES:
        raise FormatError(f"header_bytes is {raw['header_bytes']}, expected {HEADER_BYTES}")
    try:
        cfg = ArrayConfig(rows=raw["rows"], cols=raw["cols"], weight_banks=raw["weight_banks"],
                          load_width=raw["load_width"], max_channels=raw["max_channels"],
                          max_filters=raw["max_filters"], weight_depth=raw["weight_depth"],
                          roundings=tuple(r for i, r in enumerate(ROUNDINGS)
                                          if raw["roundings"] >> i & 1),
                          requantizer=REQUANTIZERS[raw["requantizer"]]
                          if raw["requantizer"] < len(REQUANTIZERS) else "?",
                          requant_steps=raw["requant_steps"])
    except (TypeError, ValueError) as error:
        raise FormatError(f"header: invalid array configuration ({error})") from None
    h = Header(raw["image_bytes"], raw["program_addr"], raw["descriptor_count"],
               raw["weights_addr"], raw["weights_bytes"], raw["arena_addr"], raw["arena_bytes"],
               raw["scratch_addr"], raw["scratch_bytes"], _view_of(raw, "input"),
               _view_of(raw, "output"), cfg, raw["image_id"])
    h.validate()
    if len(data) < h.image_bytes:
        raise FormatError(f"image is {len(data)} bytes, its header says {h.image_bytes}")
    return h


def image_id(image, header):
    """CRC-32 of the image's constant part (header with a zero id, program, weights and
    parameters): what the board compares before it runs a loaded image."""
    end = header.weights_addr + header.weights_bytes
    data = bytearray(image[:end])
    data[8:12] = b"\0\0\0\0"
    return zlib.crc32(data)


def replace(d, **changes):
    """``dataclasses.replace`` for descriptors and headers."""
    return dataclasses.replace(d, **changes)

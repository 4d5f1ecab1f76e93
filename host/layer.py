"""A quantized 1x1 convolution layer: its arrays, their validation, and the LAYER.npz format."""

import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["LayerError", "Quantization", "Layer", "check_input", "load_layer", "save_layer",
           "random_layer", "golden_output"]

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
SHIFT_MIN, SHIFT_MAX = -31, 30


class LayerError(ValueError):
    """A layer or its input is malformed; the message names the key and the problem."""


def _array(name, value, dtype, ndim=None):
    if value is None:
        raise LayerError(f"{name}: missing")
    arr = np.asarray(value)
    want = np.dtype(dtype)
    if arr.dtype != want:
        if arr.dtype.newbyteorder("=") == want:      # same type, other byte order
            order = "big" if sys.byteorder == "little" else "little"
            raise LayerError(f"{name}: expected dtype {want.name} in this machine's "
                             f"({sys.byteorder}-endian) byte order, got {order}-endian "
                             f"{want.name} ({arr.dtype.str!r}); convert it with "
                             f".astype(np.{want.name})")
        raise LayerError(f"{name}: expected dtype {want.name}, got {arr.dtype.name}")
    if ndim is not None and arr.ndim != ndim:
        raise LayerError(f"{name}: expected {ndim} dimension(s), got shape {arr.shape}")
    return arr


def _frozen(arr, dtype=None):
    """A private, read-only copy of ``arr``: later changes to the caller's array cannot reach a
    validated layer (nor a device that already holds its words)."""
    copy = np.array(arr, dtype=dtype, copy=True)
    copy.setflags(write=False)
    return copy


def _check_per_filter(arrays, w):
    """Each of ``arrays`` (name: per-output-channel array) has F entries, F being ``w``'s second
    axis; when all have C entries instead, ``w`` is the one that is wrong (given as [F, C]).
    None values (arrays a rounding mode does without) are skipped."""
    channels, filters = w.shape
    shapes = {name: np.shape(arr) for name, arr in arrays.items() if arr is not None}
    if channels != filters and all(shape == (channels,) for shape in shapes.values()):
        names = " and ".join(shapes)
        raise LayerError(f"w: expected shape [C, F], got {w.shape}, but {names} "
                         f"{'have' if len(shapes) > 1 else 'has'} {channels} entries: is w "
                         f"[F, C]? Pass w.T (TFLite's filters are [F, 1, 1, C])")
    for name, shape in shapes.items():
        if shape != (filters,):
            raise LayerError(f"{name}: expected shape ({filters},) to match F of w, got {shape}")


def _scalar(name, value, lo, hi):
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iu":
        raise LayerError(f"{name}: expected an integer scalar, got {arr.dtype.name} of shape "
                         f"{arr.shape}")
    v = int(arr)
    if not lo <= v <= hi:
        raise LayerError(f"{name}: {v} is out of range [{lo}, {hi}]")
    return v


@dataclass(frozen=True)
class Quantization:
    """int8 per-channel quantization of a layer's output (and its input zero point), with the
    rounding mode of the runtime to match.

    Parameters
    ----------
    output_multiplier : int32 [F]
        Per-channel fixed-point multipliers (TFLite's ``QuantizeMultiplier``); None with
        ``rounding="float"``.
    output_shift : integer [F]
        Per-channel shifts in [-31, 30]; positive is a left shift; None with ``"float"``.
    input_zero_point, output_zero_point : int
        Zero points in [-128, 127].
    activation_min, activation_max : int
        Output clamp (ReLU: ``activation_min = output_zero_point``).
    rounding : str
        One of :data:`pwconv.golden.ROUNDINGS`: ``"double"`` (TFLite's reference kernels, the
        default), ``"single"``, ``"ruy"`` (TFLite's optimized kernels) or ``"float"`` (XNNPACK,
        ONNX Runtime); see :func:`pwconv.golden.requantize`.
    scale : float32 [F]
        Per-channel requantization scales (finite, positive, normal), for ``"float"`` only.

    Use :func:`pwconv.golden.layer_requant_params` to derive the multipliers, shifts or scales
    from a model's float scales the way the matching runtime does.
    """

    output_multiplier: np.ndarray | None
    output_shift: np.ndarray | None
    input_zero_point: int = 0
    output_zero_point: int = 0
    activation_min: int = -128
    activation_max: int = 127
    rounding: str = "double"
    scale: np.ndarray | None = None

    @property
    def filters(self):
        """F, the number of output channels the parameters are for."""
        per_channel = self.scale if self.rounding == "float" else self.output_multiplier
        return per_channel.shape[0]

    def __post_init__(self):
        from pwconv import golden

        if not isinstance(self.rounding, str) or self.rounding not in golden.ROUNDINGS:
            raise LayerError(f"rounding: expected one of {', '.join(golden.ROUNDINGS)}, "
                             f"got {self.rounding!r}")
        object.__setattr__(self, "rounding", str(self.rounding))
        for name in ("input_zero_point", "output_zero_point", "activation_min",
                     "activation_max"):
            object.__setattr__(self, name, _scalar(name, getattr(self, name), -128, 127))
        if self.activation_min > self.activation_max:
            raise LayerError(f"activation_min: {self.activation_min} is greater than "
                             f"activation_max {self.activation_max}")
        if self.rounding == "float":
            scale = _array("scale", self.scale, np.float32, 1)
            bad = ~(np.isfinite(scale) & (scale >= np.finfo(np.float32).tiny))
            if bad.any():
                raise LayerError(f"scale: {float(scale[bad][0])!r} is not a finite, positive, "
                                 f"normal float32")
            object.__setattr__(self, "scale", _frozen(scale))
            for name in ("output_multiplier", "output_shift"):
                if getattr(self, name) is not None:
                    raise LayerError(f"{name}: not used with rounding 'float' (give scale)")
            return
        if self.scale is not None:
            raise LayerError(f"scale: only used with rounding 'float', not {self.rounding!r}")
        mult = _array("output_multiplier", self.output_multiplier, np.int32, 1)
        shift = np.asarray(self.output_shift)
        if shift.dtype.kind not in "iu":
            raise LayerError(f"output_shift: expected an integer dtype, got {shift.dtype.name}")
        if shift.shape != mult.shape:
            raise LayerError(f"output_shift: expected shape {mult.shape} like output_multiplier, "
                             f"got {shift.shape}")
        if shift.size and not (SHIFT_MIN <= shift.min() and shift.max() <= SHIFT_MAX):
            bad = shift[(shift < SHIFT_MIN) | (shift > SHIFT_MAX)][0]
            raise LayerError(f"output_shift: {int(bad)} is out of range [{SHIFT_MIN}, {SHIFT_MAX}]")
        object.__setattr__(self, "output_multiplier", _frozen(mult))
        object.__setattr__(self, "output_shift", _frozen(shift, np.int32))


@dataclass(frozen=True)
class Layer:
    """The weights of a 1x1 convolution: ``w`` int8 [C, F], ``bias`` int32 [F], quantization.

    ``w`` and ``bias`` are kept as private read-only copies (as are the arrays of
    :class:`Quantization`), so changing the caller's arrays afterwards changes nothing here.
    """

    w: np.ndarray
    bias: np.ndarray
    quant: Quantization

    def __post_init__(self):
        w = _array("w", self.w, np.int8, 2)
        if 0 in w.shape:
            raise LayerError(f"w: C and F must be at least 1, got shape {w.shape}")
        bias = _array("bias", self.bias, np.int32, 1)
        if not isinstance(self.quant, Quantization):
            raise LayerError(f"quant: expected a Quantization, not {type(self.quant).__name__}")
        _check_per_filter({"bias": bias, "output_multiplier": self.quant.output_multiplier,
                           "scale": self.quant.scale}, w)
        object.__setattr__(self, "w", _frozen(w))
        object.__setattr__(self, "bias", _frozen(bias))

    @property
    def channels(self):
        return self.w.shape[0]

    @property
    def filters(self):
        return self.w.shape[1]


def check_input(x, channels):
    """Validate activations ``x`` int8 [H, W, C] or [N, H, W, C] for a layer of C channels."""
    x = _array("x", x, np.int8)
    if x.ndim not in (3, 4):
        raise LayerError(f"x: expected shape [H, W, C] or [N, H, W, C], got {x.shape}")
    if x.shape[-1] != channels:
        raise LayerError(f"x: has {x.shape[-1]} channels but w has C = {channels}")
    return x


_KEYS = ("x", "w", "bias", "input_zero_point", "output_zero_point", "activation_min",
         "activation_max")
#: Keys of the requantization parameters, per rounding mode.
_FIXED_KEYS = ("output_multiplier", "output_shift")
_FLOAT_KEYS = ("scale",)


def _rounding_key(value, path):
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind != "U":
        raise LayerError(f"rounding: expected a string scalar in {path}, got {arr.dtype.name} "
                         f"of shape {arr.shape}")
    return str(arr)


#: What reading a damaged archive can raise (zipfile, zlib, numpy's .npy header parser).
_READ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error)


def _read_npz(path):
    """The arrays of the .npz file ``path``; anything else is a LayerError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except FileNotFoundError:
        raise LayerError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise LayerError(f"{path}: is a directory, not a .npz file") from None
    except OSError as error:
        raise LayerError(f"{path}: cannot be read ({error.strerror})") from None
    if not head:
        raise LayerError(f"{path}: is empty, not a .npz file")
    if head == b"\x93NUMPY":
        raise LayerError(f"{path}: is a .npy file (one array), not a .npz archive of named "
                         f"arrays (write it with numpy.savez or 'pwconv layer')")
    if not head.startswith(b"PK"):
        raise LayerError(f"{path}: not a .npz file (a .npz is a zip archive of .npy arrays, "
                         f"written by numpy.savez)")
    arrays = {}
    try:
        # An open file, not the name: np.load leaks the file it opened when zipfile fails.
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    arrays[key] = npz[key]
                except ValueError as error:
                    if "allow_pickle" not in str(error):
                        raise
                    raise LayerError(f"{key}: holds Python objects (pickled data) in {path}, "
                                     f"expected a numeric array") from None
    except LayerError:
        raise
    except _READ_ERRORS as error:
        raise LayerError(f"{path}: truncated or corrupted .npz file "
                         f"({type(error).__name__}: {error})") from None
    return arrays


def load_layer(path, *, rounding=None):
    """Read LAYER.npz (TFLite conventions) and return ``(x, Layer)``, fully validated.

    The optional string key ``rounding`` (``"double"`` when absent) names the requantization
    mode; ``"float"`` takes the key ``scale`` (float32 [F]) instead of ``output_multiplier`` and
    ``output_shift``. A ``rounding`` argument overrides the file's mode (the file must then hold
    that mode's keys).

    Raises
    ------
    LayerError
        If the file is missing, empty, not a .npz archive, truncated or corrupted, or any array
        is missing or malformed; the message names the file or key and the problem.
    """
    arrays = _read_npz(path)
    if rounding is None:
        rounding = _rounding_key(arrays["rounding"], path) if "rounding" in arrays else "double"
    needed = _FLOAT_KEYS if rounding == "float" else _FIXED_KEYS
    for key in _KEYS + needed:
        if key not in arrays:
            raise LayerError(f"{key}: missing from {path}" + (
                f" (needed with rounding {rounding!r})" if key in needed else ""))
    fixed = rounding != "float"
    # Check the per-channel arrays against F of w first, so a mismatch blames the right key.
    w = _array("w", arrays["w"], np.int8, 2)
    _check_per_filter({key: arrays[key] for key in ("bias",) + needed}, w)
    quant = Quantization(
        output_multiplier=arrays["output_multiplier"] if fixed else None,
        output_shift=arrays["output_shift"] if fixed else None,
        input_zero_point=arrays["input_zero_point"],
        output_zero_point=arrays["output_zero_point"],
        activation_min=arrays["activation_min"], activation_max=arrays["activation_max"],
        rounding=rounding, scale=None if fixed else arrays["scale"])
    layer = Layer(arrays["w"], arrays["bias"], quant)
    return check_input(arrays["x"], layer.channels), layer


def save_layer(path, x, layer):
    """Write ``x`` and ``layer`` as LAYER.npz, to exactly ``path`` (``numpy.savez`` given a
    name would append ``.npz`` to it; an open file it writes as is)."""
    q = layer.quant
    params = ({"scale": q.scale} if q.rounding == "float" else
              {"output_multiplier": q.output_multiplier, "output_shift": q.output_shift})
    with open(path, "wb") as f:
        np.savez(f, x=x, w=layer.w, bias=layer.bias,
                 input_zero_point=np.int32(q.input_zero_point),
                 output_zero_point=np.int32(q.output_zero_point),
                 activation_min=np.int32(q.activation_min),
                 activation_max=np.int32(q.activation_max),
                 rounding=np.str_(q.rounding), **params)


def random_layer(shape, filters, *, seed=0, relu=False, rounding="double"):
    """A random but realistic layer: ``x`` of ``shape`` [..., C], weights with per-channel scales
    quantized as the runtime ``rounding`` matches does, bias of plausible size. Returns
    ``(x, Layer)``."""
    from pwconv.golden import layer_requant_params

    rng = np.random.default_rng(seed)
    channels = shape[-1]
    x = rng.integers(-128, 128, size=shape, dtype=np.int8)
    w = rng.integers(-127, 128, size=(channels, filters), dtype=np.int8)
    bias = rng.integers(-(1 << 14), 1 << 14, size=filters).astype(np.int32)
    input_scale = 0.05
    weight_scales = rng.uniform(0.002, 0.02, size=filters)
    output_scale = input_scale * 0.01 * np.sqrt(channels) * 6
    mult, shift, scale = layer_requant_params(input_scale, weight_scales, output_scale, rounding)
    in_zp = int(rng.integers(-128, 128))
    out_zp = int(rng.integers(-20, 20))
    quant = Quantization(mult, shift, input_zero_point=in_zp, output_zero_point=out_zp,
                         activation_min=out_zp if relu else -128, activation_max=127,
                         rounding=rounding, scale=scale)
    return x, Layer(w, bias, quant)


def golden_output(x, layer):
    """What the runtime ``layer.quant.rounding`` matches computes for ``x`` through ``layer``:
    :func:`pwconv.golden.conv1x1`."""
    from pwconv import golden

    q = layer.quant
    return golden.conv1x1(x, layer.w, layer.bias, input_zero_point=q.input_zero_point,
                          output_zero_point=q.output_zero_point,
                          output_multiplier=q.output_multiplier, output_shift=q.output_shift,
                          activation_min=q.activation_min, activation_max=q.activation_max,
                          rounding=q.rounding, scale=q.scale)

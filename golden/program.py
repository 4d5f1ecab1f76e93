"""The reference executor of a layer program: runs a compiled memory image op by op, as the
board's engine will, reading descriptors, weights and tensors from the image and writing the
outputs into it.

This is the model the gateware command processor (hw/engine/) is tested against. Every op
reads its inputs through the descriptor's views, exactly the bytes the engine's address
generators fetch: CONV gathers its im2col rows (out-of-image taps read the input zero point),
decodes each pass's weight and parameter words in the order the array's load ports take them
(host/program.py ``compile_layer``; hw/layouts.py ``weight_word`` and ``param_word``), adds the
int32 partial sums of a split C, and requantizes. The arithmetic is golden's (reused, never
copied): :func:`pwconv.golden.conv1x1_acc` and :func:`pwconv.golden.requantize` for CONV,
:func:`pwconv.golden.ops.fully_connected` for FULLY_CONNECTED (TFLite's FC kernels),
``depthwise_conv2d``, ``add_quantized``, ``average_pool2d``, ``max_pool2d`` and
``mean_quantized`` of :mod:`pwconv.golden.ops` for the others. The format is
host/compiler/format.py (docs/program.md).
"""

from __future__ import annotations

import numpy as np

from . import ops as gops
from .conv import conv1x1_acc, requantize
from .requant import wrap_int32

__all__ = ["run_program", "read_view", "write_view", "im2col", "unpack_pass_weights",
           "unpack_params", "unpack_channel_params", "pass_sizes"]


def _fmt():
    from pwconv.host.compiler import format as fmt     # the format is the contract
    return fmt


def _window(image, view):
    """A strided NumPy view [h, w, c] of ``view``'s bytes in ``image`` (writable if it is)."""
    fmt = _fmt()
    if view.addr + view.span > len(image):
        raise fmt.FormatError(f"view at {view.addr:#x} ({view.h}x{view.w}x{view.c}, "
                              f"{view.span} bytes) runs past the image's {len(image)} bytes")
    buf = np.frombuffer(image, np.int8)
    return np.lib.stride_tricks.as_strided(buf[view.addr:], shape=(view.h, view.w, view.c),
                                           strides=(view.row_pitch, view.pixel_stride, 1))


def read_view(image, view):
    """A copy of the tensor ``view`` points at: int8 [h, w, c]."""
    return np.array(_window(image, view))


def write_view(image, view, values):
    """Write int8 ``values`` (``h * w * c`` of them, NHWC order) through ``view``."""
    values = np.asarray(values, np.int8).reshape(view.h, view.w, view.c)
    _window(image, view)[...] = values


def im2col(x, kernel, stride, dilation, pad_tl, out_hw, fill):
    """The im2col rows of ``x`` int8 [H, W, C]: [OH * OW, KH * KW * C], channel
    ``(ky * KW + kx) * C + c`` of output pixel ``(oy, ox)`` is input pixel ``(oy * sh - pt +
    ky * dh, ox * sw - pl + kx * dw)`` or ``fill`` outside the image."""
    (kh, kw), (sh, sw), (dh, dw), (pt, pl), (oh, ow) = kernel, stride, dilation, pad_tl, out_hw
    h, w, c = x.shape
    need_h = (oh - 1) * sh + (kh - 1) * dh + 1
    need_w = (ow - 1) * sw + (kw - 1) * dw + 1
    padded = np.full((max(need_h, pt + h), max(need_w, pl + w), c), fill, np.int8)
    padded[pt:pt + h, pl:pl + w] = x
    taps = [padded[ky * dh:ky * dh + (oh - 1) * sh + 1:sh, kx * dw:kx * dw + (ow - 1) * sw + 1:sw]
            for ky in range(kh) for kx in range(kw)]
    return np.concatenate(taps, axis=-1).reshape(oh * ow, kh * kw * c)


def pass_sizes(cfg, total, step):
    """The ``[start, end)`` ranges of ``total`` in steps of ``step``."""
    return [(s, min(s + step, total)) for s in range(0, total, step)]


def unpack_pass_weights(cfg, data, channels, filters):
    """int8 [channels, filters] from one pass's weight words (``load_width * cols`` bytes
    each, tile-major, then beat, then row group: host/program.py ``compile_layer``)."""
    beats, tiles, groups = cfg.beats(channels), cfg.tiles(filters), cfg.load_groups
    words = np.frombuffer(bytes(data), np.int8).reshape(tiles, beats, groups, cfg.load_width,
                                                        cfg.cols)
    rows = words.reshape(tiles, beats, groups * cfg.load_width, cfg.cols)[:, :, :cfg.rows]
    w = rows.transpose(1, 2, 0, 3).reshape(beats * cfg.rows, tiles * cfg.cols)
    return w[:channels, :filters]


def unpack_params(cfg, data, filters):
    """``(bias int32 [F], multiplier int32 [F], shift int8 [F])`` from parameter words (per
    column tile: bias int32[cols], multiplier int32[cols], shift int8[cols])."""
    tiles = cfg.tiles(filters)
    raw = np.frombuffer(bytes(data), np.uint8).reshape(tiles, cfg.cols * 9)
    bias = raw[:, :4 * cfg.cols].copy().view("<i4").reshape(-1)[:filters]
    mult = raw[:, 4 * cfg.cols:8 * cfg.cols].copy().view("<i4").reshape(-1)[:filters]
    shift = raw[:, 8 * cfg.cols:].copy().view(np.int8).reshape(-1)[:filters]
    return bias.astype(np.int32), mult.astype(np.int32), shift.astype(np.int8)


def unpack_channel_params(data, channels):
    """``(bias int32 [C], multiplier int32 [C], shift int8 [C])`` stored one array after the
    other (DEPTHWISE's parameters)."""
    raw = bytes(data)
    bias = np.frombuffer(raw[:4 * channels], "<i4").astype(np.int32)
    mult = np.frombuffer(raw[4 * channels:8 * channels], "<i4").astype(np.int32)
    shift = np.frombuffer(raw[8 * channels:9 * channels], np.int8).copy()
    return bias, mult, shift


def _passes(cfg, image, d, channels, filters):
    """Yield ``(f0, f1, [(c0, c1, w, bias, multiplier, shift)])`` per filter group."""
    waddr, paddr = d.weight_addr, d.param_addr
    for f0, f1 in pass_sizes(cfg, filters, d.group_filters):
        chunks = []
        for c0, c1 in pass_sizes(cfg, channels, d.chunk_channels):
            nw = cfg.beats(c1 - c0) * cfg.tiles(f1 - f0) * cfg.load_groups * cfg.load_width \
                * cfg.cols
            npar = cfg.tiles(f1 - f0) * cfg.cols * 9
            w = unpack_pass_weights(cfg, image[waddr:waddr + nw], c1 - c0, f1 - f0)
            chunks.append((c0, c1, w) + unpack_params(cfg, image[paddr:paddr + npar], f1 - f0))
            waddr, paddr = waddr + nw, paddr + npar
        yield f0, f1, chunks, paddr


def _requant(acc, mult, shift, d, zp, activation):
    scale = mult.view(np.float32) if d.rounding == "float" else None
    m, s = (None, None) if scale is not None else (mult, shift)
    return requantize(acc, m, s, zp, *activation, rounding=d.rounding, scale=scale)


def _matmul(cfg, image, d, x):
    """CONV and FULLY_CONNECTED on the array: ``x`` [P, channels] -> int8 [P, F]."""
    fmt = _fmt()
    out = np.empty((x.shape[0], d.output.c), np.int8)
    residual = read_view(image, d.residual).reshape(x.shape[0], -1) \
        if getattr(d, "residual", None) is not None else None
    groups = list(_passes(cfg, image, d, x.shape[1], d.output.c))
    zp, act = d.output_zero_point, d.activation
    if residual is not None:        # the ADD record follows all the parameter words
        at = groups[-1][3]
        rec = fmt.AddRecord.decode(image[at:at + fmt.AddRecord.BYTES])
        zp, act = rec.zero_points[0], rec.input_activation
    for f0, f1, chunks, _ in groups:
        mult, shift = chunks[-1][4], chunks[-1][5]
        if d.kind == "FULLY_CONNECTED" and d.rounding != "float":
            # TFLite's FC kernel in this fixed-point mode: the whole C at once (the engine's
            # sum of partial sums is the same modulo 2**32).
            w = np.concatenate([c[2] for c in chunks], axis=0)
            bias = wrap_int32(sum(c[3].astype(np.int64) for c in chunks)).astype(np.int32)
            y = gops.fully_connected(x, w.T, bias, input_zero_point=0, output_zero_point=zp,
                                     multiplier=mult, shift=shift, rounding=d.rounding,
                                     activation_min=act[0], activation_max=act[1])
        else:
            acc = None
            for c0, c1, w, bias, _, _ in chunks:
                part = conv1x1_acc(x[:, c0:c1], w, bias, 0).astype(np.int64)
                acc = part if acc is None else wrap_int32(acc + part)
            y = _requant(acc.astype(np.int32), mult, shift, d, zp, act)
        if residual is not None:
            y = gops.add_quantized(y, residual[:, f0:f1], zero_points=rec.zero_points,
                                   multipliers=rec.multipliers, shifts=rec.shifts,
                                   output_zero_point=d.output_zero_point,
                                   activation_min=d.activation[0],
                                   activation_max=d.activation[1])
        out[:, f0:f1] = y
    return out


def _pool_padding(d):
    """"SAME" or "VALID": the TFLite padding whose pads the descriptor holds (pools count only
    in-image taps, so the pads must be one of TFLite's)."""
    fmt = _fmt()
    pads = []
    for size, k, s in ((d.input.h, d.kernel[0], d.stride[0]), (d.input.w, d.kernel[1],
                                                                d.stride[1])):
        out, lead = gops.compute_padding(size, k, s, 1, "SAME")
        pads.append((out, lead, max((out - 1) * s + k - size, 0) - lead))
    (oh, pt, pb), (ow, pl, pr) = pads
    if (oh, ow, pt, pl, pb, pr) == (d.output.h, d.output.w) + tuple(d.padding[:2]) + \
            tuple(d.padding[2:]):
        return "SAME"
    if not any(d.padding):
        return "VALID"
    raise fmt.FormatError(f"{d.kind}: padding {d.padding} is neither SAME nor VALID")


def _execute(cfg, image, d, host):
    fmt = _fmt()
    kind = d.kind
    if kind == "HOST":
        if host is None:
            raise fmt.FormatError(f"HOST descriptor (segment {d.segment}) but no host to run it")
        host(d.segment, image)
        return
    x = read_view(image, d.input)
    if kind == "CONV":
        cols = im2col(x, d.kernel, d.stride, d.dilation, d.padding[:2],
                      (d.output.h, d.output.w), d.input_zero_point)
        y = _matmul(cfg, image, d, cols)
    elif kind == "FULLY_CONNECTED":
        y = _matmul(cfg, image, d, x.reshape(-1, d.input.c))
    elif kind == "DEPTHWISE":
        kh, kw = d.kernel
        c = d.input.c
        w = np.frombuffer(bytes(image[d.weight_addr:d.weight_addr + kh * kw * c]), np.int8)
        bias, mult, shift = unpack_channel_params(image[d.param_addr:d.param_addr + 9 * c], c)
        if d.rounding != "double":
            raise fmt.FormatError(f"DEPTHWISE in rounding {d.rounding!r}: golden has the "
                                  f"reference kernel only ('double')")
        pt, pl, pb, pr = d.padding
        padded = np.full((d.input.h + pt + pb, d.input.w + pl + pr, c), d.input_zero_point,
                         np.int8)
        padded[pt:pt + d.input.h, pl:pl + d.input.w] = x
        y = gops.depthwise_conv2d(padded[None], w.reshape(1, kh, kw, c), bias,
                                  input_zero_point=d.input_zero_point,
                                  output_zero_point=d.output_zero_point,
                                  multiplier=mult, shift=shift, stride=d.stride,
                                  padding="VALID", activation_min=d.activation[0],
                                  activation_max=d.activation[1])
    elif kind == "ADD":
        rec = fmt.AddRecord.decode(image[d.param_addr:d.param_addr + fmt.AddRecord.BYTES])
        y = gops.add_quantized(x, read_view(image, d.other), zero_points=rec.zero_points,
                               multipliers=rec.multipliers, shifts=rec.shifts,
                               output_zero_point=d.output_zero_point,
                               activation_min=d.activation[0], activation_max=d.activation[1])
    elif kind in ("AVERAGE_POOL", "MAX_POOL"):
        fn = gops.average_pool2d if kind == "AVERAGE_POOL" else gops.max_pool2d
        y = fn(x[None], d.kernel, stride=d.stride, padding=_pool_padding(d),
               activation_min=d.activation[0], activation_max=d.activation[1])
    elif kind == "MEAN":
        rec = fmt.MeanRecord.decode(image[d.param_addr:d.param_addr + fmt.MeanRecord.BYTES])
        y = gops.mean_quantized(x[None], (1, 2), keep_dims=True,
                                input_zero_point=d.input_zero_point, multiplier=rec.multiplier,
                                shift=rec.shift, output_zero_point=d.output_zero_point)
    else:                                   # unreachable: decode_descriptor knows the kinds
        raise fmt.FormatError(f"no executor for {kind}")
    write_view(image, d.output, y)


def run_program(image, host=None, *, check_id=True, trace=None):
    """Run the program of ``image`` (a bytearray, changed in place: the outputs are written
    into its arena) from its first descriptor to its last.

    Parameters
    ----------
    image : bytearray
        A compiled memory image (host/compiler/compile.py) with its input written.
    host : callable, optional
        ``host(segment, image)`` runs a HOST descriptor's host segment (reading and writing
        the image). A program with HOST descriptors needs it.
    check_id : bool
        Refuse an image whose constant part does not match its image id (a CRC-32).
    trace : callable, optional
        ``trace(index, descriptor)`` before each descriptor runs.

    Returns
    -------
    int
        The number of descriptors run.

    Raises
    ------
    pwconv.host.compiler.format.FormatError
        The image or a descriptor is malformed (one line naming what).
    """
    fmt = _fmt()
    if not isinstance(image, bytearray):
        raise TypeError(f"image must be a bytearray (it is written in place), not "
                        f"{type(image).__name__}")
    header = fmt.decode_header(image)
    if check_id and fmt.image_id(image, header) != header.image_id:
        raise fmt.FormatError(f"image id mismatch: the image's constant part has CRC-32 "
                              f"{fmt.image_id(image, header):#010x}, its header says "
                              f"{header.image_id:#010x}")
    cfg = header.config
    for index in range(header.descriptor_count):
        at = header.program_addr + index * fmt.DESCRIPTOR_BYTES
        d = fmt.decode_descriptor(image[at:at + fmt.DESCRIPTOR_BYTES],
                                  f"descriptor {index}")
        if trace is not None:
            trace(index, d)
        _execute(cfg, image, d, host)
        if d.last:
            return index + 1
    raise fmt.FormatError(f"the program's {header.descriptor_count} descriptors have no last "
                          f"one (flag LAST)")

"""The NumPy API: run any 1x1 convolution layer on a pwconv device, tiling what does not fit."""

import sys
import time
from dataclasses import dataclass

import numpy as np

from pwconv import golden
from pwconv.config import ArrayConfig
from .devices import SIMULATORS, GoldenDevice, PassJob, SimulatedDevice
from .board import BOARD_BACKENDS
from .layer import Layer, LayerError, Quantization, check_input
from .tiling import plan_passes

__all__ = ["Accelerator", "RunStats", "BACKENDS"]

BACKENDS = ("golden",) + SIMULATORS + BOARD_BACKENDS


@dataclass(frozen=True)
class RunStats:
    """What one layer cost: device cycles (None on golden), the ideal cycle count at one MAC per
    cycle per PE, MAC utilization, passes, wall-clock seconds of the run and, apart from them,
    seconds spent building a simulator model first (0 when it was cached)."""

    pixels: int
    channels: int
    filters: int
    passes: int
    cycles: int | None
    ideal_cycles: float
    seconds: float
    build_seconds: float = 0.0

    @property
    def cycles_per_second(self):
        """Device cycles simulated per wall second (None without cycles)."""
        return self.cycles / self.seconds if self.cycles and self.seconds else None

    @property
    def utilization(self):
        return None if not self.cycles else self.ideal_cycles / self.cycles

    @property
    def pixels_per_second(self):
        return self.pixels / self.seconds if self.seconds else float("inf")


def _part(values, p):
    """The filters ``p.f0:p.f1`` of a per-channel parameter (None stays None)."""
    return None if values is None else values[p.f0:p.f1]


class Accelerator:
    """A pwconv device with a NumPy API.

    Parameters
    ----------
    backend : str
        ``golden`` (NumPy model), ``verilator`` or ``icarus`` (the exported Verilog under
        cocotb), ``amaranth`` (Amaranth's simulator), ``board`` (a board on serial ``port`` at
        ``baud``) or ``board-sim`` (the board gateware, UART and all, in Verilator).
    config : ArrayConfig
        The accelerator's elaboration parameters; for ``board``, None takes the board's and
        anything else must equal it.
    seed, in_idle, out_stall : optional
        Simulated backends only: random source idles and sink backpressure.
    progress : bool or None
        Show a progress bar (on stderr) of the pixels done, updated while the simulator runs,
        and say when a simulator model is being built (None: the bar only when a run takes
        more than a second; False: silent).
    log : callable or None
        Where build announcements go (one line per call); default stderr unless
        ``progress`` is False.

    Example
    -------
    >>> acc = Accelerator("verilator")
    >>> y = acc.conv1x1(x, w, bias, quant)      # x int8 [H, W, C] -> y int8 [H, W, F]
    >>> acc.last_run.utilization
    """

    def __init__(self, backend="golden", config=None, *, seed=0, in_idle=0.0, out_stall=0.0,
                 waves=False, progress=None, device=None, port=None, baud=None, log=None):
        self.config = config if config is not None else ArrayConfig()
        if not isinstance(self.config, ArrayConfig):
            raise TypeError(f"config must be an ArrayConfig, not {self.config!r}")
        if device is not None:
            self.device = device
        elif backend == "golden":
            self.device = GoldenDevice(self.config)
        elif backend in SIMULATORS:
            self.device = SimulatedDevice(self.config, backend, seed=seed, in_idle=in_idle,
                                          out_stall=out_stall, waves=waves)
        elif backend in BOARD_BACKENDS:
            from .board import open_board
            self.device = open_board(backend, config, port=port, baud=baud)
            self.config = self.device.cfg
        else:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
        self.backend = backend
        self.progress = progress
        self.log = log if log is not None or progress is False else _stderr
        self.last_run = None
        self._prepared = False

    def close(self):
        """Release the device (a board's serial port, a board simulation)."""
        close = getattr(self.device, "close", None)
        if close is not None:
            close()

    def conv1x1(self, x, w, bias, quant: Quantization):
        """int8 1x1 convolution of ``x`` [H, W, C] or [N, H, W, C] with ``w`` int8 [C, F],
        ``bias`` int32 [F] and ``quant``; returns int8 [..., F], bit-exact with TFLite."""
        layer = Layer(w, bias, quant)
        x = check_input(x, layer.channels)
        return self.run_layer(x, layer)

    def run_layer(self, x, layer: Layer):
        """Run a validated layer on ``x`` int8 [H, W, C] or [N, H, W, C]; see :meth:`conv1x1`.

        Raises
        ------
        LayerError
            ``x`` is not int8, not 3- or 4-dimensional, or its C is not the layer's.
        TypeError
            ``layer`` is not a :class:`~pwconv.host.layer.Layer`.
        """
        if not isinstance(layer, Layer):
            raise TypeError(f"layer: expected a pwconv.host.layer.Layer, not "
                            f"{type(layer).__name__}")
        shape = np.shape(x)
        if len(shape) in (3, 4) and shape[-1] != layer.channels:
            raise LayerError(f"x: shape {tuple(shape)} has C = {shape[-1]}, but the layer's w "
                             f"{tuple(layer.w.shape)} has C = {layer.channels}")
        x = check_input(x, layer.channels)
        cfg, q = self.config, layer.quant
        cfg.check_rounding(q.rounding)
        pixels = int(np.prod(x.shape[:-1]))
        flat = x.reshape(pixels, layer.channels)
        folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
        passes = plan_passes(cfg, layer.channels, layer.filters)
        out = np.zeros((pixels, layer.filters), dtype=np.int64)
        partial = np.zeros((pixels, layer.filters), dtype=np.int64)
        cycles = 0 if self.device.simulated else None
        if pixels == 0:         # nothing to compute: the same empty result on every backend
            self.last_run = RunStats(pixels=0, channels=layer.channels, filters=layer.filters,
                                     passes=0, cycles=cycles, ideal_cycles=0.0, seconds=0.0)
            return np.zeros((*x.shape[:-1], layer.filters), np.int8)
        build_seconds = 0.0
        if not self._prepared:
            build_seconds = self.device.prepare(self.log)
            self._prepared = True
        start = time.perf_counter()
        jobs = [PassJob(
            flat[:, p.c0:p.c1], layer.w[p.c0:p.c1, p.f0:p.f1],
            folded[p.f0:p.f1] if p.c0 == 0 else np.zeros(p.f1 - p.f0, np.int32),
            _part(q.output_multiplier, p), _part(q.output_shift, p),
            output_zero_point=q.output_zero_point, activation_min=q.activation_min,
            activation_max=q.activation_max, raw=p.raw, rounding=q.rounding,
            scale=_part(q.scale, p)) for p in passes]
        bar = self._progress_bar(pixels * len(passes), len(passes))
        results = self.device.run_passes(jobs, bar.update if bar is not None else None)
        if bar is not None:
            bar.close()
        for p, (result, pass_cycles) in zip(passes, results):
            if p.raw:
                partial[:, p.f0:p.f1] += result
            else:
                out[:, p.f0:p.f1] = result
            if cycles is not None:
                cycles += pass_cycles
        if passes[0].raw:       # C was split: add the int32 partial sums, requantize here
            acc = golden.wrap_int32(partial).astype(np.int32)
            out = golden.requantize(acc, q.output_multiplier, q.output_shift,
                                    q.output_zero_point, q.activation_min, q.activation_max,
                                    rounding=q.rounding, scale=q.scale)
        self.last_run = RunStats(
            pixels=pixels, channels=layer.channels, filters=layer.filters, passes=len(passes),
            cycles=cycles, ideal_cycles=pixels * layer.channels * layer.filters / cfg.macs,
            seconds=time.perf_counter() - start, build_seconds=build_seconds)
        return out.astype(np.int8).reshape(*x.shape[:-1], layer.filters)

    def _progress_bar(self, pixels, passes):
        """A bar of pixels done (counted once per pass), left on screen when finished."""
        if self.progress is False or (self.progress is None and not self.device.simulated):
            return None
        from tqdm import tqdm
        desc = f"pwconv {self.backend}" + (f", {passes} passes" if passes > 1 else "")
        return tqdm(total=pixels, unit="pixel", desc=desc, delay=0 if self.progress else 1,
                    leave=True, file=sys.stderr)


def _stderr(line):
    """Default build announcements: one line on stderr, above any progress bar."""
    from tqdm import tqdm
    tqdm.write(f"pwconv: {line}", file=sys.stderr)

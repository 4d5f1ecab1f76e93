"""The model interface shared by the .tflite and .onnx front ends, and the per-op report."""

import contextlib
import dataclasses
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pwconv import golden
from ..layer import Quantization, save_layer

__all__ = ["ModelError", "OpStats", "ModelRun", "Model", "format_report", "rounding_for",
           "make_quantization"]


class ModelError(ValueError):
    """A model file cannot be run: the message is one line naming the file and the problem."""


def rounding_for(runtime):
    """The requantization rounding mode that matches ``runtime`` (golden.RUNTIME_ROUNDING)."""
    return golden.RUNTIME_ROUNDING[runtime]


def _has_rounding():
    return any(f.name == "rounding" for f in dataclasses.fields(Quantization))


def make_quantization(*, input_scale, weight_scales, output_scale, input_zero_point,
                      output_zero_point, activation_min, activation_max, rounding="double",
                      multiplier=None, shift=None):
    """A :class:`Quantization` for one offloaded layer in mode ``rounding``.

    The parameters come from golden.layer_requant_params (the runtime's own arithmetic on the
    float scales); ``multiplier``/``shift``, where given, replace its fixed-point ones (a
    per-tensor FULLY_CONNECTED's, which TFLite computes from a float32 product).
    """
    filters = np.size(weight_scales)
    if rounding != "double" and not _has_rounding():
        raise ModelError(f"rounding mode {rounding!r} is not in this build's accelerator "
                         f"(only 'double')")
    m, s, scale = golden.layer_requant_params(input_scale, weight_scales, output_scale,
                                              rounding)
    if multiplier is None and m is not None:
        multiplier, shift = m, s
    kwargs = dict(input_zero_point=int(input_zero_point),
                  output_zero_point=int(output_zero_point),
                  activation_min=int(activation_min), activation_max=int(activation_max))
    if multiplier is not None:
        multiplier = np.broadcast_to(np.asarray(multiplier, np.int32), (filters,)).copy()
        shift = np.broadcast_to(np.asarray(shift, np.int32), (filters,)).copy()
    if _has_rounding():
        kwargs.update(rounding=rounding, scale=None if scale is None else
                      np.asarray(scale, np.float32).reshape(filters))
    return Quantization(multiplier, shift, **kwargs)


@dataclass
class OpStats:
    """One op of a model run: where it ran (``pwconv`` or ``host``), its MACs and, on pwconv,
    the accelerator's cycles and MAC utilization."""

    index: int
    op: str
    name: str
    shape: tuple
    where: str
    macs: int = 0
    cycles: int | None = None
    utilization: float | None = None
    passes: int = 0
    seconds: float = 0.0


@dataclass
class ModelRun:
    """What :meth:`Model.run` returns: the final output, every op's stats, and by layer name
    each offloaded layer's output, its input as the accelerator got it, and the model tensor
    that input came from (``layer_sources``, for per-layer checks against the runtime)."""

    output: np.ndarray
    ops: list
    offloaded: dict = field(default_factory=dict)
    layer_inputs: dict = field(default_factory=dict)
    layer_sources: dict = field(default_factory=dict)
    seconds: float = 0.0
    rounding: str = "double"
    #: The runtime matched (``Model.run``'s ``runtime``): picks each host op's arithmetic.
    runtime: str | None = None

    @property
    def total_macs(self):
        return sum(s.macs for s in self.ops)

    @property
    def pwconv_macs(self):
        return sum(s.macs for s in self.ops if s.where == "pwconv")

    @property
    def cycles(self):
        cycles = [s.cycles for s in self.ops if s.where == "pwconv"]
        return None if not cycles or None in cycles else sum(cycles)


class Model:
    """A parsed model. Subclasses set ``path``, ``input_shape``, ``input_dtype``, ``runtimes``
    (the runtimes it can be compared with, the first one the default) and implement
    :meth:`_run_ops` and :meth:`reference`."""

    path: Path
    input_shape: tuple
    input_dtype: np.dtype
    runtimes: tuple = ()

    def check_input(self, x, source="input"):
        """Validate the model input (dtype, byte order, shape, finite floats); raises
        ModelError naming ``source``."""
        x = np.asarray(x)
        want = np.dtype(self.input_dtype)
        if x.dtype != want and x.dtype.newbyteorder("=") == want:
            order = "big" if sys.byteorder == "little" else "little"
            raise ModelError(f"{source}: expected {want.name} in this machine's "
                             f"({sys.byteorder}-endian) byte order for {self.path.name}, got "
                             f"{order}-endian {want.name}; convert it with "
                             f".astype(np.{want.name})")
        if x.dtype != self.input_dtype:
            raise ModelError(f"{source}: expected dtype {np.dtype(self.input_dtype).name} for "
                             f"{self.path.name}, got {x.dtype.name}")
        if tuple(x.shape) != tuple(self.input_shape):
            raise ModelError(f"{source}: expected shape {list(self.input_shape)} for "
                             f"{self.path.name}, got {list(x.shape)}")
        if x.dtype.kind == "f":
            bad = int(np.count_nonzero(~np.isfinite(x)))
            if bad:
                raise ModelError(f"{source}: {bad} of {x.size} values "
                                 f"{'is' if bad == 1 else 'are'} NaN or infinite; the input "
                                 f"must be finite")
        return x

    def load_input(self, path):
        """Read and validate X.npy."""
        try:
            x = np.load(path, allow_pickle=False)
        except FileNotFoundError:
            raise ModelError(f"{path}: no such file") from None
        except (OSError, ValueError) as error:
            raise ModelError(f"{path}: not a readable .npy file ({error})") from None
        return self.check_input(x, str(path))

    def random_input(self, seed=0):
        """A seeded random input of the model's dtype and shape."""
        rng = np.random.default_rng(seed)
        if np.dtype(self.input_dtype).kind == "f":
            return rng.standard_normal(self.input_shape).astype(self.input_dtype)
        info = np.iinfo(self.input_dtype)
        return rng.integers(info.min, info.max + 1, self.input_shape, dtype=self.input_dtype)

    def to_board(self, device, **kwargs):
        """Compile this model for a board and load its image there once: a
        :class:`pwconv.host.resident.ResidentModel`, whose ``run(x)`` then infers, writing only
        the input and reading only the output. ``device``: a ``ProgramBoard`` or a backend
        name (``"board-golden"``, ...); keyword arguments go to ``ResidentModel``."""
        from ..resident import ResidentModel, open_program_board
        if isinstance(device, str):
            device = open_program_board(device)
        return ResidentModel(self, device, **kwargs)

    def run(self, x, accelerator, *, runtime=None, layers_out=None):
        """Run the model on ``x``: offloaded layers on ``accelerator``, the rest on the host.

        Parameters
        ----------
        x : numpy.ndarray
            The model input (dtype and shape as the model declares).
        accelerator : pwconv.host.accelerator.Accelerator or str
            The accelerator, or a backend name (``"golden"``, ``"verilator"``, ...) to run
            on a new default one (closed afterwards).
        runtime : str, optional
            The runtime to match (one of ``self.runtimes``): picks the rounding mode.
        layers_out : path, optional
            Directory to write each offloaded layer as ``NNN_name.npz`` + ``NNN_name.y.npy``.
        """
        from ..accelerator import BACKENDS, Accelerator
        if isinstance(accelerator, str):
            with contextlib.closing(Accelerator(accelerator)) as acc:
                return self.run(x, acc, runtime=runtime, layers_out=layers_out)
        if not callable(getattr(accelerator, "run_layer", None)):
            raise TypeError(f"accelerator: expected an Accelerator or a backend name "
                            f"({', '.join(BACKENDS)}), not {type(accelerator).__name__}")
        x = self.check_input(x)
        runtime = runtime or self.runtimes[0]
        if runtime not in self.runtimes:
            raise ModelError(f"--runtime: {runtime!r} cannot run {self.path.name} (choose from "
                             f"{', '.join(self.runtimes)})")
        rounding = rounding_for(runtime)
        if rounding != "double" and not _has_rounding():
            rounding = "double"         # the nearest mode this build's accelerator has
        if layers_out is not None:
            layers_out = Path(layers_out)
            layers_out.mkdir(parents=True, exist_ok=True)
        run = ModelRun(output=None, ops=[], rounding=rounding, runtime=runtime)
        start = time.perf_counter()

        def offload(index, op, name, x_in, layer, macs, shape=None, source=None):
            y = accelerator.run_layer(x_in, layer)
            st = accelerator.last_run
            y_layer, y = y, (y if shape is None else y.reshape(shape))
            run.ops.append(OpStats(index, op, name, tuple(y.shape), "pwconv", macs, st.cycles,
                                   st.utilization, st.passes, st.seconds))
            run.offloaded[name] = y
            run.layer_inputs[name] = x_in
            run.layer_sources[name] = x_in if source is None else source
            if layers_out is not None:
                slug = re.sub(r"[^a-z0-9]+", "_", op.lower()).strip("_")
                stem = layers_out / f"{index:03d}_{slug}"
                save_layer(f"{stem}.npz", x_in, layer)
                np.save(f"{stem}.y.npy", y_layer)
            return y
        # The modes this build's accelerator has (a front end may pick another mode than
        # ``rounding`` for a layer, e.g. the reference FULLY_CONNECTED's exact equivalent).
        offload.roundings = tuple(getattr(accelerator.config, "roundings", (rounding,)))
        run.output = self._run_ops(x, offload, run, rounding)
        run.seconds = time.perf_counter() - start
        return run

    def _run_ops(self, x, offload, run, rounding):
        raise NotImplementedError

    def reference(self, x, runtime, run=None):
        """``(output, {layer name: output}, {layer name: the runtime's tensor feeding it}}``
        from ``runtime`` itself, or None when that runtime is not installed. A layer is
        compared only where the runtime fed it what pwconv did (``run.layer_sources``)."""
        raise NotImplementedError


def _mismatch(a, b):
    if a is None or b is None or a.shape != b.shape:
        return None
    return int(np.count_nonzero(a != b))


def format_report(model, run, accelerator, reference=None, runtime=None):
    """The per-op table, totals and (``reference`` from :meth:`Model.reference`) the bit-exact
    lines, as text."""
    cfg = accelerator.config
    ref_layers = _comparable(run, reference)
    lines = [f"model: {model.path.name}, {len(run.ops)} ops; pwconv {accelerator.backend} "
             f"{cfg.rows}x{cfg.cols} array, rounding {run.rounding!r}", "",
             f"{'#':>4} {'op':<18} {'output shape':<18} {'where':<7} {'MACs':>12} "
             f"{'cycles':>10} {'util':>6}  {'bit-exact' if ref_layers else ''}".rstrip()]
    for s in run.ops:
        cycles = "" if s.cycles is None else f"{s.cycles:,}"
        util = "" if s.utilization is None else f"{100 * s.utilization:.1f}%"
        macs = f"{s.macs:,}" if s.macs else ""
        bad = _mismatch(run.offloaded.get(s.name), ref_layers.get(s.name)) \
            if s.where == "pwconv" else None
        exact = "" if bad is None else "yes" if bad == 0 else f"NO ({bad})"
        lines.append(f"{s.index:>4} {s.op:<18} {'x'.join(map(str, s.shape)):<18} {s.where:<7} "
                     f"{macs:>12} {cycles:>10} {util:>6}  {exact}".rstrip())
    total, on = run.total_macs, run.pwconv_macs
    lines.append("")
    share = 100 * on / total if total else 0.0
    n_off = sum(1 for s in run.ops if s.where == "pwconv")
    lines.append(f"MACs: {total:,} in all, {on:,} ({share:.1f}%) on pwconv in {n_off} layers")
    if run.cycles is not None:
        ideal = on / cfg.macs
        util = ideal / run.cycles if run.cycles else 0.0
        lines.append(f"accelerator: {run.cycles:,} cycles (ideal {ideal:,.0f}), "
                     f"MAC utilization {100 * util:.1f}%")
    lines.append(f"wall time: {run.seconds:.2f} s")
    lines += [f"note: {note}" for note in getattr(model, "notes", ())]
    if reference is None:
        if runtime is not None:
            lines.append(f"bit-exact vs {runtime}: not checked ({runtime} is not installed)")
        return "\n".join(lines)
    ref_out = reference[0]
    bad = _mismatch(run.output, ref_out)
    verdict = "yes" if bad == 0 else (f"NO ({bad} of {ref_out.size} outputs differ, "
                                      f"max |diff| {_max_diff(run.output, ref_out)})"
                                      if bad is not None else "NO (shape differs)")
    lines.append(f"bit-exact vs {runtime}: {verdict} (final output)")
    checked = [(name, _mismatch(y, ref_layers.get(name))) for name, y in run.offloaded.items()]
    checked = [(name, m) for name, m in checked if m is not None]
    skipped = len(run.offloaded) - len(checked)
    if skipped and reference[1]:
        lines.append(f"{skipped} offloaded layer(s) not compared: {runtime} fed them a "
                     f"different input (its other kernels round differently)")
    if checked:
        exact = sum(1 for _, m in checked if m == 0)
        outputs = sum(run.offloaded[name].size for name, _ in checked)
        differ = sum(m for _, m in checked)
        lines.append(f"bit-exact vs {runtime}: {'yes' if exact == len(checked) else 'NO'} "
                     f"({exact} of {len(checked)} offloaded layers; {differ} of {outputs} "
                     f"layer outputs differ)")
    return "\n".join(lines)


def _comparable(run, reference):
    """The runtime's outputs of the offloaded layers whose input equals pwconv's."""
    if reference is None:
        return {}
    _, outputs, inputs = reference
    out = {}
    for name, ours in run.layer_sources.items():
        theirs = inputs.get(name)
        if name in outputs and theirs is not None and theirs.size == ours.size and \
                np.array_equal(theirs.reshape(-1), ours.reshape(-1)):
            out[name] = outputs[name]
    return out


def _max_diff(a, b):
    d = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
    return f"{d:.0f}" if a.dtype.kind in "iu" else f"{d:.3g}"

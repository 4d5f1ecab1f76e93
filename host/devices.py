"""Devices that execute on-chip passes: the golden model, or the gateware in a simulator."""

import math
from dataclasses import dataclass

import numpy as np

from pwconv import golden
from pwconv.config import ArrayConfig
from .program import compile_layer, pack_pixels, unpack_results

__all__ = ["PassJob", "Device", "GoldenDevice", "SimulatedDevice", "SIMULATORS"]

#: Simulators a SimulatedDevice can run the gateware on.
SIMULATORS = ("verilator", "icarus", "amaranth")


@dataclass(frozen=True)
class PassJob:
    """One pass for a device: ``x`` int8 [P, C] against ``w`` int8 [C, F] with the input zero
    point folded into ``bias``; ``raw`` returns int32 sums instead of requantized int8;
    ``rounding`` names the requantization mode (with ``scale`` float32 [F] for ``"float"``,
    ``multiplier``/``shift`` otherwise)."""

    x: np.ndarray
    w: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    output_zero_point: int
    activation_min: int
    activation_max: int
    raw: bool
    rounding: str = "double"
    scale: np.ndarray | None = None

    def program(self, cfg):
        return compile_layer(cfg, self.w, self.bias, self.multiplier, self.shift,
                             output_zero_point=self.output_zero_point,
                             activation_min=self.activation_min,
                             activation_max=self.activation_max, raw=self.raw,
                             rounding=self.rounding, scale=self.scale)


class Device:
    """What the host driver needs of a device: run passes, return int32 [P, F] and cycles."""

    simulated = False

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg

    def run_pass(self, job: PassJob):
        """Returns ``(int32 [P, F], cycles or None)``."""
        raise NotImplementedError

    def prepare(self, log=None):
        """Build whatever the device runs (a simulator model) before the first pass, telling
        ``log`` (a callable taking one line) what and why; returns the seconds it took."""
        return 0.0

    def run_passes(self, jobs, progress=None):
        """Run ``jobs`` in order; ``progress(n)`` is called with the pixels of passes completed
        since its last call. Returns ``[(int32 [P, F], cycles or None)]``."""
        return [(y, cycles) for y, cycles, _ in self.run_timed_passes(jobs, progress)]

    def run_timed_passes(self, jobs, progress=None):
        """Like :meth:`run_passes`, returning ``[(int32 [P, F], cycles, span)]``: ``cycles``
        from the pass's first pixel taken to its last result, ``span`` from the previous pass's
        last result to its own, loads included (None where the device does not count them;
        here, one pass after another)."""
        out = []
        for job in jobs:
            y, cycles = self.run_pass(job)
            out.append((y, cycles, None))
            if progress:
                progress(job.x.shape[0])
        return out


class GoldenDevice(Device):
    """Computes each pass with the NumPy golden model (vectorized); no cycle counts."""

    def run_pass(self, job: PassJob):
        acc = golden.wrap_int32(job.x.astype(np.int64) @ job.w.astype(np.int64)
                                + job.bias.astype(np.int64))
        if job.raw:
            return acc.astype(np.int32), None
        self.cfg.check_rounding(job.rounding)
        y = golden.requantize(acc.astype(np.int32), job.multiplier, job.shift,
                              job.output_zero_point, job.activation_min, job.activation_max,
                              rounding=job.rounding, scale=job.scale)
        return y.astype(np.int32), None


class SimulatedDevice(Device):
    """Runs passes on the generated gateware: Verilator or Icarus (cocotb), or Amaranth's
    simulator; ``in_idle`` / ``out_stall`` inject random source idles and sink backpressure.

    On Verilator and Icarus the stimulus is fed by a Verilog-side feeder (sim/bulk_tb.v), so no
    Python runs per cycle and a whole layer's passes share one simulator run;
    ``driver="cocotb"`` uses the cocotb Python stream drivers instead, pass by pass.
    """

    simulated = True

    def __init__(self, cfg: ArrayConfig, simulator, *, seed=0, in_idle=0.0, out_stall=0.0,
                 waves=False, driver="bulk"):
        if simulator not in SIMULATORS:
            raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, "
                             f"not {simulator!r}")
        if driver not in ("bulk", "cocotb"):
            raise ValueError(f"Driver must be 'bulk' or 'cocotb', not {driver!r}")
        for name, value in (("in_idle", in_idle), ("out_stall", out_stall)):
            if not (isinstance(value, (int, float)) and math.isfinite(value)
                    and 0 <= value < 1):
                raise ValueError(f"{name} must be a probability in [0, 1), not {value!r}")
        super().__init__(cfg)
        self.simulator, self.seed = simulator, seed
        self.in_idle, self.out_stall, self.waves = in_idle, out_stall, waves
        self.driver = "cocotb" if waves else driver     # the bulk bench records no waves
        self.log = None
        #: Trace files written by the passes run so far (``waves=True``).
        self.wave_files = []

    def prepare(self, log=None):
        import time
        self.log = log
        start = time.perf_counter()
        if self.simulator == "amaranth":
            return 0.0
        if self.driver == "cocotb":
            from pwconv.sim.runner import build_simulator
            build_simulator(self.cfg, self.simulator, waves=self.waves, log=log)
        else:
            from pwconv.sim.bulk import prepare
            prepare(self.cfg, simulator=self.simulator, log=log)
        return time.perf_counter() - start

    def run_pass(self, job: PassJob, progress=None):
        program = job.program(self.cfg)
        words = pack_pixels(self.cfg, job.x)
        if self.simulator == "amaranth":
            from pwconv.sim.pysim import run_top
            on_result, shown = None, [0]
            if progress is not None:
                def on_result(taken):       # a pixel is done when its last column tile is out
                    done = taken // program.tiles
                    if done > shown[0]:
                        progress(done - shown[0])
                        shown[0] = done
            results, cycles = run_top(self.cfg, program, words, seed=self.seed,
                                      in_idle=self.in_idle, out_stall=self.out_stall,
                                      on_result=on_result)
        else:
            from pwconv.sim.runner import run_on_simulator
            stats = {}
            results, cycles = run_on_simulator(self.cfg, program, words,
                                               simulator=self.simulator, seed=self.seed,
                                               in_idle=self.in_idle, out_stall=self.out_stall,
                                               waves=self.waves, stats=stats)
            if stats.get("waves"):
                self.wave_files.append(stats["waves"])
            if progress is not None:
                progress(job.x.shape[0])
        return unpack_results(self.cfg, results, job.x.shape[0], job.w.shape[1]), cycles

    def run_timed_passes(self, jobs, progress=None):
        """All ``jobs`` in one simulation where the simulator allows (Verilator and Icarus with
        the Verilog feeder, Amaranth's simulator), each pass loading while the previous one
        computes; with the cocotb drivers pass by pass."""
        if self.driver == "cocotb" and self.simulator != "amaranth":
            return super().run_timed_passes(jobs, progress)
        passes = [(job.program(self.cfg), pack_pixels(self.cfg, job.x)) for job in jobs]
        if self.simulator == "amaranth":
            from pwconv.sim.pysim import run_passes_top
            on_result = None
            if progress is not None:
                # Pixels done so far: whole passes, then whole pixels of the current one.
                ends = np.cumsum([len(w) // p.beats * p.tiles for p, w in passes])
                pixels = np.cumsum([len(w) // p.beats for p, w in passes])
                shown = [0]

                def on_result(taken):
                    index = int(np.searchsorted(ends, taken, side="right"))
                    done = int(pixels[index - 1]) if index else 0
                    if index < len(passes):
                        done += (taken - (int(ends[index - 1]) if index else 0)) \
                            // passes[index][0].tiles
                    if done > shown[0]:
                        progress(done - shown[0])
                        shown[0] = done
            runs = run_passes_top(self.cfg, passes, seed=self.seed, in_idle=self.in_idle,
                                  out_stall=self.out_stall, on_result=on_result)
        else:
            from pwconv.sim.bulk import run_passes
            runs = run_passes(self.cfg, passes, simulator=self.simulator, seed=self.seed,
                              in_idle=self.in_idle, out_stall=self.out_stall, log=self.log,
                              progress=progress)
        return [(unpack_results(self.cfg, words, job.x.shape[0], job.w.shape[1]), cycles, span)
                for job, (words, cycles, span) in zip(jobs, runs)]

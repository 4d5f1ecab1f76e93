"""Devices that execute on-chip passes: the golden model, or the gateware in a simulator."""

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

    def run_passes(self, jobs, progress=None):
        """Run ``jobs`` in order; ``progress(n)`` is called as passes complete. Returns
        ``[(int32 [P, F], cycles or None)]``."""
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
                progress(1)
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
        super().__init__(cfg)
        self.simulator, self.seed = simulator, seed
        self.in_idle, self.out_stall, self.waves = in_idle, out_stall, waves
        self.driver = "cocotb" if waves else driver     # the bulk bench records no waves

    def run_pass(self, job: PassJob):
        program = job.program(self.cfg)
        words = pack_pixels(self.cfg, job.x)
        if self.simulator == "amaranth":
            from pwconv.sim.pysim import run_top
            results, cycles = run_top(self.cfg, program, words, seed=self.seed,
                                      in_idle=self.in_idle, out_stall=self.out_stall)
        else:
            from pwconv.sim.runner import run_on_simulator
            results, cycles = run_on_simulator(self.cfg, program, words,
                                               simulator=self.simulator, seed=self.seed,
                                               in_idle=self.in_idle, out_stall=self.out_stall,
                                               waves=self.waves)
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
            runs = run_passes_top(self.cfg, passes, seed=self.seed, in_idle=self.in_idle,
                                  out_stall=self.out_stall)
        else:
            from pwconv.sim.bulk import run_passes
            runs = run_passes(self.cfg, passes, simulator=self.simulator, seed=self.seed,
                              in_idle=self.in_idle, out_stall=self.out_stall)
        if progress:
            progress(len(jobs))
        return [(unpack_results(self.cfg, words, job.x.shape[0], job.w.shape[1]), cycles, span)
                for job, (words, cycles, span) in zip(jobs, runs)]

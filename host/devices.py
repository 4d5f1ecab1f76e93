"""Devices that execute one on-chip pass: the golden model, or the gateware in a simulator."""

import numpy as np

from pwconv import golden
from pwconv.config import ArrayConfig
from .program import compile_layer, pack_pixels, unpack_results

__all__ = ["GoldenDevice", "SimulatedDevice", "SIMULATORS"]

#: Simulators a SimulatedDevice can run the gateware on.
SIMULATORS = ("verilator", "icarus", "amaranth")


class GoldenDevice:
    """Computes each pass with the NumPy golden model (vectorized); no cycle counts."""

    simulated = False

    def __init__(self, cfg: ArrayConfig):
        self.cfg = cfg

    def run_pass(self, x, w, bias, multiplier, shift, *, output_zero_point, activation_min,
                 activation_max, raw):
        """``x`` int8 [P, C], folded ``bias``; returns (int32 [P, F], None)."""
        acc = golden.wrap_int32(x.astype(np.int64) @ w.astype(np.int64) + bias.astype(np.int64))
        if raw:
            return acc.astype(np.int32), None
        y = golden.requantize(acc.astype(np.int32), multiplier, shift, output_zero_point,
                              activation_min, activation_max)
        return y.astype(np.int32), None


class SimulatedDevice:
    """Runs each pass on the generated gateware: Verilator or Icarus (cocotb), or Amaranth's
    simulator; ``in_idle`` / ``out_stall`` inject random source idles and sink backpressure.

    On Verilator and Icarus the stimulus is fed by a Verilog-side feeder (sim/bulk_tb.v), so
    no Python runs per cycle; ``driver="cocotb"`` uses the cocotb stream drivers instead. Long
    passes are split into runs of at most ``bulk.MAX_WORDS`` pixel beats.
    """

    simulated = True

    def __init__(self, cfg: ArrayConfig, simulator, *, seed=0, in_idle=0.0, out_stall=0.0,
                 waves=False, driver="bulk"):
        if driver not in ("bulk", "cocotb"):
            raise ValueError(f"Driver must be 'bulk' or 'cocotb', not {driver!r}")
        self.driver = "cocotb" if waves else driver     # the bulk bench records no waves
        if simulator not in SIMULATORS:
            raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, "
                             f"not {simulator!r}")
        self.cfg, self.simulator, self.seed = cfg, simulator, seed
        self.in_idle, self.out_stall, self.waves = in_idle, out_stall, waves

    def run_pass(self, x, w, bias, multiplier, shift, *, output_zero_point, activation_min,
                 activation_max, raw):
        """``x`` int8 [P, C], folded ``bias``; returns (int32 [P, F], cycles)."""
        program = compile_layer(self.cfg, w, bias, multiplier, shift,
                                output_zero_point=output_zero_point,
                                activation_min=activation_min, activation_max=activation_max,
                                raw=raw)
        words = pack_pixels(self.cfg, x)
        if self.simulator == "amaranth":
            from pwconv.sim.pysim import run_top
            results, cycles = run_top(self.cfg, program, words, seed=self.seed,
                                      in_idle=self.in_idle, out_stall=self.out_stall)
        elif self.driver == "cocotb":
            from pwconv.sim.runner import run_on_simulator
            results, cycles = run_on_simulator(self.cfg, program, words,
                                               simulator=self.simulator, seed=self.seed,
                                               in_idle=self.in_idle, out_stall=self.out_stall,
                                               waves=self.waves)
        else:
            from pwconv.sim.bulk import MAX_WORDS, run_bulk
            step = MAX_WORDS // program.beats * program.beats
            results, cycles = [], 0
            for start in range(0, len(words), step):
                part, part_cycles = run_bulk(self.cfg, program, words[start:start + step],
                                             simulator=self.simulator, seed=self.seed,
                                             in_idle=self.in_idle, out_stall=self.out_stall)
                results += part
                cycles += part_cycles
        return unpack_results(self.cfg, results, x.shape[0], w.shape[1]), cycles

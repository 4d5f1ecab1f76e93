"""pwconv_top's Verilog under cocotb (Verilator, Icarus) against the golden model."""

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pwconv import golden
from pwconv.config import ArrayConfig
from pwconv.host.program import compile_layer, pack_pixels, unpack_results
from pwconv.sim import runner
from pwconv.sim.runner import SimLayer, run_layers_on_simulator, run_on_simulator

#: One small configuration shared by every test, so each simulator builds it once.
CFG = ArrayConfig(rows=4, cols=4, max_channels=64, max_filters=64, weight_depth=64)
#: The iCEBreaker's mapping (dual 8x8 multipliers with shared weight memories, one serial
#: requantizer with a 4-step fabric multiply), at small limits.
SERIAL = ArrayConfig(rows=4, cols=4, max_channels=64, max_filters=64, weight_depth=64,
                     mac_style="ice40_dual8x8", requantizer="serial", requant_steps=4)
#: The ULX3S's mapping: one requantizer lane per column with its multiply in fabric, some PEs
#: multiplying with fabric adders, three rounding modes, one weight bank, at small limits.
FABRIC = ArrayConfig(rows=4, cols=4, max_channels=64, max_filters=64, weight_depth=64,
                     requant_multiply="fabric", lut_macs=6, weight_banks=1,
                     roundings=("double", "ruy", "float"))

#: C and F around the array size: 1, rows - 1, rows, rows + 1 and 3 * rows + 5.
SIZES = (1, CFG.rows - 1, CFG.rows, CFG.rows + 1, 3 * CFG.rows + 5)
ACTIVATIONS = ("none", "relu", "relu6", "raw")
PAUSES = ((0.0, 0.0), (0.3, 0.3), (0.7, 0.0), (0.0, 0.7), (0.7, 0.7), (0.3, 0.0))


def _available(simulator):
    if simulator == "icarus":
        return shutil.which("iverilog") is not None
    return runner._verilator_bin() is not None


SIMULATORS = [pytest.param(sim, marks=pytest.mark.skipif(
    not _available(sim), reason=f"{sim} is not installed")) for sim in runner.SIMULATORS]


class Case:
    """A random layer (seeded) with its program, pixel words and golden result."""

    def __init__(self, seed, channels, filters, pixels, activation, in_idle=0.0,
                 out_stall=0.0, cfg=CFG):
        rng = np.random.default_rng(seed)
        self.cfg = cfg
        self.seed, self.in_idle, self.out_stall = seed, in_idle, out_stall
        self.channels, self.filters, self.pixels = channels, filters, pixels
        self.x = rng.integers(-128, 128, (pixels, channels))
        self.w = rng.integers(-128, 128, (channels, filters))
        typical = int(5500 * np.sqrt(channels))  # about one sigma of a sum of C products
        big = rng.random(filters) < 0.2  # some biases near the int32 limits: wrapping adds
        bias = np.where(big, rng.integers(-(1 << 31), 1 << 31, filters),
                        rng.integers(-typical, typical, filters))
        self.bias = bias.astype(np.int32)
        self.izp, self.ozp = (int(v) for v in rng.integers(-128, 128, 2))
        # Scales around the one that maps a typical accumulator onto int8, plus one channel with
        # a scale >= 1 (positive shift, left-shift wrap) and one tiny (a large right shift).
        scales = 40 / typical * 2.0 ** rng.uniform(-2, 2, filters)
        big_scale, tiny_scale = rng.uniform(1.0, 16.0), rng.uniform(1e-9, 1e-7)
        if filters > 1:
            scales[0], scales[-1] = big_scale, tiny_scale
        else:
            scales[0] = big_scale if seed % 2 else tiny_scale
        self.multiplier, self.shift = golden.quantize_multiplier(scales)
        lo, hi = -128, 127
        if activation == "relu":
            lo = self.ozp
        elif activation == "relu6":
            lo, hi = self.ozp, min(127, self.ozp + int(rng.integers(1, 60)))
        self.activation, self.lo, self.hi = activation, lo, hi
        self.raw = activation == "raw"
        folded = golden.fold_input_zero_point(self.w, self.bias, self.izp)
        self.program = compile_layer(cfg, self.w, folded, self.multiplier, self.shift,
                                     output_zero_point=self.ozp, activation_min=lo,
                                     activation_max=hi, raw=self.raw)
        self.pixel_words = pack_pixels(cfg, self.x)

    def expected(self):
        if self.raw:
            return golden.conv1x1_acc(self.x, self.w, self.bias, self.izp)
        return golden.conv1x1(self.x, self.w, self.bias, input_zero_point=self.izp,
                              output_zero_point=self.ozp, output_multiplier=self.multiplier,
                              output_shift=self.shift, activation_min=self.lo,
                              activation_max=self.hi).astype(np.int32)

    def layer(self):
        return SimLayer(self.program, self.pixel_words, seed=self.seed, in_idle=self.in_idle,
                        out_stall=self.out_stall)

    def check(self, words, what=""):
        got = unpack_results(self.cfg, words, self.pixels, self.filters)
        np.testing.assert_array_equal(got, self.expected(), err_msg=f"{self!r} {what}")

    def __repr__(self):
        return (f"Case(seed={self.seed}, C={self.channels}, F={self.filters}, "
                f"P={self.pixels}, {self.activation}, izp={self.izp}, ozp={self.ozp}, "
                f"idle={self.in_idle}, stall={self.out_stall})")


def _cases(simulator):
    """Deterministic case parameters: all C x F on Verilator, a spread subset on Icarus."""
    pairs = [(c, f) for c in SIZES for f in SIZES]
    if simulator == "icarus":
        pairs = [(1, 17), (17, 1), (5, 5), (4, 3), (17, 17), (3, 4)]
    for index, (channels, filters) in enumerate(pairs):
        seed = 1000 * (simulator == "icarus") + index
        in_idle, out_stall = PAUSES[index % len(PAUSES)]
        activation = ACTIVATIONS[index % len(ACTIVATIONS)]
        pixels = 1 + (7 * index) % 11
        yield (f"seed{seed}-C{channels}-F{filters}-P{pixels}-{activation}"
               f"-idle{in_idle}-stall{out_stall}",
               (seed, channels, filters, pixels, activation, in_idle, out_stall))


def pytest_generate_tests(metafunc):
    """Every test runs on each simulator; test_matches_golden with its own cases per simulator
    (Icarus is about 10x slower, so it gets fewer)."""
    if metafunc.function.__name__ == "test_matches_golden":
        params = [pytest.param(sim.values[0], args, id=f"{sim.values[0]}-{name}",
                               marks=sim.marks)
                  for sim in SIMULATORS for name, args in _cases(sim.values[0])]
        metafunc.parametrize("simulator,args", params, indirect=["simulator"], scope="module")
    elif "simulator" in metafunc.fixturenames:
        metafunc.parametrize("simulator", SIMULATORS, indirect=True, scope="module")


@pytest.fixture(scope="module")
def simulator(request):
    """Each simulator, with ``CFG`` built (once, cached in build/sim) before its first test."""
    runner.build_simulator(CFG, request.param)
    return request.param


def test_matches_golden(simulator, args):
    """A random layer (C, F around the array size, zero points, shifts of both signs, an
    activation or raw mode) with random source idles and sink stalls equals the golden model."""
    case = Case(*args)
    words, _ = run_on_simulator(CFG, case.program, case.pixel_words, simulator=simulator,
                                seed=case.seed, in_idle=case.in_idle, out_stall=case.out_stall)
    case.check(words)


def _check_back_to_back(cfg, first_seed, specs, simulator, what):
    """Layers ``(C, F, P, activation, idle, stall)`` in one simulation, each against golden."""
    cases = [Case(first_seed + i, c, f, p, act, idle, stall, cfg=cfg)
             for i, (c, f, p, act, idle, stall) in enumerate(specs)]
    results = run_layers_on_simulator(cfg, [case.layer() for case in cases],
                                      simulator=simulator)
    assert len(results) == len(cases)
    for index, (case, (words, _)) in enumerate(zip(cases, results)):
        case.check(words, f"({what}, layer {index})")


def test_sim_layers_back_to_back(simulator):
    """Several layers in one simulation, no reset between: reloads while idle."""
    _check_back_to_back(CFG, 2000, [(17, 9, 4, "raw", 0.3, 0.3), (1, 1, 3, "none", 0.0, 0.0),
                                    (5, 17, 3, "relu", 0.7, 0.3), (4, 4, 5, "relu6", 0.0, 0.7)],
                        simulator, "a back-to-back run")


def test_sim_serial_requantizer_matches_golden(simulator):
    """The iCEBreaker's mapping: layers whose pixels are shorter than the requantizer's pace
    (C <= 4: one beat against a 16-cycle tile interval) and longer (C = 64: 16 beats), all
    activations and raw mode, under idles and stalls, back to back in one simulation."""
    _check_back_to_back(SERIAL, 5000, [(3, 9, 5, "none", 0.0, 0.0), (64, 8, 3, "relu", 0.3, 0.7),
                                       (17, 5, 4, "raw", 0.7, 0.3), (5, 17, 3, "relu6", 0.0, 0.9)],
                        simulator, "serial requantizer")


def test_sim_fabric_mapping_matches_golden(simulator):
    """The ULX3S's mapping (fabric requantizer multiplies, LUT MACs), back to back in one
    simulation, against golden: every activation and raw mode, under idles and stalls."""
    _check_back_to_back(FABRIC, 6000, [(3, 9, 5, "none", 0.0, 0.0), (64, 8, 3, "relu", 0.3, 0.7),
                                       (17, 5, 4, "raw", 0.7, 0.3), (5, 17, 3, "relu6", 0.0, 0.9)],
                        simulator, "fabric mapping")


def test_sim_extremes_do_not_overflow(simulator):
    """C = max_channels of -128 x -128 (and the other corners) in raw mode: exact sums."""
    channels, filters = CFG.max_channels, CFG.cols + 1
    x = np.array([[-128] * channels, [127] * channels, [-128, 127] * (channels // 2)])
    w = np.zeros((channels, filters), dtype=np.int64)
    w[:, 0], w[:, 1], w[:, 2], w[:, 3], w[:, 4] = -128, 127, -128, 127, -128
    bias = np.zeros(filters, dtype=np.int32)
    bias[4] = golden.INT32_MAX - 1000  # the bias add itself wraps, as compiled C does
    program = compile_layer(CFG, w, bias, np.zeros(filters, np.int32),
                            np.zeros(filters, np.int32), raw=True)
    words, _ = run_on_simulator(CFG, program, pack_pixels(CFG, x), simulator=simulator,
                                seed=7)
    got = unpack_results(CFG, words, len(x), filters)
    expected = golden.conv1x1_acc(x, w, bias, 0)
    assert got[0, 0] == channels * 128 * 128 == 1 << 20
    assert got[0, 1] == -channels * 128 * 127
    np.testing.assert_array_equal(got, expected)


def test_sim_throughput_one_beat_per_cycle(simulator):
    """Without stalls, P pixels of B beats and T tiles take P*B*T cycles plus the latency."""
    case = Case(3000, 16, 8, 24, "none")
    stats = {}
    words, cycles = run_on_simulator(CFG, case.program, case.pixel_words, simulator=simulator,
                                     stats=stats)
    case.check(words)
    work = case.pixels * case.program.beats * case.program.tiles
    latency = runner.build_simulator(CFG, simulator)[1]["latency"]
    assert work <= cycles <= work + latency + 8, (cycles, work, latency)
    assert stats["cycles"] == cycles and stats["cycles_per_s"] > 0


def _check_log_and_clean(error):
    """The error names the simulator log, which exists; then drop the kept run directory."""
    log = Path(re.search(r"log: (\S+)$", str(error)).group(1))
    assert log.is_file() and "FAIL" in log.read_text()
    shutil.rmtree(log.parent)


def test_sim_missing_result_times_out(simulator):
    """Waiting for one result more than the hardware gives fails (and does not hang)."""
    case = Case(4000, 5, 5, 2, "none", 0.3, 0.3)
    expected = case.pixels * case.program.tiles
    with pytest.raises(RuntimeError, match=r"Timeout after \d+ cycles: 4 of 5 result vectors"
                       ) as error:
        run_on_simulator(CFG, case.program, case.pixel_words, simulator=simulator,
                         expected=expected + 1, timeout=600)
    _check_log_and_clean(error.value)


def test_sim_extra_result_fails(simulator):
    """A result beyond the expected count fails the test."""
    case = Case(4001, 5, 5, 2, "none", 0.0, 0.3)
    expected = case.pixels * case.program.tiles
    with pytest.raises(RuntimeError, match=r"Extra transfer on o at cycle \d+: 4 > 3 expected"
                       ) as error:
        run_on_simulator(CFG, case.program, case.pixel_words, simulator=simulator,
                         expected=expected - 1)
    _check_log_and_clean(error.value)


def test_sim_build_is_cached(simulator):
    """A second run of the same configuration does not rebuild."""
    build_dir, _ = runner.build_simulator(CFG, simulator)
    stamp = build_dir / "pwconv.stamp"
    before = stamp.stat().st_mtime_ns
    case = Case(5000, 4, 4, 1, "none")
    words, _ = run_on_simulator(CFG, case.program, case.pixel_words, simulator=simulator)
    case.check(words)
    assert stamp.stat().st_mtime_ns == before

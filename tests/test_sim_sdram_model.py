"""The SDR SDRAM chip model (sim/sdram/sdram_model.v) on Verilator and Icarus: data through every
command path against a Python memory, the backdoor, and one planted violation per timing rule
(the model must stop, naming that rule); plus the parts table's conversion to cycles."""

import re
import shutil
import subprocess

import numpy as np
import pytest

from pwconv.sim import runner
from pwconv.sim.sdram import parts, run
from pwconv.sim.sdram.parts import model_parameters

PART, CLOCK = "MT48LC16M16A2-6A", 133e6
T = model_parameters(PART, CLOCK)
#: Icarus starts a 32 MB array in ~4 s; 2**20 words keep every address the bench uses apart.
STORE = {"verilator": 0, "icarus": 20}
INIT, REFRESH_COUNT, REFRESH_WINDOW = 50, 4, 200
T_RC_RAISED = T["T_RAS"] + T["T_RP"] + 2
PLUSARGS = (f"+sdram_init_cycles={INIT}",)
#: The refresh scenarios shorten the check to REFRESH_COUNT refreshes per REFRESH_WINDOW cycles.
REFRESH_ARGS = (f"+sdram_refresh_count={REFRESH_COUNT}",
                f"+sdram_refresh_window={REFRESH_WINDOW}")
ENV = {"SDRAM_INIT_CYCLES": INIT, "SDRAM_REFRESH_COUNT": REFRESH_COUNT,
       "SDRAM_REFRESH_WINDOW": REFRESH_WINDOW, "SDRAM_T_RC": T_RC_RAISED}


def _available(simulator):
    if simulator == "icarus":
        return shutil.which("iverilog") is not None
    return runner._verilator_bin() is not None


SIMULATORS = [pytest.param(sim, marks=pytest.mark.skipif(
    not _available(sim), reason=f"{sim} is not installed")) for sim in runner.SIMULATORS]


def _run(simulator, testcase, plusargs=(), env=None):
    return run.run(simulator, PART, CLOCK, testcase, plusargs=PLUSARGS + tuple(plusargs),
                   env={**ENV, **(env or {})}, store_bits=STORE[simulator])


# ------------------------------------------------------------------------ parts table
def test_parts_geometry():
    """The three ULX3S parts: 13 row bits, 4 banks, 16-bit; 32 MB, 32 MB and 64 MB."""
    sizes = {name: p.megabytes for name, p in parts.PARTS.items()}
    assert sizes == {"MT48LC16M16A2-6A": 32, "IS42S16160G-7": 32, "AS4C32M16SB-7": 64}
    assert all(p.row_bits == 13 and p.banks == 4 and p.width == 16
               for p in parts.PARTS.values())


def test_model_parameters_rounding():
    """ns to cycles rounds up, exactly (18 ns at 100 MHz is 2 cycles, 20 ns is 2, 21 is 3);
    the refresh window is 64 ms of cycles; CAS latency 2 only where tCK(2) allows."""
    p = model_parameters("MT48LC16M16A2-6A", 100e6)
    assert (p["T_RCD"], p["T_RP"], p["T_RAS"], p["T_RC"], p["T_RFC"]) == (2, 2, 5, 6, 6)
    assert (p["T_WR"], p["T_MRD"], p["T_RRD"], p["T_INIT"]) == (2, 2, 2, 10_000)
    assert p["REFRESH_WINDOW"] == 6_400_000 and p["REFRESH_COUNT"] == 8192
    assert p["T_RAS_MAX"] == 12_000 and (p["CL2_OK"], p["CL3_OK"]) == (1, 1)
    assert parts.cycles(20, 100e6) == 2 and parts.cycles(21, 100e6) == 3
    p = model_parameters("AS4C32M16SB-7", 100e6)
    assert (p["COL_BITS"], p["T_RCD"], p["T_RC"], p["T_INIT"]) == (10, 3, 7, 20_000)
    p = model_parameters("MT48LC16M16A2-6A", 143e6)
    assert (p["CL2_OK"], p["CL3_OK"]) == (0, 1)


@pytest.mark.parametrize("part, clock, message", [
    ("MT48LC16M16", 100e6, r"Unknown SDRAM part 'MT48LC16M16'; known: MT48LC16M16A2-6A, "),
    ("IS42S16160G-7", 150e6, r"IS42S16160G-7 runs at most 142\.9 MHz, not 150 MHz$"),
    ("IS42S16160G-7", 0, r"Clock frequency must be a positive number of Hz, not 0$"),
    ("IS42S16160G-7", "100e6", r"Clock frequency must be a positive number of Hz, not '100e6'$"),
])
def test_model_parameters_wrong(part, clock, message):
    with pytest.raises(ValueError, match=message):
        model_parameters(part, clock)


# ------------------------------------------------------------------------ data
@pytest.mark.parametrize("simulator", SIMULATORS)
def test_sim_data_paths(simulator):
    """LiteDRAM's init sequence (with its reserved mode-register load); every command at its
    earliest legal edge (so no check fires early), the data read back
    equals a Python memory through bursts 1/2/4/8/page, both orders, CAS latency 2 and 3, DQM,
    auto precharge and interrupted bursts; no violation."""
    r = _run(simulator, "data_paths")
    assert r.violations == [] and r.passed, r.log_file


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_sim_refresh_exact(simulator):
    """Refreshes spaced exactly window / count pass the refresh check for five windows."""
    r = _run(simulator, "refresh_exact", REFRESH_ARGS)
    assert r.violations == [] and r.passed, r.log_file


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_sim_backdoor(simulator, tmp_path):
    """+sdram_load's words read back through the pins at their word addresses ({row, bank,
    column}); words written through the pins are in the +sdram_dump file, little-endian, both
    from the dump_request toggle and from the dump at the end of the simulation."""
    rng = np.random.default_rng(5)
    words = rng.integers(0, 1 << 16, 1100, dtype=np.uint16)
    load, dump = tmp_path / "load.bin", tmp_path / "dump.bin"
    load.write_bytes(words.astype("<u2").tobytes())
    page = 1 << T["COL_BITS"]
    at = (3 * 4 + 2) * page                        # row 3, bank 2, column 0
    r = _run(simulator, "backdoor",
             plusargs=(f"+sdram_load={load}", f"+sdram_dump={dump}",
                       f"+sdram_dump_words={at + 16}"),
             env={"SDRAM_LOAD_WORDS": ",".join(f"{w:x}" for w in words)})
    assert r.violations == [] and r.passed, r.log_file
    assert "sdram_model: loaded 2200 bytes" in r.log
    out = np.frombuffer(dump.read_bytes(), dtype="<u2")
    assert len(out) == at + 16
    assert np.array_equal(out[:len(words)], words)
    assert list(out[at:at + 8]) == [0xC000 + i for i in range(8)]
    assert out[at + 8] == 0xD00D                   # written after dump_request: the final dump
    assert r.log.count(f"sdram_model: dumped {at + 16} words to {dump}") == 2


# ------------------------------------------------------------------------ planted violations
#: scenario of cocotb_sdram_model.py -> (rule, text the message must contain)
PLANTED = {
    "violate_power_up_wait": ("power-up", "PRECHARGE at cycle 6, before the power-up wait of "
                                          f"{INIT} cycles is over"),
    "violate_power_up_order": ("power-up", "AUTO REFRESH before PRECHARGE ALL"),
    "violate_power_up_refreshes": ("power-up", "ACTIVE after 1 AUTO REFRESH (needs 2)"),
    "violate_power_up_mode": ("power-up", "ACTIVE before LOAD MODE REGISTER"),
    "violate_trcd": ("tRCD", f"READ to bank 1 {T['T_RCD'] - 1} cycles after ACTIVE "
                             f"(needs {T['T_RCD']})"),
    "violate_trp": ("tRP", f"ACTIVE to bank 2 {T['T_RP'] - 1} cycles after its precharge "
                           f"(needs {T['T_RP']})"),
    "violate_tras": ("tRAS", f"PRECHARGE to bank 3 row 5 {T['T_RAS'] - 1} cycles after ACTIVE "
                             f"(needs {T['T_RAS']})"),
    "violate_tras_max": ("tRAS max", f"bank 0 row 9 open {T['T_RAS_MAX'] + 1} cycles "
                                     f"(max {T['T_RAS_MAX']})"),
    "violate_trc": ("tRC", f"ACTIVE to bank 0 {T_RC_RAISED - 1} cycles after its last ACTIVE "
                           f"(needs {T_RC_RAISED})"),
    "violate_trrd": ("tRRD", f"ACTIVE to bank 1 {T['T_RRD'] - 1} cycles after ACTIVE to bank 0 "
                             f"(needs {T['T_RRD']})"),
    "violate_twr": ("tWR", f"PRECHARGE to bank 1 {T['T_WR'] - 1} cycles after its last write "
                           f"data (needs {T['T_WR']})"),
    "violate_twr_auto_precharge": ("tRP", f"ACTIVE to bank 1 {T['T_RP'] - 1} cycles after its "
                                          f"precharge (needs {T['T_RP']})"),
    "violate_trp_auto_precharge_tras": ("tRP", f"ACTIVE to bank 1 {T['T_RP'] - 1} cycles after "
                                               f"its precharge (needs {T['T_RP']})"),
    "violate_trfc": ("tRFC", f"ACTIVE {T['T_RFC'] - 1} cycles after AUTO REFRESH "
                             f"(needs {T['T_RFC']})"),
    "violate_tmrd": ("tMRD", f"ACTIVE {T['T_MRD'] - 1} cycles after LOAD MODE REGISTER "
                             f"(needs {T['T_MRD']})"),
    "violate_txsr": ("tXSR", f"ACTIVE 1 cycles after leaving SELF REFRESH "
                             f"(needs {T['T_XSR']})"),
    "violate_read_idle_bank": ("bank state", "READ to bank 2, which is idle"),
    "violate_write_idle_bank": ("bank state", "WRITE to bank 2, which is idle"),
    "violate_active_open_bank": ("bank state", "ACTIVE to bank 3, which has row 3 open"),
    "violate_refresh_open_bank": ("bank state", "AUTO REFRESH with bank 0 open (row 3)"),
    "violate_mode_register": ("mode register", "ACTIVE while the mode register holds a "
                                               "reserved burst length code"),
    "violate_bus_conflict": ("bus conflict", "the controller (dq_oe) and the model both drive"),
    "violate_write_data": ("write data", "WRITE burst element 0 to bank 0 column 0 with dq_oe "
                                         "low"),
    "violate_refresh": ("refresh", f"fewer than {REFRESH_COUNT} AUTO REFRESH in the "
                                   f"window of {REFRESH_WINDOW} cycles ending at cycle"),
}


#: Plusargs of single scenarios: the refresh check shortened; tRC raised above tRAS + tRP, the
#: datasheets' tRC, which no sequence can break without breaking tRAS or tRP first.
SCENARIO_ARGS = {"violate_refresh": REFRESH_ARGS, "violate_trc": (f"+sdram_t_rc={T_RC_RAISED}",)}


#: Each planted scenario is a simulator run of its own (the model ends it), ~2 s: the default
#: run plants every rule on Verilator; the Icarus runs are `slow` (make test-sdram-model).
PLANTED_SIMULATORS = [SIMULATORS[0], pytest.param(*SIMULATORS[1].values,
                                                  marks=[*SIMULATORS[1].marks, pytest.mark.slow])]


@pytest.mark.parametrize("scenario", sorted(PLANTED))
@pytest.mark.parametrize("simulator", PLANTED_SIMULATORS)
def test_sim_planted_violation(simulator, scenario):
    """The model stops the simulation at the planted violation, with one line naming the rule
    and the bank and cycles involved, and no other violation before it."""
    _planted(simulator, scenario, *PLANTED[scenario])


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_sim_warn_only(simulator):
    """With +sdram_warn_only a violation is printed and counted (`violations`), and the
    simulation goes on: the scenario reaches its own end and says so."""
    r = _run(simulator, "violate_trcd", ("+sdram_warn_only",))
    assert [rule for rule, _ in r.violations] == ["tRCD"], r.log_file
    assert "the model did not stop (1 violations counted)" in r.log, r.log_file
    assert "stopping on the violation above" not in r.log
    shutil.rmtree(r.log_file.parent, ignore_errors=True)


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="icarus is not installed")
def test_sim_planted_command_x():
    """Icarus (4-state): an X on cs_n after the power-up wait stops the model."""
    _planted("icarus", "violate_command_x", "command", "X or Z on cs_n/ras_n/cas_n/we_n")


def _planted(simulator, scenario, rule, text):
    r = _run(simulator, scenario, SCENARIO_ARGS.get(scenario, ()))
    assert not r.passed, f"the run passed: {r.log_file}"
    assert "sdram_model: stopping on the violation above" in r.log, r.log_file
    assert "the model did not stop" not in r.log, r.log_file
    assert r.violations, f"no violation line: {r.log_file}"
    first_rule, first_text = r.violations[0]
    assert first_rule == rule, (r.violations, r.log_file)
    assert text in first_text, (r.violations, r.log_file)
    assert re.search(r" at cycle \d+\b", first_text), first_text
    shutil.rmtree(r.log_file.parent, ignore_errors=True)     # kept only when a check failed


# ------------------------------------------------------------------------ the inout wrapper
@pytest.mark.skipif(shutil.which("iverilog") is None, reason="icarus is not installed")
def test_inout_wrapper(tmp_path):
    """sdram_model_inout (one bidirectional dq, sim/sdram/inout_tb.v on Icarus): a burst
    written and read back over the shared bus; a controller driving into the model's read
    data is a bus conflict that ends the simulation with a nonzero status."""
    out = tmp_path / "inout.vvp"
    done = subprocess.run(["iverilog", "-g2012", "-s", "inout_tb", "-o", str(out),
                           str(run.MODEL.with_name("inout_tb.v")), str(run.MODEL)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(["vvp", "-n", str(out)], capture_output=True, text=True, timeout=60)
    assert "inout_tb: PASS" in done.stdout and "FAIL" not in done.stdout, done.stdout
    assert "sdram_model: bus conflict violated:" in done.stdout, done.stdout
    assert done.returncode != 0


@pytest.mark.skipif(shutil.which("iverilog") is None, reason="icarus is not installed")
def test_long_legal_pattern(tmp_path):
    """sim/sdram/speed_tb.v (a fixed legal ACTIVE/WRITE/READ/PRECHARGE/REFRESH pattern in
    Verilog, rotating banks and rows) for 30,000 cycles on Icarus: every word read back, no
    violation."""
    out = tmp_path / "speed.vvp"
    done = subprocess.run(["iverilog", "-g2012", "-s", "speed_tb", "-o", str(out),
                           str(run.MODEL.with_name("speed_tb.v")), str(run.MODEL)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    done = subprocess.run(["vvp", "-n", str(out), "+cycles=30000"], capture_output=True,
                          text=True, timeout=120)
    reads = len(range(207, 30000, 32))             # the edges where a READ's word is due
    assert f"speed_tb: 30000 cycles, {reads} reads checked, 0 errors" in done.stdout, done.stdout
    assert "violated" not in done.stdout and done.returncode == 0, done.stdout

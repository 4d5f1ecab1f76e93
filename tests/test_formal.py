"""SymbiYosys proofs of PointwiseConv's stream contract (fast subset; every proof: slow)."""

import pytest

from amaranth.back import rtlil
from amaranth.hdl import Module, Signal

from pwconv.config import ArrayConfig
from pwconv.hw.formal import (FAST_PROOFS, FORMAL_CONFIGS, PROOFS, PROPERTIES,
                              QUEUE_FULL_STEP, StreamHarness, _internal, check_tools,
                              issue_to_write, run_proof)
from pwconv.synth.flow import REPO

OUT = REPO / "build" / "test-formal"

needs_tools = pytest.mark.skipif(bool(check_tools()), reason="formal tools not installed "
                                 "(pip install -e '.[formal]')")


def _expected(proof):
    return "PASS" if proof.expect_pass else "FAIL"


def test_init_wrong_property():
    with pytest.raises(ValueError, match=r"^Property must be one of hold, no_overflow, "
                                         r"no_extra, drains, queue_fills, not 'fast'$"):
        StreamHarness(FORMAL_CONFIGS["parallel"], "fast")


def test_init_wrong_mutation():
    with pytest.raises(ValueError, match=r"^Mutation must be one of pop_while_stalled, "):
        StreamHarness(FORMAL_CONFIGS["parallel"], "hold", "typo")


def test_init_wrong_banked_beats():
    cfg = ArrayConfig(rows=2, cols=2, max_channels=6, max_filters=4, weight_depth=8)
    with pytest.raises(ValueError, match=r"^The banked harness needs max_beats <= 2, not 3$"):
        StreamHarness(cfg, "hold")


def test_internal_missing():
    m = Module()
    m._MustUse__silence = True          # looked into, never elaborated
    m.d.sync += Signal(name="here").eq(1)
    with pytest.raises(LookupError, match=r"^Expected one signal named 'gone' in the design, "
                                          r"found 0$"):
        _internal(m, "gone")


@pytest.mark.parametrize("config", FORMAL_CONFIGS)
def test_accounting_elaborates(config):
    """Every register the accounting invariants read is still found by name."""
    for prop in ("no_overflow", "no_extra"):
        assert "assert" in rtlil.convert(StreamHarness(FORMAL_CONFIGS[config], prop,
                                                       accounting=True), name="top")


def test_every_property_has_a_mutation():
    for config in FORMAL_CONFIGS:
        broken = {p.prop for p in PROOFS if p.config == config and p.mutation}
        assert broken == set(PROPERTIES), config
        assert all(p.mode in ("bmc", "cover") for p in PROOFS if p.mutation)


def test_depths_reach_a_full_queue():
    """Bounded checks and covers go deeper than the step at which each configuration's
    output storage first fills; the inductions are longer than the issue-to-write delay."""
    for p in PROOFS:
        if p.mode in ("bmc", "cover"):
            assert p.depth > QUEUE_FULL_STEP[p.config], p.name
        else:
            assert p.prop == "hold" or p.depth > issue_to_write(FORMAL_CONFIGS[p.config])


@needs_tools
@pytest.mark.parametrize("proof", FAST_PROOFS, ids=lambda p: p.name)
def test_fast_proof(proof):
    """The queue fills at the step recorded, hold and no_extra are proved by k-induction, and
    a queue read while stalled and a one-beat wiring slip break them."""
    result = run_proof(proof, OUT)
    assert result["status"] == _expected(proof), result
    if proof.prop == "queue_fills" and proof.expect_pass:
        assert result["step"] == QUEUE_FULL_STEP[proof.config]


@needs_tools
@pytest.mark.slow
@pytest.mark.parametrize("proof", [p for p in PROOFS if p not in FAST_PROOFS],
                         ids=lambda p: p.name)
def test_proof(proof):
    result = run_proof(proof, OUT)
    assert result["status"] == _expected(proof), result
    if proof.prop == "queue_fills" and proof.expect_pass:
        assert result["step"] == QUEUE_FULL_STEP[proof.config]

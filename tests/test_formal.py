"""SymbiYosys proofs of PointwiseConv's stream contract (fast subset; every proof: slow)."""

import pytest

from pwconv.hw.formal import (FAST_PROOFS, FORMAL_CONFIGS, PROOFS, Proof, StreamHarness,
                              check_tools, run_proof)
from pwconv.synth.flow import REPO

OUT = REPO / "build" / "test-formal"

needs_tools = pytest.mark.skipif(bool(check_tools()), reason="formal tools not installed "
                                 "(pip install -e '.[formal]')")


def _expected(proof):
    if proof.name.endswith("_induction"):
        return "UNKNOWN"
    return "PASS" if proof.expect_pass else "FAIL"


def test_init_wrong_property():
    with pytest.raises(ValueError, match=r"^Property must be one of hold, no_overflow, "
                                         r"no_extra, drains, queue_fills, not 'fast'$"):
        StreamHarness(FORMAL_CONFIGS["parallel"], "fast")


def test_init_wrong_mutation():
    with pytest.raises(ValueError, match=r"^Mutation must be one of pop_while_stalled, "):
        StreamHarness(FORMAL_CONFIGS["parallel"], "hold", "typo")


@needs_tools
@pytest.mark.parametrize("proof", FAST_PROOFS, ids=lambda p: p.name)
def test_fast_proof(proof):
    """The queue can fill within the bound, hold is proved by k-induction, and a queue read
    while stalled breaks it."""
    result = run_proof(proof, OUT)
    assert result["status"] == _expected(proof), result
    if proof.prop == "queue_fills":
        assert 20 <= result["step"] < proof.depth


@needs_tools
@pytest.mark.slow
@pytest.mark.parametrize("proof", [p for p in PROOFS if p not in FAST_PROOFS],
                         ids=lambda p: p.name)
def test_proof(proof):
    result = run_proof(proof, OUT)
    assert result["status"] == _expected(proof), result


def test_bounded_depths_reach_a_full_queue():
    """The bounded proofs of the queue go deeper than the step (32) at which the 2x2 queue
    first fills."""
    assert all(p.depth > 32 for p in PROOFS if p.mode == "bmc" and p.prop != "no_extra")
    assert isinstance(PROOFS[0], Proof)

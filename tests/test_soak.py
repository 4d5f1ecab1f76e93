"""Soak bench (sim/soak_tb.v): a short run of make soak, every result against golden."""

import pytest

from pwconv.sim.soak import MAPPINGS, PATTERNS, soak


@pytest.mark.parametrize("pattern", sorted(PATTERNS))
@pytest.mark.parametrize("mapping", sorted(MAPPINGS))
def test_soak_short(mapping, pattern):
    """20,000 beats: no stream-rule violation, no extra, missing or wrong vector; the output
    really was stalled and the input idle a good part of the time."""
    r = soak(mapping, pattern, 20_000, seed=3)
    assert r["errors"] == 0, r
    assert r["beats"] >= 20_000
    assert r["stall_fraction"] > 0.02 and r["idle_fraction"] > 0.1, r

"""The tensor arena: buffers placed by liveness, so buffers whose lifetimes do not overlap share
memory.

A buffer is live from the op that first writes it to the op that last reads it, both included
(an op never writes over its own inputs). The placement is TFLite's greedy-by-size strategy
(tensorflow/lite/simple_memory_arena.cc and arena_planner.cc, ``kTfLiteArenaRw`` tensors): the
largest buffers first, each at the lowest aligned offset where it overlaps no placed buffer that
is live at the same time.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Buffer", "ArenaPlan", "plan_arena", "overlaps"]


@dataclass
class Buffer:
    """``size`` bytes live over ops ``[first, last]`` (``first`` -1: written before the program,
    ``last`` n: read after it). ``offset`` is set by :func:`plan_arena`."""

    name: str
    size: int
    first: int
    last: int
    offset: int = -1

    def live_with(self, other):
        return self.first <= other.last and other.first <= self.last


@dataclass
class ArenaPlan:
    """The placed buffers and the arena's size in bytes; ``unshared`` is what the arena would be
    without sharing (the sum of the aligned sizes)."""

    buffers: list
    size: int
    unshared: int


def _align(n, alignment):
    return -(-n // alignment) * alignment


def overlaps(a, b):
    """Whether two placed buffers share a byte."""
    return a.offset < b.offset + b.size and b.offset < a.offset + a.size


def plan_arena(buffers, alignment=64):
    """Place ``buffers`` (setting each one's ``offset``) and return the :class:`ArenaPlan`."""
    if alignment < 1 or alignment & (alignment - 1):
        raise ValueError(f"alignment must be a power of two, not {alignment}")
    for b in buffers:
        if b.size < 1 or b.first > b.last:
            raise ValueError(f"buffer {b.name}: size {b.size} and lifetime [{b.first}, "
                             f"{b.last}] are not a buffer")
    order = sorted(buffers, key=lambda b: (-b.size, b.first, b.name))
    placed = []
    size = 0
    for b in order:
        busy = sorted((p.offset, p.offset + _align(p.size, alignment)) for p in placed
                      if p.live_with(b))
        offset = 0
        for start, end in busy:
            if offset + b.size <= start:
                break
            offset = max(offset, end)
        b.offset = offset
        placed.append(b)
        size = max(size, _align(offset + b.size, alignment))
    return ArenaPlan(list(buffers), size, sum(_align(b.size, alignment) for b in buffers))

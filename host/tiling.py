"""Split a layer too large for the chip into passes that fit, and say how to reassemble them."""

from dataclasses import dataclass

from pwconv.config import ArrayConfig

__all__ = ["Pass", "plan_passes"]


@dataclass(frozen=True)
class Pass:
    """One on-chip pass: input channels ``[c0, c1)`` against filters ``[f0, f1)``.

    ``raw`` passes return int32 partial sums (the layer's C was split), which the host adds up and
    requantizes; other passes return finished int8 outputs, requantized in hardware.
    """

    c0: int
    c1: int
    f0: int
    f1: int
    raw: bool


def plan_passes(cfg: ArrayConfig, channels, filters):
    """Passes covering a C x F layer, preferring to split F so requantization stays in hardware.

    F is split into groups of as many column tiles as the weight memory holds next to all of C's
    beats. Only when even one column tile of all C does not fit is C split too, into chunks of
    as many beats as fit, with raw int32 partial sums.
    """
    if channels < 1 or filters < 1:
        raise ValueError(f"Layer must have C >= 1 and F >= 1, got C={channels}, F={filters}")
    beats = cfg.beats(channels)
    if channels <= cfg.max_channels and beats <= cfg.weight_depth:
        chunk, raw = channels, False
    else:
        # As many whole beats as both max_channels and the weight memory allow (max_channels
        # need not be a multiple of rows: 8 rows, max C 100 takes 96 channels per chunk).
        beats_per_chunk = min(cfg.max_channels // cfg.rows, cfg.weight_depth)
        chunk = cfg.rows * beats_per_chunk if beats_per_chunk else cfg.max_channels
        raw = True
    group = min(cfg.max_filters, cfg.cols * (cfg.weight_depth // cfg.beats(chunk)))
    return [Pass(c0, min(c0 + chunk, channels), f0, min(f0 + group, filters), raw)
            for f0 in range(0, filters, group) for c0 in range(0, channels, chunk)]

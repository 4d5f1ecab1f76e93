"""Elaboration-parameter checks shared by the gateware components."""

from pwconv.config import ArrayConfig

__all__ = ["check_config", "rejected"]


def rejected(component, error):
    """Return ``error`` for a component whose parameters are invalid, first marking the
    half-built object as deliberately unused so Amaranth does not warn about it later."""
    component._MustUse__silence = True
    return error


def check_config(component, cfg):
    """Raise a TypeError naming ``cfg`` unless it is an :class:`ArrayConfig`."""
    if not isinstance(cfg, ArrayConfig):
        raise rejected(component, TypeError(f"Configuration must be an ArrayConfig, not {cfg!r}"))

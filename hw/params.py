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


def check_primitive(component, primitive):
    """Raise a TypeError naming ``primitive`` unless it is ``None``, ``True`` or ``False``
    (compared by identity: ``1`` and ``0`` are not accepted as ``True`` and ``False``), the
    choice of a block that wraps an FPGA primitive (always, never, or when elaborated for its
    FPGA family)."""
    if not any(primitive is choice for choice in (None, True, False)):
        raise rejected(component, TypeError(
            f"primitive must be None, True or False, not {primitive!r}"))


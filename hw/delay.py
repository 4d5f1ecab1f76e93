"""Fixed delay lines: the registers that skew and de-skew data around the systolic array."""

from amaranth.hdl import Signal

__all__ = ["delay_line", "delayed"]


def delay_line(m, value, cycles, *, name, reset_less=True):
    """Return every tap of a chain of ``cycles`` registers: ``[value, value one cycle later,
    ..., value cycles later]``, the registers named ``{name}_d1`` to ``{name}_d{cycles}``.

    Datapath registers are ``reset_less`` by default so that they pack into DSP and RAM
    primitives; control bits that must start cleared pass ``reset_less=False``.
    """
    if cycles < 0:
        raise ValueError(f"Delay must be a non-negative number of cycles, not {cycles}")
    taps = [value]
    for index in range(cycles):
        reg = Signal(value.shape(), name=f"{name}_d{index + 1}", reset_less=reset_less)
        m.d.sync += reg.eq(taps[-1])
        taps.append(reg)
    return taps


def delayed(m, value, cycles, *, name, reset_less=True):
    """Return ``value`` delayed by ``cycles`` clock cycles through a chain of registers (the
    last tap of :func:`delay_line`)."""
    return delay_line(m, value, cycles, name=name, reset_less=reset_less)[-1]

"""PLL clock domains for board builds, configured by the YoWASP PLL calculators."""

import re
import subprocess
from pathlib import Path

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from .boards import Board

__all__ = ["ecp5_pll_params", "ice40_pll_params", "pll_domain"]


#: The EHXPLLL's secondary outputs, in ``ecppll``'s order (``--clkout1`` ... ``--clkout3``).
ECP5_SECONDARY = ("CLKOS", "CLKOS2", "CLKOS3")


def ecp5_pll_params(f_in, f_out, *, work_dir, tool, secondary=()):
    """EHXPLLL parameters and attributes for ``f_in`` -> ``f_out`` (Hz), from ``ecppll``.

    ``secondary``: up to three ``(frequency, phase in degrees)`` for the outputs
    :data:`ECP5_SECONDARY`. Raises ValueError unless every output is met exactly (to 1 kHz):
    the UART divisor and the timing constraint both assume the requested frequency.
    ``work_dir`` must not be under /tmp (YoWASP tools see a private /tmp).
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    out = "ecppll.v"
    if len(secondary) > len(ECP5_SECONDARY):
        raise ValueError(f"The ECP5 PLL has {len(ECP5_SECONDARY)} secondary outputs, not "
                         f"{len(secondary)}")
    extra = []
    for n, (freq, phase) in enumerate(secondary, start=1):
        extra += [f"--clkout{n}", f"{freq / 1e6:g}", f"--phase{n}", f"{phase:g}"]
    subprocess.run([tool, "-i", f"{f_in / 1e6:g}", "-o", f"{f_out / 1e6:g}", *extra,
                    "-f", out], cwd=work_dir, check=True, capture_output=True, text=True)
    text = (work_dir / out).read_text()
    for pin, freq in (("CLKOP", f_out), *zip(ECP5_SECONDARY, (f for f, _ in secondary))):
        achieved = float(re.search(rf'FREQUENCY_PIN_{pin}="([\d.]+)"', text).group(1)) * 1e6
        if abs(achieved - freq) > 1e3:
            raise ValueError(f"The ECP5 PLL cannot make {freq / 1e6:g} MHz from "
                             f"{f_in / 1e6:g} MHz (nearest {achieved / 1e6:g} MHz)")
    params = {}
    for key, value in re.findall(r"\.(\w+)\(([^()]*)\)", text.split(") pll_i")[0]):
        params[key] = int(value) if value.isdigit() else value.strip('"')
    attrs = dict(re.findall(r'\(\*\s*(\w+)="([^"]*)"\s*\*\)', text))
    return params, attrs


def ice40_pll_params(f_in, f_out, *, work_dir, tool):
    """SB_PLL40_CORE parameters for ``f_in`` -> ``f_out`` (Hz), from ``icepll -m``.

    Raises ValueError unless ``f_out`` is met exactly (to 1 kHz), as :func:`ecp5_pll_params`.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    out = "icepll.v"
    subprocess.run([tool, "-i", f"{f_in / 1e6:g}", "-o", f"{f_out / 1e6:g}", "-m", "-f", out,
                    "-q"], cwd=work_dir, check=True, capture_output=True, text=True)
    text = (work_dir / out).read_text()
    achieved = float(re.search(r"Achieved output frequency:\s+([\d.]+) MHz", text).group(1)) * 1e6
    if abs(achieved - f_out) > 1e3:
        raise ValueError(f"The iCE40 PLL cannot make {f_out / 1e6:g} MHz from "
                         f"{f_in / 1e6:g} MHz (nearest {achieved / 1e6:g} MHz)")
    params = {}
    for key, value in re.findall(r"\.(\w+)\(([^()]*)\)", text.split(") uut")[0]):
        value = value.strip()
        if value.startswith('"'):
            params[key] = value.strip('"')
        else:
            width, digits = re.fullmatch(r"(\d+)'b([01]+)", value).groups()
            params[key] = Const(int(digits, 2), int(width))
    return params


def pll_domain(platform, board: Board, *, work_dir, tool):
    """A module driving the ``sync`` domain (defined by the caller) at ``board.clk_freq`` from
    the board oscillator with a PLL, held in reset until the PLL locks.

    With ``board.sdram_clk_freq`` (ECP5), two more PLL outputs drive the domains ``sdram`` (at
    that clock, reset until lock) and ``sdram_ps`` (the same clock shifted 180 degrees,
    reset-less, for the SDRAM clock pin), as LiteX's ULX3S target makes ``sys`` and ``sys_ps``
    (litex-boards ``radiona_ulx3s.py``); the caller defines both.

    No constraint is added for the PLL's output: nextpnr derives it from the oscillator pin's
    (amaranth-boards constrains ``default_clk``) and the PLL's dividers, and reports the clock
    at ``board.clk_freq`` ("Max frequency for clock 'clk': ... at 24.00 MHz"). A constraint on
    ``clk_out`` would name a net that no longer exists after synthesis (it becomes the domain's
    clock net), which nextpnr only warns about and ignores."""
    m = Module()
    clk_pin = platform.request(platform.default_clk, dir="-")
    clk_out = Signal()
    locked = Signal()
    if board.family == "ice40":
        # The UP5K's PLL sits on the oscillator's pin (35): SB_PLL40_PAD takes the pin itself.
        params = ice40_pll_params(board.osc_freq, board.clk_freq, work_dir=work_dir, tool=tool)
        m.submodules.pll = Instance(
            "SB_PLL40_PAD", **{f"p_{k}": v for k, v in params.items()},
            io_PACKAGEPIN=clk_pin.io, o_PLLOUTGLOBAL=clk_out, o_LOCK=locked,
            i_RESETB=Const(1), i_BYPASS=Const(0))
        m.d.comb += ClockSignal("sync").eq(clk_out)
        m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
        return m
    if board.family != "ecp5":
        raise ValueError(f"No PLL support for the {board.family} family; build {board.name} "
                         f"at its {board.osc_freq / 1e6:g} MHz oscillator")
    m.submodules.clk_buf = clk_buf = io.Buffer("i", clk_pin)
    clk_in = clk_buf.i
    sdram = board.sdram_clk_freq
    secondary = () if sdram is None else ((sdram, 0), (sdram, 180))
    params, attrs = ecp5_pll_params(board.osc_freq, board.clk_freq, work_dir=work_dir, tool=tool,
                                    secondary=secondary)
    outputs = {}
    if sdram is not None:
        clk_sdram, clk_sdram_ps = Signal(), Signal()
        outputs = {"o_CLKOS": clk_sdram, "o_CLKOS2": clk_sdram_ps}
        m.d.comb += [ClockSignal("sdram").eq(clk_sdram),
                     ClockSignal("sdram_ps").eq(clk_sdram_ps)]
    pll = Instance(
        "EHXPLLL",
        **{f"a_{k}": v for k, v in attrs.items()},
        **{f"p_{k}": v for k, v in params.items()},
        i_RST=Const(0), i_STDBY=Const(0), i_CLKI=clk_in, o_CLKOP=clk_out, i_CLKFB=clk_out,
        i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1),
        i_PHASESTEP=Const(1), i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0),
        i_ENCLKOP=Const(0), o_LOCK=locked, **outputs,
    )
    m.submodules.pll = pll
    m.d.comb += ClockSignal("sync").eq(clk_out)
    m.submodules.reset_sync = ResetSynchronizer(~locked, domain="sync")
    if sdram is not None:
        m.submodules.sdram_reset_sync = ResetSynchronizer(~locked, domain="sdram")
    return m

"""The ULX3S's SDR SDRAM parts' datasheet timing in one table, and its cycles for the model.

:func:`model_parameters` turns a part and a clock into the parameters of
sim/sdram/sdram_model.v (cycles, rounded up).

Sources, per part (the datasheets themselves; the numbers below are the speed grade named):

- ``MT48LC16M16A2-6A``: Micron, "256Mb: x4, x8, x16 SDRAM" (MT48LC64M4A2 / MT48LC32M8A2 /
  MT48LC16M16A2), the -6A columns of its AC characteristics table, its mode-register and
  initialization sections.
- ``IS42S16160G-7``: ISSI, "IS42S16160G / IS45S16160G 256Mb SDRAM", the -7 columns.
- ``AS4C32M16SB-7``: Alliance Memory, "AS4C32M16SB 512Mb (32M x 16) SDRAM", the -7 columns.

Cross-check: LiteDRAM's ``litedram/modules.py`` (classes ``MT48LC16M16``, ``IS42S16160``,
``AS4C32M16``; /work/.mirror/enjoy-digital+litedram) carries geometry and tRP/tRCD/tWR/tRFC for
these families (for slower grades: -75 / generic), consistent with the values here; its
``ns_to_cycles`` rounds up the same way :func:`model_parameters` does.

The datasheets were not at hand while this table was written (no internet on the build
machine): the values are the speed grades' published figures as recalled and cross-checked
against LiteDRAM where it has them; re-read the PDFs before relying on a value at a margin.
The least certain: the ISSI and Alliance power-up (200 us, 2 AUTO REFRESH: some ISSI and
Winbond sheets ask for 8 refreshes), their tXSR, and the ISSI -7 tRAS (42 ns here; some ISSI
-7 parts give 37 ns). Where LiteDRAM's own module is faster than a part here it matters: its
``AS4C32M16`` has the -6 grade's tRCD = tRP = 18 ns (2 cycles at 100 MHz), the -7 part here
21 ns (3 cycles); its ``IS42S16160`` and ``AS4C32M16`` give no tRAS (LiteDRAM then does not
enforce one).
"""

import dataclasses
import math
from fractions import Fraction

__all__ = ["Part", "PARTS", "model_parameters", "cycles"]


@dataclasses.dataclass(frozen=True)
class Part:
    """One SDRAM part's geometry and timing. Times in ns; ``*_ck`` fields in clocks.

    A timing given as "n CLK + t ns" in a datasheet is ``(n, t)`` in ``*_ck_ns`` fields; the
    model's value is then ``n + ceil(t / period)``.
    """

    name: str
    datasheet: str
    row_bits: int           # 13: 8192 rows
    col_bits: int           # 9: 512 columns, 10: 1024
    banks: int
    width: int              # data bits
    t_rcd: float            # ACTIVE to READ/WRITE
    t_rp: float             # PRECHARGE to ACTIVE / REFRESH / LMR
    t_ras: float            # ACTIVE to PRECHARGE, min
    t_ras_max: float        # ACTIVE to PRECHARGE, max
    t_rc: float             # ACTIVE to ACTIVE (same bank)
    t_rrd: float            # ACTIVE to ACTIVE (other bank)
    t_wr: float             # write recovery (tWR, tDPL): last data in to PRECHARGE
    t_wr_ap: tuple          # write recovery before an auto precharge: (clocks, ns)
    t_rfc: float            # AUTO REFRESH period (the datasheet's tRC for refresh, or tRFC)
    t_xsr: float            # SELF REFRESH exit to a command
    t_mrd_ck: int           # LOAD MODE REGISTER to a command, clocks
    t_ccd_ck: int           # READ/WRITE to READ/WRITE, clocks
    t_ck_cl2: float         # shortest clock period at CAS latency 2 (ns)
    t_ck_cl3: float         # shortest clock period at CAS latency 3 (ns)
    refreshes: int          # AUTO REFRESH commands per refresh period...
    refresh_ms: float       # ...of this many ms
    power_up_us: float      # wait after power and clock are stable, before PRECHARGE ALL
    init_refreshes: int     # AUTO REFRESH commands the initialization needs

    @property
    def megabytes(self):
        """Capacity in MB."""
        return (self.banks << (self.row_bits + self.col_bits)) * self.width // 8 >> 20

    def max_clock_hz(self):
        """The fastest clock of the part (at CAS latency 3)."""
        return 1e9 / self.t_ck_cl3


#: The table. Each number is from the datasheet named in the part's ``datasheet`` field, the
#: speed grade in its ``name``.
PARTS = {
    part.name: part for part in (
        Part(
            name="MT48LC16M16A2-6A",
            datasheet="Micron 256Mb SDRAM (MT48LC16M16A2), -6A",
            row_bits=13, col_bits=9, banks=4, width=16,    # 4M x 16 x 4 banks; A0-A8 columns
            t_rcd=18, t_rp=18,                             # AC table: tRCD, tRP
            t_ras=42, t_ras_max=120_000,                   # tRAS min / max
            t_rc=60, t_rrd=12,                             # tRC, tRRD
            t_wr=12, t_wr_ap=(1, 6),                       # tWR: 12 ns manual, 1 CLK + 6 ns auto
            t_rfc=60, t_xsr=67,                            # tRFC, tXSR
            t_mrd_ck=2, t_ccd_ck=1,                        # tMRD 2 tCK; tCCD 1 tCK
            t_ck_cl2=7.5, t_ck_cl3=6.0,                    # tCK(2) 7.5 ns, tCK(3) 6 ns (167 MHz)
            refreshes=8192, refresh_ms=64,                 # 8K refreshes per 64 ms (tREF)
            power_up_us=100, init_refreshes=2,             # initialization: 100 us, 2 AUTO REFRESH
        ),
        Part(
            name="IS42S16160G-7",
            datasheet="ISSI IS42S16160G 256Mb SDRAM, -7",
            row_bits=13, col_bits=9, banks=4, width=16,    # A0-A12 rows, A0-A8 columns
            t_rcd=15, t_rp=15,                             # tRCD, tRP
            t_ras=42, t_ras_max=100_000,                   # tRAS min / max
            t_rc=60, t_rrd=14,                             # tRC, tRRD
            t_wr=14, t_wr_ap=(2, 0),                       # tDPL 14 ns (2 CLK); tDAL = tDPL + tRP
            t_rfc=60, t_xsr=70,                            # refresh cycle time tRC, tXSR
            t_mrd_ck=2, t_ccd_ck=1,                        # tMRD 2 CLK, tCCD 1 CLK
            t_ck_cl2=10.0, t_ck_cl3=7.0,                   # 100 MHz at CL2, 143 MHz at CL3
            refreshes=8192, refresh_ms=64,                 # 8K refresh cycles / 64 ms
            power_up_us=200, init_refreshes=2,             # 200 us pause, 2 AUTO REFRESH
        ),
        Part(
            name="AS4C32M16SB-7",
            datasheet="Alliance Memory AS4C32M16SB 512Mb SDRAM, -7",
            row_bits=13, col_bits=10, banks=4, width=16,   # 8M x 16 x 4 banks; A0-A9 columns
            t_rcd=21, t_rp=21,                             # tRCD, tRP
            t_ras=42, t_ras_max=100_000,                   # tRAS min / max
            t_rc=63, t_rrd=14,                             # tRC, tRRD
            t_wr=14, t_wr_ap=(2, 0),                       # tWR 14 ns (2 CLK); tDAL tWR + tRP
            t_rfc=63, t_xsr=72,                            # tRFC (= tRC), tXSR
            t_mrd_ck=2, t_ccd_ck=1,                        # tMRD 2 tCK, tCCD 1 tCK
            t_ck_cl2=10.0, t_ck_cl3=7.0,                   # 100 MHz at CL2, 143 MHz at CL3
            refreshes=8192, refresh_ms=64,                 # 8K refresh cycles / 64 ms
            power_up_us=200, init_refreshes=2,             # 200 us, precharge all, 2 refreshes
        ),
    )
}


def cycles(ns, clock_hz):
    """Clocks of ``clock_hz`` covering ``ns`` nanoseconds, rounded up (exactly: 20 ns at
    100 MHz is 2, not 3)."""
    period = Fraction(10**9) / Fraction(str(clock_hz))
    return math.ceil(Fraction(str(ns)) / period)


def model_parameters(part, clock_hz, *, refresh_window=None, checks_fatal=True):
    """The Verilog parameters of ``sdram_model`` for ``part`` (a name or a :class:`Part`) at
    ``clock_hz``: a dict of parameter name to integer (cycles, rounded up).

    ``refresh_window`` overrides the window of the refresh check (cycles; default the part's
    refresh period at this clock); ``checks_fatal`` False makes violations counted warnings.

    Raises
    ------
    ValueError
        For an unknown part, a clock that is not a positive number, or one faster than the
        part runs at any CAS latency.
    """
    if isinstance(part, str):
        if part not in PARTS:
            raise ValueError(f"Unknown SDRAM part {part!r}; known: {', '.join(PARTS)}")
        part = PARTS[part]
    if not isinstance(part, Part):
        raise TypeError(f"Part must be a part name or a Part, not {part!r}")
    if (not isinstance(clock_hz, (int, float)) or isinstance(clock_hz, bool)
            or not math.isfinite(clock_hz) or clock_hz <= 0):
        raise ValueError(f"Clock frequency must be a positive number of Hz, not {clock_hz!r}")
    period_ns = 1e9 / clock_hz
    cl2_ok = period_ns >= part.t_ck_cl2 - 1e-9
    cl3_ok = period_ns >= part.t_ck_cl3 - 1e-9
    if not cl3_ok:
        raise ValueError(f"{part.name} runs at most {part.max_clock_hz() / 1e6:.1f} MHz, "
                         f"not {clock_hz / 1e6:g} MHz")
    ck = lambda ns: cycles(ns, clock_hz)        # noqa: E731
    window = ck(part.refresh_ms * 1e6) if refresh_window is None else int(refresh_window)
    if window < 1:
        raise ValueError(f"Refresh window must be a positive number of cycles, not "
                         f"{refresh_window!r}")
    wr_ap = part.t_wr_ap[0] + ck(part.t_wr_ap[1])
    return {
        "ROW_BITS": part.row_bits, "COL_BITS": part.col_bits,
        "T_INIT": ck(part.power_up_us * 1000), "INIT_REFRESHES": part.init_refreshes,
        "T_RCD": ck(part.t_rcd), "T_RP": ck(part.t_rp),
        "T_RAS": ck(part.t_ras), "T_RAS_MAX": math.floor(part.t_ras_max / period_ns + 1e-9),
        "T_RC": ck(part.t_rc), "T_RRD": ck(part.t_rrd), "T_CCD": part.t_ccd_ck,
        # one recovery for PRECHARGE and auto precharge: the longer of the two forms
        "T_WR": max(ck(part.t_wr), wr_ap),
        "T_RFC": ck(part.t_rfc), "T_MRD": part.t_mrd_ck, "T_XSR": ck(part.t_xsr),
        "CL2_OK": int(cl2_ok), "CL3_OK": int(cl3_ok),
        "REFRESH_COUNT": part.refreshes, "REFRESH_WINDOW": window,
        "CHECKS_FATAL": int(bool(checks_fatal)),
    }

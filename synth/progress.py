"""Progress of a running board build, read from the tools' logs as they write them.

Amaranth's build script runs nextpnr with ``--quiet --log NAME.tim`` and Yosys with
``-q -l NAME.rpt``, so nothing reaches the terminal for the 20-60 minutes an ECP5 build takes.
:class:`BuildMonitor` polls both logs from a thread and says, as the build goes, which phase it
is in (synthesis and its current Yosys pass, packing, placement, routing with the arcs left,
timing analysis) and the elapsed time. The phase markers are nextpnr's own log lines
(common/route/router1.cc ``Routing %d arcs.`` and its per-1000-iterations table, whose
``remaining arcs`` column is read here; common/place/placer_heap.cc and placer_static.cc for
placement; the ECP5 packer's ``Packing ...`` lines).
"""

import re
import threading
import time
from pathlib import Path

__all__ = ["build_phase", "BuildMonitor"]

_YOSYS_PASS = re.compile(r"^\d+(?:\.\d+)*\. Executing (.+?)(?: pass)?[.:]?\s*$", re.M)
_ROUTE_TOTAL = re.compile(r"Routing (\d+) arcs\.")
# "      1000 |     1234      56789 |  123   456 |    100000|       1.23      12.34|"
_ROUTE_ROW = re.compile(r"^Info:\s+(\d+) \|\s+\d+\s+\d+ \|\s+-?\d+\s+-?\d+ \|\s+(\d+)\|", re.M)

#: nextpnr log markers, in the order the phases come; the last one found names the phase.
_PNR_PHASES = (
    ("packing", re.compile(r"^Info: Packing|^Info: Logic utilisation before packing", re.M)),
    ("placement", re.compile(r"Creating initial analytic placement|Running main analytical "
                             r"placer|⌁ bel grid|Running simulated annealing placer|"
                             r"^Info: Placing", re.M)),
    ("routing", re.compile(r"^Info: Routing\.\.|Setting up routing queue|Running router2",
                           re.M)),
    ("timing analysis", re.compile(r"Routing complete\.|Router1 time|Router2 time", re.M)),
    ("done", re.compile(r"Program finished normally", re.M)),
)


def build_phase(yosys_log, pnr_log):
    """One line saying where a build is, from the text of its Yosys and nextpnr logs so far.

    Parameters
    ----------
    yosys_log, pnr_log : str or None
        The logs' contents (None or empty where a log does not exist yet).

    Returns
    -------
    str
        e.g. ``"synthesis (Yosys: ABC9)"``, ``"placement"``, ``"routing: 12,345 of 456,789
        arcs left"``.
    """
    if pnr_log:
        phase = "place and route"
        for name, marker in _PNR_PHASES:
            if marker.search(pnr_log):
                phase = name
        if phase == "routing":
            total = _ROUTE_TOTAL.findall(pnr_log)
            rows = _ROUTE_ROW.findall(pnr_log)
            if rows and total:
                return f"routing: {int(rows[-1][1]):,} of {int(total[-1]):,} arcs left"
            if total:
                return f"routing: {int(total[-1]):,} arcs"
        return phase
    if yosys_log:
        passes = _YOSYS_PASS.findall(yosys_log)
        return f"synthesis (Yosys: {passes[-1]})" if passes else "synthesis"
    return "starting"


class BuildMonitor:
    """Say a build's phase while it runs: a line when the phase changes, and at least every
    ``interval`` seconds while routing (arcs left) or in a long phase.

    Use as a context manager around the build; ``say`` receives each line (e.g.
    ``ulx3s: routing: 12,345 of 456,789 arcs left (23 min 10 s)``).

    Parameters
    ----------
    build_dir : path
        Where the tools write their logs.
    name : str
        The build's name (logs ``NAME.rpt`` and ``NAME.tim``).
    say : callable
        Takes one line of text.
    prefix : str
        Put before each line (the board's name).
    poll : float
        Seconds between reads of the logs.
    interval : float
        Seconds between repeated lines of an unchanged phase.
    """

    def __init__(self, build_dir, name, say, *, prefix="", poll=2.0, interval=60.0):
        self._logs = (Path(build_dir) / f"{name}.rpt", Path(build_dir) / f"{name}.tim")
        self._say, self._prefix = say, prefix
        self._poll, self._interval = poll, interval
        self._stop = threading.Event()
        self._thread = None
        self.lines = []

    @staticmethod
    def _read(path):
        try:
            return path.read_text(errors="replace")
        except OSError:
            return None

    def check(self):
        """Read the logs once; return the phase line."""
        return build_phase(*(self._read(p) for p in self._logs))

    def _run(self):
        start = last_said = time.monotonic()
        said = None
        while not self._stop.wait(self._poll):
            phase = self.check()
            if phase == "starting":
                continue
            now = time.monotonic()
            changed = said is None or phase.split(":")[0] != said.split(":")[0]
            if changed or now - last_said >= self._interval:
                minutes, seconds = divmod(int(now - start), 60)
                line = f"{self._prefix}{phase} ({minutes} min {seconds:02d} s)"
                self.lines.append(line)
                self._say(line)
                said, last_said = phase, now

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, name="build-monitor", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        return False

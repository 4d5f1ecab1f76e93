"""Board-sim fault suite: link faults, each followed by a layer that must be bit-exact or a memory
load that must come back with 0 wrong bytes."""

import json
import os
import random
import time

import numpy as np
import pytest

from pwconv.config import ArrayConfig
from pwconv.host.accelerator import Accelerator
from pwconv.host.board import BoardDevice
from pwconv.host.layer import golden_output, random_layer
from pwconv.host.link import (HEADER_BYTES, START, Command, LinkError, SimTransport,
                              encode_frame)
from pwconv.hw.link.protocol import MEM_ADDR_BYTES
from pwconv.host.program import pack_pixels
from pwconv.hw import layouts

#: The board-sim configuration of tests/test_board_sim.py (the same Verilator build).
CFG = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=24, weight_depth=16,
                  mac_style="ice40_dual8x8", requantizer="serial", requant_steps=4)
HOST_PAYLOAD = 64
#: The simulated board's block-RAM memory (the build of tests/test_board_memory_sim.py).
MEMORY = 4096

#: Rounds of the whole fault list; ``PWCONV_FAULT_ROUNDS`` raises it (``make faults`` runs 20,
#: about 4 minutes; docs/protocol.md has the table).
ROUNDS = int(os.environ.get("PWCONV_FAULT_ROUNDS", "1"))
SEED = int(os.environ.get("PWCONV_FAULT_SEED", "0"))

#: The faults, in the order they are tried each round.
FAULTS = ("garbage", "garbage_with_start", "truncated", "corrupted_length", "corrupted_crc",
          "bit_flips", "dropped_bytes", "inserted_bytes", "reset_mid_frame",
          "reset_mid_result", "host_restart")


#: What each fault is tried on: the accelerator's commands (its frames, then a layer that must
#: be bit-exact) and the memory commands (MEM_WRITE / MEM_READ / MEM_CRC frames, a long
#: MEM_READ instead of a long RUN, then a load verified by the board's CRC-32 and read back).
TARGETS = ("layer", "memory")

#: The line-noise faults (a :class:`NoisyTransport` for one layer).
NOISE = ("bit_flips", "dropped_bytes", "inserted_bytes")


class NoisyTransport:
    """A transport that damages the first ``budget`` writes and reads passing through it, one
    way each (``kind``: flip a bit, drop a byte, insert a byte), with probability ``p``."""

    def __init__(self, inner, rng, kind, budget, p=0.5):
        self.inner, self.rng, self.kind, self.budget, self.p = inner, rng, kind, budget, p
        self.damaged = 0
        self.baud, self.latency, self.quiet = inner.baud, inner.latency, inner.quiet

    def _damage(self, data):
        if not data or self.budget <= 0 or self.rng.random() >= self.p:
            return data
        self.budget -= 1
        self.damaged += 1
        data = bytearray(data)
        at = self.rng.randrange(len(data))
        if self.kind == "bit_flips":
            data[at] ^= 1 << self.rng.randrange(8)
        elif self.kind == "dropped_bytes":
            del data[at]
        else:
            data.insert(at, self.rng.randrange(256))
        return bytes(data)

    def write(self, data):
        self.inner.write(self._damage(data))

    def read(self, n, timeout):
        return self._damage(self.inner.read(n, timeout))

    def clock(self):
        return self.inner.clock()

    def close(self):
        pass


@pytest.fixture(scope="module")
def transport():
    link = SimTransport(CFG, memory_bytes=MEMORY)
    yield link
    link.close()


def _memory_frame(rng):
    """A plausible memory request frame: a MEM_WRITE, MEM_READ or MEM_CRC in range."""
    command = rng.choice([Command.MEM_WRITE, Command.MEM_READ, Command.MEM_CRC])
    if command == Command.MEM_WRITE:
        n = rng.randrange(1, 48)
        body = bytes(rng.randrange(256) for _ in range(n))
    else:
        n = rng.randrange(1, 200)
        body = n.to_bytes(2 if command == Command.MEM_READ else 4, "little")
    addr = rng.randrange(MEMORY - n)
    return bytearray(encode_frame(command, addr.to_bytes(MEM_ADDR_BYTES, "little") + body,
                                  tag=rng.randrange(256)))


def _frame(rng, target="layer"):
    """A plausible request frame: weight words, a RUN, a layer word (or a memory command)."""
    if target == "memory":
        return _memory_frame(rng)
    command = rng.choice([Command.LOAD_WEIGHTS, Command.RUN, Command.SET_LAYER])
    size = {Command.SET_LAYER: layouts.runtime_config(CFG).size // 8 + 1}.get(
        command, rng.randrange(8, 48))
    return bytearray(encode_frame(command, bytes(rng.randrange(256) for _ in range(size)),
                                  tag=rng.randrange(256)))


def _start_long_run(transport, device, rng):
    """Load a layer and send a RUN whose RESULT takes a while; read a little of it."""
    x, layer = random_layer((1, 120, 6), 5, seed=rng.randrange(1 << 16))
    acc = Accelerator("board-sim", CFG, device=device, progress=False)
    acc.run_layer(x[:, :1], layer)          # loads the layer (one pixel)
    beats = pack_pixels(CFG, x.reshape(-1, 6))
    transport.write(encode_frame(Command.RUN, b"".join(
        int(word).to_bytes(CFG.rows, "little") for word in beats), tag=rng.randrange(256)))
    transport.read(rng.randrange(1, 200), 0.01)


def _start_long_read(transport, device, rng):
    """Send a MEM_READ whose MEM_DATA takes a while; read a little of it."""
    n = rng.randrange(1000, 4000)
    addr = rng.randrange(MEMORY - n)
    transport.write(encode_frame(Command.MEM_READ, addr.to_bytes(MEM_ADDR_BYTES, "little")
                                 + n.to_bytes(2, "little"), tag=rng.randrange(256)))
    transport.read(rng.randrange(1, 200), 0.01)


def _check_memory(device, rng):
    """Load a random region (verified by the board's CRC-32), read it back: (bytes, wrong)."""
    n = rng.randrange(1, 400)
    addr = rng.randrange(MEMORY - n)
    data = bytes(rng.randrange(256) for _ in range(n))
    device.write_memory(addr, data)
    back = device.read_memory(addr, n)
    return n, sum(a != b for a, b in zip(back, data))


def _inject(kind, rng, transport, device, target="layer"):
    """Do fault ``kind`` on ``target``'s commands; return the device the next check runs on
    (a new one after a host restart; for line noise the same one, its transport swapped for a
    noisy one)."""
    if kind == "garbage":
        transport.write(bytes(rng.choice([b for b in range(256) if b != START])
                              for _ in range(rng.randrange(1, 64))))
    elif kind == "garbage_with_start":
        transport.write(bytes(rng.choice([START, rng.randrange(256)])
                              for _ in range(rng.randrange(1, 64))))
    elif kind == "truncated":
        frame = _frame(rng, target)
        transport.write(bytes(frame[:rng.randrange(1, len(frame))]))
    elif kind == "corrupted_length":
        frame = _frame(rng, target)
        frame[HEADER_BYTES - 2:HEADER_BYTES] = rng.randrange(1 << 16).to_bytes(2, "little")
        transport.write(bytes(frame))
    elif kind == "corrupted_crc":
        frame = _frame(rng, target)
        frame[-rng.randrange(1, 3)] ^= 1 << rng.randrange(8)
        transport.write(bytes(frame))
    elif kind in NOISE:
        # The same device (its tags go on) on a noisy line, for the next layer only.
        device.transport = NoisyTransport(transport, rng, kind, budget=2)
    elif kind == "reset_mid_frame":
        frame = _frame(rng, target)
        transport.write(bytes(frame[:rng.randrange(1, len(frame))]))
        transport.read(1, rng.random() * 1e-4)
        transport.reset()
        transport.write(bytes(frame[rng.randrange(len(frame)):]))
    elif kind == "reset_mid_result":
        (_start_long_read if target == "memory" else _start_long_run)(transport, device, rng)
        transport.reset()
    elif kind == "host_restart":
        (_start_long_read if target == "memory" else _start_long_run)(transport, device, rng)
        return BoardDevice(transport, CFG, max_payload=HOST_PAYLOAD)
    else:
        raise AssertionError(kind)
    return device


def _row_name(kind, target):
    return kind if target == "layer" else f"{kind} (memory)"


def format_table(report):
    """The fault table: per kind and target, faults tried, recovered (next layer bit-exact, or
    next memory load with 0 wrong bytes), wrong results (layers or loads), link errors, then
    the totals and the host's and board's counters."""
    lines = [f"{'fault':29} {'tried':>6} {'recovered':>9} {'wrong':>6} {'errors':>6}"
             f"  (line noise: bytes or chunks damaged)"]
    total = {"tried": 0, "recovered": 0, "wrong": 0, "errors": 0}
    for name, row in report["faults"].items():
        noise = f"  {row['damaged']}" if row["kind"] in NOISE else ""
        lines.append(f"{name:29} {row['tried']:6} {row['recovered']:9} {row['wrong']:6} "
                     f"{row['errors']:6}{noise}")
        for key in total:
            total[key] += row[key]
    lines.append(f"{'total':29} {total['tried']:6} {total['recovered']:9} {total['wrong']:6} "
                 f"{total['errors']:6}")
    lines.append(f"memory loads: {report['memory_bytes']} bytes checked, "
                 f"{report['wrong_bytes']} wrong; {report['crc_rewrites']} blocks written "
                 f"again after a CRC-32 mismatch")
    lines.append(f"{report['rounds']} rounds from seed {report['seed']}, "
                 f"{report['seconds']:.0f} s; host: {report['resent']} requests sent again, "
                 f"{report['stale_replies']} stale replies discarded;")
    lines.append(f"board (since its last reset): {report['board_frames_refused']} frames "
                 f"refused, {report['board_dropped']} dropped")
    return "\n".join(lines)


@pytest.mark.slow
def test_faults_then_bit_exact_layers(transport):
    """Every fault is followed by a random layer that must come out bit-exact, and every fault
    on the memory commands by a memory load (CRC-verified) that must read back with 0 wrong
    bytes (the host recovers by itself: drain, resend with a new tag). Seeds are in the
    failure message and the report (``PWCONV_FAULT_SEED`` moves them: round r, fault i uses
    seed + 1000 r + i on the layer commands, that + 500 on the memory commands)."""
    start = time.monotonic()
    device = BoardDevice(transport, CFG, max_payload=HOST_PAYLOAD)
    table = {_row_name(kind, target): {"kind": kind, "tried": 0, "recovered": 0, "wrong": 0,
                                       "errors": 0, "damaged": 0}
             for kind in FAULTS for target in TARGETS}
    carried = {"resent": 0, "stale": 0, "rewrites": 0}
    memory = {"bytes": 0, "wrong": 0}
    failures = []
    for rnd in range(ROUNDS):
        for index, kind in enumerate(FAULTS):
            for target in TARGETS:
                seed = SEED + 1000 * rnd + index + (500 if target == "memory" else 0)
                rng = random.Random(seed)
                name = _row_name(kind, target)
                row = table[name]
                row["tried"] += 1
                used = device
                try:
                    used = _inject(kind, rng, transport, device, target)
                    if target == "memory":
                        checked, wrong = _check_memory(used, rng)
                        memory["bytes"] += checked
                        memory["wrong"] += wrong
                        ok = wrong == 0
                    else:
                        shape = (1, rng.randrange(1, 6), rng.randrange(1, 33))
                        x, layer = random_layer(shape, rng.randrange(1, 25), seed=seed,
                                                relu=rng.random() < 0.5)
                        acc = Accelerator("board-sim", CFG, device=used, progress=False)
                        ok = np.array_equal(acc.run_layer(x, layer), golden_output(x, layer))
                except LinkError as error:
                    row["errors"] += 1
                    failures.append(f"{name} seed {seed}: {error}")
                    continue
                finally:
                    if isinstance(used.transport, NoisyTransport):
                        row["damaged"] += used.transport.damaged
                    if used is not device:              # a restarted host: keep its counts
                        carried["resent"] += device.resent
                        carried["stale"] += device.stale_replies
                        carried["rewrites"] += device.crc_rewrites
                    device = used
                    device.transport = transport        # a noisy line lasts one check
                if ok:
                    row["recovered"] += 1
                else:
                    row["wrong"] += 1
                    failures.append(f"{name} seed {seed}: WRONG "
                                    f"{'BYTES' if target == 'memory' else 'RESULTS'}")
    status = device.status()
    report = {"rounds": ROUNDS, "seed": SEED, "faults": table,
              "resent": carried["resent"] + device.resent,
              "stale_replies": carried["stale"] + device.stale_replies, "board_frames_refused":
              status.frames_refused, "board_dropped": status.dropped,
              "memory_bytes": memory["bytes"], "wrong_bytes": memory["wrong"],
              "crc_rewrites": carried["rewrites"] + device.crc_rewrites,
              "seconds": round(time.monotonic() - start, 1), "failures": failures}
    out = os.environ.get("PWCONV_FAULT_REPORT")
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
        print("\n" + format_table(report))
    assert not failures, "\n".join(failures)
    assert all(row["recovered"] == row["tried"] for row in table.values())

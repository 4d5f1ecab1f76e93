"""The simulator build cache under build/sim: announce builds, drop their bulk, keep it bounded.

Each configuration gets ``build/sim/<simulator>/<config hash>/`` (its Verilog export and one
build directory per top level). A build's precompiled headers (Verilator's ``*.gch``, ~145 MB
per build, needed only to recompile) are deleted once the binary is linked, and only the
:data:`KEEP` most recently used configurations are kept (``PWCONV_SIM_CACHE_KEEP`` overrides
it); a configuration used in the last :data:`GRACE_S` seconds is never deleted, so concurrent
runs keep their builds.
"""

import os
import shutil
import time
from pathlib import Path

__all__ = ["KEEP", "GRACE_S", "BUILD_SECONDS", "FIXED_SECONDS", "describe", "build_estimate",
           "announce_build",
           "mark_used",
           "drop_intermediates", "prune", "keep_count"]

#: Configurations kept per build root (the most recently used ones).
KEEP = 32
#: A configuration used this recently is never pruned (another process may be running it).
GRACE_S = 15 * 60
#: First-build seconds of the default 8x8 array, export included, on an idle 2-core machine
#: (`pwconv demo --backend NAME` on a fresh checkout prints them as "building the simulator
#: model"). Verilator, measured 2026-12-08 with `pwconv.sim.bulk.prepare` into an empty build
#: root: 29.0, 23.2 and 23.3 s (and 29.5 s in issue 27's first `make demo`); 4x4 took 17.9 s.
#: Most of it does not grow with the array (:data:`FIXED_SECONDS`). A loaded machine is
#: slower: at a load average of 8 on the 2 cores the 8x8 build took 110 s and 16x16 243 s.
BUILD_SECONDS = {"verilator": 26, "icarus": 4}
#: The part of a first build that is the same for every array size (Verilator compiling its
#: runtime and the bench): 4x4 and 8x8 above give 15 s + 0.17 s per MAC.
FIXED_SECONDS = {"verilator": 15}
#: The cocotb Verilator builds (``--waves``, the cocotb benches) compile cocotb's VPI layer and
#: precompiled headers too: 39 s for a 2x2 array (`pwconv run L.npz --waves --rows 2 ...`).
COCOTB_VERILATOR_SECONDS = 40

_USED = ".last_used"
_NAMES = {"verilator": "Verilator", "icarus": "Icarus"}


def keep_count():
    """:data:`KEEP`, or ``PWCONV_SIM_CACHE_KEEP`` from the environment (a positive integer)."""
    text = os.environ.get("PWCONV_SIM_CACHE_KEEP", "").strip()
    if not text:
        return KEEP
    try:
        keep = int(text)
    except ValueError:
        keep = 0
    if keep < 1:
        raise ValueError(f"PWCONV_SIM_CACHE_KEEP must be a positive integer, not {text!r}")
    return keep


def describe(cfg):
    """``8x8 parallel`` or ``4x4 serial/4, ice40_dual8x8``: what a build is of."""
    text = f"{cfg.rows}x{cfg.cols} {cfg.requantizer}"
    if cfg.requantizer == "serial":
        text += f"/{cfg.requant_steps}"
    if cfg.mac_style != "infer":
        text += f", {cfg.mac_style}"
    return text


def build_estimate(simulator, cfg, cocotb=False):
    """Roughly how many seconds the first build of ``cfg`` on ``simulator`` takes."""
    scale = (cfg.macs / 64) ** 0.75
    if cocotb and simulator == "verilator":
        return COCOTB_VERILATOR_SECONDS * max(1.0, scale)
    seconds = BUILD_SECONDS.get(simulator, 12)
    if simulator in FIXED_SECONDS:
        fixed = FIXED_SECONDS[simulator]
        return fixed + (seconds - fixed) * cfg.macs / 64
    return seconds * scale


def announce_build(log, simulator, cfg, reason, where, what="model"):
    """Tell ``log`` (a callable taking one line, or None) what is built, why and for how long."""
    if log is None:
        return
    where = Path(where)
    try:
        where = where.relative_to(Path.cwd())
    except ValueError:
        pass
    log(f"building the {_NAMES.get(simulator, simulator)} {what} for {describe(cfg)} "
        f"({reason}; once, ~{build_estimate(simulator, cfg, 'cocotb' in what):.0f} s; "
        f"cached in {where})")


def mark_used(config_dir):
    """Record that ``config_dir`` (one configuration's cache) was just used."""
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    (config_dir / _USED).touch()


def _last_used(config_dir):
    try:
        return (config_dir / _USED).stat().st_mtime
    except OSError:
        return config_dir.stat().st_mtime


def drop_intermediates(build_dir):
    """Delete what only a recompilation needs (precompiled headers); returns bytes freed."""
    freed = 0
    for path in Path(build_dir).glob("*.gch"):
        try:
            freed += path.stat().st_size
            path.unlink()
        except OSError:
            pass
    return freed


def prune(build_root, keep=None, *, now=None):
    """Delete all but the ``keep`` most recently used configurations under ``build_root``
    (``<simulator>/<config hash>/`` directories holding an export), sparing any used in the
    last :data:`GRACE_S` seconds. Returns the directories deleted."""
    keep = keep_count() if keep is None else keep
    now = time.time() if now is None else now
    root = Path(build_root)
    configs = [d for d in root.glob("*/*") if d.is_dir() and (d / "pwconv_top.json").is_file()]
    configs.sort(key=_last_used, reverse=True)
    deleted = []
    for config_dir in configs[keep:]:
        if now - _last_used(config_dir) < GRACE_S:
            continue
        shutil.rmtree(config_dir, ignore_errors=True)
        deleted.append(config_dir)
    return deleted

"""Verilog export of the accelerator top level, with a JSON description of its configuration."""

import dataclasses
import json
import os
from pathlib import Path

from amaranth.back import verilog

from pwconv.config import ArrayConfig
from .top import PointwiseConv

__all__ = ["TOPLEVEL", "write_verilog"]

#: Module name of the exported top level.
TOPLEVEL = "pwconv_top"


def write_verilog(cfg: ArrayConfig, out_dir, *, name=TOPLEVEL):
    """Write ``<name>.v`` and ``<name>.json`` (config, latency) into ``out_dir``; return the .v path.

    The file is rewritten only when its contents change, so simulator builds stay cached.
    """
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    top = PointwiseConv(cfg)
    text = verilog.convert(top, name=name, emit_src=False)
    path = out_dir / f"{name}.v"
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    meta = {"config": dataclasses.asdict(cfg), "latency": top.latency,
            "queue_depth": top.queue_depth, "toplevel": name}
    (out_dir / f"{name}.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path

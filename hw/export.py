"""Verilog export of the accelerator top level, with a JSON description of its configuration."""

import dataclasses
import hashlib
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
    """Write ``<name>.v`` and ``<name>.json`` (config, latency) into ``out_dir``; return the .v
    path.

    Elaboration is skipped when the configuration and the gateware sources are those of the
    existing export (a digest kept in the .json), and the .v file is rewritten only when its
    contents change, so simulator builds stay cached.
    """
    os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path, meta_path = out_dir / f"{name}.v", out_dir / f"{name}.json"
    digest = _source_digest(cfg, name)
    try:
        if json.loads(meta_path.read_text())["digest"] == digest and path.is_file():
            return path
    except (OSError, ValueError, KeyError):
        pass
    top = PointwiseConv(cfg)
    text = verilog.convert(top, name=name, emit_src=False)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    meta = {"config": dataclasses.asdict(cfg), "latency": top.latency,
            "queue_depth": top.queue_depth, "toplevel": name, "digest": digest}
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _source_digest(cfg, name):
    """Digest of everything the exported Verilog depends on: config, gateware sources, tools."""
    import amaranth

    from pwconv import config
    digest = hashlib.sha256()
    digest.update(json.dumps([dataclasses.asdict(cfg), name, amaranth.__version__]).encode())
    for source in sorted(Path(__file__).parent.glob("**/*.py")) + [Path(config.__file__)]:
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()

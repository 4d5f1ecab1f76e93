"""`pwconv bench`: bad flags as one-line errors, and the roofline bench on a real layer."""

import json
import re

import pytest

from pwconv.cli import main
from pwconv.config import ArrayConfig
from pwconv.host.bench import MOBILENETV2_POINTWISE
from pwconv.host.tiling import plan_passes


@pytest.mark.parametrize("flags, message", [
    (["--max-pixels", "-5"], r"^pwconv: error: --max-pixels must be at least 1, not -5$"),
    (["--max-pixels", "0"], r"^pwconv: error: --max-pixels must be at least 1, not 0$"),
    (["--layers", "0"], r"^pwconv: error: --layers must be comma-separated numbers 1\.\.35, "
                        r"not '0'$"),
    (["--layers", "-1"], r"^pwconv: error: --layers must be comma-separated numbers 1\.\.35, "
                         r"not '-1'$"),
    (["--layers", "3,36"], r"^pwconv: error: --layers must be comma-separated numbers "
                           r"1\.\.35, not '3,36'$"),
    (["--layers", "x"], r"^pwconv: error: --layers must be comma-separated numbers 1\.\.35, "
                        r"not 'x'$"),
    (["--load-width", "9"], r"^pwconv: error: load_width must be between 1 and 8, not 9$"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, flags, message):
    assert main(["bench", "--out", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert re.match(message, err), err
    assert not any(tmp_path.iterdir())


def test_roofline_is_the_larger_of_compute_and_load():
    """The logits layer (1 pixel, 1280 x 1000) is load-bound, a 112x112 layer compute-bound."""
    cfg = ArrayConfig(load_width=4)
    logits = MOBILENETV2_POINTWISE[-1]
    passes = [(p.c1 - p.c0, p.f1 - p.f0) for p in plan_passes(cfg, 1280, 1000)]
    weight_transfers = 160 * 125 * 2          # beats x tiles x (8 rows / 4 per transfer)
    assert cfg.roofline_cycles(1, passes) == weight_transfers + 125 == 40125
    assert (logits.channels, logits.filters) == (1280, 1000)
    first = MOBILENETV2_POINTWISE[0]
    assert cfg.roofline_cycles(112 * 112, [(32, 16)]) == 112 * 112 * 32 * 16 / 64
    assert first.channels == 32


def test_bench_logits_near_roofline(tmp_path, capsys):
    """The load-bound logits layer (21 passes) and a 7x7 layer on Verilator, back to back:
    bit-exact, at >= 99% of their roofline with loads included, tables and plot written
    where --out says (nothing under reports/)."""
    assert main(["bench", "--layers", "34,35", "--max-pixels", "4", "--load-width", "4",
                 "--out", str(tmp_path)]) == 0
    summary = json.loads((tmp_path / "bench_mobilenetv2.json").read_text())
    logits = summary["layers"][-1]
    assert logits["passes"] == 21 and logits["bit_exact"]
    assert logits["roofline_cycles"] == 40125
    assert logits["roofline_fraction"] >= 0.99
    assert logits["total_cycles"] <= 40125    # its first load hid under the layer before
    assert (tmp_path / "bench_mobilenetv2.png").stat().st_size > 10000
    text = (tmp_path / "bench_mobilenetv2.md").read_text()
    assert "% of roofline" in text and "pwconv bench" in text
    assert "of the roofline" in capsys.readouterr().out


def test_run_bulk_reports_speed():
    """``run_bulk(..., stats=...)``, which `pwconv bench --speed` uses: cycles and cycles/s."""
    from pwconv import golden
    from pwconv.host.layer import random_layer
    from pwconv.host.program import compile_layer, pack_pixels
    from pwconv.sim.bulk import run_bulk
    cfg = ArrayConfig(rows=4, cols=4, max_channels=32, max_filters=32, weight_depth=32)
    x, layer = random_layer((1, 16, 8), 8, seed=1)
    q = layer.quant
    folded = golden.fold_input_zero_point(layer.w, layer.bias, q.input_zero_point)
    program = compile_layer(cfg, layer.w, folded, q.output_multiplier, q.output_shift)
    stats = {}
    words, cycles = run_bulk(cfg, program, pack_pixels(cfg, x.reshape(16, 8)), stats=stats)
    assert len(words) == 16 * 2 and stats["cycles"] == cycles >= 16 * 2 * 2
    assert stats["total_cycles"] >= cycles and stats["cycles_per_s"] > 0

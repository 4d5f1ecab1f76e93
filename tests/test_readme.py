"""README.md runs as written: every code block is executed or checked, and its figures match."""

import json
import re
import shlex
from pathlib import Path

import pytest

from pwconv.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
#: (language, text, line number) of every fenced block.
BLOCKS = [(m["lang"], m["body"], README[:m.start()].count("\n") + 1)
          for m in re.finditer(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", README, re.M | re.S)]
#: pwconv commands run for real in CI; the rest (boards, benches) are only parsed.
RUN_COMMANDS = {"layer", "verilog", "run"}
RUN_BACKENDS = {"golden", "verilator"}


def _ids(kind):
    return [f"line{line}" for lang, _, line in BLOCKS if lang == kind]


def _blocks(kind):
    return [body for lang, body, _ in BLOCKS if lang == kind]


def _make_targets():
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, re.M))


def test_every_block_is_known():
    assert BLOCKS, "no code blocks found"
    for lang, body, line in BLOCKS:
        assert lang in ("python", "sh", "text", ""), f"README line {line}: ```{lang}"
        if lang == "":      # diagrams and formulas: must not be code that no test runs
            assert not re.search(r"^\s*(make |\.venv/|pwconv |import |from \w+ import)", body,
                                 re.M), f"README line {line}: untagged code block"


@pytest.mark.parametrize("body", _blocks("python"), ids=_ids("python"))
def test_python_block_runs(body, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    exec(compile(body, "README.md", "exec"), {"__name__": "__readme__"})
    assert capsys.readouterr().out.strip(), "the snippet prints its result"


@pytest.mark.parametrize("body", _blocks("sh"), ids=_ids("sh"))
def test_sh_block(body, tmp_path, monkeypatch, capsys):
    """``make`` lines name Makefile targets (and real boards); ``pwconv`` lines parse with the
    real argument parser, and layer/verilog/run on golden or Verilator run, in order."""
    from pwconv.synth.boards import BOARDS
    monkeypatch.chdir(tmp_path)
    targets = _make_targets()
    for raw in body.splitlines():
        line = raw.split("#")[0].strip()
        if not line:
            continue
        words = shlex.split(line)
        if words[0] == "make":
            for word in words[1:]:
                if "=" in word:
                    name, value = word.split("=", 1)
                    assert name == "BOARD" and value in BOARDS, line
                else:
                    assert word in targets, f"no make target {word!r}: {line}"
        elif words[0] == ".venv/bin/pwconv":
            args = build_parser().parse_args(words[1:])      # SystemExit if it does not parse
            backend = getattr(args, "backend", None)
            if args.command in RUN_COMMANDS and backend in (None, *RUN_BACKENDS):
                assert main(words[1:]) == 0, line
                capsys.readouterr()
        else:
            pytest.fail(f"README shell line of unknown kind: {raw}")


def test_demo_output_is_what_demo_prints(capsys):
    (sample,) = [body for body in _blocks("text") if body.startswith("layer:")]
    assert main(["demo", "--backend", "verilator"]) == 0
    printed = capsys.readouterr().out.splitlines()
    for line in sample.splitlines():
        assert line in printed, (line, printed)


def test_icebreaker_flags_are_the_boards_mapping():
    from pwconv.synth.boards import board
    flags = board("icebreaker").config.cli_flags()
    assert f"`{flags}`" in README
    assert build_parser().parse_args(["run", "L.npz", *flags.split()]).rows == 4


def test_icebreaker_utilization_figures():
    """The README's 96% (summed cycles) and 88% (per-layer mean) match the bench's JSON."""
    rows = json.loads((ROOT / "reports/icebreaker_bench/bench_mobilenetv2.json").read_text())
    layers = rows["layers"]
    overall = sum(r["ideal_cycles"] for r in layers) / sum(r["cycles"] for r in layers)
    mean = sum(r["utilization"] for r in layers) / len(layers)
    assert f"{100 * overall:.0f}% of the MAC cycles" in README
    assert f"per-layer mean is {100 * mean:.0f}%" in README


def test_cache_bound_stated():
    from pwconv.sim import cache
    assert f"keeps the {cache.KEEP} most recently used configurations" in " ".join(README.split())


def _flags(command):
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {opt for action in sub._actions for opt in action.option_strings}


def test_which_commands_take_which_flags():
    """What the README says under 'Use it': run, demo, verilog and bench take every array flag;
    bitstream only rows, cols and the mapping; layer none."""
    array = {"--rows", "--cols", "--max-channels", "--max-filters", "--weight-depth"}
    mapping = {"--mac-style", "--requantizer", "--requant-steps"}
    text = " ".join(README.split())
    assert ("`run`, `demo`, `verilog` and `bench` take the array's elaboration parameters" in text
            and "`layer` takes none" in text)
    for command in ("run", "demo", "verilog", "bench"):
        assert array | mapping <= _flags(command), command
    assert _flags("bitstream") & (array | mapping) == {"--rows", "--cols"} | mapping
    assert not _flags("layer") & (array | mapping)


def test_backend_speeds_agree_with_help():
    from pwconv.cli import BACKEND_HELP
    for backend in ("verilator", "icarus", "amaranth"):
        speed = re.search(rf"{backend}: [^;]*?(~\w+) cycles/s", BACKEND_HELP)[1]
        assert f"`{backend}` {speed}" in README, (backend, speed)

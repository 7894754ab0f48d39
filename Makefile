# Two entry points: `make serve` and `make test`. Both build .venv from the hash-locked requirements.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
LOCK := requirements/dev.lock
BENCH_LOCK := requirements/bench.lock

.PHONY: venv serve test lint format lock demo-model clean bench overload soak gpu-wheels gpu-check

$(BIN)/.installed: $(LOCK) pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip --isolated install --quiet --upgrade pip
	$(BIN)/pip --isolated install --quiet --require-hashes -r $(LOCK)
	$(BIN)/pip --isolated install --quiet --no-deps --no-build-isolation -e .
	touch $@

venv: $(BIN)/.installed

serve: venv
	$(BIN)/resnet-serve serve

test: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/pytest -n 2 --dist loadfile

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Re-pin the lock files (the runtime one at the dev one's versions) after a change to pyproject.toml (needs uv on PATH).
lock:
	uv pip compile pyproject.toml --extra dev --universal --python-version 3.11 --generate-hashes --no-header -o requirements/dev.lock
	uv pip compile pyproject.toml -c requirements/dev.lock --universal --python-version 3.11 --generate-hashes --no-header -o requirements/runtime.lock
	uv pip compile pyproject.toml --extra dev --extra bench -c requirements/dev.lock --universal --python-version 3.11 --generate-hashes --no-header -o $(BENCH_LOCK)

# Rebuild the committed demo bundle from freshly generated data, in two steps: the 8 shapes from
# random weights (runs/demo-base), then that model fine-tuned with a ninth class, clutter (shape-less
# gradients, noise and photo-like textures), which the bundle answers as "none of these"
# (abstained). Last, the scores are calibrated on images neither step saw. docs/finetuning.md
# measures the result.
demo-model: venv
	$(BIN)/resnet-serve demo-data runs/demo-shapes --seed 0 --per-class 250
	$(BIN)/resnet-serve finetune runs/demo-shapes --arch resnet18 --out runs/demo-base --force \
		--name demo --input-size 112 --resize-size 112 --epochs 30 --batch-size 32 --lr 1e-3 \
		--patience 10 --weights-dtype fp16
	$(BIN)/resnet-serve demo-data runs/demo-data --seed 0 --per-class 250 --classes demo,clutter
	$(BIN)/resnet-serve finetune runs/demo-data --pretrained runs/demo-base --out models/demo \
		--force --name demo --epochs 10 --patience 0 --weights-dtype fp16 --abstain-labels clutter
	$(BIN)/resnet-serve demo-data runs/demo-calibration --seed 777 --per-class 40 \
		--classes demo,clutter
	$(BIN)/resnet-serve calibrate models/demo runs/demo-calibration --target-recall 0.98 \
		--fitted-on "resnet-serve demo-data --seed 777 --per-class 40 --classes demo,clutter (held out from training)"

# The benchmark's own dependencies (aiohttp, LitServe), on top of the dev environment.
$(BIN)/.bench-installed: $(BIN)/.installed $(BENCH_LOCK)
	$(BIN)/pip --isolated install --quiet --require-hashes -r $(BENCH_LOCK)
	touch $@

# The full comparison of docs/benchmarks.md (about 5 minutes); results in runs/bench/<UTC time>/.
# More options with BENCH_ARGS, e.g. make bench BENCH_ARGS="--body both --client-processes 4".
bench: $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# Abuse runs, not part of `make test`; each exits 1 when a target is missed. The overload run floods
# a small admission bound with 10x its clients (about 1 minute; results in runs/overload/<UTC time>/),
# e.g. make overload OVERLOAD_ARGS="--clients 640 --duration 30".
overload: $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks.overload $(OVERLOAD_ARGS)

# Mixed valid and hostile traffic against one server (2 minutes by default; runs/soak/<UTC time>/),
# e.g. make soak SOAK_ARGS="--duration 600 --clients 32".
soak: $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks.soak $(SOAK_ARGS)

# Wheels for a bare GPU machine (python3.12 with torch, no network) at the lock files' pins, in .whl/.
gpu-wheels:
	bash benchmarks/gpu/wheels.sh

# The one-shot GPU check (at most 8 minutes): make gpu-check [GPU_OUT=runs/gpu-check] [GPU_ARGS=--quick]
# --quick is its CPU dry run (under a minute), which `make test` also runs (tests/benchmarks).
# No venv dependency: the GPU machine cannot build .venv; check.sh installs from .whl/ itself.
GPU_OUT ?= runs/gpu-check
gpu-check:
	bash benchmarks/gpu/check.sh $(GPU_OUT) $(GPU_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache .mypy_cache

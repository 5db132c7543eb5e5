# Two entry points for users: `make run` (the demo workflow) and `make test`.
# Both bootstrap .venv from the pinned lock first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.gazeem-installed
CORES  ?= all
# rules call the `gazeem` CLI: put the project's venv first on PATH
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test test-fast lint bench lock clean

$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# after a killed run: unlock (only when no Snakemake runs here) and redo incomplete jobs
run: $(STAMP)
	$(BIN)/python workflow/scripts/unlock_if_stale.py
	$(BIN)/snakemake --cores $(CORES) --rerun-incomplete
	$(BIN)/snakemake --report results/report.html

test: $(STAMP)
	$(BIN)/ruff check src tests benchmarks workflow/scripts
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not slurm"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks workflow/scripts
	$(BIN)/ruff format --check src tests benchmarks workflow/scripts

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

# Regenerate the lock from the environment that was actually tested (CPU torch).
lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^gazeem' \
	  | sed 's/^torch==\([0-9.]*\)+cpu$$/torch==\1/' > requirements.lock

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

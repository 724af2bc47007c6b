# One task runner; CI calls the same targets (.ci/run -> make test).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= feeds.yaml
STAMP  := $(VENV)/.installed

.PHONY: install run schedule check test test-fast lint typecheck bench clean

# Set-up: a virtualenv with the package (editable) and the dev tools. Re-runs only when
# pyproject.toml changes.
install: $(STAMP)
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=25.1"
	$(BIN)/python -m pip install --quiet -e . --group dev
	touch $(STAMP)

# The main job: one full cycle (fetch every source, write feed.xml and last week's digest).
run: install
	$(BIN)/aggregator --config $(CONFIG) run --once

# The long-running scheduler (fetch on each source's interval, digest weekly).
schedule: install
	$(BIN)/aggregator --config $(CONFIG) run

check: install
	$(BIN)/aggregator --config $(CONFIG) check

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check aggregator tests bench
	$(BIN)/ruff format --check aggregator tests bench

typecheck: install
	$(BIN)/mypy

# The benchmark (bench/__main__.py): 1,000 generated sources against lemon24/reader, paired
# rounds, scaling, clustering; writes bench/RESULTS.md and bench/results.json. Minutes long.
# BENCH_FLAGS=--quick is the CI configuration (100 sources, one round; tests/test_bench.py).
BENCH_FLAGS ?=
bench: install
	$(BIN)/python -m bench $(BENCH_FLAGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache dist build

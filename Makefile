# tether: two set-up commands on a fresh machine.
#   make demo   create .venv, install, build the embedded tiny model if absent, walk the workflow
#   make test   install the dev extras and run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_HOME ?= .tether-demo
DEMO_KEYS ?= .tether-demo-keys

.PHONY: demo test bench bench-interventions lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned to the CPU build: an unpinned torch pulls gigabytes of CUDA packages.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" TETHER_HOME="$(DEMO_HOME)" TETHER_KEYS_DIR="$(CURDIR)/$(DEMO_KEYS)" bash scripts/demo.sh

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_rounds.py --out bench-out/rounds.json

bench-interventions: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_interventions.py --rounds 8 --out bench-out/interventions.json

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check agent policies guardrails tools memory tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO_HOME) $(DEMO_KEYS) .pytest_cache bench-out

# tether: two set-up commands on a fresh machine.
#   make demo   create .venv, install, build the embedded tiny model if absent, walk the workflow
#   make test   install the dev extras, run the type check (as make lint does) and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_HOME ?= .tether-demo
DEMO_KEYS ?= .tether-demo-keys

.PHONY: demo test bench bench-interventions bench-cli bench-ceiling bench-suite bench-folds bench-headroom bench-judges lint typecheck clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is pinned to the CPU build: an unpinned torch pulls gigabytes of CUDA packages.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

# The browser tests and the demo's screenshots drive Debian's chromium (Playwright's own browser
# download is not reachable from these machines); installed where the machine allows (root + apt).
$(VENV)/.installed-browser: $(VENV)/.installed
	command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || echo "no chromium: install it (apt-get install -y chromium) for the browser test and the demo screenshots"
	$(BIN)/pip install -q 'playwright>=1.45'
	touch $@

# The code_runner judge runs a response's code under bubblewrap (tools/judges/sandbox.py) and refuses to
# run it where bwrap is missing; installed where the machine allows (root + apt), like chromium above.
$(VENV)/.installed-sandbox: | $(BIN)/python
	command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq bubblewrap >/dev/null; } || echo "no bwrap: install it (apt-get install -y bubblewrap); without it the code_runner judge refuses to run code unless its config says sandbox: weak"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed $(VENV)/.installed-browser $(VENV)/.installed-sandbox
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

demo: $(VENV)/.installed $(VENV)/.installed-browser $(VENV)/.installed-sandbox
	PATH="$(CURDIR)/$(BIN):$$PATH" TETHER_HOME="$(DEMO_HOME)" TETHER_KEYS_DIR="$(CURDIR)/$(DEMO_KEYS)" bash scripts/demo.sh

# CI (.ci/run) runs `make test`: a type error fails it before the suite starts.
# Two pytest-xdist workers, a test file each at a time (module fixtures built once); the tiny model is built
# once for both (tests/conftest.py). TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2
test: $(VENV)/.installed-dev typecheck
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_rounds.py --out bench-out/rounds.json

bench-interventions: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_interventions.py --rounds 8 --out bench-out/interventions.json

bench-cli: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_cli.py --out bench-out/cli.json

# The evidence for issue 11: 3 seeds x {tether, the fixed recipe, Self-Rewarding 3 iterations}, 12 rounds
# each (about 25 minutes on 2 cores with the model builds); JSON and a PNG in bench-out/ (the README's copy: benchmarks/results/).
bench-ceiling: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_ceiling.py --seeds 0 1 2 --rounds 12 --out bench-out/ceiling.json

# Issue 19: every system (tether as shipped, fixed, fixed + regularized, Self-Rewarding 3 iterations, TRL online DPO)
# on every failure world (tools/worlds/tiny/failures/), the evaluation seeds 1-3 (0 is the tuning seed) x 6 rounds,
# every system the same rounds: 105 runs, 2.1 CPU-hours measured (README, "Failure worlds"; 12 rounds took twice
# that, past the 3 hours 2 cores allow). Two lanes, one per core: run two slices (SUITE_WORLDS or SUITE_SYSTEMS)
# and `bench_suite.py --merge A.json B.json --out suite.json`. JSON, a markdown table and a PNG grid in bench-out/.
# A slice, e.g.:
#   make bench-suite SUITE_WORLDS="length_paying_judge unreliable_judge" SUITE_SYSTEMS="tether fixed" SUITE_SEEDS=0 SUITE_ROUNDS=3
SUITE_WORLDS ?= blind_family distribution_collapse invisible_drift length_paying_judge over_cautious_constitution prompt_saturation unreliable_judge
SUITE_SYSTEMS ?= tether fixed regularized self_rewarding online_dpo
SUITE_SEEDS ?= 1 2 3
SUITE_ROUNDS ?= 6
bench-suite: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_suite.py --world $(SUITE_WORLDS) --systems $(SUITE_SYSTEMS) --seeds $(SUITE_SEEDS) --rounds $(SUITE_ROUNDS) --out bench-out/suite.json

# Issue 22's evidence, one command: leave-one-world-out folds of the learned controller. It runs what it needs of
# the suite first: the tether system (rules policy) on FOLDS_FIT_SEEDS of every world, workspaces kept in
# bench-out/folds/fit-runs (the decision histories); exploration runs on the same seeds (the rules' pick, or on about
# half the rounds a uniform pick among the permitted actions: the logged randomisation a bandit is fitted from); and
# tether + fixed on FOLDS_EVAL_SEEDS (the baselines). Then per world a policy fitted on the other worlds' histories
# runs that world's evaluation seeds (benchmarks/bench_folds.py). Each step's .md is written only when it is
# complete, so an interrupted `make bench-folds` redoes only what is unfinished; remove bench-out/folds/ to start
# over with other worlds, seeds or rounds. 5 runs per world and seed. JSON, markdown and a PNG: bench-out/folds.*.
# A slice:
#   make bench-folds SUITE_WORLDS="length_paying_judge unreliable_judge blind_family" FOLDS_FIT_SEEDS=0 FOLDS_EVAL_SEEDS=1 SUITE_ROUNDS=3
FOLDS_FIT_SEEDS ?= 0 1 2
FOLDS_EVAL_SEEDS ?= 3 4 5
FOLDS_SUITE = $(BIN)/python benchmarks/bench_suite.py --world $(SUITE_WORLDS) --rounds $(SUITE_ROUNDS) --models bench-out/models --keys-dir bench-out/keys
FOLDS = $(BIN)/python benchmarks/bench_folds.py --fit bench-out/folds/fit.json --fit-seeds $(FOLDS_FIT_SEEDS) --rounds $(SUITE_ROUNDS) --keys-dir bench-out/keys
bench-out/folds/fit.md: | $(VENV)/.installed
	$(FOLDS_SUITE) --systems tether --seeds $(FOLDS_FIT_SEEDS) --home bench-out/folds/fit-runs --out bench-out/folds/fit.json
bench-out/folds/explore.md: bench-out/folds/fit.md
	$(FOLDS) --behaviour bench-out/folds/behaviour.json
	$(FOLDS_SUITE) --systems tether --seeds $(FOLDS_FIT_SEEDS) --policy learned --policy-file bench-out/folds/behaviour.json --set controller.explore=0.5 --set controller.learned.min_decisions=100000 --home bench-out/folds/explore-runs --out bench-out/folds/explore.json
bench-out/folds/baseline.md: | $(VENV)/.installed
	$(FOLDS_SUITE) --systems tether fixed --seeds $(FOLDS_EVAL_SEEDS) --out bench-out/folds/baseline.json
bench-folds: $(VENV)/.installed bench-out/folds/explore.md bench-out/folds/baseline.md
	$(FOLDS) --explore bench-out/folds/explore.json --baseline bench-out/folds/baseline.json --world $(SUITE_WORLDS) --eval-seeds $(FOLDS_EVAL_SEEDS) --models bench-out/models --home bench-out/folds/runs --out bench-out/folds.json

# pass@1 / pass@K and the judges' spread of the base tiny model, per family and tier.
bench-headroom: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_headroom.py --seeds 0 1 2 --k 8 --judge rules --judge calculator --out bench-out/headroom.json

# The openai judge at concurrency 1, 8 and 32 against a loopback endpoint taking 200 ms a request (about 80 s):
# speedups measured side by side, and a check that every concurrency gives the same verdicts.
bench-judges: $(VENV)/.installed
	$(BIN)/python benchmarks/bench_judge_concurrency.py --items 64 --latency 0.2 --concurrency 1 8 32 --out bench-out/judge-concurrency.json

# mypy, strict on tether_types, guardrails and memory (pyproject.toml [tool.mypy]); a few seconds cold.
typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

lint: $(VENV)/.installed-dev typecheck
	$(BIN)/ruff check agent policies guardrails tools memory tests benchmarks tether_types.py

clean:
	rm -rf $(VENV) $(DEMO_HOME) $(DEMO_KEYS) .pytest_cache .mypy_cache bench-out

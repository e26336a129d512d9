# The two commands of the README: `make demo` and `make test`.
# Only Python >= 3.10 (3.11 here) and make are needed; everything else is installed into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
comma  := ,

.PHONY: demo test test-stress system-deps lint typecheck pytest bench clean test-floors test-py310

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	# torch (the `torch` extra) so the mlp/gru tests run: 2.13.0 is the CPU build served here.
	$(PIP) install torch==2.13.0
	# ray (the `ray` extra) so tests/test_ray_backend.py runs its real two-node cluster;
	# rl (the `rl` extra) so the recurrent_ppo tests run.
	$(PIP) install -e '.[dev,torch,rl,metrics,report,search,ray]'
	touch $@ $(VENV)/.installed

# Fast tests for the extra runs (lowest dependency versions, Python 3.10): unit tests of
# every layer plus one daemon end to end; 1-4 minutes depending on the machine's load.
FAST_TESTS := tests/test_config.py tests/test_features.py tests/test_risk_limits.py \
  tests/test_storage.py tests/test_backtest_engine.py tests/test_ledger.py \
  tests/test_metrics.py tests/test_loaders.py tests/test_render.py tests/test_extras.py \
  tests/test_e2e_daemon.py::test_daemon_trades_reports_status_and_exits_cleanly_on_sigterm \
  tests/test_examples.py tests/test_backtest_report.py tests/test_models.py
FAST_EXTRAS := metrics,report,search
TEST_TOOLS  := pytest pytest-timeout hypothesis pyyaml blockbuster
# A Python 3.10 that runs (a pyenv shim named python3.10 may exist and fail).
PY310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10; do \
  "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo "$$p"; break; }; done)

# Tests that open the HTML report in Chromium, verify the systemd units and check the alert
# rules need Debian's chromium, systemd and prometheus (promtool) packages; install them
# when we can (root + apt-get), else those tests skip with a reason.
system-deps:
	@if command -v chromium >/dev/null && command -v systemd-analyze >/dev/null \
	  && command -v promtool >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages chromium, systemd and prometheus (report, unit, alert-rule tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium systemd prometheus >/dev/null; \
	else echo "note: chromium/systemd-analyze/promtool missing and cannot be installed; those tests skip"; fi

## demo: install forexd and run it on the embedded default (paper broker, bundled OANDA EURUSD H1)
demo: $(VENV)/.installed
	@echo "forexd demo: paper broker, bundled EURUSD H1 replay at 36000x (10 bars/s), SMA(10, 20)."
	@echo "In another terminal:  $(BIN)/forexd ctl status --data-dir demo-data   (Ctrl-C here stops it)"
	$(BIN)/forexd run --config examples/demo.toml --data-dir demo-data

## test: install the dev extras and run ruff, mypy, the whole test suite and the Python 3.10 run
test: $(VENV)/.dev-installed system-deps lint typecheck pytest test-py310

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check forexd tests benchmarks
	$(BIN)/ruff format --check forexd tests benchmarks

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy forexd

pytest: $(VENV)/.dev-installed
	$(BIN)/pytest -q

## test-stress: the whole suite three times in a row, each with two CPU-burning processes
## beside it (a shared CI box); stops at the first red run and keeps pytest's exit code.
STRESS_RUNS ?= 3
STRESS_PYTEST ?= $(BIN)/pytest -q
test-stress: $(VENV)/.dev-installed system-deps
	@for run in $$(seq 1 $(STRESS_RUNS)); do \
	  echo "test-stress: run $$run of $(STRESS_RUNS), two CPU hogs beside it"; \
	  $(BIN)/python -c 'while True: pass' & hog1=$$!; \
	  $(BIN)/python -c 'while True: pass' & hog2=$$!; \
	  trap 'kill $$hog1 $$hog2 2>/dev/null' EXIT INT TERM; \
	  $(STRESS_PYTEST); rc=$$?; \
	  kill $$hog1 $$hog2; wait $$hog1 $$hog2 2>/dev/null; \
	  if [ $$rc -ne 0 ]; then echo "test-stress: run $$run failed (exit $$rc)"; exit $$rc; fi; \
	done; echo "test-stress: $(STRESS_RUNS) green runs under load"

## test-floors: a separate venv with the lowest versions pyproject.toml allows, fast tests
test-floors:
	rm -rf .venv-floors && $(PYTHON) -m venv .venv-floors
	$(PYTHON) .ci/floors.py $(subst $(comma), ,$(FAST_EXTRAS)) > .venv-floors/constraints.txt
	.venv-floors/bin/python -m pip --disable-pip-version-check -q install \
	  -c .venv-floors/constraints.txt -e '.[$(FAST_EXTRAS)]' $(TEST_TOOLS)
	.venv-floors/bin/python -m pip freeze > .venv-floors/installed.txt
	.venv-floors/bin/pytest -q -p no:cacheprovider -m "not slow" $(FAST_TESTS)

## test-py310: the fast tests on Python 3.10 (the oldest requires-python allows), if present
test-py310:
	@if [ -z "$(PY310)" ]; then echo "test-py310: skipped: no working python3.10 on PATH or in ~/.pyenv"; \
	else set -e; echo "test-py310: $(PY310)"; \
	  [ -x .venv-py310/bin/python ] || "$(PY310)" -m venv .venv-py310; \
	  .venv-py310/bin/python -m pip --disable-pip-version-check -q install -e '.[$(FAST_EXTRAS)]' $(TEST_TOOLS); \
	  .venv-py310/bin/pytest -q -p no:cacheprovider -m "not slow" $(FAST_TESTS); fi

## bench: every benchmark in its quick mode (benchmarks/run_all.py --full for the real runs)
bench: $(VENV)/.dev-installed
	$(PIP) install -e '.[bench]'  # backtesting.py, the comparison in bench_backtest
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .venv-floors .venv-py310 demo-data .mypy_cache .ruff_cache .pytest_cache

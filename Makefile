# The two commands of the README: `make demo` and `make test`.
# Only Python >= 3.10 (3.11 here) and make are needed; everything else is installed into .venv.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: demo test system-deps lint typecheck pytest bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(PIP) install -e .
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	# torch (the `torch` extra) so the mlp/gru tests run: 2.13.0 is the CPU build served here.
	$(PIP) install torch==2.13.0
	# ray (the `ray` extra) so tests/test_ray_backend.py runs its real two-node cluster.
	$(PIP) install -e '.[dev,torch,ray]'
	touch $@ $(VENV)/.installed

# Tests that open the HTML report in Chromium and verify the systemd units need Debian's
# chromium and systemd packages; install them when we can (root + apt-get), else they skip.
system-deps:
	@if command -v chromium >/dev/null && command -v systemd-analyze >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian packages chromium and systemd (for report and unit tests)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    --no-install-recommends chromium systemd >/dev/null; \
	else echo "note: chromium/systemd-analyze missing and cannot be installed; those tests skip"; fi

## demo: install forexd and run it on the embedded default (paper broker, bundled OANDA EURUSD H1)
demo: $(VENV)/.installed
	@echo "forexd demo: paper broker, bundled EURUSD H1 replay at 36000x (10 bars/s), SMA(10, 20)."
	@echo "In another terminal:  $(BIN)/forexd ctl status --data-dir demo-data   (Ctrl-C here stops it)"
	$(BIN)/forexd run --config examples/demo.toml --data-dir demo-data

## test: install the dev extras and run ruff, mypy and the whole test suite
test: $(VENV)/.dev-installed system-deps lint typecheck pytest

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check forexd tests benchmarks
	$(BIN)/ruff format --check forexd tests benchmarks

typecheck: $(VENV)/.dev-installed
	$(BIN)/mypy forexd

pytest: $(VENV)/.dev-installed
	$(BIN)/pytest -q

bench: $(VENV)/.dev-installed
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) demo-data .mypy_cache .ruff_cache .pytest_cache

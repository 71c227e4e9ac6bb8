# Two entry points (see README): `make repro` sets up and runs the pipeline, `make test` sets up and
# runs the whole test suite. Both install into .venv from requirements/lock.txt and are no-ops when
# nothing changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP_VERSION := 25.3
LOCK := requirements/lock.txt

# No model hub is reachable from our machines: fail fast instead of waiting on timeouts.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: setup setup-dev repro test lint lock clean-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==$(PIP_VERSION)

$(VENV)/.installed-%: pyproject.toml $(LOCK) | $(BIN)/python
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e ".[$*]"
	@touch $@

# `dvc plots show` offline: vega libraries from the npm registry (pinned by package-lock.json), inlined.
PLOTS_TEMPLATE := .dvc/plots_offline.html
$(PLOTS_TEMPLATE): tools/dvc-plots/package-lock.json tools/make_plots_template.py | $(BIN)/python
	@command -v npm >/dev/null || { echo "npm is needed for offline DVC plots (apt-get install npm)"; exit 1; }
	cd tools/dvc-plots && npm ci --no-audit --no-fund --loglevel=error
	$(BIN)/python tools/make_plots_template.py

# The browser tests drive Debian's chromium with Playwright (never a browser Playwright downloads).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM := /usr/bin/chromium
$(CHROMIUM):
	@command -v apt-get >/dev/null || { echo "the browser tests need chromium: install your system's chromium package"; exit 1; }
	$(SUDO) apt-get install -y -q chromium >/dev/null || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium >/dev/null; }

setup: $(VENV)/.installed-pipeline $(PLOTS_TEMPLATE)
setup-dev: $(VENV)/.installed-dev $(PLOTS_TEMPLATE) $(CHROMIUM)

repro: setup
	$(BIN)/dvc repro

test: setup-dev
	$(BIN)/python -m pytest

lint: setup-dev
	$(BIN)/ruff check edgekit tests tools benchmarks notebooks

# Re-pin after changing dependencies in pyproject.toml: resolve everything once, freeze it.
lock: | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[all]"
	$(BIN)/python -m pip freeze --exclude-editable | sed '/^-e /d' > $(LOCK)

clean-venv:
	rm -rf $(VENV)

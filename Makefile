# The two commands: `make lab` (the main job) and `make test` (the whole test suite).
# Each sets itself up: a .venv in the repo with nuwa_lab installed editable.
PRESET ?= tiny
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test test-browser lab lint clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests

# JupyterLab in headless Chromium (Debian's chromium, driven by Playwright from PyPI): notebook 03's
# explorer redraws when its controls change, notebook 00's animation plays. Not part of `make test`;
# run it before a change to notebooks or widgets. It installs what it needs and stops what it starts.
CHROMIUM ?= /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

test-browser: setup
	test -x $(CHROMIUM) || ($(SUDO) apt-get update && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium)
	$(PY) -m pip install --quiet playwright
	NUWA_LAB_BROWSER=1 NUWA_LAB_CHROMIUM=$(CHROMIUM) $(PY) -m pytest -q tests/browser

lab: setup
	$(PY) -m nuwa_lab lab --preset $(PRESET)

lint: setup
	$(VENV)/bin/ruff check nuwa_lab tests
	$(VENV)/bin/ruff format --check nuwa_lab tests

clean-runs:
	rm -rf experiments/runs

# The two commands: `make lab` (the main job) and `make test` (the whole test suite).
# Each sets itself up: a .venv in the repo with nuwa_lab installed editable.
PRESET ?= tiny
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lab lint clean-runs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests

lab: setup
	$(PY) -m nuwa_lab lab --preset $(PRESET)

lint: setup
	$(VENV)/bin/ruff check nuwa_lab tests
	$(VENV)/bin/ruff format --check nuwa_lab tests

clean-runs:
	rm -rf experiments/runs

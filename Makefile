# Quick start: `make demo` and `make test`. Both create ./.venv on first use (about 90 s) and reuse it after.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.kospeech-installed

.PHONY: venv demo test test-fast lint format clean-runs

$(STAMP): requirements.txt requirements-dev.txt setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv: $(STAMP)

demo: venv
	$(BIN)/python bin/demo.py

test: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

test-fast: venv
	$(BIN)/python -m pytest -q -n 2 --dist loadfile -m "not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean-runs:
	rm -rf runs

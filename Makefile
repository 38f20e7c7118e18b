# Consilium: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= config/consilium.toml
STAMP   = $(VENV)/.installed

.PHONY: run test lint typecheck unit bench install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## run: the embedded default (SQLite + files under var/, demo data of two hospitals)
run: $(STAMP)
	$(BIN)/consilium serve --config $(CONFIG)

## test: lint, type check and the whole suite (needs dcmtk and orthanc: see .ci/run)
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check platform rendering tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -q

## bench: the benchmarks of bench/ (not part of the tests)
bench: $(STAMP)
	$(BIN)/python bench/store_ingest.py
	$(BIN)/python bench/find_latency.py

clean:
	rm -rf $(VENV) var build *.egg-info

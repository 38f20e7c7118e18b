# Consilium: the two commands of the README are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= config/consilium.toml
STAMP   = $(VENV)/.installed

.PHONY: run test lint typecheck unit bench install clean frontend test-packages

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## frontend: the web viewer (frontend/dist); npm ci only when the lock file changed, vite build
## only when a source changed
FRONTEND_SRC := $(shell find frontend/src -type f 2>/dev/null) \
	frontend/index.html frontend/vite.config.ts frontend/tsconfig.json
NODE_STAMP = frontend/node_modules/.consilium-ci
DIST_STAMP = frontend/dist/.consilium-build

$(NODE_STAMP): frontend/package.json frontend/package-lock.json
	cd frontend && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(DIST_STAMP): $(NODE_STAMP) $(FRONTEND_SRC)
	cd frontend && npm run --silent build -- --logLevel warn
	touch $@

frontend: $(DIST_STAMP)

## run: the embedded default (SQLite + files under var/, demo data of two hospitals)
run: $(STAMP) frontend
	.ci/system-packages run
	$(BIN)/consilium serve --config $(CONFIG)

## test: the Debian packages of the real peers (dcmtk, Orthanc, Chromium, PostgreSQL, Redis:
## installed when run as root, else named), then lint, type check and the whole suite
test: test-packages frontend lint typecheck unit

test-packages:
	.ci/system-packages test

lint: $(STAMP)
	$(BIN)/ruff check platform rendering tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) frontend test-packages
	$(BIN)/pytest -q

## bench: the benchmarks of bench/ (not part of the tests)
bench: $(STAMP) frontend
	$(BIN)/python bench/store_ingest.py
	$(BIN)/python bench/find_latency.py
	$(BIN)/python bench/dicomweb.py
	$(BIN)/python bench/viewer_first_image.py
	$(BIN)/python bench/render.py
	$(BIN)/python bench/render_service.py
	$(BIN)/python bench/live_fanout.py
	$(BIN)/python bench/live_fanout.py --two-processes --script-seconds 0
	$(BIN)/python bench/live_render.py

clean:
	rm -rf $(VENV) var build *.egg-info frontend/dist frontend/node_modules

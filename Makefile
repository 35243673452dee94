# streamsnap: `make serve` and `make test` work on a fresh machine; both bootstrap .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PORT ?= 8080

.PHONY: serve cluster test unit integration e2e lint bench system-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/streamsnap serve --port $(PORT)

cluster: $(STAMP)
	PORT=$(PORT) scripts/cluster.sh

system-deps:
	scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

test: $(STAMP) system-deps lint
	$(BIN)/pytest

unit: $(STAMP)
	$(BIN)/pytest -m unit

integration: $(STAMP)
	$(BIN)/pytest -m integration

e2e: $(STAMP) system-deps
	$(BIN)/pytest -m e2e

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/encoders.py

clean:
	rm -rf $(VENV) build test-artifacts .pytest_cache .mypy_cache .ruff_cache

# streamsnap: `make serve` and `make test` work on a fresh machine; both bootstrap .venv from the lock
# (requirements/, made by `make lock`): serve installs the runtime only, test and lint every tool.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-stamp
DEV := $(VENV)/.dev-stamp
PIP := $(BIN)/pip install --quiet --no-deps
PORT ?= 8080

.PHONY: serve cluster test unit integration e2e lint docs lock lock-check bench system-deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Locked versions only (hashes checked), then the package itself, built with the locked setuptools (which
# compiles the receive path's C part, $(NATIVE), in place).
NATIVE := src/streamsnap/media/_fastrtp.c

$(RUNTIME): pyproject.toml requirements/runtime.txt $(NATIVE) | $(BIN)/python
	$(PIP) --require-hashes -r requirements/runtime.txt
	$(PIP) --no-build-isolation --editable .
	touch $@

$(DEV): pyproject.toml requirements/dev.txt $(NATIVE) | $(BIN)/python
	$(PIP) --require-hashes -r requirements/dev.txt
	$(PIP) --no-build-isolation --editable .
	touch $@ $(RUNTIME)

serve: $(RUNTIME)
	$(BIN)/streamsnap serve --port $(PORT)

cluster: $(RUNTIME)
	PORT=$(PORT) scripts/cluster.sh

system-deps:
	scripts/system-deps.sh

lock: $(DEV)
	scripts/lock.sh

lock-check: $(DEV)
	scripts/lock.sh --check

lint: $(DEV)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

test: $(DEV) system-deps lock-check lint
	$(BIN)/pytest

unit: $(DEV)
	$(BIN)/pytest -m unit

integration: $(DEV)
	$(BIN)/pytest -m integration

e2e: $(DEV) system-deps
	$(BIN)/pytest -m e2e

# The manual as a site (mkdocs.yml): strict, so a broken link or a page missing from the nav fails
# (not --quiet: it hides the warnings that strict mode counts, and the build then passes).
docs: $(DEV)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

bench: $(DEV)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/encoders.py

clean:
	rm -rf $(VENV) build dist site test-artifacts .pytest_cache .mypy_cache .ruff_cache

# `make serve` sets up and serves; `make test` sets up and runs lint, type check and every test.
PYTHON ?= python3
VENV ?= .venv
# CPU machines: this pinned CPU build. GPU machines: e.g. make serve TORCH="torch --index-url <your CUDA index>"
TORCH ?= torch==2.13.0
EXTRAS ?= dev
BIN := $(VENV)/bin

.PHONY: setup serve test lint typecheck bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH)
	$(BIN)/pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

serve: setup
	$(BIN)/framepack-api serve

lint: setup
	$(BIN)/ruff check src tests bench

typecheck: setup
	$(BIN)/mypy

test: setup lint typecheck
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/overhead.py

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache

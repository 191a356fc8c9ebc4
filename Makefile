# Odradek: `make run` starts a local cluster, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit integration sim bench lint proto chaos clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/odradek cluster up --nodes 3

test: $(STAMP)
	$(BIN)/ruff check broker controller storage tests
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/unit tests/sim tests/integration tests/chaos

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

sim: $(STAMP)
	$(BIN)/python -m pytest -q tests/sim

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

bench: $(STAMP)
	$(BIN)/python -m tests.bench.run

lint: $(STAMP)
	$(BIN)/ruff check broker controller storage tests

chaos: $(STAMP)
	$(BIN)/python -m pytest -q tests/chaos tests/integration/test_partition.py

proto: $(STAMP)
	$(BIN)/python -m controller.rpc.regenerate

clean:
	rm -rf $(VENV) odradek-data .pytest_cache

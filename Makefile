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

# A long fault-injection run (default 10 minutes, a fault every 15 s; DURATION=, INTERVAL=,
# SEED= and VERIFY_ARGS= adjust it), then the namespace fault tests.
chaos: $(STAMP)
	$(BIN)/odradek verify --duration $(or $(DURATION),600) --interval $(or $(INTERVAL),15) \
		$(if $(SEED),--seed $(SEED)) $(VERIFY_ARGS)
	$(BIN)/python -m pytest -q tests/chaos/test_netns.py tests/integration/test_partition.py

proto: $(STAMP)
	$(BIN)/python -m controller.rpc.regenerate

clean:
	rm -rf $(VENV) odradek-data .pytest_cache

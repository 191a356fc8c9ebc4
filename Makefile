# Odradek: `make run` starts a local cluster, `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test unit integration sim bench lint proto chaos fuzz soak clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,verify]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/odradek cluster up --nodes 3

test: $(STAMP)
	$(BIN)/ruff check broker controller storage tests
	$(BIN)/python -m tests.typecheck
	@# reports/junit.xml keeps every test's duration, to see where the suite's time goes.
	@# Two modules at a time (TEST_WORKERS, default 2; --dist loadfile keeps a module's shared
	@# cluster in one process): about 16 minutes on 2 cores instead of 29. A test that fails
	@# runs once more (--reruns 1, as Kafka's own CI retries a failed test once); every rerun
	@# is listed in the summary (RERUN lines, and "N rerun" on its last line; docs/testing.md).
	$(BIN)/python -m pytest -q -p no:cacheprovider -n $(or $(TEST_WORKERS),2) --dist loadfile --reruns 1 -raR --durations=30 --junitxml=reports/junit.xml tests/unit tests/sim tests/integration tests/plugin tests/chaos tests/fuzz tests/compat

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

sim: $(STAMP)
	$(BIN)/python -m pytest -q tests/sim

integration: $(STAMP)
	$(BIN)/python -m pytest -q tests/integration

# BENCH_ARGS= passes options through, e.g. BENCH_ARGS="--peer kafka" (tests/bench/README.md).
bench: $(STAMP)
	$(BIN)/python -m tests.bench.run $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check broker controller storage tests
	$(BIN)/python -m tests.typecheck

# A long fault-injection run (default 10 minutes, a fault every 15 s; DURATION=, INTERVAL=,
# SEED= and VERIFY_ARGS= adjust it; VERIFY_ARGS="--workload txn" checks transactions),
# then the namespace fault tests.
chaos: $(STAMP)
	$(BIN)/odradek verify --duration $(or $(DURATION),600) --interval $(or $(INTERVAL),15) \
		$(if $(SEED),--seed $(SEED)) $(VERIFY_ARGS)
	$(BIN)/python -m pytest -q tests/chaos/test_netns.py tests/integration/test_partition.py

# Long fuzzing runs: the coverage-guided fuzzer of request decoding and dispatch
# (RUNS= inputs, default 1,000,000), then the network fuzzer against a live 3-node cluster
# (NET_DURATION= seconds, default 300). Short runs of both are part of `make test`.
fuzz: $(STAMP)
	$(BIN)/python -m tests.fuzz.decode_fuzzer --runs $(or $(RUNS),1000000)
	$(BIN)/python -m tests.fuzz.network_fuzzer --duration $(or $(NET_DURATION),300)

# Long runs of what make test checks briefly: a consumer group committing without a pause
# for SOAK_S seconds (default 600) while __consumer_offsets must stay compacted.
soak: $(STAMP)
	COMPACTION_SOAK_S=$(or $(SOAK_S),600) $(BIN)/python -m pytest -q -s -p no:cacheprovider \
		--timeout $$(( $(or $(SOAK_S),600) + 300 )) \
		tests/integration/test_compaction.py -k consumer_offsets_stay_bounded

proto: $(STAMP)
	$(BIN)/python -m odradek.controller.rpc.regenerate

clean:
	rm -rf $(VENV) odradek-data .pytest_cache

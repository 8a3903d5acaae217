# Everyday tasks. `make run` and `make test` create .venv and install into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The benchmark's peer, Quix Streams, pins a pydantic below the project's: a venv of its own.
PEER_VENV := .venv-peer
PEER_STAMP := $(PEER_VENV)/.installed

.PHONY: install run test test-fast lint bench demo docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

$(PEER_STAMP): bench/peer-requirements.txt
	$(PYTHON) -m venv $(PEER_VENV)
	$(PEER_VENV)/bin/pip install -q -r bench/peer-requirements.txt
	touch $(PEER_STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/segwarden up

# Two pytest workers (TEST_WORKERS=0 for one process): the tests spend about half their time
# waiting on service start-ups and group joins, so two finish in about half the time on 2 cores
# (docs/benchmarks.md, "Test suite duration"). A file's tests stay on one worker (loadfile), so a
# module's shared services start once.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m tests.prepare
	$(BIN)/pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile

# The unit tests only: pure logic and fakes, no broker, Redis or database (seconds).
test-fast: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: $(STAMP) $(PEER_STAMP)
	QUIX_PYTHON=$${QUIX_PYTHON:-$(abspath $(PEER_VENV))/bin/python} $(BIN)/segwarden bench

demo: $(STAMP)
	$(BIN)/segwarden demo

docs: $(STAMP)
	$(BIN)/python -m shared.contract_docs

clean:
	rm -rf $(VENV) $(PEER_VENV) .data build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

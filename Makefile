# Everyday tasks. `make run` and `make test` create .venv and install into it on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run test test-fast lint bench demo docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/segwarden up

test: $(STAMP)
	$(BIN)/python -m tests.prepare
	$(BIN)/pytest -q -p no:cacheprovider

# The unit tests only: pure logic and fakes, no broker, Redis or database (seconds).
test-fast: $(STAMP)
	$(BIN)/pytest -q -p no:cacheprovider tests/unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/segwarden bench

demo: $(STAMP)
	$(BIN)/segwarden demo

docs: $(STAMP)
	$(BIN)/python -m shared.contract_docs

clean:
	rm -rf $(VENV) .data build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis

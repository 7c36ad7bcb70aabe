# The two commands a new user needs: `make run` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PYTEST_WORKERS ?= 4

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

## Set up, create the embedded SQLite ledger (ledger.db) with demo data, show it, serve the API.
run: $(STAMP)
	$(BIN)/income-ledger db init
	$(BIN)/income-ledger demo
	$(BIN)/income-ledger serve --demo-keys

## Set up and run the whole test suite (SQLite and PostgreSQL), with lint.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -n $(PYTEST_WORKERS) --durations=15 $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## Benchmarks (not tests): issue #9's table, each path against its raw baseline in the same run
## (LEDGER_BENCH_EVENTS=95000 for the issue's size; see docs/performance.md).
bench: $(STAMP)
	$(BIN)/python -m bench.table

clean:
	rm -rf $(VENV) ledger.db ledger.db-wal ledger.db-shm

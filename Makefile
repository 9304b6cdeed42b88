# The two commands of the README: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/dev.toml

# Two stamps: the runtime dependencies (all `make serve` needs) and the test extras.
DEV := $(VENV)/.test-extras

.PHONY: serve test lint bench faults fuzz clean venv

$(BIN)/mailgate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e .
	touch $@

$(DEV): $(BIN)/mailgate
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(DEV)

serve: $(BIN)/mailgate
	MAILGATE_CONFIG=$(CONFIG) $(BIN)/mailgate db upgrade
	MAILGATE_CONFIG=$(CONFIG) $(BIN)/mailgate serve

lint: $(DEV)
	$(BIN)/ruff check mailgate tests bench alembic
	$(BIN)/ruff format --check mailgate tests bench alembic
	$(BIN)/mypy

test: lint
	$(BIN)/pytest -q

# The fault-injection scenarios at full size (a short form of each runs in `make test`).
faults: $(DEV)
	MAILGATE_FAULTS=full $(BIN)/pytest -q tests/faults

# The hostile-input property suite with a large budget (a small one runs in `make test`).
fuzz: $(DEV)
	MAILGATE_FUZZ_EXAMPLES=$${MAILGATE_FUZZ_EXAMPLES:-100000} $(BIN)/pytest -q tests/fuzz

# Every performance figure in one table (README "Performance"); BENCH_ARGS="--only lookup".
bench: $(DEV)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf var build dist .pytest_cache .mypy_cache .ruff_cache

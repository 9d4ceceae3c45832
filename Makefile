# Two commands: `make demo` and `make test`. Both set everything up first (idempotent).
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test lint bench fuzz clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	scripts/setup.sh
	touch $@

demo: setup
	$(BIN)/microseg demo

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: setup lint
	$(BIN)/python -m pytest -q

# the fuzz and fault suites with a larger budget than every test run gives them
fuzz: setup
	MICROSEG_FUZZ=long $(BIN)/python -m pytest -q -s \
		tests/flows/test_flow_structured_fuzz.py tests/flows/test_flow_faults.py

bench: setup
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

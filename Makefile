# Two commands: `make demo` and `make test`. Each sets up what it needs first (idempotent):
# demo only Python and microseg; test also the system tests' Debian packages and the extras.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup setup-demo demo test lint bench fuzz clean

setup: $(VENV)/.installed-test
setup-demo: $(VENV)/.installed-demo

$(VENV)/.installed-demo: pyproject.toml scripts/setup.sh
	scripts/setup.sh demo
	touch $@

# The test setup includes everything the demo needs.
$(VENV)/.installed-test: pyproject.toml scripts/setup.sh
	scripts/setup.sh test
	touch $@ $(VENV)/.installed-demo

demo: $(VENV)/.installed-demo
	$(BIN)/microseg demo

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest -q --durations=25

# The fuzz and fault suites with a larger budget than every test run gives them.
fuzz: $(VENV)/.installed-test
	MICROSEG_FUZZ=long MICROSEG_FUZZ_LONG=1 $(BIN)/python -m pytest -q -s \
		tests/flows/test_flow_structured_fuzz.py tests/flows/test_flow_faults.py \
		tests/cli/test_cli_fuzz.py tests/policyfile/test_loader_fuzz.py tests/store/test_store_faults.py

# Every bench; the Spark ones over the scale bench's store read the store bench/scale.py
# generated (kept in BENCH_DATA); spark_sizes.py is their shared code, not a bench.
BENCH_DATA ?= .bench-data
bench: $(VENV)/.installed-test
	$(BIN)/python bench/scale.py --data $(BENCH_DATA)
	for b in bench/*.py; do case $$b in \
		bench/scale.py|bench/spark_sizes.py) ;; \
		bench/builder_split.py|bench/whatif_spark.py) $(BIN)/python $$b --data $(BENCH_DATA) || exit 1 ;; \
		*) $(BIN)/python $$b || exit 1 ;; \
	esac; done

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis

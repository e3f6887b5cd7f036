# midoffice: the two commands a new machine needs are `make demo` and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
HOME_DIR ?= $(CURDIR)/.midoffice
LANDING ?= $(HOME_DIR)/landing
START ?= 2026-01-05
DAYS ?= 5
END ?= 2026-01-09
TRADES ?= 2000
# What `make test` runs (narrow it to try the runner, e.g. make test TESTS=tests/test_house.py
# SCHEDULER_TESTS=): the scheduler tests in one process, and TESTS split between the sample
# run's process (these markers) and a third one.
TESTS ?= tests
SCHEDULER_TESTS ?= tests/test_scheduler.py
SAMPLE_TESTS := sample_run or with_sample_run

.PHONY: install demo test lint bench clean suites

$(BIN)/midoffice: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip>=24"
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(BIN)/midoffice

install: $(BIN)/midoffice

# Generate sample feeds, run every business date through the Airflow DAG, publish, report.
demo: install
	rm -rf $(LANDING)
	$(BIN)/midoffice generate --out $(LANDING) --start $(START) --days $(DAYS) --trades-per-day $(TRADES)
	$(BIN)/midoffice run --landing $(LANDING) --home $(HOME_DIR) --from $(START) --to $(END) --development-key
	@echo "published warehouse: $(HOME_DIR)/warehouse/marts.duckdb"
	@echo "daily packs:         $(HOME_DIR)/reports/<date>/index.html"

test: install
	@# Three pytest processes side by side on the machine's cores: the real-scheduler tests (they
	@# mostly wait on Airflow's scheduling loop), the tests that read the shared sample run (made
	@# once in that process; marker with_sample_run adds a module to balance), and the rest.
	@# tests/parallel.py shows each test's result as it comes and ends with one total.
	@$(BIN)/python tests/parallel.py \
		"scheduler: $(SCHEDULER_TESTS)" \
		"sample run: $(TESTS) --ignore=tests/test_scheduler.py -m '$(SAMPLE_TESTS)'" \
		"others: $(TESTS) --ignore=tests/test_scheduler.py -m 'not ($(SAMPLE_TESTS))'"

# The linters (config: [tool.ruff] in pyproject.toml, .sqlfluff); both run, either failing fails.
lint: install
	@$(BIN)/ruff check midoffice dags tests bench; ruff=$$?; \
	$(BIN)/sqlfluff lint transforms warehouse; sqlfluff=$$?; \
	test $$ruff -eq 0 -a $$sqlfluff -eq 0

suites: install
	$(BIN)/midoffice suites

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(HOME_DIR) .pytest_cache

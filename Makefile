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
# SCHEDULER_TESTS=): the scheduler tests in one process, the tests that read the shared sample
# run (this marker) in another, and the rest of TESTS in two more, by module.
TESTS ?= tests
SCHEDULER_TESTS ?= tests/test_scheduler.py
SAMPLE_TESTS := sample_run
# The modules whose own fixtures build many dates run in a process of their own, so that the two
# cores stay busy to the end (a single "others" process used to run alone for minutes). Measured
# layouts, make test on this machine: 3 processes 1,214 s; 4 1,068 s; 6 processes, or lower
# priorities for all but the sample run, over 1,200 s (more processes than cores thrash).
# test_cost_income runs with test_clients: both read the month-end run, made once a process.
HEAVY_TESTS := tests/test_recon.py tests/test_worklist.py tests/test_crash.py tests/test_full_disk.py tests/test_clients.py \
	tests/test_cost_income.py tests/test_product_control.py
# The scheduler tests mostly wait on Airflow and end after ~5 minutes: their process then runs
# these modules (each builds dates of its own), so that all four processes end together.
AFTER_SCHEDULER := tests/test_delivery_faults.py tests/test_run_console.py tests/test_run_lock.py tests/test_lake.py
# those of them in TESTS (all of them when TESTS is the whole folder); none: not in that process
in_tests = $(if $(filter tests tests/,$(TESTS)),$(1),$(filter $(1),$(TESTS)))
HEAVY_SELECTED := $(call in_tests,$(HEAVY_TESTS))
AFTER_SELECTED := $(if $(SCHEDULER_TESTS),$(call in_tests,$(AFTER_SCHEDULER)))
OTHERS_IGNORE := $(foreach t,tests/test_scheduler.py $(HEAVY_TESTS) $(AFTER_SELECTED),--ignore=$(t))
# The `long` tests (pyproject.toml) are left to `make test-long`: with them, make test took 21
# minutes on a slow day of this machine (bench/RESULTS.md, session 17), over CI's 20.
NOT_SAMPLE := -m 'not $(SAMPLE_TESTS) and not long' --durations=20

.PHONY: install demo test test-long lint bench clean suites

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
	@echo "published warehouse: the lake $(HOME_DIR)/warehouse/lake.sqlite (read it: .venv/bin/midoffice query --home $(HOME_DIR))"
	@echo "daily packs:         $(HOME_DIR)/reports/<date>/index.html"

test: install
	@# Four pytest processes side by side on the machine's cores: the real-scheduler tests (they
	@# mostly wait on Airflow's scheduling loop), then AFTER_SCHEDULER; the tests that read the
	@# shared sample run (made once in that process); the modules that build many dates of their
	@# own (HEAVY_TESTS); the rest. Each log ends with its slowest tests.
	@# tests/parallel.py shows each test's result as it comes and ends with one total.
	@# One DuckDB thread a process (MIDOFFICE_DUCKDB_THREADS): four processes already fill two
	@# cores, and two threads each made the same pipeline work 16 % slower (bench/RESULTS.md).
	@MIDOFFICE_DUCKDB_THREADS=$${MIDOFFICE_DUCKDB_THREADS:-1} $(BIN)/python tests/parallel.py \
		$(if $(SCHEDULER_TESTS),"scheduler: $(SCHEDULER_TESTS) $(AFTER_SELECTED) $(NOT_SAMPLE)") \
		"sample run: $(TESTS) --ignore=tests/test_scheduler.py -m '$(SAMPLE_TESTS) and not long' --durations=20" \
		$(if $(HEAVY_SELECTED),"heavy: $(HEAVY_SELECTED) $(NOT_SAMPLE)") \
		"others: $(TESTS) $(OTHERS_IGNORE) $(NOT_SAMPLE)"

# The long multi-date scenarios make test leaves out (marker `long`), in one process.
test-long: install
	@MIDOFFICE_DUCKDB_THREADS=$${MIDOFFICE_DUCKDB_THREADS:-1} $(BIN)/python -m pytest -v -m long --durations=10 $(TESTS)

# The linters (config: [tool.ruff] in pyproject.toml, .sqlfluff); both run, either failing fails.
lint: install
	@$(BIN)/ruff check midoffice dags tests bench deploy; ruff=$$?; \
	$(BIN)/sqlfluff lint transforms warehouse; sqlfluff=$$?; \
	test $$ruff -eq 0 -a $$sqlfluff -eq 0

suites: install
	$(BIN)/midoffice suites

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(HOME_DIR) .pytest_cache

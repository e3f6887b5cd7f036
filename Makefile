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
SCHEDULER_LOG ?= .pytest-scheduler.log
OTHERS_LOG ?= .pytest-others.log
# The tests run in the sample run's process; every other test runs in the second one.
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
	$(BIN)/midoffice run --landing $(LANDING) --home $(HOME_DIR) --from $(START) --to $(END)
	@echo "published warehouse: $(HOME_DIR)/warehouse/marts.duckdb"
	@echo "daily packs:         $(HOME_DIR)/reports/<date>/index.html"

test: install
	@# Three pytest processes side by side on the machine's cores: the real-scheduler tests (they
	@# mostly wait on Airflow's scheduling loop), the tests that read the shared sample run (made
	@# once in that process; marker with_sample_run adds a module to balance), and the rest.
	@$(BIN)/python -m pytest -q tests/test_scheduler.py > $(SCHEDULER_LOG) 2>&1 & scheduler=$$!; \
	$(BIN)/python -m pytest -q --ignore=tests/test_scheduler.py -m "not ($(SAMPLE_TESTS))" > $(OTHERS_LOG) 2>&1 & others=$$!; \
	$(BIN)/python -m pytest -q --ignore=tests/test_scheduler.py -m "$(SAMPLE_TESTS)"; sample=$$?; \
	wait $$others; others_rc=$$?; wait $$scheduler; scheduler_rc=$$?; \
	echo "== the tests that do not read the sample run (alongside):"; cat $(OTHERS_LOG); \
	echo "== tests/test_scheduler.py (alongside):"; cat $(SCHEDULER_LOG); \
	test $$sample -eq 0 -a $$others_rc -eq 0 -a $$scheduler_rc -eq 0

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

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

.PHONY: install demo test test-fast bench clean suites

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
	$(BIN)/python -m pytest -q

suites: install
	$(BIN)/midoffice suites

bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(HOME_DIR) .pytest_cache

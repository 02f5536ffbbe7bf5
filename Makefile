# One command per job (`make help`). A fresh machine needs Python 3.11 and make:
# every target installs what it needs from requirements.lock first.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
UV := $(BIN)/uv

export PIPELINES_DATA_ROOT ?= $(CURDIR)/data
export AIRFLOW_HOME ?= $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export GX_ANALYTICS_ENABLED := False
export DO_NOT_TRACK := 1

DEMO_START ?= 2013-01-01
DEMO_END ?= 2013-01-31

.DEFAULT_GOAL := help
.PHONY: help setup system test test-fast test-property-long lint format bench bench-scale demo lock clean down up-prod down-prod

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

# --compile-bytecode: machines here set PYTHONDONTWRITEBYTECODE=1, so without .pyc
# files written at install time every process (each Airflow task, each test
# subprocess) compiles its imports again: import great_expectations 7.0 s -> 3.7 s,
# evidently 7.8 -> 4.1, mlflow 3.7 -> 1.4, xgboost 3.6 -> 1.2 (measured here).
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip sync -q --compile-bytecode --python $(BIN)/python requirements.lock
	$(UV) pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

setup: $(VENV)/.installed ## Install the locked environment into .venv

# Debian's headless browser and its driver for the Airflow UI test (the test
# never downloads a browser). Installed with apt when missing: root, or sudo.
SYSTEM_PKGS := chromium chromium-driver
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system: ## Install the system packages the tests need (chromium, chromium-driver)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  $(SUDO) apt-get install -y --no-install-recommends $(SYSTEM_PKGS) || \
	  ($(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(SYSTEM_PKGS))

test: setup system ## Run the whole test suite (what CI runs)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test-fast: setup ## Unit and contract tests only
	$(BIN)/python -m pytest tests/unit tests/contracts

test-property-long: setup ## Property-based ingest tests with the long Hypothesis profile (thousands of generated deliveries)
	HYPOTHESIS_PROFILE=long $(BIN)/python -m pytest tests/property -q

lint: setup ## Ruff (with Airflow's AIR rules on dags/)
	$(BIN)/ruff check pipelines pipelines_airflow pipelines_ops dags tests
	$(BIN)/ruff format --check pipelines pipelines_airflow pipelines_ops dags tests

format: setup ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix pipelines pipelines_airflow pipelines_ops dags tests
	$(BIN)/ruff format pipelines pipelines_airflow pipelines_ops dags tests

bench: setup ## Benchmarks, ours against the peers, side by side (validation, drift, scoring)
	$(BIN)/python tests/bench/bench_validate.py
	$(BIN)/python tests/bench/bench_drift.py
	$(BIN)/python tests/bench/bench_score.py

bench-scale: setup ## Large days: validation at 1M/5M/20M rows beside GX alone, S3 scoring, a 20M-row training window, a 5M-row day on two prod workers
	$(BIN)/python tests/bench/bench_scale.py

demo: setup ## The whole story through Airflow: ingest (halts redelivered) -> champion -> score -> drift -> retrain (in shadow) -> live promotion -> backfill
	$(BIN)/python -m pipelines_ops.demo_driver --start $(DEMO_START) --end $(DEMO_END)

lock: ## Re-resolve requirements.lock from pyproject.toml (needs uv)
	$(UV) pip compile pyproject.toml --extra dev --extra ops --python-version 3.11 --generate-hashes -o requirements.lock

down: setup ## Stop the Airflow started by the demo
	$(BIN)/python -m pipelines_ops.demo_driver --down

up-prod: setup ## The prod profile on this machine: PostgreSQL, Celery on Redis, MLflow server, S3 (see README)
	$(BIN)/python -m pipelines_ops.prod_stack up

down-prod: setup ## Stop what up-prod started
	$(BIN)/python -m pipelines_ops.prod_stack down

clean: ## Remove local data, Airflow home and caches (not .venv)
	rm -rf data .airflow .prod .pytest_cache .ruff_cache

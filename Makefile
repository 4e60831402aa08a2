# Rolegate. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# `make run` is local development: debug pages, a generated secret key, plain-http issuers.
DEV_ENV := DJANGO_DEBUG=1 ROLEGATE_ALLOW_HTTP=1
PYTEST_WORKERS ?= 2

.PHONY: help venv run test lint bench demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## Create .venv and install the pinned requirements

demo: venv ## Migrate and load the demo configuration and admin user (SQLite by default)
	$(DEV_ENV) $(PY) manage.py migrate --no-input
	$(DEV_ENV) $(PY) manage.py apply demo/rolegate.yaml
	$(DEV_ENV) $(PY) manage.py demo_admin

run: demo ## Serve Rolegate on http://127.0.0.1:8000 with the demo data, tasks in-process
	$(DEV_ENV) $(PY) manage.py runserver 127.0.0.1:8000

lint: venv ## ruff, Django's checks, and missing migrations
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

test: lint ## The whole suite (SQLite unless DATABASE_URL is set)
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: venv ## Load-test the exchange and print figures (needs PostgreSQL)
	$(PY) scripts/bench.py

clean: ## Remove the venv, the SQLite database and caches
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .ruff_cache .hypothesis

# Rolegate. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
# `make run` is local development: debug pages, a generated secret key, plain-http issuers.
PORT ?= 8000
# Loopback issuers are allowed too (a GitLab stand-in on this machine), besides the private networks.
DEV_ENV := DJANGO_DEBUG=1 ROLEGATE_ALLOW_HTTP=1 ROLEGATE_ISSUER=http://127.0.0.1:$(PORT) \
	ROLEGATE_ISSUER_ALLOWED_NETWORKS=127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7
PYTEST_WORKERS ?= 2

.PHONY: help venv run test lint bench chaos demo clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is required (Python 3.11)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## Create .venv and install the pinned requirements

demo: venv ## Migrate, load the demo configuration, sample audit events and the admin user (SQLite by default)
	@$(DEV_ENV) $(PY) manage.py migrate --no-input -v 0
	@$(DEV_ENV) ROLEGATE_LOG_LEVEL=WARNING $(PY) manage.py apply demo/rolegate.yaml
	@$(DEV_ENV) $(PY) manage.py demo_audit
	@echo
	@$(DEV_ENV) $(PY) manage.py demo_admin
	@echo

run: demo ## Serve Rolegate on http://127.0.0.1:8000 (PORT=8001 for another) with the demo data
	@echo "Serving on http://127.0.0.1:$(PORT)/ (tasks in-process; Ctrl-C stops)"
	@$(DEV_ENV) $(PY) manage.py runserver --skip-checks 127.0.0.1:$(PORT)

lint: venv ## ruff, import layers, types (mypy), dead code (vulture), Django's checks, missing migrations
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache --no-logo
	$(VENV)/bin/mypy
	$(VENV)/bin/vulture
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py check
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) manage.py makemigrations --check --dry-run

test: lint ## The whole suite (SQLite unless DATABASE_URL is set)
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

bench: venv ## Load-test the exchange and print figures (needs PostgreSQL)
	$(PY) scripts/bench.py

chaos: venv ## Fault injection under load (own PostgreSQL cluster, Redis, broker, STS, JWKS); prints the figures
	$(PY) scripts/chaos.py

clean: ## Remove the venv, the SQLite database and caches
	rm -rf $(VENV) db.sqlite3 staticfiles .pytest_cache .ruff_cache .mypy_cache .hypothesis

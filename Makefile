# Chirp: `make run` runs the whole app, `make test` the whole test suite. Both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CHIRP := $(VENV)/bin/chirp
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install services services-down run test test-unit test-integration test-browser lint format bench docs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with the app and its dev tools

services: $(STAMP) ## Install and start Kafka, Redis and PostgreSQL (idempotent)
	$(CHIRP) services up

services-down: $(STAMP) ## Stop the local services
	$(CHIRP) services down

run: services ## Run everything: services, gateway, every consumer (UI on http://127.0.0.1:8000)
	CHIRP_ENV=dev $(CHIRP) run

test: services ## Run the full test suite against the real services
	$(PY) -m pytest

test-unit: $(STAMP) ## Unit tests only (no services)
	$(PY) -m pytest tests/unit

lint: $(STAMP) ## ruff check, ruff format --check, mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy chirp schemas producers consumers gateway store

format: $(STAMP) ## Format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: services ## Run the benchmarks (figures printed and written to bench/results/)
	for b in bench/*.py; do $(PY) $$b || exit 1; done

clean: ## Remove the virtualenv and caches (services' state lives in ~/.cache/chirp)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info

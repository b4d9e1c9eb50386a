# Chirp: `make run` runs the whole app, `make test` the whole test suite. Both install what they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
CHIRP := $(VENV)/bin/chirp
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install shell services services-down static run test test-cluster test-unit test-integration test-browser lint format bench docs clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements.lock
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv with the app and its dev tools (then `.venv/bin/chirp`, or `make shell`)

shell: $(STAMP) ## A shell with .venv active: `chirp` and `pytest` on the PATH (exit to leave)
	@echo "chirp is on the PATH; exit to leave"
	@VIRTUAL_ENV="$(CURDIR)/$(VENV)" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $${SHELL:-/bin/bash} -i

services: $(STAMP) ## Install and start Kafka, Redis and PostgreSQL (idempotent)
	$(CHIRP) services up

services-down: $(STAMP) ## Stop the local services
	$(CHIRP) services down

static: $(STAMP) ## Build the PNG link previews show from gateway/static/og-image.svg (installs rsvg-convert)
	$(PY) -m ops.og_image

run: services static ## Run everything: services, gateway, every consumer (UI on http://127.0.0.1:8000)
	CHIRP_ENV=dev $(CHIRP) run

test: services static ## Run the full test suite against the real services
	$(PY) -m pytest

test-cluster: services ## Scale-out tests: a three-broker Kafka cluster and a three-master Redis Cluster of their own, consumers and gateways in several processes
	$(PY) -m pytest tests/cluster

test-unit: $(STAMP) ## Unit tests only (no services)
	$(PY) -m pytest tests/unit

test-integration: services ## Integration tests only (real services, no browser)
	$(PY) -m pytest tests/integration

test-browser: services static ## Browser tests only (installs Chromium when missing)
	$(PY) -m pytest tests/e2e

lint: $(STAMP) ## ruff check, ruff format --check, mypy, import-linter (imports only go down)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy chirp domain ops schemas producers consumers gateway store
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP) ## Format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: services ## Run the benchmarks (installs wrk; figures printed and written to bench/results/)
	@command -v wrk >/dev/null || $(PY) -c 'from ops.services._util import apt_install; apt_install("wrk")'
	for b in bench/*.py; do $(PY) $$b || exit 1; done

docs: $(STAMP) ## Regenerate docs/configuration.md, docs/openapi.json and docs/asyncapi.json from the code
	$(PY) -m ops.config_doc
	$(CHIRP) docs

clean: ## Remove the virtualenv and caches (services' state lives in ~/.cache/chirp)
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache *.egg-info

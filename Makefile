# The README's two commands: `make up` runs the whole system, `make test` runs every check.
# Both install what they need first, from the lock file, so a fresh clone needs nothing by hand.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: up test lint format install bench clean-state train

up: install ## Run Kafka, PostgreSQL, MLflow and every service until Ctrl-C
	$(PY) -m deploy.local

test: install lint ## Lint, type-check, then the whole test suite on a real stack
	$(PY) -m pytest

train: install ## Train the fast model on the full data, gate it, register and promote it (needs `make up`)
	$(PY) -m training train --family fast

lint: install ## ruff (lint and format check) and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

install: $(VENV)/.installed

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# Re-sync only when the lock file changes; --frozen refuses a lock that is out of date.
$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

clean-state: ## Delete the local stack's data (Kafka topics, PostgreSQL, MLflow runs and models)
	rm -rf .state

# The README's two commands: `make up` runs the whole system, `make test` runs every check.
# Both install what they need first, from the lock file, so a fresh clone needs nothing by hand.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: up test lint format install browser bench clean-state

# The gateway's open mode (no API keys, every caller is admin) is for local development:
# `make up` turns it on here, explicitly; it is off everywhere else.
up: install ## Run Kafka, PostgreSQL, MLflow and every service until Ctrl-C
	RS_GATEWAY_OPEN_MODE=true $(PY) -m deploy.local

test: install browser lint ## Lint, type-check, then the whole test suite on a real stack
	$(PY) -m pytest

# The browser tests drive Debian's Chromium with Playwright; no browser build is downloaded.
browser: ## Install Debian's chromium if it is missing
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)

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

# The README's two commands: `make up` runs the whole system, `make test` runs every check.
# Each installs what it runs, first, from the lock file, so a fresh clone needs nothing by hand:
# `install` is the Python environment (every command needs it); `tools` are the deploy checkers
# built with Go, which only `make test` runs, so `make up` works on a machine without Go.

SHELL := /bin/bash
PYTHON ?= python3
UV_VERSION := 0.13.8
UV := .tools/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
# Offline checks of deploy/ (tests only): kustomize and the docker compose CLI plugin, pinned,
# built from the Go module proxy into .tools/ (tests use them from there).
KUSTOMIZE_VERSION := v5.8.2
COMPOSE_VERSION := v5.6.0

.PHONY: up test lint format install tools browser monitoring bench clean-state train podman \
	compose-secrets k8s-dev-secrets \
	training-image train-image images containers-smoke kube-smoke

# The gateway's open mode (no API keys, every caller is admin) is for local development:
# `make up` turns it on here, explicitly; it is off everywhere else.
up: install monitoring ## Run Kafka, PostgreSQL, MLflow and every service until Ctrl-C (a first start trains a model)
	RS_GATEWAY_OPEN_MODE=true $(PY) -m deploy.local

# No manifest carries a password or a key: these write the missing ones, once, into git-ignored
# files (random passwords; one admin API key, printed once, its hash kept).
compose-secrets: install ## Generate deploy/compose/.env and secrets/api-keys.json if missing
	$(PY) -m deploy.dev_secrets compose

k8s-dev-secrets: install ## Generate the dev overlay's secrets files if missing
	$(PY) -m deploy.dev_secrets k8s-dev

# The suite first, then the images built and run for real (`make containers-smoke`): a fresh
# machine builds them once (~15 min, most of it the 7 GB training image), later runs only
# what changed.
test: install tools browser monitoring lint ## Lint, type-check, the whole suite on a real stack, then the containers
	$(PY) -m pytest
	$(MAKE) --no-print-directory containers-smoke

# The browser tests drive Debian's Chromium with Playwright; no browser build is downloaded.
browser: ## Install Debian's chromium if it is missing
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)

# Prometheus and Alertmanager are Debian's packages (the local stack runs them; the tests run
# promtool and amtool). Their postinst may try to start a service: without systemd it cannot,
# and the stack runs its own servers on its own ports and state anyway.
monitoring: ## Install Debian's prometheus and prometheus-alertmanager if missing
	@command -v prometheus >/dev/null 2>&1 && command -v prometheus-alertmanager >/dev/null 2>&1 || \
	    (apt-get update && apt-get install -y --no-install-recommends prometheus prometheus-alertmanager)

# The images of deploy/docker/Dockerfile, one per target, built with podman (CONTAINER_TOOL=docker
# elsewhere) and kept: once per project version, again only when their inputs change (the stamp
# files under .images/ hold the digests). No public registry is reachable from every machine
# this runs on, so with podman the base is a local Debian one (deploy/podman/python-base.sh) in
# place of the official python image, and Kafka and PostgreSQL are local stand-ins built from
# Maven's jars and Debian's package (deploy/podman/*.Containerfile); the Dockerfile's and the
# compose file's defaults stay the official images. podman reads its settings from the
# repository, not /etc.
export CONTAINERS_CONF := $(abspath deploy/podman/containers.conf)
CONTAINER_TOOL ?= podman
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml | head -n 1)
IMAGE_REGISTRY ?= localhost/reviewstream
IMAGE_TARGETS := worker registry-watcher gateway stats mlflow training
BASE_IMAGE ?= $(IMAGE_REGISTRY)/python-base:3.11-bookworm
TRAIN_IMAGE ?= $(IMAGE_REGISTRY)/training:$(VERSION)
KAFKA_VERSION := $(shell sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' deploy/local/pom.xml)
KAFKA_IMAGE ?= $(IMAGE_REGISTRY)/kafka:$(KAFKA_VERSION)
POSTGRES_IMAGE ?= $(IMAGE_REGISTRY)/postgres:15-bookworm
BASE_STAMP := .images/python-base.digest
TRAIN_STAMP := .images/training-$(VERSION).digest
IMAGE_STAMPS := $(IMAGE_TARGETS:%=.images/%-$(VERSION).digest)
STANDIN_STAMPS := .images/kafka-$(KAFKA_VERSION).digest .images/postgres.digest
IMAGE_SOURCES := $(shell find contracts deploy export inference gateway producers registry_watcher \
    runtime stats training workers -type f -not -path '*/__pycache__/*' -not -path 'deploy/podman/*' \
    -not -path 'deploy/compose/*' -not -path 'deploy/k8s/*' 2>/dev/null)
SHARED_DATA ?= $(abspath ../shared/data)

# Containers: Debian's podman with runc (Debian's crun fails on this machine's cgroups),
# catatonit for compose's `init: true`, debootstrap for the local base image, iptables for
# netavark's container networks (only a "Suggests" of podman, so not on every machine: without
# it every container with a network fails to start); explicitly runc, so that apt does not
# choose crun for podman's `crun | runc`.
podman: ## Install Debian's podman, runc, catatonit, netavark, aardvark-dns, iptables and debootstrap if missing
	@command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1 && command -v catatonit >/dev/null 2>&1 && \
	    test -x /usr/lib/podman/netavark && test -x /usr/lib/podman/aardvark-dns && \
	    command -v iptables >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 || \
	    (apt-get update && apt-get install -y --no-install-recommends podman runc catatonit netavark aardvark-dns iptables debootstrap)

# Every image, then their sizes. With docker the official bases are pulled instead.
ifeq ($(CONTAINER_TOOL),podman)
images: podman ## Build every image of the Dockerfile (and, with podman, the Kafka/PostgreSQL stand-ins), tagged by version
	@for t in python-base:$(BASE_IMAGE) $(foreach t,$(IMAGE_TARGETS),$(t)-$(VERSION):$(IMAGE_REGISTRY)/$(t):$(VERSION)) \
	    kafka-$(KAFKA_VERSION):$(KAFKA_IMAGE) postgres:$(POSTGRES_IMAGE); do \
	    podman image exists "$${t#*:}" || rm -f ".images/$${t%%:*}.digest"; done
	@$(MAKE) --no-print-directory $(STANDIN_STAMPS) $(IMAGE_STAMPS)
	@podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' --filter reference='$(IMAGE_REGISTRY)/*' | sort
else
images: ## Build every image of the Dockerfile, tagged by version
	for t in $(IMAGE_TARGETS); do $(CONTAINER_TOOL) build -f deploy/docker/Dockerfile --target $$t \
	    --build-arg RS_TRAIN_IMAGE=$(TRAIN_IMAGE) -t $(IMAGE_REGISTRY)/$$t:$(VERSION) . || exit 1; done
	$(CONTAINER_TOOL) images --filter reference='$(IMAGE_REGISTRY)/*'
endif

training-image: podman ## Build the training image once (a local Debian base, the host's uv cache), record its digest
	@podman image exists $(BASE_IMAGE) || rm -f $(BASE_STAMP)
	@podman image exists $(TRAIN_IMAGE) || rm -f $(TRAIN_STAMP)
	@$(MAKE) --no-print-directory $(TRAIN_STAMP)
	@echo "$(TRAIN_IMAGE)@$$(cat $(TRAIN_STAMP))"

# Made once per machine, and again when its recipe changes: the image is labelled with the
# script's sha256, so a fresh clone (no stamps) reuses the base it finds, and with it every
# layer built on it before.
$(BASE_STAMP): deploy/podman/python-base.sh
	@mkdir -p $(@D)
	@recipe=$$(sha256sum deploy/podman/python-base.sh | cut -d' ' -f1); \
	    found=$$(podman image inspect --format '{{index .Labels "org.reviewstream.recipe"}}' $(BASE_IMAGE) 2>/dev/null); \
	    if [ "$$found" = "$$recipe" ]; then echo "$(BASE_IMAGE): built from this recipe already"; \
	    else RECIPE=$$recipe deploy/podman/python-base.sh $(BASE_IMAGE); fi
	podman image inspect --format '{{.Digest}}' $(BASE_IMAGE) > $@

# The host's uv cache is mounted into the build (UV_CACHE_DIR, see the Dockerfile's builder):
# wheels the host has (torch's CUDA ones are GBs) are not downloaded a second time. Host
# network: the build reaches PyPI as the host does, with no container network to set up.
# Only the training stage reads RS_TRAIN_IMAGE. Docker's image format: OCI's has no HEALTHCHECK.
.images/%-$(VERSION).digest: $(BASE_STAMP) deploy/docker/Dockerfile .dockerignore pyproject.toml uv.lock $(IMAGE_SOURCES) | $(UV)
	@mkdir -p $(@D)
	podman build --format docker --network host -f deploy/docker/Dockerfile --target $* \
	    --build-arg PYTHON_IMAGE=$(BASE_IMAGE) --build-arg RS_TRAIN_IMAGE=$(TRAIN_IMAGE) \
	    --build-arg UV_CACHE_DIR=/var/cache/uv-host -v "$$($(UV) cache dir)":/var/cache/uv-host \
	    -t $(IMAGE_REGISTRY)/$*:$(VERSION) .
	podman image inspect --format '{{.Digest}}' $(IMAGE_REGISTRY)/$*:$(VERSION) > $@

# Kafka from the jars the local stack resolves with Maven (deploy/local/kafka.py), mounted into
# the build; its entrypoint reads the official image's KAFKA_* variables.
.images/kafka-$(KAFKA_VERSION).digest: $(BASE_STAMP) deploy/podman/kafka.Containerfile deploy/podman/kafka-entrypoint.sh \
	    deploy/local/pom.xml deploy/local/log4j2.properties | install
	@mkdir -p $(@D)
	jars=$$($(PY) -c 'from deploy.local.kafka import resolve_jars; from deploy.local.settings import StackSettings; print(resolve_jars(StackSettings().cache_dir))') && \
	podman build --network host -f deploy/podman/kafka.Containerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	    -v "$$jars":/var/cache/kafka-jars:ro -t $(KAFKA_IMAGE) deploy
	podman image inspect --format '{{.Digest}}' $(KAFKA_IMAGE) > $@

# PostgreSQL from Debian's package; its entrypoint reads the official image's POSTGRES_* variables.
.images/postgres.digest: $(BASE_STAMP) deploy/podman/postgres.Containerfile deploy/podman/postgres-entrypoint.sh
	@mkdir -p $(@D)
	podman build --network host -f deploy/podman/postgres.Containerfile --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	    -t $(POSTGRES_IMAGE) deploy
	podman image inspect --format '{{.Digest}}' $(POSTGRES_IMAGE) > $@

# The container smoke tests, from these images, for real: the compose stack (deploy/podman/smoke.py:
# health checks, a model trained and promoted, REST and WebSocket through the gateway, a reload,
# down/up, a scale-out), then the dev overlay under `podman kube play`
# (deploy/podman/kube_smoke.py: every pod ready, a review classified). Both run; either failing
# fails the target.
SMOKE_ARGS = --registry $(IMAGE_REGISTRY) --tag $(VERSION) --kafka-image $(KAFKA_IMAGE) \
	--postgres-image $(POSTGRES_IMAGE) --data-dir $(SHARED_DATA)

containers-smoke: install images tools ## Both container smoke tests: the compose stack, then the dev overlay under podman kube play
	@status=0; $(PY) -m deploy.podman.smoke $(SMOKE_ARGS) || status=1; \
	    $(PY) -m deploy.podman.kube_smoke $(SMOKE_ARGS) || status=1; exit $$status

kube-smoke: install images tools ## The dev overlay (kustomize) under podman kube play from the built images: every pod ready
	$(PY) -m deploy.podman.kube_smoke $(SMOKE_ARGS)

# Runs the exact image the stamp names (by digest) on the host network, against `make up`'s
# stack, with the shared data read-only where the image's code looks for it; RS_TRAIN_* and
# RS_EXPORT_* pass through (RS_TRAIN_MAX_TRAIN_ROWS=20000 for a short run).
train-image: training-image ## Train the fast model inside the training image; the run records its digest (needs `make up`)
	$(MLFLOW_AS_TRAINER) && export MLFLOW_TRACKING_USERNAME MLFLOW_TRACKING_PASSWORD="$$(cat $$MLFLOW_TRACKING_PASSWORD_FILE)" && \
	podman run --rm --network host -v $(SHARED_DATA):/app/shared/data:ro \
	    --env 'RS_TRAIN_*' --env 'RS_EXPORT_*' --env MLFLOW_TRACKING_URI \
	    --env MLFLOW_TRACKING_USERNAME --env MLFLOW_TRACKING_PASSWORD \
	    --env RS_TRAIN_IMAGE=$(TRAIN_IMAGE) --env RS_TRAIN_IMAGE_DIGEST=$$(cat $(TRAIN_STAMP)) \
	    $(TRAIN_IMAGE)@$$(cat $(TRAIN_STAMP)) python -m training train --family fast

# Signed in to `make up`'s MLflow as its trainer (deploy/mlflow_access.py), unless told otherwise.
MLFLOW_AS_TRAINER = MLFLOW_TRACKING_USERNAME=$${MLFLOW_TRACKING_USERNAME:-trainer} \
	MLFLOW_TRACKING_PASSWORD_FILE=$${MLFLOW_TRACKING_PASSWORD_FILE:-$${RS_STACK_STATE_DIR:-.state}/mlflow/credentials/trainer}

train: install ## Retrain the fast model on the full data, gate it, register and promote it (needs `make up`)
	$(MLFLOW_AS_TRAINER) $(PY) -m training train --family fast

lint: install ## ruff (lint and format check), mypy and the import contracts (import-linter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

install: $(VENV)/.installed ## The Python environment, from uv.lock (no Go needed)

tools: .tools/.kustomize-$(KUSTOMIZE_VERSION) .tools/.compose-$(COMPOSE_VERSION) ## The deploy checkers of `make test` (needs Go)

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

# Re-sync only when the lock file changes; --frozen refuses a lock that is out of date.
$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --all-extras --python $(PYTHON)
	touch $@

.tools/.kustomize-$(KUSTOMIZE_VERSION):
	@command -v go >/dev/null 2>&1 || { echo "error: Go is needed to build kustomize for make test (see the README's prerequisites)"; exit 1; }
	GOBIN=$(abspath .tools/bin) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	touch $@

# `go install pkg@version` refuses compose's go.mod (exclude directives), so build it as the
# main module from the module cache; `docker compose` finds it through DOCKER_CONFIG.
.tools/.compose-$(COMPOSE_VERSION):
	@command -v go >/dev/null 2>&1 || { echo "error: Go is needed to build the docker compose plugin for make test (see the README's prerequisites)"; exit 1; }
	go mod download github.com/docker/compose/v5@$(COMPOSE_VERSION)
	cd "$$(go env GOMODCACHE)/github.com/docker/compose/v5@$(COMPOSE_VERSION)" && go build -trimpath \
	    -ldflags "-s -w -X github.com/docker/compose/v5/internal.Version=$(COMPOSE_VERSION)" \
	    -o $(abspath .tools/docker/cli-plugins/docker-compose) ./cmd
	touch $@

# Every benchmark scenario in one run on a stack of its own; BENCH_ARGS=--quick for a smoke run.
bench: install ## Benchmarks: the limit, Kafka, REST/WebSocket vs mlflow serve, hot reload, memory
	$(PY) -m benchmarks $(BENCH_ARGS)

clean-state: ## Delete the local stack's data (Kafka topics, PostgreSQL, MLflow runs and models)
	rm -rf .state

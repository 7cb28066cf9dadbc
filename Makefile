# The single entry point. `make run` and `make test` do every set-up step themselves.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)
KAFKA_JARS := var/kafka/libs/.fetched
NODE_TOOLS := tests/node/node_modules/.installed
STRIPE_MOCK_VERSION := v0.203.0
STRIPE_MOCK := var/tools/bin/stripe-mock
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
PYTEST_ARGS ?=

.PHONY: help install prerequisites kafka-jars node-tools run test test-unit test-integration test-e2e test-faults test-faults-cluster test-fuzz test-anywhere test-api bench bench-smoke lint format clean migration contract stripe-mock

help:
	@echo "make run          start Kafka, the three services and the operator dashboard (DB=postgres for PostgreSQL)"
	@echo "make test         unit, integration and end-to-end tests on the real broker and PostgreSQL"
	@echo "make test-faults  the fault-injection suite at full size (3000 orders, kills, a broker restart)"
	@echo "make test-faults-cluster  the same on three brokers: leader and controller kills, PostgreSQL restarts, a paused service"
	@echo "make test-fuzz    10,000 malformed payloads thrown at every consumer"
	@echo "make test-api     schemathesis against every HTTP API's OpenAPI document, 300 examples per operation"
	@echo "make test-anywhere  make run / make test in temporary clones: odd folders, hard kills, two clones"
	@echo "make bench        the benchmark: saga throughput and latency against the raw Kafka relay (BENCH_ARGS=--profile)"
	@echo "make bench-smoke  a few seconds of the benchmark (make test runs it too)"
	@echo "make lint         ruff (lint + format check) and mypy --strict"
	@echo "make contract     regenerate docs/asyncapi.yaml and the schema snapshots (refuses a breaking change)"

$(STAMP): requirements.lock pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

prerequisites:
	@deploy/local/install-prerequisites.sh

$(KAFKA_JARS): deploy/kafka/pom.xml | prerequisites $(STAMP)
	$(PY) -m deploy.local.kafka fetch
	touch $@

kafka-jars: $(KAFKA_JARS)

# The standard AsyncAPI parser (Node), pinned by package-lock.json; the tests validate docs/ with it.
$(NODE_TOOLS): tests/node/package-lock.json | prerequisites
	cd tests/node && npm ci --no-audit --no-fund --silent
	touch $@

node-tools: $(NODE_TOOLS)

# Stripe's official API mock (Go), built once from the Go module proxy; the Stripe contract
# tests (tests/contract/test_stripe_adapter_on_stripe_mock.py) run the adapter against it.
$(STRIPE_MOCK): | prerequisites
	GOBIN="$(CURDIR)/var/tools/bin" GOFLAGS=-mod=mod $(GO) install github.com/stripe/stripe-mock@$(STRIPE_MOCK_VERSION)

stripe-mock: $(STRIPE_MOCK)

run: install prerequisites kafka-jars
	$(PY) -m deploy.local.stack

test: install prerequisites kafka-jars node-tools stripe-mock
	$(PY) -m pytest $(PYTEST_ARGS)

test-unit: install
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: install prerequisites kafka-jars
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

test-e2e: install prerequisites kafka-jars
	$(PY) -m pytest tests/e2e $(PYTEST_ARGS)

# The long runs; `make test` runs a bounded slice of each.
test-faults: install prerequisites kafka-jars
	FAULTS_ORDERS=$${FAULTS_ORDERS:-3000} $(PY) -m pytest tests/faults -m "not cluster" -s $(PYTEST_ARGS)

test-faults-cluster: install prerequisites kafka-jars
	FAULTS_ORDERS=$${FAULTS_ORDERS:-3000} $(PY) -m pytest tests/faults -m cluster -s $(PYTEST_ARGS)

test-fuzz: install
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-10000} $(PY) -m pytest tests/fuzz -s $(PYTEST_ARGS)

# Each case a temporary clone of the working tree (a folder only root may enter, spaces and
# non-ASCII letters, a second clone, SIGKILL at any moment, make test twice); `make test` runs one.
test-api: install prerequisites kafka-jars
	API_EXAMPLES=$${API_EXAMPLES:-300} $(PY) -m pytest tests/e2e/test_api_conformance.py $(PYTEST_ARGS)

test-anywhere: install prerequisites kafka-jars
	ANYWHERE=all $(PY) -m pytest tests/anywhere $(PYTEST_ARGS)

# Minutes, not seconds: its own broker, PostgreSQL (fsync on) and the three services;
# results in test-results/bench/<time>/ (results.json, chart.png). `make test` runs a smoke slice.
bench: install prerequisites kafka-jars
	$(PY) -m tests.bench $(BENCH_ARGS)

bench-smoke: install prerequisites kafka-jars
	$(PY) -m tests.bench --smoke $(BENCH_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# Refuses while `make run` runs in this clone; keeps the venv, the Kafka jars and the CDS archive.
clean:
	@$(PYTHON) -m deploy.local.clean

# The published contract: docs/asyncapi.yaml and tests/contract/snapshots, from shared/events.py.
contract: install
	$(PY) -m shared.asyncapi --update-snapshots

migration: install
	$(PY) -m deploy.local.migrations $(SERVICE) -m "$(MESSAGE)"

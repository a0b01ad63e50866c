# One task runner for people and CI. `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help setup demo demo-cloudsql test lint typecheck terraform-check bench

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: ## create .venv with pinned deps and offline emulator extensions
	@bash scripts/setup.sh

demo: setup ## seed local BigQuery emulator + Postgres, sync until done, print status
	@$(PY) scripts/demo.py

demo-cloudsql: setup ## the demo through the deployed path: Secret Manager, Cloud SQL connector, mTLS (stand-ins)
	@$(PY) scripts/demo.py --cloudsql

lint: setup ## ruff on everything
	@$(PY) -m ruff check sync main.py standins tests scripts bench

typecheck: setup ## mypy --strict on sync/
	@$(PY) -m mypy

terraform-check: setup ## offline Terraform checks (fmt, providers, provider schemas, checkov)
	@bash scripts/check_terraform.sh

# Workers for pytest-xdist. On 2 cores, 3 workers measured 188 s, 2 workers 220 s, serial 472 s:
# much of the suite waits on emulators, served functions and leases. Modules stay whole on one
# worker (loadfile), so module fixtures start once.
TEST_WORKERS ?= 3

test: setup lint typecheck ## the whole suite: lint, types, tests, Terraform checks
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile
	@$(MAKE) --no-print-directory terraform-check

bench: setup ## benchmarks (see bench/README.md)
	@bash bench/run.sh

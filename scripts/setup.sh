#!/usr/bin/env bash
# Idempotent local setup: venv, pinned dependencies, offline DuckDB extensions.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
# The Python the function runs on (terraform/function.tf: build_config.runtime = python313), so the
# suite tests what deploys. PYTHON overrides it; pyenv's 3.13 is found when python3.13 is not on PATH
# (a pyenv shim for a version not selected is on PATH but does not run, hence the trial run).
RUNTIME_PYTHON=3.13
if [ -z "${PYTHON:-}" ]; then
  for candidate in "python$RUNTIME_PYTHON" "$(pyenv prefix "$RUNTIME_PYTHON" 2>/dev/null)/bin/python" python3; do
    if "$candidate" -c 'import sys' >/dev/null 2>&1; then PYTHON=$candidate; break; fi
  done
fi
version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
if [ "$(version "$PYTHON")" != "$RUNTIME_PYTHON" ]; then
  echo "warning: Python $RUNTIME_PYTHON (the function's runtime) not found; using $PYTHON ($(version "$PYTHON"))" >&2
fi
# A virtualenv on another Python (made before the runtime moved) is made again.
if [ -x "$VENV/bin/python" ] && [ "$(version "$VENV/bin/python")" != "$(version "$PYTHON")" ]; then
  echo "$VENV is on Python $(version "$VENV/bin/python"); making it again on $(version "$PYTHON")" >&2
  rm -rf "$VENV"
fi
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

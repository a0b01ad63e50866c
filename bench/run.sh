#!/usr/bin/env bash
# Installs the benchmark extras (requirements-bench.txt) into .venv, then runs every benchmark.
# Arguments are passed to `python -m bench` (e.g. --rows 20000 --repeats 1 --only write).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
exec .venv/bin/python -m bench "$@"

#!/usr/bin/env bash
# Offline checks of terraform/: formatting, configuration loading, and checkov.
#
# terraform init/validate/plan need the hashicorp/google provider, which cannot be
# downloaded here, so this runs what works without it:
#   1. terraform fmt -check -recursive terraform
#   2. terraform providers   (loads and parses every .tf file; syntax and block errors fail)
#   3. the provider-schema check (scripts/check_provider_schema.py, in .venv): every
#      type, argument, block, enum literal and reference against the google, random,
#      archive and time provider schemas, for the lowest versions versions.tf allows and
#      the newest google 7.x. The schemas come from the CDK provider packages on PyPI,
#      downloaded once and cached in .cache/provider-schemas (git-ignored).
#   4. checkov --skip-download, in its own virtualenv (.venv-checkov), pinned by
#      requirements-checkov.txt. Every skipped check has a #checkov:skip=ID:reason
#      comment on its resource.
# Steps 1-2 are skipped, with a message, where no terraform binary exists.
# Usage: bash scripts/check_terraform.sh   (from anywhere; exits non-zero on any failure)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo_root"

venv="${CHECKOV_VENV:-$repo_root/.venv-checkov}"
requirements="$repo_root/requirements-checkov.txt"
status=0

step() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; status=1; }

if [[ ! -d terraform ]] || ! compgen -G "terraform/*.tf" >/dev/null; then
  echo "FAILED: no terraform/*.tf files under $repo_root" >&2
  exit 1
fi

# A CLI config that is unset or points at a missing file makes terraform warn on
# every call; nothing here needs one.
if [[ -z "${TF_CLI_CONFIG_FILE:-}" || ! -r "${TF_CLI_CONFIG_FILE}" ]]; then
  export TF_CLI_CONFIG_FILE=/dev/null
fi
export TF_IN_AUTOMATION=1 CHECKPOINT_DISABLE=1

if command -v terraform >/dev/null 2>&1; then
  step "terraform fmt -check -recursive terraform ($(terraform version | head -n1))"
  terraform fmt -check -recursive -diff terraform || fail "terraform fmt (run: terraform fmt -recursive terraform)"

  step "terraform providers (loads the configuration)"
  terraform -chdir=terraform providers || fail "terraform providers"
else
  step "terraform not found on PATH: SKIPPING fmt and providers (checkov still runs)"
fi

step "provider schema check (what terraform validate would report)"
py="${VENV:-$repo_root/.venv}/bin/python"
if [[ ! -x "$py" ]]; then
  fail "no $py: run 'make setup' first (python-hcl2 lives there)"
else
  "$py" scripts/check_provider_schema.py terraform || fail "provider schema check (see ERROR lines above)"
fi

step "checkov (virtualenv $venv)"
# Reuse the venv while it matches the pinned requirements; rebuild it when they change.
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/checkov" || ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  echo "creating $venv from requirements-checkov.txt (PyPI)"
  rm -rf "$venv"
  python3 -m venv "$venv"
  pip_log="$(mktemp)"
  if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >"$pip_log" 2>&1; then
    cat "$pip_log" >&2
    rm -f "$pip_log"
    echo "FAILED: could not install checkov into $venv" >&2
    exit 1
  fi
  rm -f "$pip_log"
  echo "$want" >"$stamp"
fi
"$venv/bin/checkov" --version

# --skip-download: no Bridgecrew/Prisma platform calls; --quiet: print failures only.
"$venv/bin/checkov" -d terraform --framework terraform --skip-download --compact --quiet \
  || fail "checkov (see failed checks above; fix them or add #checkov:skip=ID:reason on the resource)"

if [[ $status -eq 0 ]]; then
  step "all terraform checks passed"
fi
exit "$status"

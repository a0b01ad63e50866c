"""A known database password, driven through the CLI and the function on success, a wrong password
and an unparseable URL, appears in no log line, no CLI output and no sync_status/sync_runs column.

The server behind the URL checks passwords (scram-sha-256), so the wrong-password case really
fails at login, as it would in production.
"""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
from conftest import Env
from functionapp import TOPIC, client, push, rendered

from standins.generator import generate
from sync.postgres.db import connect_url
from sync.postgres.schema import migrate

ROOT = Path(__file__).resolve().parents[2]
# Reserved URL characters, so that a wrongly encoded URL cuts the password in pieces: each
# piece must stay out of the output too.
PASSWORD = f"Pw-LEAK-{secrets.token_hex(4)}/x?y#z"
WRONG = f"Pw-WRONG-{secrets.token_hex(4)}"
FRAGMENTS = (PASSWORD, quote(PASSWORD, safe=""), "Pw-LEAK", WRONG, "Pw-WRONG")


@pytest.fixture(scope="module")
def database(secure_postgres):
    role, name = f"leak_{uuid.uuid4().hex[:8]}", f"os_leak_{uuid.uuid4().hex[:8]}"
    admin = connect_url(secure_postgres.admin_url)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    admin.cursor().execute(f'CREATE DATABASE "{name}" OWNER {role}')
    good = f"postgresql://{role}:{quote(PASSWORD, safe='')}@127.0.0.1:{secure_postgres.cluster.port}/{name}"
    conn = connect_url(good)
    migrate(conn)
    conn.close()
    urls = {
        "success": good,
        "bad password": good.replace(quote(PASSWORD, safe=""), quote(WRONG, safe="")),
        "bad url": good.replace(quote(PASSWORD, safe=""), PASSWORD),  # the repro: not encoded
    }
    try:
        yield urls
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@pytest.fixture(scope="module")
def source(bq_client, bq_endpoint, database):
    env = Env(bq_client, bq_endpoint, database["success"], f"sf_leak_{uuid.uuid4().hex[:6]}", f"gong_leak_{uuid.uuid4().hex[:6]}")
    env.seed(generate(20, seed=91))
    return env


def _stored_state(url: str) -> str:
    conn = connect_url(url)
    try:
        cur = conn.cursor()
        cur.execute("SELECT coalesce(string_agg(row_to_json(s)::text, ' '), '') FROM sync_status s")
        status = cur.fetchone()[0]
        cur.execute("SELECT coalesce(string_agg(row_to_json(r)::text, ' '), '') FROM sync_runs r")
        runs = cur.fetchone()[0]
        return status + runs
    finally:
        conn.close()


def _assert_absent(text: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text


@pytest.mark.parametrize(("case", "exit_code"), [("success", 0), ("bad password", 1), ("bad url", 2)])
def test_cli(source, database, case, exit_code):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SYNC_", "DB_", "BIGQUERY_", "DATABASE_URL"))}
    result = subprocess.run(
        [sys.executable, "-m", "sync", "run"],
        cwd=ROOT,
        env={**clean, **source.env_vars(DATABASE_URL=database[case]), "LOG_LEVEL": "DEBUG"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == exit_code, result.stderr
    _assert_absent(result.stdout + result.stderr)
    if case == "bad password":
        assert "28P01" in result.stderr  # the reason is there; the password is not
    if case == "bad url":
        assert "DATABASE_URL has a port that is not a number" in result.stderr
    _assert_absent(_stored_state(database["success"]))


@pytest.mark.parametrize(("case", "status"), [("success", 200), ("bad password", 200), ("bad url", 200)])
def test_function(source, database, monkeypatch, caplog, case, status):
    app = client(monkeypatch, {**source.env_vars(DATABASE_URL=database[case]), "SYNC_TOPIC": TOPIC, "LOG_LEVEL": "DEBUG"})
    caplog.set_level(logging.DEBUG)
    assert push(app, {"type": "tick"}, message_id=f"leak-{case}").status_code == status
    lines = rendered(caplog.records)
    assert lines  # something was logged, tracebacks included
    _assert_absent("\n".join(lines))
    if case != "success":
        assert any(r.levelno >= logging.ERROR for r in caplog.records)  # a failure, said without the secret
    _assert_absent(_stored_state(database["success"]))

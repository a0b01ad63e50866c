"""The entry point through functions-framework: 200 acknowledges, non-2xx asks Pub/Sub to redeliver
(429 run busy, 503 transient, 500 unexpected; see tests/system/test_redelivery_logging.py)."""

from __future__ import annotations

import base64
import json
import logging

import functions_framework
import pytest
from projection import expected_projection

import main as entry
from standins.generator import generate
from standins.process import free_port


def _client(monkeypatch, env_vars):
    for key in list(entry.os.environ):
        if key in env_vars or key.startswith(("SYNC_", "DB_", "BIGQUERY_", "DATABASE_URL", "INSTANCE_")):
            monkeypatch.delenv(key, raising=False)
    for key, value in env_vars.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(entry, "_runtime", None)  # a fresh cold start per test
    app = functions_framework.create_app("sync_opportunities", str(entry.__file__), "cloudevent")
    return app.test_client()


def _push(client, body: bytes, *, binary=True, message_id="m-1"):
    data = {
        "message": {"data": base64.b64encode(body).decode(), "messageId": message_id},
        "subscription": "projects/local-project/subscriptions/sync",
    }
    if not binary:  # a raw Pub/Sub push request, converted by the framework
        return client.post("/", json=data)
    headers = {
        "ce-specversion": "1.0",
        "ce-type": "google.cloud.pubsub.topic.v1.messagePublished",
        "ce-source": "//pubsub.googleapis.com/projects/local-project/topics/sync",
        "ce-id": message_id,
    }
    return client.post("/", headers=headers, data=json.dumps(data), content_type="application/json")


def _vars(env, **extra):
    return {**env.env_vars(), "SYNC_TOPIC": "projects/local-project/topics/sync", "SYNC_PAGE_SIZE": "1000", **extra}


@pytest.mark.parametrize("binary", [True, False])
def test_tick_syncs_and_acknowledges(env, monkeypatch, binary):
    data = generate(60, seed=41)
    env.seed(data)
    client = _client(monkeypatch, _vars(env))
    response = _push(client, b'{"type": "tick"}', binary=binary)
    assert response.status_code == 200
    assert env.query("SELECT status FROM sync_status") == [("success",)]
    assert env.projection() == expected_projection(data)


@pytest.mark.parametrize(
    ("body", "reason"),
    [(b"{not json", "not UTF-8 JSON"), (b'{"type": "reboot"}', "unknown message type 'reboot'")],
)
def test_malformed_and_unknown_messages_are_acknowledged_and_logged(env, monkeypatch, caplog, body, reason):
    env.seed(generate(5, seed=42))
    client = _client(monkeypatch, _vars(env))
    with caplog.at_level(logging.ERROR):
        response = _push(client, body)
    assert response.status_code == 200  # no retry storm for a message that can never work
    assert any(reason in r.getMessage() for r in caplog.records)
    assert env.query("SELECT count(*), (SELECT status FROM sync_status) FROM opportunities") == [(0, "never_run")]


@pytest.mark.parametrize(
    ("body", "message_id", "reason"),
    [
        (b"[" * 1000 + b"]" * 1000, "m-1", "nested more than 32 deep"),  # was RecursionError: 500 and 24 h of retries
        (b'{"type": "full_resync"}', "7" * 200_000, "message id is 200000 characters"),  # a 200 KB id
    ],
)
@pytest.mark.parametrize("binary", [True, False])
def test_hostile_messages_are_acknowledged_with_bounded_logs(env, monkeypatch, caplog, body, message_id, reason, binary):
    env.seed(generate(5, seed=46))
    client = _client(monkeypatch, _vars(env))
    with caplog.at_level(logging.DEBUG):
        response = _push(client, body, binary=binary, message_id=message_id)
    assert response.status_code == 200
    assert any(reason in r.getMessage() for r in caplog.records)
    assert max(len(r.getMessage()) + len(str(getattr(r, "error", ""))) for r in caplog.records) < 1000
    assert env.query("SELECT status FROM sync_status") == [("never_run",)]
    assert env.query("SELECT count(*) FROM sync_resync_messages") == [(0,)]  # no full resync remembered


def test_database_down_is_retried(env, monkeypatch):
    env.seed(generate(5, seed=43))
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    client = _client(monkeypatch, _vars(env, DATABASE_URL=dead))
    assert _push(client, b'{"type": "tick"}').status_code == 503


def test_bad_configuration_is_acknowledged_with_every_variable_named(env, monkeypatch, caplog):
    client = _client(monkeypatch, _vars(env, SYNC_PAGE_SIZE="-3", SALESFORCE_DATASET="bad-name!"))
    with caplog.at_level(logging.CRITICAL):
        response = _push(client, b'{"type": "tick"}')
    assert response.status_code == 200
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "SYNC_PAGE_SIZE" in text
    assert "SALESFORCE_DATASET" in text


def test_source_schema_error_is_permanent(env, monkeypatch):
    data = generate(5, seed=44, messy=False)
    del data.schemas["opportunity"]["amount"]
    env.seed(data)
    client = _client(monkeypatch, _vars(env))
    assert _push(client, b'{"type": "tick"}').status_code == 200
    assert env.query("SELECT status FROM sync_status") == [("failed",)]


def test_cold_start_as_a_data_only_role_needs_no_ddl(env, monkeypatch):
    from conftest import DATA_ONLY_GRANTS, database_role

    env.seed(generate(10, seed=47, messy=False))
    # The tables exist (an admin created them); the function's role can only use them.
    with database_role(env.database_url, DATA_ONLY_GRANTS) as role_url:
        client = _client(monkeypatch, _vars(env, DATABASE_URL=role_url))
        assert _push(client, b'{"type": "tick"}').status_code == 200
    assert env.query("SELECT status FROM sync_status") == [("success",)]
    assert len(env.live_ids()) == 10


def test_cold_start_applies_migrations(env, monkeypatch, pg_admin_url):
    import uuid

    from sync.postgres.db import connect_url

    name = f"os_fresh_{uuid.uuid4().hex[:8]}"
    admin = connect_url(pg_admin_url)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        env.seed(generate(10, seed=45, messy=False))
        url = pg_admin_url.rpartition("/")[0] + "/" + name
        client = _client(monkeypatch, _vars(env, DATABASE_URL=url))
        assert _push(client, b'{"type": "tick"}').status_code == 200
        conn = connect_url(url)
        cur = conn.cursor()
        cur.execute("SELECT count(*) FROM opportunities")
        assert cur.fetchone()[0] == 10
        conn.close()
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()

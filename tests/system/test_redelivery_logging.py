"""Expected redeliveries are not errors; real errors still are (issue: Error Reporting noise).

Each case goes through functions-framework's app, as Cloud Functions runs it, and asserts the
status Pub/Sub sees, the level of the one line we log, and whether a traceback was written.
"""

from __future__ import annotations

import logging
import uuid

import pytest
from functionapp import TOPIC, client, push, rendered

from standins.generator import generate
from standins.httpd import HttpStandIn, Reply
from standins.process import free_port
from sync.postgres.db import connect_url

CONTINUATION = {"type": "continue", "v": 1, "page": 3, "upper_bound": "2026-11-01T00:00:00+00:00"}


def _vars(env, **extra: str) -> dict[str, str]:
    return {**env.env_vars(), "SYNC_TOPIC": TOPIC, "SYNC_PAGE_SIZE": "1000", **extra}


def _tracebacks(records: list[logging.LogRecord]) -> list[str]:
    return [line for line in rendered(records) if '"exception":' in line]


def _crash_lines(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    # What Flask logs for an exception that escapes the function.
    return [r for r in records if r.getMessage().startswith("Exception on ")]


def test_lease_busy_is_redelivered_without_an_error(env, monkeypatch, caplog):
    env.seed(generate(20, seed=71))
    app = client(monkeypatch, _vars(env))
    holder = uuid.uuid4()  # another invocation, mid-page
    env.query("UPDATE sync_status SET lease_owner = %s, lease_expires_at = now() + interval '10 minutes'", (str(holder),))
    run_id = uuid.uuid4()
    caplog.set_level(logging.INFO)

    continuation = push(app, {**CONTINUATION, "run_id": str(run_id)}, message_id="m-cont")
    resync = push(app, {"type": "full_resync"}, message_id="m-resync")
    tick = push(app, {"type": "tick"}, message_id="m-tick")

    assert continuation.status_code == 429  # non-2xx: Pub/Sub redelivers
    assert resync.status_code == 429
    assert tick.status_code == 200  # a busy tick has nothing to do; the next one will come anyway
    busy = [r for r in caplog.records if getattr(r, "event", None) == "run_busy"]
    assert len(busy) == 3  # one line per delivery
    assert {r.levelno for r in busy} <= {logging.INFO, logging.WARNING}
    assert (busy[0].run_id, busy[0].page, busy[0].message_type) == (str(run_id), 3, "continue")
    assert (busy[1].run_id, busy[1].page, busy[1].message_type) == (None, None, "full_resync")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not _tracebacks(caplog.records)
    assert not _crash_lines(caplog.records)
    # Nothing was touched: the holder still holds the run.
    assert env.query("SELECT lease_owner::text, status FROM sync_status") == [(str(holder), "never_run")]


def test_transient_postgres_failure_is_one_warning_with_its_sqlstate(env, monkeypatch, caplog):
    env.seed(generate(20, seed=72))
    # A lock timeout (55P03) from the real server: another session holds the synced table. (A
    # lock on the state row itself answers "busy" instead: tests/run/test_dead_session.py.)
    url = env.database_url + "?options=-c%20lock_timeout%3D300ms"
    app = client(monkeypatch, _vars(env, DATABASE_URL=url, SYNC_AUTO_MIGRATE="false"))
    locker = connect_url(env.database_url)
    locker.cursor().execute("LOCK TABLE opportunities IN ACCESS EXCLUSIVE MODE")
    caplog.set_level(logging.INFO)
    try:
        response = push(app, {"type": "tick"})
    finally:
        locker.rollback()
        locker.close()

    assert response.status_code == 503
    failed = [r for r in caplog.records if getattr(r, "event", None) == "page_failed"]
    assert len(failed) == 1
    assert failed[0].levelno == logging.WARNING
    assert failed[0].sqlstate == "55P03"
    assert failed[0].retryable is True
    assert not _tracebacks(caplog.records)
    assert not _crash_lines(caplog.records)
    # Redelivered once the lock is gone, it succeeds: nothing was lost.
    assert push(app, {"type": "tick"}).status_code == 200
    assert len(env.live_ids()) > 0


def test_unreachable_database_is_one_warning(env, monkeypatch, caplog):
    env.seed(generate(5, seed=73))
    app = client(monkeypatch, _vars(env, DATABASE_URL=f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"))
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}).status_code == 503
    failed = [r for r in caplog.records if getattr(r, "event", None) == "page_failed"]
    assert [(r.levelno, "connection failure" in r.getMessage()) for r in failed] == [(logging.WARNING, True)]
    assert not _tracebacks(caplog.records)


@pytest.fixture
def gateway():
    """A proxy in front of 'BigQuery' that answers HTML with status 200: nothing we classify."""
    server = HttpStandIn(lambda _r: Reply(200, raw=b"<html>upstream hiccup</html>", content_type="text/html")).start()
    yield server
    server.stop()


def test_unknown_error_keeps_its_traceback_once(env, monkeypatch, caplog, gateway):
    env.seed(generate(5, seed=74))
    app = client(monkeypatch, _vars(env, BIGQUERY_API_ENDPOINT=gateway.url))
    caplog.set_level(logging.INFO)
    response = push(app, {"type": "tick"})

    assert response.status_code == 500  # retried, like every unknown
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert errors[0].name == "sync.main"
    assert "unexpected failure" in errors[0].getMessage()
    (traceback,) = _tracebacks(caplog.records)
    assert "JSONDecodeError" in traceback
    assert not _crash_lines(caplog.records)  # logged once, by us, not again by Flask


def test_permanent_failure_is_acknowledged_with_its_traceback(env, monkeypatch, caplog):
    data = generate(5, seed=75, messy=False)
    del data.schemas["opportunity"]["amount"]  # a required column the source lost
    env.seed(data)
    app = client(monkeypatch, _vars(env))
    caplog.set_level(logging.INFO)
    assert push(app, {"type": "tick"}).status_code == 200
    main_errors = [r for r in caplog.records if r.name == "sync.main" and r.levelno >= logging.ERROR]
    assert len(main_errors) == 1
    assert main_errors[0].exc_info is not None
    assert "SourceSchemaError" in "".join(_tracebacks(main_errors))
    assert not _crash_lines(caplog.records)
